/* route.c - request paths in normal form and per-route policy (see route.h). */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "route.h"
#include "spiffe.h"
#include "util.h"

/* RFC 3986 unreserved. */
static int
unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '.' || c == '_' || c == '~';
}

/* pchar without pct-encoded and without ';' (refused: see route.h). */
static int
path_char(unsigned char c)
{
	return unreserved(c) || (c != '\0' && strchr("!$&'()*+,=:@", c) != NULL);
}

static int
refuse(const char *why, const char *in, size_t len)
{
	char shown[81];
	size_t i, n = len < 80 ? len : 80;

	/* quote the path with anything unprintable as '?' */
	for (i = 0; i < n; i++)
		shown[i] = in[i] > 0x20 && in[i] < 0x7f ? in[i] : '?';
	shown[n] = '\0';
	return hsm_err(HSM_EPROTO, "http: 400 Bad Request: path '%s%s': %s", shown,
	    len > 80 ? "..." : "", why);
}

/* 1 when the segment s (n bytes) is "." or "..". */
static int
dot_segment(const char *s, size_t n)
{
	return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

int
route_path_norm(const char *in, size_t len, char *out, size_t cap, size_t *outlen,
    size_t *pathlen)
{
	size_t i = 0, o = 0, seg = 0, q;
	unsigned char c;
	int hi, lo, v;

	*outlen = *pathlen = 0;
	if (cap < len)
		return hsm_err(HSM_EINVAL, "http: path buffer too small");
	if (len == 0 || in[0] != '/')
		return refuse("does not start with '/'", in, len);
	if (memchr(in, '#', len) != NULL)
		return refuse("has a fragment", in, len);
	for (q = 0; q < len && in[q] != '?'; q++)
		;
	while (i < q) {
		c = (unsigned char)in[i];
		if (c == '/') {
			if (i > 0) {
				if (o == seg)
					return refuse("has an empty segment ('//')", in, len);
				if (dot_segment(out + seg, o - seg))
					return refuse("has a '.' or '..' segment", in, len);
			}
			out[o++] = '/';
			seg = o;
			i++;
			continue;
		}
		if (c == '%') {
			if (i + 2 >= q || (hi = hsm_hexval(in[i + 1])) < 0 ||
			    (lo = hsm_hexval(in[i + 2])) < 0)
				return refuse("has a '%' not followed by two hex digits", in, len);
			v = hi << 4 | lo;
			if (unreserved((unsigned char)v)) {
				out[o++] = (char)v;
			} else if (v == '/' || v == '\\' || v == ';' || v < 0x20 || v == 0x7f) {
				return refuse("has an encoded '/', '\\', ';' or control character",
				    in, len);
			} else if (v == '%') {
				/* "%252e": a server that decodes twice reads '.' */
				return refuse("has an encoded '%' (double encoding)", in, len);
			} else {
				out[o++] = '%';
				out[o++] = "0123456789ABCDEF"[hi];
				out[o++] = "0123456789ABCDEF"[lo];
			}
			i += 3;
			continue;
		}
		if (!path_char(c))
			return refuse(c == ';' ? "has ';' (path parameters are refused)" :
			    "has a character not allowed in a path", in, len);
		out[o++] = (char)c;
		i++;
	}
	if (dot_segment(out + seg, o - seg))
		return refuse("has a '.' or '..' segment", in, len);
	*pathlen = o;
	for (i = q; i < len; i++) {
		c = (unsigned char)in[i];
		if (c <= 0x20 || c >= 0x7f)
			return refuse("has a character not allowed in a query", in, len);
		out[o++] = (char)c;
	}
	if (o < cap)
		out[o] = '\0';
	*outlen = o;
	return 0;
}

int
route_matches(const struct route *r, const char *method, const char *path, size_t plen)
{
	size_t i;

	if (r->prefix) {
		if (plen < r->plen || memcmp(path, r->path, r->plen) != 0)
			return 0;
		if (plen > r->plen && r->path[r->plen - 1] != '/' && path[r->plen] != '/')
			return 0;
	} else if (plen != r->plen || memcmp(path, r->path, plen) != 0) {
		return 0;
	}
	if (r->nmethods == 0)
		return 1;
	for (i = 0; i < r->nmethods; i++)
		if (strcmp(r->methods[i], method) == 0)
			return 1;
	return 0;
}

const struct route *
route_find(const struct route *routes, size_t n, const char *method, const char *path,
    size_t plen)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (route_matches(&routes[i], method, path, plen))
			return &routes[i];
	return NULL;
}

int
route_allows(const struct route *r, const char *peer_id)
{
	size_t i;

	for (i = 0; peer_id != NULL && i < r->nallow; i++)
		if (spiffe_pattern_match(r->allow[i], peer_id))
			return 1;
	return 0;
}

void
route_clear(struct route *r)
{
	size_t i;

	if (r == NULL)
		return;
	free(r->name);
	free(r->path);
	for (i = 0; i < r->nmethods; i++)
		free(r->methods[i]);
	free(r->methods);
	for (i = 0; i < r->nallow; i++)
		free(r->allow[i]);
	free(r->allow);
	memset(r, 0, sizeof(*r));
}
