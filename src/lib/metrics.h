/*
 * metrics.h - a Prometheus metrics registry (text exposition format
 * 0.0.4) for the daemons' /metrics endpoints.
 *
 * A registry holds families (one name, one type, one set of label names)
 * of series (one value per set of label values). Registration takes a
 * mutex; updating a series is one relaxed atomic operation, so event-loop
 * threads count without locks. Every update function accepts NULL, so a
 * series whose registration failed costs nothing on the hot path.
 */
#ifndef HSM_METRICS_H
#define HSM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_SERIES 10000	/* per registry: label cardinality is bounded */

struct metrics;
struct metric;

enum metric_type { METRIC_COUNTER = 1, METRIC_GAUGE, METRIC_HISTOGRAM };

/* A new, empty registry. 0 or HSM_ENOMEM. */
int metrics_new(struct metrics **out);
/* Free a registry and its series. Accepts NULL. */
void metrics_free(struct metrics *m);

/*
 * Get or create the series name{labels}. labels is NULL or a
 * NULL-terminated list of name, value pairs: (const char *const[]){
 * "listener", "web", NULL }. Label values are any UTF-8 (escaped on
 * output). help (may be NULL after the first registration) is the family's
 * HELP text; the first registration's stays. A family keeps the type and
 * label names (in their order) of its first series: another type, other
 * label names, a label given twice, an invalid metric or label name, or
 * METRIC_HISTOGRAM for a family not made by metrics_histogram() is
 * HSM_EINVAL; more than METRICS_MAX_SERIES series is HSM_EBUSY. A refused
 * call registers nothing and sets *out to NULL. The same name and labels
 * return the same series, so this also finds a series at run time.
 * Thread-safe.
 */
int metrics_get(struct metrics *m, enum metric_type type, const char *name, const char *help,
    const char *const *labels, struct metric **out);

/*
 * The same for a histogram with the given bucket upper bounds (finite,
 * strictly increasing, at most 32; "+Inf" is implicit; "le" is not a label
 * name it takes). A family's bounds are those of its first series.
 */
int metrics_histogram(struct metrics *m, const char *name, const char *help,
    const double *bounds, size_t nbounds, const char *const *labels, struct metric **out);

/*
 * Updates: one relaxed atomic operation (a compare-and-swap loop for
 * doubles). Each accepts NULL, and one meant for another type (a gauge_set
 * on a counter) does nothing. A histogram counts a value equal to a bound
 * in that bound's bucket and ignores NaN.
 */
void metric_inc(struct metric *s);			/* counter or gauge += 1 */
void metric_add(struct metric *s, uint64_t n);		/* counter += n */
void metric_gauge_set(struct metric *s, double v);
void metric_gauge_add(struct metric *s, int64_t d);
void metric_observe(struct metric *s, double v);	/* histogram */

/*
 * Every family, sorted by name, in the text format; *out is malloc'd and
 * NUL-terminated, *len its length. 0 or HSM_ENOMEM.
 */
int metrics_render(struct metrics *m, char **out, size_t *len);

/*
 * Answer one HTTP/1.x request held in buf[0..len) for a metrics endpoint:
 * GET (or HEAD) /metrics -> 200 with the rendering; /healthz -> 200 "ok";
 * other paths 404, other methods 405, malformed requests their 4xx/5xx.
 * HSM_EAGAIN while buf holds an incomplete request; otherwise 0 with a
 * complete malloc'd response (Connection: close) in *resp, *resplen.
 * No request body is accepted (413) and a head over HTTP_MAX_HEAD bytes
 * is refused (414/431), so HSM_EAGAIN comes only for len < HTTP_MAX_HEAD.
 */
int metrics_http_answer(struct metrics *m, const uint8_t *buf, size_t len,
    uint8_t **resp, size_t *resplen);

/*
 * The /metrics endpoint of a daemon: a small HTTP/1.x server answering
 * with metrics_http_answer, one request per connection (Connection:
 * close), driven from the daemon's own event loop. It holds at most
 * METRICS_SRV_CONNS clients; one more is closed at once. A client has
 * METRICS_SRV_TIMEOUT_MS to send a request of at most HTTP_MAX_HEAD
 * bytes; the answer is written with a METRICS_SRV_WRITE_MS bound.
 */
#define METRICS_SRV_CONNS 16
#define METRICS_SRV_TIMEOUT_MS 2000
#define METRICS_SRV_WRITE_MS 1000

struct metrics_srv;

/*
 * A server for m (which must outlive it) on the non-blocking listening
 * socket lfd, or -1 for one that only serves metrics_srv_adopt'ed
 * connections. On success the server owns lfd (metrics_srv_free closes
 * it); on failure the caller keeps it. 0, HSM_ENOMEM or HSM_EIO. Free
 * with metrics_srv_free.
 */
int metrics_srv_new(struct metrics *m, int lfd, struct metrics_srv **out);

/*
 * A file descriptor that polls readable when the server has work: watch
 * it for EPOLLIN/POLLIN in the daemon's loop and call metrics_srv_run.
 */
int metrics_srv_fd(const struct metrics_srv *s);

/*
 * Accept, read and answer whatever is ready, without blocking (but for
 * writing an answer), then close clients past their deadline. now is
 * hsm_now_ms().
 */
void metrics_srv_run(struct metrics_srv *s, uint64_t now);

/* Close clients past their deadline; call at least every few hundred ms. */
void metrics_srv_expire(struct metrics_srv *s, uint64_t now);

/*
 * Serve the connected, non-blocking socket fd (taken over: closed by the
 * server in every case). 0, or HSM_EBUSY (all slots taken) or HSM_EIO.
 */
int metrics_srv_adopt(struct metrics_srv *s, int fd, uint64_t now);

/* Close every client and the listening socket, and free s. Accepts NULL. */
void metrics_srv_free(struct metrics_srv *s);

#endif
