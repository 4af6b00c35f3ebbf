/*
 * test_metrics.c - the Prometheus registry: rendering, conflicts, atomics,
 * the /metrics answers, and the /metrics server over real loopback sockets
 * (requests in pieces, the client limit, deadlines, oversized requests,
 * clients that go away, adopted sockets).
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "http.h"
#include "metrics.h"
#include "netaddr.h"
#include "util.h"

#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })

static const double bounds3[] = { 0.001, 0.5, 1 };

/* The registry's whole rendering must be exactly want. */
static void
expect_render(struct metrics *m, const char *want)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(m, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	assert_string_equal(text, want);
	free(text);
}

/* What counters_and_gauges renders before its gauges. */
#define COUNTERS_TEXT \
	"# HELP a_total Plain.\n" \
	"# TYPE a_total counter\n" \
	"a_total 42\n" \
	"# HELP b_total Requests.\n" \
	"# TYPE b_total counter\n" \
	"b_total{listener=\"web\",code=\"200\"} 1152921504606846977\n" \
	"b_total{listener=\"api\",code=\"500\"} 0\n" \
	"# HELP c:ratio Ratios.\n" \
	"# TYPE c:ratio gauge\n"

static void
counters_and_gauges(void **state)
{
	struct metrics *m = NULL;
	struct metric *a, *b, *c, *g, *g2, *g3, *x;

	assert_int_equal(metrics_new(&m), 0);
	expect_render(m, "");
	/* Registered out of order: families come out sorted, series in order. */
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "z_temp", "Temperature.", NULL, &g), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "b_total", "Requests.",
	    L("listener", "web", "code", "200"), &b), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "b_total", "ignored: first wins",
	    L("listener", "api", "code", "500"), &c), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "a_total", "Plain.", NULL, &a), 0);
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "c:ratio", "Ratios.", L("k", "half"), &g2),
	    0);
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "c:ratio", NULL, L("k", "neg"), &g3), 0);
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "c:ratio", NULL, L("k", "nan"), &x), 0);
	metric_inc(a);
	metric_add(a, 41);
	metric_add(b, (1ULL << 60) + 1);	/* past 2^53: still an exact integer */
	metric_gauge_set(g, 1735689600);	/* a timestamp keeps all its digits */
	metric_gauge_set(g2, 0.25);
	metric_gauge_add(g3, -3);
	metric_gauge_set(x, NAN);
	expect_render(m, COUNTERS_TEXT
	    "c:ratio{k=\"half\"} 0.25\n"
	    "c:ratio{k=\"neg\"} -3\n"
	    "c:ratio{k=\"nan\"} NaN\n"
	    "# HELP z_temp Temperature.\n"
	    "# TYPE z_temp gauge\n"
	    "z_temp 1735689600\n");

	/* Gauge arithmetic: inc, add, set, fractions, infinities. */
	metric_gauge_set(g, 1.5);
	metric_inc(g);
	metric_gauge_add(g, -10);
	metric_gauge_set(g2, INFINITY);
	metric_gauge_set(g3, -INFINITY);
	metric_gauge_set(x, 1e-7);
	expect_render(m, COUNTERS_TEXT
	    "c:ratio{k=\"half\"} +Inf\n"
	    "c:ratio{k=\"neg\"} -Inf\n"
	    "c:ratio{k=\"nan\"} 1e-07\n"
	    "# HELP z_temp Temperature.\n"
	    "# TYPE z_temp gauge\n"
	    "z_temp -7.5\n");
	metrics_free(m);
}

