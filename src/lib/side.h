/*
 * side.h - one side of a proxied connection: a non-blocking socket, plain
 * or TLS, read, written and half-closed through one set of helpers, and
 * the one place that says what an OpenSSL I/O result means
 * (tls_status). The byte relay (relay.h) and any protocol codec of the
 * sidecar move bytes through these, so a TLS side and a plain side look
 * alike to them.
 *
 * A side remembers which epoll events its last read, write and shutdown
 * wait for (TLS can need the socket writable to read and readable to
 * write), whether its last read found it dry, and how many bytes were read
 * from it. Nothing here allocates, and nothing blocks. A plain side is
 * read and written with recv/send (send with MSG_NOSIGNAL: a peer gone is
 * an error, never a SIGPIPE), as the TLS sides' sockbio does: on a socket
 * they skip read(2)'s and write(2)'s file layer, which cost the pair about
 * 2 % of its CPU per keep-alive request (bench/kaprofile.sh).
 */
#ifndef HSM_SIDE_H
#define HSM_SIDE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "metrics.h"
#include "reason.h"
#include "sockbio.h"

struct side {
	int fd;			/* -1 while the side has no socket */
	SSL *ssl;		/* NULL: a plain socket */
	const char *name;	/* "the app", "the client", ...: in failure details */
	struct metric *count;	/* counter of bytes read from this side (NULL: none) */
	uint64_t nread;		/* bytes read from this side */
	uint32_t rd_want;	/* epoll events the last read waits for (0: read again now) */
	uint32_t wr_want;	/* ... the last write waits for */
	uint32_t sd_want;	/* ... the last shutdown waits for */
	uint8_t eof;		/* its stream ended (EOF, close_notify) */
	uint8_t shut;		/* our stream to it ended (shutdown(SHUT_WR), close_notify sent) */
	uint8_t dry;		/* the last read found no more bytes */
	uint8_t full;		/* the last write left bytes behind: wait for wr_want */
	uint8_t bufs;		/* the SSL may hold record buffers (side_release) */
};

/* What a read, write or shutdown of a side did. */
enum side_st {
	SIDE_OK,	/* read/write: moved *n > 0 bytes; shutdown: close_notify sent */
	SIDE_WAIT,	/* would block: wait for the side's *_want events */
	SIDE_END,	/* read: the side ended its stream; shutdown: done, nothing to send */
	SIDE_FAILED,	/* reset or TLS error: the fail record says why */
};

/* What SSL_get_error says of an SSL call's result. */
enum tls_st {
	TLS_DONE,		/* r > 0: the call succeeded */
	TLS_WANT_READ,		/* retry when the socket is readable */
	TLS_WANT_WRITE,		/* retry when the socket is writable */
	TLS_WANT_ASYNC,		/* an async job paused (a key operation): watch its fds */
	TLS_CLOSED,		/* the peer ended the TLS stream (close_notify or EOF) */
	TLS_FAILED,		/* anything else: the fail record says why */
};

/*
 * Set up s for socket fd (or -1) and ssl (or NULL); name is kept (a
 * string that outlives s). A plain side always waits for EPOLLIN to read
 * and EPOLLOUT to write; a TLS side starts waiting for EPOLLIN to read.
 */
void side_init(struct side *s, int fd, SSL *ssl, const char *name);

/*
 * Map the result r of SSL_do_handshake, SSL_read, SSL_write or
 * SSL_shutdown on ssl. Call it right after the call, with the error queue
 * cleared before the call. TLS_FAILED records a reason and detail in f
 * (fail_set: an earlier reason stays) from OpenSSL's error queue, which is
 * then empty: a provider key operation that failed is
 * REASON_KEY_OPERATION, a missing client certificate
 * REASON_NO_CLIENT_CERT, an end of the stream where none may be
 * REASON_PEER_CLOSED, anything else REASON_TLS_ERROR. TLS_CLOSED records
 * nothing (a read takes it as an end; tls_fail_closed for a handshake).
 */
enum tls_st tls_status(SSL *ssl, int r, struct fail *f);

