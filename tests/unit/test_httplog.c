/* test_httplog.c - per-route request counters and latency, and the access-log line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "err.h"
#include "httplog.h"
#include "metrics.h"
#include "util.h"

static char *
render(struct metrics *m)
{
	char *out = NULL;
	size_t len;

	assert_int_equal(metrics_render(m, &out, &len), 0);
	return out;
}

static void
has(const char *text, const char *line)
{
	if (strstr(text, line) == NULL)
		fail_msg("'%s' not in:\n%s", line, text);
}

static void
per_route(void **state)
{
	const char *const routes[] = { "create", "read" };
	struct http_metrics *hm = NULL, *again = NULL;
	struct metrics *m = NULL;
	char *t;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(http_metrics_new(m, "smf", routes, 2, &hm), 0);
	http_metrics_record(hm, 0, 201, 0.004);
	http_metrics_record(hm, 0, 201, 0.02);
	http_metrics_record(hm, 0, 503, 1.5);
	http_metrics_record(hm, 1, 200, 0.0005);
	http_metrics_record(hm, 2, 403, 0.0001);	/* no route matched */
	http_metrics_record(hm, 99, 404, 0.0001);	/* out of range counts there too */
	http_metrics_record(hm, 1, 0, 0.3);		/* ended without a status */
	http_metrics_record(hm, 1, 600, 0.3);
	http_metrics_record(NULL, 0, 200, 1);
	t = render(m);
	has(t, "hsmesh_proxy_http_requests_total{listener=\"smf\",route=\"create\",class=\"2xx\"} 2\n");
	has(t, "hsmesh_proxy_http_requests_total{listener=\"smf\",route=\"create\",class=\"5xx\"} 1\n");
	has(t, "hsmesh_proxy_http_requests_total{listener=\"smf\",route=\"create\",class=\"4xx\"} 0\n");
	has(t, "hsmesh_proxy_http_requests_total{listener=\"smf\",route=\"read\",class=\"2xx\"} 1\n");
	has(t, "hsmesh_proxy_http_requests_total{listener=\"smf\",route=\"read\",class=\"none\"} 2\n");
	has(t, "hsmesh_proxy_http_requests_total{listener=\"smf\",route=\"-\",class=\"4xx\"} 2\n");
	has(t, "hsmesh_proxy_http_request_seconds_bucket{listener=\"smf\",route=\"create\","
	    "le=\"0.005\"} 1\n");
	has(t, "hsmesh_proxy_http_request_seconds_bucket{listener=\"smf\",route=\"create\","
	    "le=\"0.025\"} 2\n");
	has(t, "hsmesh_proxy_http_request_seconds_count{listener=\"smf\",route=\"create\"} 3\n");
	free(t);
	/* a reload with the same names finds the same series */
	assert_int_equal(http_metrics_new(m, "smf", routes, 2, &again), 0);
	assert_ptr_equal(again->r[0].cls[1], hm->r[0].cls[1]);
	http_metrics_free(again);
	http_metrics_free(hm);
	http_metrics_free(NULL);
	/* a listener without routes has the "-" series only */
	assert_int_equal(http_metrics_new(m, "to-nrf", NULL, 0, &hm), 0);
	assert_int_equal(hm->n, 1);
	http_metrics_record(hm, 0, 200, 0.01);
	t = render(m);
	has(t, "hsmesh_proxy_http_requests_total{listener=\"to-nrf\",route=\"-\",class=\"2xx\"} 1\n");
	free(t);
	http_metrics_free(hm);
	metrics_free(m);
}

static void
access_line(void **state)
{
	char path[] = "/tmp/hsm-httplog-XXXXXX", long_path[700];
	struct http_log_entry e = {
		.listener = "smf", .direction = "inbound", .protocol = "HTTP/2",
		.client = "127.0.0.1:40312", .peer_id = "spiffe://example.org/amf",
		.method = "POST", .path = "/nsmf-pdusession/v1/sm-contexts?token=secret",
		.route = "create", .status = 201, .bytes_received = 1234, .bytes_sent = 56,
		.duration_ms = 7,
	};
	struct audit *a = NULL;
	uint8_t *text = NULL;
	size_t len;
	int fd;

	assert_true((fd = mkstemp(path)) >= 0);
	close(fd);
	assert_int_equal(audit_open(path, &a), 0);
	http_access_log(a, &e);
	e.reason = "not_allowed";
	e.status = 403;
	e.route = "-";
	memset(long_path, 'a', sizeof(long_path));
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	e.path = long_path;
	http_access_log(a, &e);
	http_access_log(NULL, &e);
	audit_close(a);
	assert_int_equal(hsm_read_file(path, 65536, &text, &len), 0);
	has((char *)text, "\"event\":\"request\",\"listener\":\"smf\",\"direction\":\"inbound\","
	    "\"protocol\":\"HTTP/2\",\"client\":\"127.0.0.1:40312\","
	    "\"peer_id\":\"spiffe://example.org/amf\",\"method\":\"POST\","
	    "\"path\":\"/nsmf-pdusession/v1/sm-contexts\",\"route\":\"create\",\"status\":\"201\","
	    "\"bytes_received\":\"1234\",\"bytes_sent\":\"56\",\"duration_ms\":\"7\"}\n");
	assert_null(strstr((char *)text, "secret"));
	has((char *)text, "aaa...\",\"route\":\"-\",\"status\":\"403\"");
	has((char *)text, "\"reason\":\"not_allowed\"}\n");
	free(text);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(per_route),
		cmocka_unit_test(access_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