static void
histograms(void **state)
{
	struct metrics *m = NULL;
	struct metric *h, *hl, *again;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_histogram(m, "lat_seconds", "Latency.", bounds3, 3, NULL, &h), 0);
	/* A second series of the family by metrics_get: the family's buckets. */
	assert_int_equal(metrics_histogram(m, "lat2_seconds", "Latency by listener.", bounds3, 3,
	    L("listener", "a b"), &hl), 0);
	assert_int_equal(metrics_get(m, METRIC_HISTOGRAM, "lat2_seconds", NULL,
	    L("listener", "c"), &again), 0);
	assert_ptr_not_equal(again, hl);
	/* A value equal to a bound is counted in that bound's bucket. */
	metric_observe(h, 0.001);
	metric_observe(h, 0.5);
	metric_observe(h, 0.7);
	metric_observe(h, 2);
	metric_observe(h, 0.0001);
	metric_observe(hl, 1);
	metric_observe(hl, 1.0000001);
	metric_observe(again, -1);
	expect_render(m,
	    "# HELP lat2_seconds Latency by listener.\n"
	    "# TYPE lat2_seconds histogram\n"
	    "lat2_seconds_bucket{listener=\"a b\",le=\"0.001\"} 0\n"
	    "lat2_seconds_bucket{listener=\"a b\",le=\"0.5\"} 0\n"
	    "lat2_seconds_bucket{listener=\"a b\",le=\"1\"} 1\n"
	    "lat2_seconds_bucket{listener=\"a b\",le=\"+Inf\"} 2\n"
	    "lat2_seconds_sum{listener=\"a b\"} 2.0000001\n"
	    "lat2_seconds_count{listener=\"a b\"} 2\n"
	    "lat2_seconds_bucket{listener=\"c\",le=\"0.001\"} 1\n"
	    "lat2_seconds_bucket{listener=\"c\",le=\"0.5\"} 1\n"
	    "lat2_seconds_bucket{listener=\"c\",le=\"1\"} 1\n"
	    "lat2_seconds_bucket{listener=\"c\",le=\"+Inf\"} 1\n"
	    "lat2_seconds_sum{listener=\"c\"} -1\n"
	    "lat2_seconds_count{listener=\"c\"} 1\n"
	    "# HELP lat_seconds Latency.\n"
	    "# TYPE lat_seconds histogram\n"
	    "lat_seconds_bucket{le=\"0.001\"} 2\n"
	    "lat_seconds_bucket{le=\"0.5\"} 3\n"
	    "lat_seconds_bucket{le=\"1\"} 4\n"
	    "lat_seconds_bucket{le=\"+Inf\"} 5\n"
	    "lat_seconds_sum 3.2011\n"
	    "lat_seconds_count 5\n");
	metrics_free(m);
}

static void
escaping(void **state)
{
	struct metrics *m = NULL;
	struct metric *s;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "esc_total",
	    "Back\\slash, \"quotes\" and\na newline.", L("v", "a\\b\"c\nd", "u", "\xc3\xa9t\xc3\xa9"),
	    &s), 0);
	metric_inc(s);
	expect_render(m,
	    "# HELP esc_total Back\\\\slash, \"quotes\" and\\na newline.\n"
	    "# TYPE esc_total counter\n"
	    "esc_total{v=\"a\\\\b\\\"c\\nd\",u=\"\xc3\xa9t\xc3\xa9\"} 1\n");
	metrics_free(m);
}

