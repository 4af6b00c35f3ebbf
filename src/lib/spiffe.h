/*
 * spiffe.h - SPIFFE IDs (SPIFFE-ID specification, section 2).
 *
 *   spiffe://<trust domain>[/<segment>]...
 *
 * The trust domain is 1..255 characters of [a-z0-9.-_] (uppercase is
 * refused, not folded: two spellings of one identity would defeat exact
 * comparison in authorisation policy). Path segments are non-empty runs of
 * [A-Za-z0-9.-_] other than "." and "..". No percent-encoding, query,
 * fragment, userinfo, port or trailing slash; the whole ID is at most 2048
 * bytes. Pure string checks: fuzzed by tests/fuzz/fuzz_spiffe.c.
 *
 * Also the patterns of authorisation lists (proxy.yaml's allow,
 * expect_id and routes' allow): an ID, or an ID and a slash-star.
 */
#ifndef HSM_SPIFFE_H
#define HSM_SPIFFE_H

#define SPIFFE_SCHEME "spiffe://"
#define SPIFFE_TD_MAX 255	/* trust domain name, bytes */
#define SPIFFE_ID_MAX 2048	/* whole ID, bytes */

/* A parsed SPIFFE ID. path is "" (the trust domain's own ID) or starts with '/'. */
struct spiffe_id {
	char trust_domain[SPIFFE_TD_MAX + 1];
	char path[SPIFFE_ID_MAX + 1];
};

/*
 * Parse and validate s (NUL-terminated). On success fills *out and returns
 * 0; otherwise returns HSM_EINVAL with a one-line detail such as
 * "invalid SPIFFE ID 'spiffe://example.org/../x': path segment '..' is
 * not allowed". *out is cleared on entry. s may be untrusted: the detail
 * quotes it with control characters escaped and long input truncated.
 */
int spiffe_id_parse(const char *s, struct spiffe_id *out);

/*
 * Validate a trust domain name alone ("example.org", no scheme). 0 or
 * HSM_EINVAL with a detail "invalid trust domain '...': ...".
 */
int spiffe_td_check(const char *td);

/*
 * Check that id is a workload SPIFFE ID of trust domain td: well-formed
 * (HSM_EINVAL otherwise), with a non-empty path and in td (HSM_EPOLICY
 * otherwise, e.g. "SPIFFE ID 'spiffe://other.org/x' is not in trust
 * domain 'example.org'"). 0 when acceptable.
 */
int spiffe_id_check_domain(const char *id, const char *td);

/*
 * Patterns. A star can only be the whole last segment, so in the comments
 * below P-star stands for a SPIFFE ID P followed by a slash and a star:
 * "spiffe://example.org/" + "*" is the whole trust domain, and
 * "spiffe://example.org/ns/" + "*" everything below /ns.
 */
/*
 * Check a pattern's syntax: a full SPIFFE ID (spiffe_id_parse), or P-star
 * where P is a valid SPIFFE ID. No other wildcard. 0 or HSM_EINVAL with a
 * one-line detail.
 */
int spiffe_pattern_check(const char *pattern);

/*
 * 1 when id matches pattern: equal, or for P-star, id starts with P and a
 * slash and has at least one more character (so "spiffe://example.org/ns/"
 * + "*" matches neither "spiffe://example.org/ns" nor
 * "spiffe://example.org/nsx/a"). 0 otherwise. A pure string comparison:
 * id is a verified peer's ID.
 */
int spiffe_pattern_match(const char *pattern, const char *id);

#endif
