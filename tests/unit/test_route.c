/* test_route.c - request paths in normal form and first-match route policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "route.h"

/* in must normalise to want (path part wantpath bytes). */
static void
norm_ok_(const char *in, const char *want, size_t wantpath, int line)
{
	char out[512];
	size_t n, p;
	int r;

	if ((r = route_path_norm(in, strlen(in), out, sizeof(out), &n, &p)) != 0)
		fail_msg("line %d: '%s' refused: %s", line, in, hsm_err_msg(r));
	if (n != strlen(want) || memcmp(out, want, n) != 0 || p != wantpath)
		fail_msg("line %d: '%s' -> '%.*s' (path %zu), want '%s' (path %zu)", line, in,
		    (int)n, out, p, want, wantpath);
	/* normal form is a fixed point */
	assert_int_equal(route_path_norm(out, n, out, sizeof(out), &n, &p), 0);
	assert_int_equal(n, strlen(want));
}
#define norm_ok(in, want) norm_ok_(in, want, strcspn(want, "?"), __LINE__)

static void
norm_refused_(const char *in, const char *why, int line)
{
	char out[512];
	size_t n, p;
	int r;

	hsm_err_clear();
	if ((r = route_path_norm(in, strlen(in), out, sizeof(out), &n, &p)) != HSM_EPROTO)
		fail_msg("line %d: '%s' gave %d, want HSM_EPROTO", line, in, r);
	if (strstr(hsm_err_msg(r), "400") == NULL || strstr(hsm_err_msg(r), why) == NULL)
		fail_msg("line %d: '%s': message '%s' lacks '%s'", line, in, hsm_err_msg(r), why);
}
#define norm_refused(in, why) norm_refused_(in, why, __LINE__)

static void
normal_form(void **state)
{
	norm_ok("/", "/");
	norm_ok("/a/b/", "/a/b/");
	norm_ok("/nsmf-pdusession/v1/sm-contexts", "/nsmf-pdusession/v1/sm-contexts");
	norm_ok("/%61dmin", "/admin");
	norm_ok("/a%2db%5F%7e", "/a-b_~");
	norm_ok("/caf%c3%a9", "/caf%C3%A9");
	norm_ok("/a%20b", "/a%20b");
	norm_ok("/x?a=1&b=/../c;d%2F", "/x?a=1&b=/../c;d%2F");
	norm_ok("/x?", "/x?");
	norm_ok("/.well-known/x", "/.well-known/x");
	norm_ok("/a.../b", "/a.../b");
	norm_ok("/...", "/...");
	norm_ok("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=");
}

static void
ambiguous_refused(void **state)
{
	norm_refused("", "does not start");
	norm_refused("a/b", "does not start");
	norm_refused("*", "does not start");
	norm_refused("http://h/a", "does not start");
	norm_refused("/a/../admin", "'..'");
	norm_refused("/..", "'..'");
	norm_refused("/a/./b", "'.'");
	norm_refused("/a/.", "'.'");
	norm_refused("/%2e%2e/admin", "'..'");
	norm_refused("/%2E%2e/admin", "'..'");
	norm_refused("/a/%2e/b", "'.'");
	norm_refused("/.%2e", "'..'");
	norm_refused("//admin", "'//'");
	norm_refused("/a//b", "'//'");
	norm_refused("/admin%2Fx", "encoded");
	norm_refused("/admin%2fx", "encoded");
	norm_refused("/a%5cb", "encoded");
	norm_refused("/a%3Bb", "encoded");
	norm_refused("/a%00", "encoded");
	norm_refused("/a%0d%0a", "encoded");
	norm_refused("/%252e%252e/admin", "encoded '%'");
	norm_refused("/%25", "encoded '%'");
	norm_refused("/%25%33%30", "encoded '%'");
	norm_refused("/admin;x", "';'");
	norm_refused("/..;/admin", "';'");
	norm_refused("/a\\admin", "not allowed");
	norm_refused("/a b", "not allowed");
	norm_refused("/a\"b", "not allowed");
	norm_refused("/caf\xc3\xa9", "not allowed");
	norm_refused("/a#b", "fragment");
	norm_refused("/a?b#c", "fragment");
	norm_refused("/a%", "two hex digits");
	norm_refused("/a%4", "two hex digits");
	norm_refused("/a%4?x", "two hex digits");
	norm_refused("/a%zz", "two hex digits");
	norm_refused("/a?b c", "query");
	norm_refused("/a?\x01", "query");
}

static char *
dup(const char *s)
{
	char *p = strdup(s);

	assert_non_null(p);
	return p;
}

/* A route as proxyconf builds one (methods: comma-separated, or NULL). */
static void
mk(struct route *r, const char *name, const char *path, int prefix, const char *methods,
    const char *allow)
{
	const char *p, *e;
	char *m;

	memset(r, 0, sizeof(*r));
	r->name = dup(name);
	r->path = dup(path);
	r->plen = strlen(path);
	r->prefix = prefix;
	if (methods != NULL) {
		r->methods = calloc(8, sizeof(char *));
		assert_non_null(r->methods);
		for (p = methods; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
			e = p + strcspn(p, ",");
			m = strndup(p, (size_t)(e - p));
			assert_non_null(m);
			r->methods[r->nmethods++] = m;
		}
	}
	r->allow = calloc(1, sizeof(char *));
	assert_non_null(r->allow);
	r->allow[0] = dup(allow);
	r->nallow = 1;
}

