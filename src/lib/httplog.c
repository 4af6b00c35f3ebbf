/* httplog.c - per-route request metrics and access-log lines (see httplog.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "err.h"
#include "httplog.h"
#include "metrics.h"

#define PATH_LOG_MAX 512	/* longer paths are cut in the log */

static const char *const classes[6] = { "1xx", "2xx", "3xx", "4xx", "5xx", "none" };

/* From 1 ms to 60 s: sidecar hops are short, timeouts are long. */
static const double latency_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1, 2.5, 5, 10, 30, 60 };

static int
route_series(struct metrics *m, const char *listener, const char *route,
    struct http_route_series *s)
{
	size_t k;
	int r;

	for (k = 0; k < 6; k++)
		if ((r = metrics_get(m, METRIC_COUNTER, "hsmesh_proxy_http_requests_total",
		    "HTTP requests by route and status class", (const char *const[]){ "listener",
		    listener, "route", route, "class", classes[k], NULL }, &s->cls[k])) != 0)
			return r;
	return metrics_histogram(m, "hsmesh_proxy_http_request_seconds",
	    "HTTP requests from their first byte to the end of the response", latency_bounds,
	    sizeof(latency_bounds) / sizeof(latency_bounds[0]), (const char *const[]){
	    "listener", listener, "route", route, NULL }, &s->latency);
}

int
http_metrics_new(struct metrics *m, const char *listener, const char *const *routes, size_t n,
    struct http_metrics **out)
{
	struct http_metrics *hm;
	size_t i;
	int r;

	*out = NULL;
	if ((hm = calloc(1, sizeof(*hm))) == NULL ||
	    (hm->r = calloc(n + 1, sizeof(*hm->r))) == NULL) {
		free(hm);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	hm->n = n + 1;
	for (i = 0; i <= n; i++)
		if ((r = route_series(m, listener, i < n ? routes[i] : HTTPLOG_NOROUTE,
		    &hm->r[i])) != 0) {
			http_metrics_free(hm);
			return r;
		}
	*out = hm;
	return 0;
}

void
http_metrics_free(struct http_metrics *hm)
{
	if (hm == NULL)
		return;
	free(hm->r);
	free(hm);
}

void
http_metrics_record(struct http_metrics *hm, size_t route, int status, double seconds)
{
	struct http_route_series *s;

	if (hm == NULL || hm->n == 0)
		return;
	s = &hm->r[route < hm->n ? route : hm->n - 1];
	metric_inc(s->cls[status >= 100 && status <= 599 ? status / 100 - 1 : 5]);
	metric_observe(s->latency, seconds);
}

void
http_access_log(struct audit *a, const struct http_log_entry *e)
{
	char status[16], rx[24], tx[24], ms[24], path[PATH_LOG_MAX + 4];
	size_t n;

	if (a == NULL)
		return;
	path[0] = '\0';
	if (e->path != NULL) {
		n = strcspn(e->path, "?");
		if (n > PATH_LOG_MAX)
			snprintf(path, sizeof(path), "%.*s...", PATH_LOG_MAX, e->path);
		else
			snprintf(path, sizeof(path), "%.*s", (int)n, e->path);
	}
	snprintf(status, sizeof(status), "%d", e->status);
	snprintf(rx, sizeof(rx), "%" PRIu64, e->bytes_received);
	snprintf(tx, sizeof(tx), "%" PRIu64, e->bytes_sent);
	snprintf(ms, sizeof(ms), "%" PRIu64, e->duration_ms);
	audit_event(a, "request", "listener", e->listener, "direction", e->direction,
	    "protocol", e->protocol, "client", e->client, "peer_id", e->peer_id,
	    "method", e->method, "path", e->path != NULL ? path : NULL, "route", e->route,
	    "status", status, "bytes_received", rx, "bytes_sent", tx, "duration_ms", ms,
	    "reason", e->reason, NULL);
}
