/*
 * side.c - one side of a proxied connection, plain or TLS (see side.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "side.h"

void
side_init(struct side *s, int fd, SSL *ssl, const char *name)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->ssl = ssl;
	s->name = name;
	s->rd_want = EPOLLIN;
	s->wr_want = ssl == NULL ? EPOLLOUT : 0;
}

void
tls_fail_closed(struct fail *f)
{
	fail_set(f, REASON_PEER_CLOSED, "the peer closed during the handshake");
}

/*
 * Why a TLS call failed, from the error queue (drained here). A failed
 * signature in our provider leaves "backend: message" on the queue: that
 * is the key operation's failure, whatever libssl added after it.
 */
static void
classify(int sslerr, struct fail *f)
{
	const char *data = NULL;
	unsigned long e, first = 0;
	int flags = 0;

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		if (first == 0)
			first = e;
		if (ERR_GET_LIB(e) == ERR_LIB_PROV && data != NULL && (flags & ERR_TXT_STRING) &&
		    strchr(data, ':') != NULL) {
			fail_set(f, REASON_KEY_OPERATION, "private-key operation failed: %s", data);
			ERR_clear_error();
			return;
		}
	}
	if (first != 0 && ERR_GET_LIB(first) == ERR_LIB_SSL) {
		switch (ERR_GET_REASON(first)) {
		case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
			fail_set(f, REASON_NO_CLIENT_CERT, "the client sent no certificate");
			return;
		case SSL_R_UNEXPECTED_EOF_WHILE_READING:
			tls_fail_closed(f);
			return;
		default:
			break;
		}
	}
	if (first != 0) {
		char buf[160];

		ERR_error_string_n(first, buf, sizeof(buf));
		fail_set(f, REASON_TLS_ERROR, "%s", buf);
	} else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
		tls_fail_closed(f);
	} else {
		fail_set(f, REASON_TLS_ERROR, "TLS error %d", sslerr);
	}
}

enum tls_st
tls_status(SSL *ssl, int r, struct fail *f)
{
	int e;

	if (r > 0)
		return TLS_DONE;
	switch ((e = SSL_get_error(ssl, r))) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_WANT_ASYNC:
		return TLS_WANT_ASYNC;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_CLOSED;
	default:
		classify(e, f);
		ERR_clear_error();
		return TLS_FAILED;
	}
}

enum side_st
side_read_slow(struct side *s, int r, struct fail *f)
{
	if (s->ssl == NULL) {
		if (r == 0) {
			s->eof = 1;
			return SIDE_END;
		}
		if (errno == EAGAIN || errno == EINTR) {
			s->dry = errno != EINTR;
			return SIDE_WAIT;
		}
		fail_set(f, REASON_RESET, "read from %s: %s", s->name, strerror(errno));
		return SIDE_FAILED;
	}
	switch (tls_status(s->ssl, r, f)) {
	case TLS_WANT_READ:
		s->rd_want = EPOLLIN;
		s->dry = 1;
		return SIDE_WAIT;
	case TLS_WANT_WRITE:
		s->rd_want = EPOLLOUT;
		s->dry = 0;
		return SIDE_WAIT;
	case TLS_CLOSED:
		s->eof = 1;
		return SIDE_END;
	default:
		/* an end without close_notify where bytes may follow: the stream was cut */
		if (f->reason == REASON_PEER_CLOSED)
			f->reason = REASON_RESET;
		return SIDE_FAILED;
	}
}

enum side_st
side_write_slow(struct side *s, int r, struct fail *f)
{
	if (s->ssl == NULL) {
		if (r < 0 && errno != EAGAIN && errno != EINTR) {
			fail_set(f, REASON_RESET, "write to %s: %s", s->name, strerror(errno));
			return SIDE_FAILED;
		}
		s->full = r == 0 || errno != EINTR;
		return SIDE_WAIT;
	}
	switch (tls_status(s->ssl, r, f)) {
	case TLS_WANT_READ:
		s->wr_want = EPOLLIN;
		s->full = 1;
		return SIDE_WAIT;
	case TLS_WANT_WRITE:
		s->wr_want = EPOLLOUT;
		s->full = 1;
		return SIDE_WAIT;
	default:
		/* whatever broke the stream, it is cut: a reset, with TLS's detail */
		f->reason = REASON_RESET;
		return SIDE_FAILED;
	}
}

enum side_st
side_shutdown(struct side *s)
{
	struct fail ignored;
	int r;

	if (s->ssl == NULL) {
		shutdown(s->fd, SHUT_WR);
		s->shut = 1;
		return SIDE_END;
	}
	if ((r = SSL_shutdown(s->ssl)) >= 0) {
		s->shut = 1;
		s->sd_want = 0;
		return SIDE_OK;
	}
	ignored.reason = REASON_NONE;
	switch (tls_status(s->ssl, r, &ignored)) {
	case TLS_WANT_WRITE:
		s->sd_want = EPOLLOUT;
		return SIDE_WAIT;
	case TLS_WANT_READ:
		s->sd_want = EPOLLIN;
		return SIDE_WAIT;
	default:
		s->shut = 1;	/* the peer is gone: nothing more to say */
		return SIDE_END;
	}
}

int
side_release(struct side *s)
{
	if (s->ssl == NULL || !s->bufs || SSL_has_pending(s->ssl))
		return 0;
	SSL_free_buffers(s->ssl);
	s->bufs = 0;
	return 1;
}
