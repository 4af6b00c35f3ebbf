/*
 * h2.h - one HTTP/2 connection (RFC 9113) for the sidecar, around
 * libnghttp2 (framing, HPACK, stream states, protocol checks are all
 * nghttp2's; nothing of HTTP/2 is written by hand here). No I/O: the
 * caller feeds the bytes it read (h2_feed) and sends the bytes the
 * connection produces (h2_out/h2_out_done, or h2_drain), so one
 * connection works the same over a plain socket, a TLS side or a test
 * buffer.
 *
 * Roles: H2_SERVER takes requests (inbound from a peer sidecar; on the
 * plaintext side, h2c with prior knowledge from the application);
 * H2_CLIENT sends them (outbound to a peer sidecar; inbound to an
 * application that speaks h2c).
 *
 * Flow control end to end: received DATA is kept per stream until the
 * caller takes it (h2_peek, then h2_consume once the other side of the
 * proxy accepted the bytes), and only consumed bytes are acknowledged
 * to the peer (WINDOW_UPDATE: nghttp2's manual window mode). A slow
 * reader therefore stops the peer instead of growing a buffer: what a
 * stream holds is bounded by its window (lim.stream_window) and what a
 * connection holds by the connection window (lim.conn_window). Bytes to
 * send wait in a per-stream queue of at most lim.send_buffer bytes;
 * h2_write takes what fits, and the room callback says when more fits.
 *
 * Streams. A stream is a handle (struct h2_stream) owned by the
 * connection and lent to the caller: a server stream from its head
 * callback, a client stream from h2_request, until the caller gives it
 * back with h2_stream_done (after which no callback names it). A handle
 * stays valid after its close callback until given back, so buffered
 * body bytes can still be read. A stream the caller gives back while it
 * is still open is reset (NO_ERROR when our side had ended, else CANCEL).
 *
 * Callbacks run inside h2_feed and h2_out. They may call any function
 * here but h2_free.
 */
#ifndef HSM_H2_H
#define HSM_H2_H

#include <stddef.h>
#include <stdint.h>

#include "hmsg.h"

#define H2_DEFAULT_WINDOW 65535		/* RFC 9113 6.9.2: the initial window */

/* RFC 9113 7 error codes used here */
#define H2_NO_ERROR		0x0
#define H2_PROTOCOL_ERROR	0x1
#define H2_INTERNAL_ERROR	0x2
#define H2_FLOW_CONTROL_ERROR	0x3
#define H2_REFUSED_STREAM	0x7
#define H2_CANCEL		0x8
#define H2_ENHANCE_YOUR_CALM	0xb

struct h2;
struct h2_stream;

enum h2_role { H2_SERVER = 0, H2_CLIENT = 1 };

struct h2_limits {
	uint32_t max_streams;		/* concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS; a
					 * client also opens at most this many) */
	uint32_t max_header_bytes;	/* a head's RFC 7541 size (SETTINGS_MAX_HEADER_LIST_SIZE) */
	uint32_t max_headers;		/* fields in a head */
	uint32_t stream_window;		/* unconsumed bytes a stream may hold, >= 65535 */
	uint32_t conn_window;		/* ... the whole connection, >= stream_window */
	uint32_t send_buffer;		/* bytes queued for sending per stream */
};

/* Defaults: 100 streams, 16 KiB / 100 fields of head, 64 KiB stream and 1 MiB connection windows, 64 KiB send queue. */
void h2_limits_default(struct h2_limits *l);

struct h2_ops {
	/*
	 * A head arrived on st: a request (server: st is new and lent to the
	 * caller from now on) or a response (client; an informational 1xx
	 * comes first when the peer sends one). m is the connection's and
	 * valid during the call (hmsg_move takes it). end: the peer sends
	 * nothing after it. refuse: 0, or the status to answer instead of
	 * forwarding (431: head over the limits; 400: :authority and Host
	 * disagree) — m is then incomplete.
	 */
	void (*head)(void *arg, struct h2_stream *st, struct hmsg *m, int end, int refuse);
	/* Body bytes were added to st's buffer (h2_peek). */
	void (*data)(void *arg, struct h2_stream *st);
	/* The peer ended its side of st (END_STREAM), with trailer fields t or NULL. */
	void (*end)(void *arg, struct h2_stream *st, struct hmsg *t);
	/* st's send queue has room again after an h2_write that could not take everything. */
	void (*room)(void *arg, struct h2_stream *st);
	/*
	 * st closed: code 0 when both sides ended (buffered bytes may remain
	 * to be read), else the RST_STREAM or connection error code (its
	 * buffered bytes were dropped).
	 */
	void (*close)(void *arg, struct h2_stream *st, uint32_t code);
	/* The peer sent GOAWAY: streams above last_id were not processed (safe to retry). */
	void (*goaway)(void *arg, int32_t last_id, uint32_t code);
};

/*
 * A new connection of role with limits lim (NULL: defaults) and
 * callbacks ops (copied; any may be NULL) called with arg. Its first
 * bytes to send (the client preface, SETTINGS) are ready at once.
 * Caller frees with h2_free. 0, HSM_ENOMEM or HSM_EINVAL (limits).
 */