/* Record REASON_PEER_CLOSED: the peer ended the stream during the handshake. */
void tls_fail_closed(struct fail *f);

/* The rare ends of side_read and side_write (r <= 0), out of line. */
enum side_st side_read_slow(struct side *s, int r, struct fail *f);
enum side_st side_write_slow(struct side *s, int r, struct fail *f);

/*
 * Read at most cap bytes into buf. SIDE_OK with *n > 0 (dry set when it
 * gave less than asked, TLS holds nothing more and, on a sockbio, its last
 * receive drained the socket), SIDE_WAIT (rd_want
 * says for what), SIDE_END (eof set), or SIDE_FAILED with f set: a reset
 * or error of a plain side, or a TLS stream cut without close_notify, is
 * REASON_RESET; another TLS failure as tls_status says. Counts the bytes
 * in nread and count. Like every helper here: call it with OpenSSL's
 * error queue empty (a failure leaves it empty). Inline, as side_write:
 * the relay's pump calls them for every record, and a call per read and
 * write was a tenth of the sidecar's own instructions per request.
 */
static inline enum side_st
side_read(struct side *s, uint8_t *buf, size_t cap, size_t *n, struct fail *f)
{
	ssize_t got;
	int r;

	*n = 0;
	if (s->ssl == NULL) {
		if ((got = recv(s->fd, buf, cap, 0)) <= 0)
			return side_read_slow(s, (int)got, f);
		*n = (size_t)got;
		s->dry = (size_t)got < cap;
	} else {
		if ((r = SSL_read(s->ssl, buf, (int)(cap > INT32_MAX ? INT32_MAX : cap))) <= 0)
			return side_read_slow(s, r, f);
		*n = (size_t)r;
		/* drained: libssl's read-ahead may stop at its buffer's end (sockbio.h) */
		s->dry = (size_t)r < cap && !SSL_has_pending(s->ssl) &&
		    sockbio_drained(SSL_get_rbio(s->ssl));
		s->rd_want = s->dry ? EPOLLIN : 0;
	}
	s->nread += *n;
	metric_add(s->count, *n);
	return SIDE_OK;
}

/*
 * Write at most len > 0 bytes of buf. SIDE_OK with *n > 0 (full set when
 * a plain socket took less than all; a partial TLS write is one record
 * written, not a full socket), SIDE_WAIT (full set, wr_want says for
 * what) or SIDE_FAILED with f set: REASON_RESET (a TLS error keeps the
 * detail tls_status gave it).
 */
static inline enum side_st
side_write(struct side *s, const uint8_t *buf, size_t len, size_t *n, struct fail *f)
{
	ssize_t put;
	int r;

	*n = 0;
	if (s->ssl == NULL) {
		if ((put = send(s->fd, buf, len, MSG_NOSIGNAL)) <= 0)
			return side_write_slow(s, (int)put, f);
		*n = (size_t)put;
		s->full = (size_t)put < len;
	} else {
		if ((r = SSL_write(s->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len))) <= 0)
			return side_write_slow(s, r, f);
		*n = (size_t)r;
		s->wr_want = 0;
		s->full = 0;
	}
	return SIDE_OK;
}

/*
 * End our stream to the side, keeping its stream to us open (half-close):
 * shutdown(SHUT_WR), or a TLS close_notify. SIDE_OK (close_notify sent),
 * SIDE_WAIT (sd_want says for what) or SIDE_END (done without anything
 * to send: a plain socket, or a TLS peer already gone). shut is set
 * unless SIDE_WAIT.
 */
enum side_st side_shutdown(struct side *s);

/* 1 when the SSL holds bytes already read from the socket, else 0. */
static inline int
side_pending(const struct side *s)
{
	return s->ssl != NULL && SSL_has_pending(s->ssl);
}

/*
 * Give OpenSSL's record buffers of a quiet TLS side back to malloc (never
 * while they hold bytes). 1 if it did, 0 if there was nothing to do.
 */
int side_release(struct side *s);

#endif
