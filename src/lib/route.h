/*
 * route.h - per-route policy of an inbound HTTP listener: the request
 * path in normal form, and the first route that matches a request.
 *
 * Normal form of a request path (route_path_norm). The sidecar matches
 * and forwards the normal form, so the application serves exactly the
 * path the policy judged; anything two servers could read two ways is
 * refused with 400 instead of guessed at:
 *
 *   - the path starts with '/'; a '#' anywhere is refused;
 *   - the query (from the first '?') is kept as written (visible ASCII)
 *     and takes no part in matching;
 *   - path characters are RFC 3986 pchar and '/', except ';' (path
 *     parameters, which some servers strip before routing): anything
 *     else (space, '\', '"', '<', non-ASCII, controls...) is refused;
 *   - percent-encoding: '%' needs two hex digits; an encoded unreserved
 *     character (A-Z a-z 0-9 - . _ ~) is decoded ("%61" is "a", "%2e"
 *     is "."); an encoded '/', '\', '%' (double encoding: "%252e"),
 *     ';' or control character is refused; other encodings stay
 *     encoded, with upper-case hex digits;
 *   - after decoding, no segment may be "." or "..", and no segment
 *     but the last may be empty ("//" is refused).
 *
 * So "/a/../admin", "/%2e%2e/admin", "//admin", "/admin%2Fx", "/admin;x"
 * and "/a\admin" are all 400, and "/%61dmin" is "/admin". Matching is
 * case-sensitive: an application that folds case in paths needs routes
 * that deny by default.
 *
 * A route matches when its path does (exact: equal; prefix: equal, or
 * the request path continues after the prefix with '/', or the prefix
 * ends in '/') and, when it lists methods, the request's method is one
 * of them (case-sensitive, RFC 9110 9.1). The first matching route
 * decides: its allow list, not a later route's. A request that no route
 * matches is refused (403).
 */
#ifndef HSM_ROUTE_H
#define HSM_ROUTE_H

#include <stddef.h>

struct route {
	char *name;		/* for logs and metrics */
	char *path;		/* in normal form, without query */
	size_t plen;
	int prefix;		/* 1: path_prefix, 0: path (exact) */
	char **methods;		/* NULL when any method matches */
	size_t nmethods;
	char **allow;		/* SPIFFE IDs and patterns (spiffe_pattern_match) */
	size_t nallow;
	unsigned timeout_ms;	/* 0: the listener's default */
};

/*
 * Bring the path (with its query) of len bytes at in to normal form in
 * out (cap bytes; the result is never longer than the input): *outlen
 * its length, *pathlen the length of its path part (before '?'). Also
 * NUL-terminates out when there is room. 0, or HSM_EPROTO with a
 * one-line detail (answer 400), or HSM_EINVAL when out is too small.
 */
int route_path_norm(const char *in, size_t len, char *out, size_t cap, size_t *outlen,
    size_t *pathlen);

/* 1 when route r matches method and the normal-form path (plen bytes, no query). */
int route_matches(const struct route *r, const char *method, const char *path, size_t plen);

/*
 * The first of the n routes that matches, or NULL. path must be in
 * normal form (route_path_norm); plen excludes the query.
 */
const struct route *route_find(const struct route *routes, size_t n, const char *method,
    const char *path, size_t plen);

/* 1 when the peer's SPIFFE ID matches an entry of r's allow list. */
int route_allows(const struct route *r, const char *peer_id);

/* Free what r holds and clear it. Accepts NULL. */
void route_clear(struct route *r);

#endif