int h2_new(enum h2_role role, const struct h2_limits *lim, const struct h2_ops *ops, void *arg,
    struct h2 **out);

/* Free the connection, its streams and their buffers (no callback runs). Accepts NULL. */
void h2_free(struct h2 *h);

/*
 * Feed len bytes read from the peer. Callbacks run for what they
 * complete. A connection error of the peer (a malformed frame, a flood)
 * queues a GOAWAY with its code; once it is drained, h2_want_read and
 * h2_want_write are 0: close. 0 (also then), or HSM_EPROTO when nghttp2 gave up
 * on the bytes themselves (no client preface, say; a GOAWAY is still
 * queued when one can be sent), HSM_ENOMEM.
 */
int h2_feed(struct h2 *h, const uint8_t *buf, size_t len);

/*
 * The bytes waiting to be sent: *p, *n (n 0: nothing now). They stay
 * valid until h2_out_done or the next h2_out. 0, or HSM_EPROTO/ENOMEM.
 */
int h2_out(struct h2 *h, const uint8_t **p, size_t *n);
/* k (at most the n of the last h2_out) bytes were sent. */
void h2_out_done(struct h2 *h, size_t k);
/* h2_out and h2_out_done into a caller buffer: at most cap bytes into buf, *n of them. */
int h2_drain(struct h2 *h, uint8_t *buf, size_t cap, size_t *n);

/* 1 while the connection expects bytes from the peer. */
int h2_want_read(const struct h2 *h);
/* 1 while bytes are waiting to be sent (h2_out would give some). */
int h2_want_write(const struct h2 *h);

/*
 * Client: send request m (control data and fields; hmsg_strip_hop
 * first) on a new stream lent to the caller with user pointer user;
 * end: no body follows. m needs a method, scheme, path and a non-empty
 * authority (an HTTP/1.0 request without Host gets the target's from the
 * caller). 0 with *st, HSM_EBUSY when no stream can be opened now
 * (h2_can_open), HSM_EPROTO when m cannot be sent.
 */
int h2_request(struct h2 *h, const struct hmsg *m, int end, void *user, struct h2_stream **st);

/*
 * Server: send response m on st (a 1xx is informational: the final one
 * follows). end: no body follows. 0, HSM_EPROTO (m cannot be sent),
 * HSM_ECLOSED (st is closed).
 */
int h2_response(struct h2 *h, struct h2_stream *st, const struct hmsg *m, int end);

/*
 * Queue body bytes on st: *taken of len (less when the queue is full:
 * the room callback says when to write again; so it does when this
 * write filled the queue). 0, HSM_ECLOSED (st is closed or its body
 * ended).
 */
int h2_write(struct h2 *h, struct h2_stream *st, const uint8_t *buf, size_t len, size_t *taken);

/* End st's body after the queued bytes, with trailer fields t (NULL: none). 0, HSM_ECLOSED, HSM_ENOMEM. */
int h2_end(struct h2 *h, struct h2_stream *st, const struct hmsg *t);

/* The bytes st holds for the caller, *p and *n (0: none now). */
void h2_peek(struct h2 *h, struct h2_stream *st, const uint8_t **p, size_t *n);
/* The caller took n bytes of what h2_peek gave: they are acknowledged to the peer. */
void h2_consume(struct h2 *h, struct h2_stream *st, size_t n);

/* Reset st with an RFC 9113 error code; its buffered bytes are dropped. */
void h2_reset(struct h2 *h, struct h2_stream *st, uint32_t code);

/* Give st back (see the top of this file). */
void h2_stream_done(struct h2 *h, struct h2_stream *st);

void h2_stream_set_user(struct h2_stream *st, void *user);
void *h2_stream_user(const struct h2_stream *st);
int32_t h2_stream_id(const struct h2_stream *st);

/*
 * 1 when our side of st has ended and every byte of it was produced for
 * the peer (h2_out): a response that ended before its request did can
 * then be followed by h2_stream_done, which resets the request with
 * NO_ERROR (RFC 9113 8.1) instead of CANCEL.
 */
int h2_stream_sent(struct h2 *h, const struct h2_stream *st);

/*
 * Send a PING (health check of an idle connection); h2_ping_pending is 1
 * until its ACK arrives. 0, or HSM_ENOMEM / HSM_EPROTO when it cannot be
 * queued.
 */
int h2_ping(struct h2 *h);
int h2_ping_pending(const struct h2 *h);

/* Client: how many more streams may be opened now (0 after GOAWAY). */
size_t h2_can_open(const struct h2 *h);

/*
 * Send GOAWAY with code: the peer opens no new stream; streams already
 * open may finish, and then h2_want_read and h2_want_write turn 0.
 */
void h2_goaway(struct h2 *h, uint32_t code);

struct h2_stats {
	size_t streams;		/* stream handles alive (open, or closed and not given back) */
	size_t buffered_in;	/* received body bytes not consumed, all streams */
	size_t buffered_out;	/* body bytes queued for sending, all streams */
	size_t pending_out;	/* bytes produced for the peer, not yet sent */
};
void h2_get_stats(const struct h2 *h, struct h2_stats *s);

/* Stream-level limits of st: what it holds for the caller, what it queues to send. */
void h2_stream_buffered(const struct h2_stream *st, size_t *in, size_t *out);

#endif