static void
refused(void **state)
{
	static const double bad1[] = { 1, 1 }, bad2[] = { 2, 1 }, bad3[] = { 0, INFINITY },
	    bad4[] = { NAN };
	struct metrics *m = NULL;
	struct metric *s = (struct metric *)&s;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c_total", "C.", L("a", "1", "b", "2"),
	    &s), 0);
	assert_int_equal(metrics_histogram(m, "h", "H.", bounds3, 3, NULL, &s), 0);

	/* Another type for an existing family. */
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "c_total", "C.", L("a", "1", "b", "2"), &s),
	    HSM_EINVAL);
	assert_null(s);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "h", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_histogram(m, "c_total", NULL, bounds3, 3, L("a", "1", "b", "2"),
	    &s), HSM_EINVAL);
	/* Other label names: fewer, more, renamed, reordered. */
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c_total", NULL, L("a", "1"), &s),
	    HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c_total", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c_total", NULL,
	    L("a", "1", "b", "2", "c", "3"), &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c_total", NULL, L("a", "1", "x", "2"),
	    &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c_total", NULL, L("b", "2", "a", "1"),
	    &s), HSM_EINVAL);
	assert_null(s);

	/* Names. */
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, NULL, NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "1abc", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "a-b", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "a b", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "x", NULL, L("__a", "1"), &s),
	    HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "x", NULL, L("a:b", "1"), &s),
	    HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "x", NULL, L("9a", "1"), &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "x", NULL, L("", "1"), &s), HSM_EINVAL);
	/* A label without a value; a label twice; "le" on a histogram. */
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "x", NULL,
	    (const char *const[]){ "a", NULL }, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "x", NULL, L("a", "1", "a", "2"), &s),
	    HSM_EINVAL);
	assert_int_equal(metrics_histogram(m, "hx", NULL, bounds3, 3, L("le", "1"), &s),
	    HSM_EINVAL);
	/* Good names with odd characters are fine. */
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "_:a9", NULL, L("_b9", "1"), &s), 0);
	assert_non_null(s);

	/* Types and buckets. */
	assert_int_equal(metrics_get(m, (enum metric_type)0, "y", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, (enum metric_type)4, "y", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_get(m, METRIC_HISTOGRAM, "y", NULL, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_histogram(m, "y", NULL, NULL, 0, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_histogram(m, "y", NULL, bad1, 2, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_histogram(m, "y", NULL, bad2, 2, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_histogram(m, "y", NULL, bad3, 2, NULL, &s), HSM_EINVAL);
	assert_int_equal(metrics_histogram(m, "y", NULL, bad4, 1, NULL, &s), HSM_EINVAL);
	assert_null(s);

	/* Nothing refused left a trace. */
	expect_render(m,
	    "# HELP _:a9 \n"
	    "# TYPE _:a9 counter\n"
	    "_:a9{_b9=\"1\"} 0\n"
	    "# HELP c_total C.\n"
	    "# TYPE c_total counter\n"
	    "c_total{a=\"1\",b=\"2\"} 0\n"
	    "# HELP h H.\n"
	    "# TYPE h histogram\n"
	    "h_bucket{le=\"0.001\"} 0\n"
	    "h_bucket{le=\"0.5\"} 0\n"
	    "h_bucket{le=\"1\"} 0\n"
	    "h_bucket{le=\"+Inf\"} 0\n"
	    "h_sum 0\n"
	    "h_count 0\n");
	metrics_free(m);
}

static void
same_series(void **state)
{
	struct metrics *m = NULL;
	struct metric *a, *b, *c, *h, *h2;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "r_total", "R.", L("reason", "no_cert"),
	    &a), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "r_total", NULL, L("reason", "no_cert"),
	    &b), 0);
	assert_ptr_equal(a, b);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "r_total", NULL, L("reason", "expired"),
	    &c), 0);
	assert_ptr_not_equal(a, c);
	/* Values that differ only in what escaping touches are other series. */
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "r_total", NULL, L("reason", "a\\nb"),
	    &b), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "r_total", NULL, L("reason", "a\nb"),
	    &c), 0);
	assert_ptr_not_equal(b, c);
	assert_int_equal(metrics_histogram(m, "h", "H.", bounds3, 3, NULL, &h), 0);
	assert_int_equal(metrics_get(m, METRIC_HISTOGRAM, "h", NULL, NULL, &h2), 0);
	assert_ptr_equal(h, h2);
	assert_int_equal(metrics_histogram(m, "h", NULL, bounds3, 3, NULL, &h2), 0);
	assert_ptr_equal(h, h2);
	metrics_free(m);
}

/* Every update accepts NULL, and an update of another type changes nothing. */
static void
null_and_wrong_type(void **state)
{
	struct metrics *m = NULL;
	struct metric *c, *g, *h;

	metric_inc(NULL);
	metric_add(NULL, 5);
	metric_gauge_set(NULL, 1);
	metric_gauge_add(NULL, 1);
	metric_observe(NULL, 1);
	metrics_free(NULL);

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c", "C.", NULL, &c), 0);
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "g", "G.", NULL, &g), 0);
	assert_int_equal(metrics_histogram(m, "h", "H.", bounds3, 1, NULL, &h), 0);
	metric_gauge_set(c, 7);
	metric_gauge_add(c, 7);
	metric_observe(c, 7);
	metric_add(g, 7);
	metric_observe(g, 7);
	metric_inc(h);
	metric_add(h, 7);
	metric_gauge_set(h, 7);
	metric_gauge_add(h, 7);
	expect_render(m,
	    "# HELP c C.\n# TYPE c counter\nc 0\n"
	    "# HELP g G.\n# TYPE g gauge\ng 0\n"
	    "# HELP h H.\n# TYPE h histogram\n"
	    "h_bucket{le=\"0.001\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
	metrics_free(m);
}

#define NTHREADS 4
#define NITER 100000

struct worker {
	struct metrics *m;
	struct metric *c, *g, *h;
	struct metric *found;
};