/* The name of the route a request goes to, or "none". */
static const char *
route_of(const struct route *rs, size_t n, const char *method, const char *target)
{
	static char out[512];
	const struct route *r;
	size_t len, plen;

	if (route_path_norm(target, strlen(target), out, sizeof(out), &len, &plen) != 0)
		return "400";
	r = route_find(rs, n, method, out, plen);
	return r != NULL ? r->name : "none";
}

static void
first_match(void **state)
{
	struct route rs[6];
	size_t i;

	/* the SBI demo's shape */
	mk(&rs[0], "smf-create", "/nsmf-pdusession/v1/sm-contexts", 0, "POST",
	    "spiffe://example.org/amf");
	mk(&rs[1], "smf", "/nsmf-pdusession/", 1, NULL, "spiffe://example.org/smf-ops/*");
	mk(&rs[2], "nrf-read", "/nnrf-nfm/v1/nf-instances", 1, "GET,HEAD",
	    "spiffe://example.org/*");
	mk(&rs[3], "admin", "/admin", 1, NULL, "spiffe://example.org/ops");
	mk(&rs[4], "exact-root", "/", 0, "GET", "spiffe://example.org/*");
	mk(&rs[5], "api", "/api/", 1, NULL, "spiffe://example.org/*");

	assert_string_equal(route_of(rs, 6, "POST", "/nsmf-pdusession/v1/sm-contexts"),
	    "smf-create");
	assert_string_equal(route_of(rs, 6, "POST", "/nsmf-pdusession/v1/sm-contexts?x=1"),
	    "smf-create");
	/* another method on the same path falls to the next route that matches */
	assert_string_equal(route_of(rs, 6, "GET", "/nsmf-pdusession/v1/sm-contexts"), "smf");
	/* methods are case-sensitive */
	assert_string_equal(route_of(rs, 6, "post", "/nsmf-pdusession/v1/sm-contexts"), "smf");
	assert_string_equal(route_of(rs, 6, "POST", "/nsmf-pdusession/v1/sm-contexts/1"), "smf");
	assert_string_equal(route_of(rs, 6, "GET", "/nnrf-nfm/v1/nf-instances"), "nrf-read");
	assert_string_equal(route_of(rs, 6, "GET", "/nnrf-nfm/v1/nf-instances/abc"), "nrf-read");
	assert_string_equal(route_of(rs, 6, "HEAD", "/nnrf-nfm/v1/nf-instances"), "nrf-read");
	assert_string_equal(route_of(rs, 6, "PUT", "/nnrf-nfm/v1/nf-instances/abc"), "none");
	/* a prefix without a trailing slash stops at a segment boundary */
	assert_string_equal(route_of(rs, 6, "GET", "/nnrf-nfm/v1/nf-instancesX"), "none");
	assert_string_equal(route_of(rs, 6, "GET", "/admin"), "admin");
	assert_string_equal(route_of(rs, 6, "GET", "/admin/users"), "admin");
	assert_string_equal(route_of(rs, 6, "GET", "/administrator"), "none");
	/* a prefix with one matches below it, not itself without */
	assert_string_equal(route_of(rs, 6, "GET", "/api/"), "api");
	assert_string_equal(route_of(rs, 6, "GET", "/api/v1"), "api");
	assert_string_equal(route_of(rs, 6, "GET", "/api"), "none");
	/* exact */
	assert_string_equal(route_of(rs, 6, "GET", "/"), "exact-root");
	assert_string_equal(route_of(rs, 6, "GET", "/?q=1"), "exact-root");
	assert_string_equal(route_of(rs, 6, "POST", "/"), "none");
	/* bypass attempts: refused, or matched as the admin route they spell */
	assert_string_equal(route_of(rs, 6, "GET", "/%61dmin/x"), "admin");
	assert_string_equal(route_of(rs, 6, "GET", "/api/../admin"), "400");
	assert_string_equal(route_of(rs, 6, "GET", "/api/%2e%2e/admin"), "400");
	assert_string_equal(route_of(rs, 6, "GET", "//admin"), "400");
	assert_string_equal(route_of(rs, 6, "GET", "/admin;jsessionid=1"), "400");
	assert_string_equal(route_of(rs, 6, "GET", "/api/x%2F..%2Fadmin"), "400");

	/* the first matching route's allow list decides */
	assert_true(route_allows(&rs[0], "spiffe://example.org/amf"));
	assert_false(route_allows(&rs[0], "spiffe://example.org/amf/x"));
	assert_false(route_allows(&rs[0], "spiffe://example.org/nrf"));
	assert_true(route_allows(&rs[1], "spiffe://example.org/smf-ops/a"));
	assert_false(route_allows(&rs[1], "spiffe://example.org/smf-ops"));
	assert_true(route_allows(&rs[2], "spiffe://example.org/nrf"));
	assert_false(route_allows(&rs[2], "spiffe://other.org/nrf"));
	assert_false(route_allows(&rs[2], NULL));
	for (i = 0; i < 6; i++)
		route_clear(&rs[i]);
	route_clear(NULL);
	assert_null(route_find(rs, 0, "GET", "/", 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(normal_form),
		cmocka_unit_test(ambiguous_refused),
		cmocka_unit_test(first_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
