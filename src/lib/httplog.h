/*
 * httplog.h - what the sidecar records of each HTTP request: per-route
 * counters by status class and a latency histogram (on the metrics.h
 * registry), and one access-log line (on audit.h).
 *
 *   hsmesh_proxy_http_requests_total{listener,route,class}  class: 1xx..5xx, or
 *                                                           "none" (ended without a status)
 *   hsmesh_proxy_http_request_seconds{listener,route}       histogram, first request byte
 *                                                           to last response byte
 *
 * The route label is the route's name; "-" counts the requests no route
 * matched (refused with 403) and every request of a listener without
 * routes (outbound). Every series is registered up front, so recording
 * is lock-free.
 */
#ifndef HSM_HTTPLOG_H
#define HSM_HTTPLOG_H

#include <stddef.h>
#include <stdint.h>

struct audit;
struct metric;
struct metrics;

#define HTTPLOG_NOROUTE "-"

struct http_route_series {
	struct metric *cls[6];		/* 1xx..5xx, none */
	struct metric *latency;
};

struct http_metrics {
	struct http_route_series *r;	/* nroutes + 1: the last is HTTPLOG_NOROUTE */
	size_t n;
};

/*
 * Register the series of listener with the n route names (n may be 0).
 * Series that exist already (a reload with the same names) are reused.
 * Caller frees *out with http_metrics_free (the series stay in m).
 * 0, HSM_ENOMEM, or as metrics_get (HSM_EBUSY past METRICS_MAX_SERIES).
 */
int http_metrics_new(struct metrics *m, const char *listener, const char *const *routes,
    size_t n, struct http_metrics **out);

/* Free the handle (not the series). Accepts NULL. */
void http_metrics_free(struct http_metrics *hm);

/*
 * Count one request of route index route (n or more: HTTPLOG_NOROUTE)
 * with status (0 or out of 100..599: "none") that took seconds.
 * Accepts hm NULL.
 */
void http_metrics_record(struct http_metrics *hm, size_t route, int status, double seconds);

/* One request, as the access log writes it. NULL strings are left out. */
struct http_log_entry {
	const char *listener;
	const char *direction;	/* "inbound" or "outbound" */
	const char *protocol;	/* "HTTP/1.1" or "HTTP/2" (as the client spoke) */
	const char *client;	/* address of the connecting client */
	const char *peer_id;	/* the authenticated peer's SPIFFE ID */
	const char *method;
	const char *path;	/* the query is cut off (it may carry secrets) */
	const char *route;
	const char *reason;	/* why the sidecar ended or refused it, when it did */
	int status;		/* 0: no response was sent */
	uint64_t bytes_received, bytes_sent;	/* body bytes, seen from the client */
	uint64_t duration_ms;
};

/*
 * Write {"time":...,"event":"request","listener":...,...} with every
 * field of e (numbers as strings, like the connection lines). Accepts
 * a NULL.
 */
void http_access_log(struct audit *a, const struct http_log_entry *e);

#endif