static void *
work(void *arg)
{
	struct worker *w = arg;
	int i;

	/* Runtime registration races with the other threads' updates. */
	if (metrics_get(w->m, METRIC_COUNTER, "late_total", "L.", L("k", "v"), &w->found) != 0)
		return NULL;
	for (i = 0; i < NITER; i++) {
		metric_inc(w->c);
		metric_gauge_add(w->g, (i & 1) ? -1 : 3);
		metric_inc(w->found);
		if (i % 10 == 0)
			metric_observe(w->h, (i / 10) % 2 ? 0.25 : 4);
	}
	return NULL;
}

static void
concurrency(void **state)
{
	struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	struct metrics *m = NULL;
	struct metric *c, *g, *h;
	char want[1024];
	int i;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "c_total", "C.", NULL, &c), 0);
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "g", "G.", NULL, &g), 0);
	assert_int_equal(metrics_histogram(m, "h", "H.", bounds3, 3, NULL, &h), 0);
	for (i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .m = m, .c = c, .g = g, .h = h };
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (i = 1; i < NTHREADS; i++)
		assert_ptr_equal(w[i].found, w[0].found);
	assert_non_null(w[0].found);
	/* 4 x 100000 increments; the gauge: 4 x 50000 x (3 - 1). */
	snprintf(want, sizeof(want),
	    "# HELP c_total C.\n# TYPE c_total counter\nc_total %d\n"
	    "# HELP g G.\n# TYPE g gauge\ng %d\n"
	    "# HELP h H.\n# TYPE h histogram\n"
	    "h_bucket{le=\"0.001\"} 0\nh_bucket{le=\"0.5\"} %d\nh_bucket{le=\"1\"} %d\n"
	    "h_bucket{le=\"+Inf\"} %d\nh_sum %d\nh_count %d\n"
	    "# HELP late_total L.\n# TYPE late_total counter\nlate_total{k=\"v\"} %d\n",
	    NTHREADS * NITER, NTHREADS * NITER, NTHREADS * NITER / 20, NTHREADS * NITER / 20,
	    NTHREADS * NITER / 10, NTHREADS * NITER / 20 * 4 + NTHREADS * NITER / 20 / 4,
	    NTHREADS * NITER / 10, NTHREADS * NITER);
	expect_render(m, want);
	metrics_free(m);
}

static void
series_cap(void **state)
{
	struct metrics *m = NULL;
	struct metric *s, *first = NULL;
	char v[16], *text = NULL;
	size_t len;
	int i;

	assert_int_equal(metrics_new(&m), 0);
	for (i = 0; i < METRICS_MAX_SERIES; i++) {
		snprintf(v, sizeof(v), "%d", i);
		assert_int_equal(metrics_get(m, METRIC_COUNTER, "card_total", "C.", L("id", v), &s),
		    0);
		if (i == 0)
			first = s;
	}
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "card_total", NULL, L("id", "new"), &s),
	    HSM_EBUSY);
	assert_null(s);
	/* A new family over the cap is refused too, and leaves nothing behind. */
	assert_int_equal(metrics_get(m, METRIC_GAUGE, "other", "O.", NULL, &s), HSM_EBUSY);
	assert_int_equal(metrics_histogram(m, "other_h", "O.", bounds3, 3, NULL, &s), HSM_EBUSY);
	/* Existing series are still found. */
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "card_total", NULL, L("id", "0"), &s), 0);
	assert_ptr_equal(s, first);
	assert_int_equal(metrics_render(m, &text, &len), 0);
	assert_null(strstr(text, "other"));
	assert_non_null(strstr(text, "card_total{id=\"9999\"} 0\n"));
	free(text);
	metrics_free(m);
}

/* ---- the HTTP endpoint ---- */

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"
#define TAIL "Connection: close\r\nCache-Control: no-cache\r\n\r\n"

/* Answer req (from an exact-size heap copy) and compare the whole response. */
static void
expect_answer(struct metrics *m, const char *req, size_t reqlen, const char *want)
{
	uint8_t *b = malloc(reqlen ? reqlen : 1), *resp = (uint8_t *)&b;
	size_t rlen = 1;

	assert_non_null(b);
	memcpy(b, req, reqlen);
	assert_int_equal(metrics_http_answer(m, b, reqlen, &resp, &rlen), 0);
	free(b);
	assert_non_null(resp);
	if (rlen != strlen(want) || memcmp(resp, want, rlen) != 0)
		fail_msg("got\n%.*s\nwant\n%s", (int)rlen, (const char *)resp, want);
	free(resp);
}

