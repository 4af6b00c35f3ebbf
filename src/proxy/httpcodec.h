/*
 * httpcodec.h - `protocol: http`, the sidecar's HTTP codec (codec_http), and
 * the rooms it is made of:
 *
 *   http.c  the codec: one HTTP/1.1 or HTTP/2 end per connection (a
 *           struct hconn on one side of the struct conn), its reads and
 *           writes through side.h, the choice of protocol (ALPN on TLS,
 *           the h2c preface on plaintext), and the worker's flush of
 *           every connection an event touched;
 *   hx.c    exchanges: one request and its response between a
 *           client-facing connection and an upstream one (normal-form
 *           path, routes, x-forwarded-client-cert, bodies both ways with
 *           backpressure, answers of the sidecar's own, timeouts, the
 *           access-log line and the per-route metrics);
 *   pool.c  per worker and listener, the upstream connections requests
 *           are multiplexed over (to the peer's sidecar outbound, to the
 *           application inbound).
 *
 * A client-facing connection is the struct conn the worker accepted: its
 * DOWN side speaks HTTP (TLS inbound, plaintext outbound) and its UP side
 * has no socket. Upstream connections are struct conns too, opened by a
 * pool (conn_upstream): DOWN has no socket, UP is the TLS connection to
 * the peer's sidecar (outbound) or the plaintext one to the application
 * (inbound); the connection state machine connects them and does their
 * handshakes, so they get the identity, authorisation, session
 * resumption, deadlines, metrics and log lines of every connection.
 *
 * One worker owns a client-facing connection, the pool its requests go
 * to and the pool's connections: every pointer between them is used by
 * that worker's thread only. Nothing is written from inside an event:
 * an event marks the connections it touched (hc_dirty) and the worker
 * writes them all once its batch of events is handled (http_flush), so
 * requests that arrive together leave together, and a connection is
 * closed there, never under a caller that still uses it.
 */
#ifndef HSM_PROXY_HTTPCODEC_H
#define HSM_PROXY_HTTPCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "h1.h"
#include "h2.h"
#include "hmsg.h"
#include "proxy.h"

struct http_metrics;
struct hx;
struct pool;

/* The two directions of an exchange: the request goes up, the response down. */
enum { REQ = 0, RSP = 1 };

enum hkind { HK_SNIFF = 0, HK_H1, HK_H2 };

#define POOL_H2_MAX	8	/* HTTP/2 upstream connections per worker and listener */
#define POOL_H1_MAX	256	/* HTTP/1.1 upstream connections (one request each at a time) */
#define POOL_QUEUE_MAX	1024	/* requests waiting for an upstream connection, per pool */
#define POOL_PING_MS	15000	/* an upstream HTTP/2 connection quiet this long is PINGed */
#define LINGER_MS	2000	/* after our last bytes, how long a half-closed connection reads on */
#define H2_SEND_QUEUE	65536	/* body bytes an HTTP/2 stream queues for sending */

/* One HTTP end: the side hc->side of connection hc->c. */
struct hconn {
	struct conn *c;
	struct hworker *hw;
	uint8_t side;		/* DOWN (client-facing) or UP (upstream) */
	uint8_t kind;		/* enum hkind */
	uint8_t server;		/* 1: takes requests; 0: sends them (a pool's) */
	uint8_t started;	/* the codec started: the protocol is known */
	uint8_t dirty;		/* on the worker's flush list */
	uint8_t dead;		/* close it at the next flush */
	uint8_t freeing;	/* its connection's close runs: never on the flush list again */
	uint8_t rdq;		/* on the worker's read-again list */
	uint8_t closing;	/* no new exchange; ends once idle (GOAWAY, Connection: close) */
	uint8_t shut;		/* our stream to it ended: reading on until EOF or linger_end */
	uint8_t reused;		/* an upstream connection that carried an exchange before */
	uint8_t pumping;	/* HTTP/1.1: its parse loop runs (never twice) */
	unsigned pend_rst;	/* exchanges wait for their response to leave before a NO_ERROR reset */
	struct h2 *h2;
	struct h1_parser p;
	struct relay_buf in;	/* HTTP/1.1 and sniffing: bytes read, not parsed */
	struct relay_buf out;	/* bytes to write */
	struct hx *cur;		/* HTTP/1.1: the exchange on this connection */
	struct hx *xs;		/* every exchange using it */
	unsigned nx;
	struct hconn *dnext;	/* the worker's flush list */
	struct hconn *rnext;	/* the worker's read-again list */
	const char *proto;	/* "HTTP/1.1" or "HTTP/2", for the access log */
	char *xfcc;		/* inbound client-facing: the x-forwarded-client-cert value */
	uint64_t linger_end;
	uint64_t xdl;		/* the earliest exchange deadline known (0: none) */
	uint64_t t_ping;	/* when the outstanding PING was sent */
	/* upstream connections */
	struct pool *pool;
	struct hconn *pprev, *pnext;
	uint64_t t_idle;	/* since when it carries no exchange */
};

