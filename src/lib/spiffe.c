/* spiffe.c - SPIFFE ID validation (see spiffe.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "spiffe.h"
#include "util.h"

/* Room for the quoted copy of untrusted input in an error detail (err.c keeps 512). */
#define QBUF 200

/* Describe a byte that is not allowed at this place. */
static void
bad_char(char *why, size_t len, const char *where, unsigned char c)
{
	switch (c) {
	case '%':
		snprintf(why, len, "percent-encoding is not allowed");
		break;
	case '?':
		snprintf(why, len, "a query ('?') is not allowed");
		break;
	case '#':
		snprintf(why, len, "a fragment ('#') is not allowed");
		break;
	default:
		if (c > 0x20 && c < 0x7f && c != '\'')
			snprintf(why, len, "character '%c' is not allowed in the %s", c, where);
		else
			snprintf(why, len, "byte 0x%02x is not allowed in the %s", c, where);
		break;
	}
}

static int
td_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
	    c == '_';
}

static int
path_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '-' || c == '_';
}

/*
 * Check the trust domain at p (n bytes, not NUL-terminated). 0, or -1 with
 * the reason in why. Userinfo and port get their own reasons because they
 * are what a URI-minded user will try.
 */
static int
td_scan(const char *p, size_t n, char *why, size_t wlen)
{
	size_t i;

	if (n == 0) {
		snprintf(why, wlen, "trust domain is empty");
		return -1;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (td_char_ok(c))
			continue;
		if (c >= 'A' && c <= 'Z')
			snprintf(why, wlen, "trust domain must be lowercase");
		else if (c == '@')
			snprintf(why, wlen, "userinfo ('@') is not allowed");
		else if (c == ':')
			snprintf(why, wlen, "a port (':') is not allowed");
		else
			bad_char(why, wlen, "trust domain", c);
		return -1;
	}
	if (n > SPIFFE_TD_MAX) {
		snprintf(why, wlen, "trust domain is longer than %d characters", SPIFFE_TD_MAX);
		return -1;
	}
	return 0;
}

/* Check the path at p (NUL-terminated, "" or starting with '/'). 0 or -1 with why. */
static int
path_scan(const char *p, char *why, size_t wlen)
{
	const char *seg;
	size_t n;

	while (*p == '/') {
		seg = ++p;
		while (path_char_ok((unsigned char)*p))
			p++;
		n = (size_t)(p - seg);
		if (*p != '\0' && *p != '/') {
			bad_char(why, wlen, "path", (unsigned char)*p);
			return -1;
		}
		if (n == 0) {
			snprintf(why, wlen, *p == '\0' ? "a trailing slash is not allowed" :
			    "an empty path segment is not allowed");
			return -1;
		}
		if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
			snprintf(why, wlen, "path segment '%.*s' is not allowed", (int)n, seg);
			return -1;
		}
	}
	/* Only reachable with a non-'/' after the trust domain, handled by the caller. */
	return *p == '\0' ? 0 : -1;
}

int
spiffe_id_parse(const char *s, struct spiffe_id *out)
{
	char q[QBUF], why[128];
	const char *td, *p;
	size_t len, tdlen;

	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return hsm_err(HSM_EINVAL, "invalid SPIFFE ID: none given");
	len = strnlen(s, SPIFFE_ID_MAX + 1);
	if (len == 0)
		return hsm_err(HSM_EINVAL, "invalid SPIFFE ID: empty");
	if (len > SPIFFE_ID_MAX) {
		snprintf(why, sizeof(why), "longer than %d bytes", SPIFFE_ID_MAX);
		goto bad;
	}
	if (strncmp(s, SPIFFE_SCHEME, strlen(SPIFFE_SCHEME)) != 0) {
		if (strncasecmp(s, SPIFFE_SCHEME, strlen(SPIFFE_SCHEME)) == 0)
			snprintf(why, sizeof(why), "scheme must be lowercase 'spiffe://'");
		else
			snprintf(why, sizeof(why), "scheme must be 'spiffe://'");
		goto bad;
	}
	td = s + strlen(SPIFFE_SCHEME);
	/* The trust domain ends at the first '/'; anything odd inside it is reported by td_scan. */
	tdlen = strcspn(td, "/");
	if (td_scan(td, tdlen, why, sizeof(why)) != 0)
		goto bad;
	p = td + tdlen;
	if (path_scan(p, why, sizeof(why)) != 0)
		goto bad;

	memcpy(out->trust_domain, td, tdlen);
	out->trust_domain[tdlen] = '\0';
	memcpy(out->path, p, strlen(p) + 1);
	return 0;
 bad:
	return hsm_err(HSM_EINVAL, "invalid SPIFFE ID '%s': %s", hsm_quote(s, q, sizeof(q)), why);
}

int
spiffe_td_check(const char *td)
{
	char q[QBUF], why[128];

	if (td == NULL)
		return hsm_err(HSM_EINVAL, "invalid trust domain: none given");
	if (strncmp(td, SPIFFE_SCHEME, strlen(SPIFFE_SCHEME)) == 0) {
		snprintf(why, sizeof(why), "give the name without 'spiffe://'");
		goto bad;
	}
	if (td_scan(td, strnlen(td, SPIFFE_TD_MAX + 1), why, sizeof(why)) != 0)
		goto bad;
	return 0;
 bad:
	return hsm_err(HSM_EINVAL, "invalid trust domain '%s': %s", hsm_quote(td, q, sizeof(q)), why);
}

int
spiffe_id_check_domain(const char *id, const char *td)
{
	char q[QBUF], qt[QBUF];
	struct spiffe_id sid;
	int r;

	if ((r = spiffe_id_parse(id, &sid)) != 0)
		return r;
	if (td == NULL || strcmp(sid.trust_domain, td) != 0)
		return hsm_err(HSM_EPOLICY, "SPIFFE ID '%s' is not in trust domain '%s'",
		    hsm_quote(id, q, sizeof(q)), hsm_quote(td != NULL ? td : "", qt, sizeof(qt)));
	/* The bare trust-domain ID names the CA itself, never a workload. */
	if (sid.path[0] == '\0')
		return hsm_err(HSM_EPOLICY, "SPIFFE ID '%s' has no path: a workload ID needs one",
		    hsm_quote(id, q, sizeof(q)));
	return 0;
}

/* ---- patterns (spiffe.h) ---- */

int
spiffe_pattern_check(const char *pattern)
{
	struct spiffe_id sid;
	char prefix[SPIFFE_ID_MAX + 1];
	const char *star;
	size_t n;

	if (pattern == NULL)
		pattern = "";
	n = strlen(pattern);
	if ((star = strchr(pattern, '*')) == NULL)
		return spiffe_id_parse(pattern, &sid);
	/* One star, as the whole last segment after an ID (P-star in proxyconf.h). */
	if (star != pattern + n - 1 || n < 2 || star[-1] != '/')
		return hsm_err(HSM_EINVAL, "invalid SPIFFE ID pattern '%.200s': '*' is allowed only "
		    "as the whole last segment ('spiffe://td/path/*')", pattern);
	if (n - 2 > SPIFFE_ID_MAX)
		return hsm_err(HSM_EINVAL, "invalid SPIFFE ID pattern '%.200s': too long", pattern);
	memcpy(prefix, pattern, n - 2);
	prefix[n - 2] = '\0';
	return spiffe_id_parse(prefix, &sid);
}

int
spiffe_pattern_match(const char *pattern, const char *id)
{
	size_t n = strlen(pattern);

	if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '/')
		return strncmp(id, pattern, n - 1) == 0 && id[n - 1] != '\0';
	return strcmp(pattern, id) == 0;
}