static void
expect_status(struct metrics *m, const char *req, const char *want)
{
	expect_answer(m, req, strlen(req), want);
}

static void
http_metrics(void **state)
{
	struct metrics *m = NULL;
	struct metric *s;
	char *text, *want;
	size_t len;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "hits_total", "Hits.", L("p", "x"), &s),
	    0);
	metric_add(s, 3);
	assert_int_equal(metrics_render(m, &text, &len), 0);
	assert_true(asprintf(&want, "HTTP/1.1 200 OK\r\nContent-Type: " CT_PROM "\r\n"
	    "Content-Length: %zu\r\n" TAIL "%s", len, text) > 0);
	expect_status(m, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", want);
	/* The query is ignored; HTTP/1.0 and absolute-form targets are fine. */
	expect_status(m, "GET /metrics?name[]=hits_total HTTP/1.1\r\nHost: x\r\n\r\n", want);
	expect_status(m, "GET http://node:9100/metrics HTTP/1.0\r\n\r\n", want);
	/* HEAD: the same head, no body. */
	want[strlen(want) - len] = '\0';
	expect_status(m, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", want);
	free(want);
	free(text);

	expect_status(m, "GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Type: " CT_TEXT "\r\nContent-Length: 3\r\n" TAIL "ok\n");
	metrics_free(m);
}

static void
http_errors(void **state)
{
	struct metrics *m = NULL;
	char big[HTTP_MAX_HEAD + 64];
	size_t n;

	assert_int_equal(metrics_new(&m), 0);
	expect_status(m, "GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n",
	    "HTTP/1.1 404 Not Found\r\nContent-Type: " CT_TEXT "\r\nContent-Length: 9\r\n" TAIL
	    "Not Found");
	expect_status(m, "GET / HTTP/1.0\r\n\r\n",
	    "HTTP/1.1 404 Not Found\r\nContent-Type: " CT_TEXT "\r\nContent-Length: 9\r\n" TAIL
	    "Not Found");
	expect_status(m, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	    "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: " CT_TEXT "\r\n"
	    "Content-Length: 18\r\nAllow: GET, HEAD\r\n" TAIL "Method Not Allowed");
	expect_status(m, "DELETE /healthz HTTP/1.0\r\n\r\n",
	    "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: " CT_TEXT "\r\n"
	    "Content-Length: 18\r\nAllow: GET, HEAD\r\n" TAIL "Method Not Allowed");
	/* Malformed: bare LF, no Host in 1.1, garbage, a body on GET. */
	expect_status(m, "GET /metrics HTTP/1.1\n\n",
	    "HTTP/1.1 400 Bad Request\r\nContent-Type: " CT_TEXT "\r\nContent-Length: 11\r\n" TAIL
	    "Bad Request");
	expect_status(m, "GET /metrics HTTP/1.1\r\n\r\n",
	    "HTTP/1.1 400 Bad Request\r\nContent-Type: " CT_TEXT "\r\nContent-Length: 11\r\n" TAIL
	    "Bad Request");
	expect_answer(m, "\x16\x03\x01\x02\x00", 5,
	    "HTTP/1.1 400 Bad Request\r\nContent-Type: " CT_TEXT "\r\nContent-Length: 11\r\n" TAIL
	    "Bad Request");
	expect_status(m, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
	    "HTTP/1.1 413 Content Too Large\r\nContent-Type: " CT_TEXT "\r\n"
	    "Content-Length: 17\r\n" TAIL "Content Too Large");
	expect_status(m, "GET /metrics HTTP/2.0\r\n\r\n",
	    "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: " CT_TEXT "\r\n"
	    "Content-Length: 26\r\n" TAIL "HTTP Version Not Supported");

	/* Over 8 KiB of head: refused without waiting for its end. */
	n = (size_t)snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ");
	memset(big + n, 'a', sizeof(big) - n);
	expect_answer(m, big, sizeof(big),
	    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: " CT_TEXT "\r\n"
	    "Content-Length: 31\r\n" TAIL "Request Header Fields Too Large");
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', sizeof(big) - n);
	expect_answer(m, big, sizeof(big),
	    "HTTP/1.1 414 URI Too Long\r\nContent-Type: " CT_TEXT "\r\nContent-Length: 12\r\n" TAIL
	    "URI Too Long");
	metrics_free(m);
}

static void
http_incomplete(void **state)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	struct metrics *m = NULL;
	uint8_t *resp;
	size_t i, rlen;

	assert_int_equal(metrics_new(&m), 0);
	/* Every proper prefix (the empty one too) asks for more. */
	for (i = 0; i < sizeof(req) - 1; i++) {
		resp = (uint8_t *)&resp;
		rlen = 1;
		assert_int_equal(metrics_http_answer(m, (const uint8_t *)req, i, &resp, &rlen),
		    HSM_EAGAIN);
		assert_null(resp);
		assert_int_equal(rlen, 0);
	}
	assert_int_equal(metrics_http_answer(m, (const uint8_t *)req, i, &resp, &rlen), 0);
	assert_non_null(resp);
	assert_memory_equal(resp, "HTTP/1.1 200 OK\r\n", 17);
	free(resp);
	metrics_free(m);
}

