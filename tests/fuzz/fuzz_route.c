/*
 * fuzz_route.c - request paths in normal form and route matching
 * (route.c): any bytes as a request path. Never a crash or an overrun;
 * the normal form is never longer than the input, is a fixed point, and
 * has none of what route.h refuses (an empty or dot segment, an encoded
 * slash, backslash, ';' or '%', a '%' without two upper-case hex digits,
 * a ';'); a prefix route matches only paths that continue it at a segment
 * boundary, so no spelling reaches /admin's route without being /admin.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
hex_upper(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static void
check_form(const char *p, size_t n)
{
	size_t i, seg = 1;

	if (n == 0 || p[0] != '/')
		abort();
	for (i = 1; i <= n; i++) {
		if (i == n || p[i] == '/') {
			size_t len = i - seg;

			if (len == 0 && i < n)
				abort();	/* "//" */
			if ((len == 1 && p[seg] == '.') || (len == 2 && p[seg] == '.' &&
			    p[seg + 1] == '.'))
				abort();	/* dot segment */
			seg = i + 1;
			continue;
		}
		if (p[i] == ';' || p[i] == '\\' || p[i] == '?' || p[i] == '#' ||
		    (unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			abort();
		if (p[i] == '%') {
			if (i + 2 >= n || !hex_upper(p[i + 1]) || !hex_upper(p[i + 2]))
				abort();
			if ((p[i + 1] == '2' && p[i + 2] == 'F') || (p[i + 1] == '5' &&
			    p[i + 2] == 'C') || (p[i + 1] == '3' && p[i + 2] == 'B') ||
			    (p[i + 1] == '2' && p[i + 2] == 'E') || (p[i + 1] == '2' &&
			    p[i + 2] == '5'))
				abort();	/* encoded '/', '\', ';', '%' or an undecoded '.' */
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route r[2] = {
		{ .name = "admin", .path = "/admin", .plen = 6, .prefix = 1 },
		{ .name = "api", .path = "/api/", .plen = 5, .prefix = 1 },
	};
	const struct route *hit;
	char *out, *again;
	size_t n, plen, n2, plen2;
	int rc;

	if ((out = malloc(size + 1)) == NULL || (again = malloc(size + 1)) == NULL) {
		free(out);
		return 0;
	}
	rc = route_path_norm((const char *)data, size, out, size + 1, &n, &plen);
	if (rc != 0) {
		if (rc != HSM_EPROTO)
			abort();
		goto done;
	}
	if (n > size || plen > n || (n < size + 1 && out[n] != '\0'))
		abort();
	check_form(out, plen);
	/* a fixed point */
	if (route_path_norm(out, n, again, size + 1, &n2, &plen2) != 0 || n2 != n ||
	    plen2 != plen || memcmp(out, again, n) != 0)
		abort();
	hit = route_find(r, 2, "GET", out, plen);
	if (hit == &r[0] && !(plen == 6 ? memcmp(out, "/admin", 6) == 0 :
	    memcmp(out, "/admin/", 7) == 0))
		abort();
	if (hit == &r[1] && memcmp(out, "/api/", 5) != 0)
		abort();
	/* the only way to /admin's route is to be /admin */
	if (hit != &r[0] && plen >= 6 && memcmp(out, "/admin", 6) == 0 &&
	    (plen == 6 || out[6] == '/'))
		abort();
 done:
	free(out);
	free(again);
	return 0;
}