/* One request and its response. */
struct hx {
	struct hx *dprev, *dnext;	/* on down->xs */
	struct hx *uprev, *unext;	/* on up->xs, or on a pool's wait queue */
	struct hconn *down, *up;
	struct h2_stream *dst, *ust;	/* the HTTP/2 streams (NULL on HTTP/1.1) */
	struct pool *queued;		/* waiting in this pool for a connection */
	struct policy *pol;		/* the policy generation that judged it */
	struct http_metrics *hm;
	size_t route;			/* index of the route that matched; nroutes: none */
	struct hmsg req;		/* the request head, kept for one retry until the response head */
	struct hmsg trl[2];		/* trailers of an HTTP/2 source, sent once its body is */
	enum h1_framing fr[2];		/* how each direction goes to an HTTP/1.1 destination */
	uint8_t head_out[2];		/* the head went to the destination */
	uint8_t in_end[2];		/* the source ended the direction */
	uint8_t out_end[2];		/* ... and the destination was told */
	uint8_t moved[2];		/* body bytes went to the destination */
	uint8_t retried;		/* sent again once already */
	uint8_t req_drop;		/* the upstream wants no more of the request body */
	uint8_t logged;			/* the access-log line is written */
	uint8_t rst_due;		/* reset the client's stream once the response left */
	uint8_t up_closed;		/* the upstream HTTP/2 stream closed (both ways ended) */
	uint8_t bodyless;		/* the request head said no body follows */
	int status;			/* the final status sent to the client (0: none yet) */
	const char *why;		/* why the sidecar answered or ended it (access log) */
	char method[H1_MAX_METHOD + 1];
	char *path;			/* for the access log (its query cut there) */
	char *peer;			/* outbound: the SPIFFE ID of the sidecar that answered */
	unsigned timeout_ms;		/* the route's request timeout */
	struct hworker *hw;
	uint64_t t0, t_last, t_wait;	/* start, last byte either way, end of the wait for a connection */
	uint64_t t_bstart, t_body;	/* request body: its first byte (0: none yet), last rate check */
	uint64_t blk_since, blk_ms;	/* ... and the time it waited on the destination */
	uint64_t bytes[2];		/* body bytes: received from the client, sent to it */
};

/* An HTTP listener's upstream connections on one worker. */
struct pool {
	struct hworker *hw;
	unsigned li;
	struct hconn *conns;		/* every connection, connecting ones too */
	unsigned n, nsetup;		/* in all; not started yet */
	struct hx *qhead, *qtail;	/* requests waiting for a connection (unext/uprev) */
	unsigned nq;
	uint8_t service;		/* on the worker's service list */
	uint8_t failed;			/* the last connection attempt failed */
	uint8_t h1_seen;		/* outbound: the peer chose HTTP/1.1 (one request per connection) */
	uint8_t open_gone;		/* the connection being opened ended at once */
	struct hconn *opening;		/* the connection conn_upstream is opening */
	struct pool *snext;
	struct fail last;		/* why the last attempt failed */
};

/* A worker's HTTP state (w->http), made with the worker when a listener is HTTP. */
struct hworker {
	struct worker *w;
	struct hconn *dirty;		/* connections to write (hc->dnext) */
	struct hconn *rdq;		/* TLS sides holding bytes no epoll event will announce (hc->rnext) */
	struct pool *service;		/* pools with requests to place or failures to tell */
	struct pool *pools;		/* one per listener (HTTP ones used) */
	unsigned gen;			/* px->gen when ident and pol were taken */
	struct ident *ident;		/* the current identity and policy, refreshed when px->gen moves */
	struct policy *pol;
	int draining;
};

/* ---- http.c ---- */

/* Mark hc to be written (and its interest and deadline updated) at the next flush. */
void hc_dirty(struct hconn *hc);