/* ---- the server ---- */

struct srvfx {
	struct metrics *m;
	struct metrics_srv *srv;
	struct sockaddr_storage addr;
	socklen_t alen;
};

static void
srv_up(struct srvfx *x)
{
	struct metric *s;
	int lfd;

	assert_int_equal(metrics_new(&x->m), 0);
	assert_int_equal(metrics_get(x->m, METRIC_COUNTER, "hits_total", "Hits.", NULL, &s), 0);
	metric_add(s, 7);
	assert_int_equal(net_parse_addr("127.0.0.1:0", 1, &x->addr, &x->alen), 0);
	assert_int_equal(net_listen(&x->addr, x->alen, 0, 1, 64, &lfd), 0);
	x->alen = sizeof(x->addr);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&x->addr, &x->alen), 0);
	assert_int_equal(metrics_srv_new(x->m, lfd, &x->srv), 0);
}

static void
srv_down(struct srvfx *x)
{
	metrics_srv_free(x->srv);
	metrics_free(x->m);
}

/* Let the server work while its fd says so, for up to ms. */
static void
srv_serve(struct srvfx *x, int ms)
{
	struct pollfd p = { .fd = metrics_srv_fd(x->srv), .events = POLLIN };

	while (poll(&p, 1, ms) == 1) {
		metrics_srv_run(x->srv, hsm_now_ms());
		ms = 20;
	}
}

static int
srv_client(struct srvfx *x)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&x->addr, x->alen), 0);
	return fd;
}

/* Read fd to EOF (at most cap - 1 bytes, NUL-terminated), serving meanwhile. */
static size_t
srv_reply(struct srvfx *x, int fd, char *buf, size_t cap)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = 0;
	ssize_t n;

	for (int i = 0; i < 200; i++) {
		srv_serve(x, 10);
		if (poll(&p, 1, 10) != 1)
			continue;
		if ((n = read(fd, buf + len, cap - 1 - len)) <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

/* What metrics_http_answer says to req, as a string. */
static char *
srv_expected(struct metrics *m, const char *req)
{
	uint8_t *resp = NULL;
	size_t rlen = 0;
	char *s;

	assert_int_equal(metrics_http_answer(m, (const uint8_t *)req, strlen(req), &resp, &rlen), 0);
	assert_non_null(s = malloc(rlen + 1));
	memcpy(s, resp, rlen);
	s[rlen] = '\0';
	free(resp);
	return s;
}

static void
srv_request(void **state)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	struct srvfx x;
	char buf[4096], *want;
	int fd;

	srv_up(&x);
	want = srv_expected(x.m, req);
	assert_non_null(strstr(want, "hits_total 7\n"));
	/* a request in three pieces, the server running between them */
	fd = srv_client(&x);
	assert_int_equal(write(fd, req, 5), 5);
	srv_serve(&x, 100);
	assert_int_equal(write(fd, req + 5, 20), 20);
	srv_serve(&x, 100);
	assert_int_equal(write(fd, req + 25, sizeof(req) - 26), (ssize_t)sizeof(req) - 26);
	srv_reply(&x, fd, buf, sizeof(buf));
	assert_string_equal(buf, want);
	close(fd);
	free(want);
	/* /healthz, and another client after the first */
	want = srv_expected(x.m, "GET /healthz HTTP/1.0\r\n\r\n");
	fd = srv_client(&x);
	assert_int_equal(write(fd, "GET /healthz HTTP/1.0\r\n\r\n", 26), 26);
	srv_reply(&x, fd, buf, sizeof(buf));
	assert_string_equal(buf, want);
	close(fd);
	free(want);
	srv_down(&x);
}

/*
 * METRICS_SRV_CONNS silent clients hold every slot: one more is closed at
 * once; the deadline frees them all; then a client is served again.
 */
static void
srv_limits(void **state)
{
	static const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
	struct srvfx x;
	int fds[METRICS_SRV_CONNS], fd;
	char buf[512];

	srv_up(&x);
	for (int i = 0; i < METRICS_SRV_CONNS; i++) {
		fds[i] = srv_client(&x);
		srv_serve(&x, 100);
	}
	fd = srv_client(&x);
	assert_int_equal(srv_reply(&x, fd, buf, sizeof(buf)), 0);	/* closed: EOF, no answer */
	close(fd);
	/* still inside their time: kept */
	metrics_srv_expire(x.srv, hsm_now_ms() + METRICS_SRV_TIMEOUT_MS / 2);
	assert_int_equal(write(fds[0], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	assert_true(srv_reply(&x, fds[0], buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "200 OK"));
	/* past it: every silent client is closed (EOF, no answer) */
	metrics_srv_expire(x.srv, hsm_now_ms() + METRICS_SRV_TIMEOUT_MS + 1);
	for (int i = 1; i < METRICS_SRV_CONNS; i++) {
		assert_int_equal(srv_reply(&x, fds[i], buf, sizeof(buf)), 0);
		close(fds[i]);
	}
	close(fds[0]);
	fd = srv_client(&x);
	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	assert_true(srv_reply(&x, fd, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "200 OK"));
	close(fd);
	srv_down(&x);
}

/* A head that never ends is refused once it fills the buffer; a client gone frees its slot. */
static void
srv_oversize_and_gone(void **state)
{
	static char big[HTTP_MAX_HEAD + 100];
	struct srvfx x;
	char buf[1024];
	size_t n;
	int fd;

	srv_up(&x);
	n = (size_t)snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ");
	memset(big + n, 'a', sizeof(big) - n);
	fd = srv_client(&x);
	assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	srv_reply(&x, fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 431 "));
	close(fd);
	/* clients that send half a request and go: their slots come back */
	for (int i = 0; i < 2 * METRICS_SRV_CONNS; i++) {
		fd = srv_client(&x);
		assert_int_equal(write(fd, "GET /met", 8), 8);
		srv_serve(&x, 100);
		close(fd);
		srv_serve(&x, 100);
	}
	fd = srv_client(&x);
	assert_int_equal(write(fd, "GET /healthz HTTP/1.0\r\n\r\n", 26), 26);
	assert_true(srv_reply(&x, fd, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "200 OK"));
	close(fd);
	srv_down(&x);
}

/* A server without a listener serves the sockets it is given. */
static void
srv_adopt(void **state)
{
	struct metrics *m = NULL;
	struct metrics_srv *srv = NULL;
	struct pollfd p;
	char buf[512];
	int sv[2];
	ssize_t n;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_srv_new(m, -1, &srv), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(metrics_srv_adopt(srv, sv[0], hsm_now_ms()), 0);
	assert_int_equal(write(sv[1], "GET /healthz HTTP/1.0\r\n\r\n", 26), 26);
	p = (struct pollfd){ .fd = metrics_srv_fd(srv), .events = POLLIN };
	assert_int_equal(poll(&p, 1, 1000), 1);
	metrics_srv_run(srv, hsm_now_ms());
	n = read(sv[1], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "\r\n\r\nok\n"));
	assert_int_equal(read(sv[1], buf, sizeof(buf)), 0);	/* and closed */
	close(sv[1]);
	metrics_srv_free(srv);
	metrics_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(counters_and_gauges),
		cmocka_unit_test(histograms),
		cmocka_unit_test(escaping),
		cmocka_unit_test(refused),
		cmocka_unit_test(same_series),
		cmocka_unit_test(null_and_wrong_type),
		cmocka_unit_test(concurrency),
		cmocka_unit_test(series_cap),
		cmocka_unit_test(http_metrics),
		cmocka_unit_test(http_errors),
		cmocka_unit_test(http_incomplete),
		cmocka_unit_test(srv_request),
		cmocka_unit_test(srv_limits),
		cmocka_unit_test(srv_oversize_and_gone),
		cmocka_unit_test(srv_adopt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