/* Close hc's connection at the next flush, recording why (reason, detail) unless it ended cleanly. */
void hc_kill(struct hconn *hc, enum reason r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * An HTTP/1.1 connection: parse what its input buffer holds as far as
 * its exchange's destination takes it (called again when it has room).
 */
void hc_h1_pump(struct hconn *hc);

/* The connection's limits: h1 for HTTP/1.1 heads, h2 for HTTP/2. */
void hc_limits(const struct hconn *hc, struct h1_limits *h1, struct h2_limits *h2);

/* Start hc as HTTP/1.1 or HTTP/2 (kind) with the callbacks of its role. 0 or an HSM_E code. */
int hc_begin(struct hconn *hc, enum hkind kind);

/* The worker's current identity and policy (refreshed when a rotation or reload moved px->gen). */
void hw_refresh(struct hworker *hw);

/* ---- hx.c ---- */

/*
 * A request head arrived on client-facing hc (on HTTP/2 stream st, or
 * the HTTP/1.1 request being parsed): m is taken; end: no body follows;
 * refuse: 0 or the status to answer at once (the head broke a limit).
 */
void hx_request(struct hconn *hc, struct h2_stream *st, struct hmsg *m, int end, int refuse);

/* A response head from upstream for x (m taken; 1xx are passed on; refuse: a bad head). */
void hx_response(struct hx *x, struct hmsg *m, int end, int refuse);

/* Body bytes of an HTTP/1.1 source for direction dir: at most hx_room(x, dir) of them. */
void hx_data(struct hx *x, int dir, const uint8_t *p, size_t n);

/* The source ended direction dir, with trailer fields t (NULL: none; moved from). */
void hx_end(struct hx *x, int dir, struct hmsg *t);

/* Move what an HTTP/2 source holds for dir as far as the destination takes it. */
void hx_move(struct hx *x, int dir);

/* The destination of dir has room again: pull from its source. */
void hx_room_opened(struct hx *x, int dir);

/* The request body waits on its destination (on 1) or not: that time counts for no body rate. */
void hx_blocked(struct hx *x, int on);

/* Body bytes the destination of dir takes now (0 while it has none, or no destination yet). */
size_t hx_room(const struct hx *x, int dir);

/*
 * The HTTP/2 stream of x on the side of hc closed (code 0: both ways
 * ended, else the reset or connection error code).
 */
void hx_stream_closed(struct hx *x, struct hconn *hc, uint32_t code);

/* hc's connection ends: every exchange on it is told (a 502, a reset, or nothing left to do). */
void hx_conn_lost(struct hconn *hc);

/* An HTTP/1.1 source on hc broke (h1 parse error, or the stream cut): the exchange ends. */
void hx_h1_broken(struct hconn *hc, int status, const char *why);

/* Pool: x goes on upstream connection up now. */
void hx_dispatch(struct hx *x, struct hconn *up);

/* Answer x with status and a short text body of the sidecar's own; why goes to the log. */
void hx_answer(struct hx *x, int status, const char *why);

/* Deadlines of the exchanges on client-facing hc at now: time out what is due. The next one, or 0. */
uint64_t hx_timeouts(struct hconn *hc, uint64_t now);

/* After a write of client-facing HTTP/2 hc: reset the streams whose early response has left. */
void hx_sent_resets(struct hconn *hc);

/* ---- pool.c ---- */

/* Place x on a connection of its listener's pool, or queue it (503 when the queue is full). */
void pool_submit(struct hx *x);

/* x leaves its pool's wait queue (answered or abandoned). */
void pool_unqueue(struct hx *x);

/* An exchange left upstream connection hc (HTTP/1.1: it is free again). */
void pool_released(struct hconn *hc);

/* Upstream connection hc is ready (started) or ended: tell its pool. */
void pool_ready(struct hconn *hc);
void pool_gone(struct hconn *hc);

/* The peer sent GOAWAY on upstream connection hc: no new stream on it. */
void pool_goaway(struct hconn *hc);

/* Place queued requests and tell failures: the worker's flush runs it for the pools marked. */
void pool_service(struct pool *p);
/* Mark p for pool_service. */
void pool_kick(struct pool *p);

/* Upstream hc's idle close and PING health at now. */
void pool_conn_timeout(struct hconn *hc, uint64_t now);

/* A rotation or reload: drain the connections of identity or policy no longer current. */
void pool_recheck(struct hworker *hw);

#endif
