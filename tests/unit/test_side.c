/*
 * test_side.c - one side of a proxied connection (lib/side.c) over real
 * sockets, plain and TLS: what tls_status makes of OpenSSL's results on
 * the handshake, read, write and shutdown paths (want-read, closed, no
 * client certificate, a peer gone mid-handshake, garbage, a failed key
 * operation), and what side_read/side_write/side_shutdown report and
 * remember (dry, full, eof, shut, the events to wait for, bytes read).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>

#include <cmocka.h>

#include "metrics.h"
#include "reason.h"
#include "side.h"
#include "tls_fixture.h"

/* A TLS server SSL on fd[0] and a client SSL on fd[1], not yet shaken. */
struct tpair {
	int fd[2];
	SSL_CTX *sctx, *cctx;
	SSL *srv, *cli;
};

static void
tpair_new(struct tpair *t, int tcp, int client_cert, int require, int ignore_eof)
{
	if (tcp)
		tf_tcppair(t->fd);
	else
		tf_socketpair(t->fd);
	t->sctx = tf_ctx(1, 1, require, ignore_eof);
	t->cctx = tf_ctx(0, client_cert, 0, ignore_eof);
	assert_non_null(t->srv = SSL_new(t->sctx));
	assert_non_null(t->cli = SSL_new(t->cctx));
	SSL_set_fd(t->srv, t->fd[0]);
	SSL_set_fd(t->cli, t->fd[1]);
	SSL_set_accept_state(t->srv);
	SSL_set_connect_state(t->cli);
}

static void
tpair_free(struct tpair *t)
{
	SSL_free(t->srv);
	SSL_free(t->cli);
	SSL_CTX_free(t->sctx);
	SSL_CTX_free(t->cctx);
	if (t->fd[0] >= 0)
		close(t->fd[0]);
	if (t->fd[1] >= 0)
		close(t->fd[1]);
	ERR_clear_error();
}

/* An established TLS pair. */
static void
tpair_up(struct tpair *t, int tcp, int ignore_eof)
{
	int r;

	tpair_new(t, tcp, 1, 0, ignore_eof);
	assert_int_equal(tf_handshake(t->srv, t->cli, &r), 1);
}

/* ---- tls_status on the handshake path ---- */

static void
handshake_wants_read(void **state)
{
	struct tpair t;
	struct fail f = { REASON_NONE, "" };

	tpair_new(&t, 0, 1, 0, 1);
	ERR_clear_error();
	/* nothing from the client yet */
	assert_int_equal(tls_status(t.srv, SSL_do_handshake(t.srv), &f), TLS_WANT_READ);
	assert_int_equal(f.reason, REASON_NONE);
	/* the client's first flight is written at once; then it waits for the server */
	assert_int_equal(tls_status(t.cli, SSL_do_handshake(t.cli), &f), TLS_WANT_READ);
	assert_int_equal(f.reason, REASON_NONE);
	tpair_free(&t);
}

static void
handshake_no_client_cert(void **state)
{
	struct tpair t;
	struct fail f = { REASON_NONE, "" };
	int r;

	tpair_new(&t, 0, 0, 1, 1);
	assert_int_equal(tf_handshake(t.srv, t.cli, &r), 0);
	assert_int_equal(tls_status(t.srv, r, &f), TLS_FAILED);
	assert_int_equal(f.reason, REASON_NO_CLIENT_CERT);
	assert_string_equal(f.detail, "the client sent no certificate");
	assert_int_equal(ERR_peek_error(), 0);	/* the queue was drained */
	tpair_free(&t);
}

/*
 * A client gone before its first flight: an unexpected EOF (peer_closed),
 * or with SSL_OP_IGNORE_UNEXPECTED_EOF (the sidecar's) an end, which the
 * handshake records with tls_fail_closed.
 */
static void
handshake_peer_gone(void **state)
{
	struct tpair t;
	struct fail f = { REASON_NONE, "" };

	tpair_new(&t, 0, 1, 0, 0);
	close(t.fd[1]);
	t.fd[1] = -1;
	ERR_clear_error();
	assert_int_equal(tls_status(t.srv, SSL_do_handshake(t.srv), &f), TLS_FAILED);
	assert_int_equal(f.reason, REASON_PEER_CLOSED);
	assert_string_equal(f.detail, "the peer closed during the handshake");
	tpair_free(&t);

	f.reason = REASON_NONE;
	tpair_new(&t, 0, 1, 0, 1);
	close(t.fd[1]);
	t.fd[1] = -1;
	ERR_clear_error();
	assert_int_equal(tls_status(t.srv, SSL_do_handshake(t.srv), &f), TLS_CLOSED);
	assert_int_equal(f.reason, REASON_NONE);
	tls_fail_closed(&f);
	assert_int_equal(f.reason, REASON_PEER_CLOSED);
	assert_string_equal(f.detail, "the peer closed during the handshake");
	tpair_free(&t);
}

static void
handshake_garbage(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct tpair t;
	struct fail f = { REASON_NONE, "" };

	tpair_new(&t, 0, 1, 0, 1);
	assert_int_equal(write(t.fd[1], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	ERR_clear_error();
	assert_int_equal(tls_status(t.srv, SSL_do_handshake(t.srv), &f), TLS_FAILED);
	assert_int_equal(f.reason, REASON_TLS_ERROR);
	assert_non_null(strstr(f.detail, "http request"));
	tpair_free(&t);
}

/* A failed signature in our provider leaves "backend: message": a key operation failure. */
static void
key_operation(void **state)
{
	struct tpair t;
	struct fail f = { REASON_NONE, "" };

	tpair_new(&t, 0, 1, 0, 1);
	ERR_clear_error();
	ERR_raise_data(ERR_LIB_PROV, ERR_R_OPERATION_FAIL, "agent: %s", "deadline passed");
	ERR_raise(ERR_LIB_SSL, ERR_R_INTERNAL_ERROR);	/* what libssl adds after it */
	assert_int_equal(tls_status(t.srv, -1, &f), TLS_FAILED);
	assert_int_equal(f.reason, REASON_KEY_OPERATION);
	assert_string_equal(f.detail, "private-key operation failed: agent: deadline passed");
	assert_int_equal(ERR_peek_error(), 0);
	/* an earlier reason stays */
	ERR_raise(ERR_LIB_SSL, ERR_R_INTERNAL_ERROR);
	assert_int_equal(tls_status(t.srv, -1, &f), TLS_FAILED);
	assert_int_equal(f.reason, REASON_KEY_OPERATION);
	assert_int_equal(ERR_peek_error(), 0);
	tpair_free(&t);
}

/* ---- TLS read, write, shutdown ---- */

static void
tls_read_write_shutdown(void **state)
{
	struct tpair t;
	struct side s;
	struct fail f = { REASON_NONE, "" };
	struct metrics *m = NULL;
	struct metric *cnt = NULL;
	uint8_t buf[64];
	size_t n;
	char *text = NULL;
	size_t tl;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_get(m, METRIC_COUNTER, "t_bytes_total", "Bytes.", NULL, &cnt), 0);
	tpair_up(&t, 0, 1);
	side_init(&s, t.fd[0], t.srv, "the peer");
	s.count = cnt;
	assert_int_equal(s.rd_want, EPOLLIN);
	assert_int_equal(s.wr_want, 0);
	/* nothing to read: wait for EPOLLIN, dry */
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_WAIT);
	assert_int_equal(n, 0);
	assert_int_equal(s.rd_want, EPOLLIN);
	assert_int_equal(s.dry, 1);
	/* a record shorter than the space: read, and dry (TLS holds nothing more) */
	assert_int_equal(SSL_write(t.cli, "hello", 5), 5);
	assert_true(tf_wait(t.fd[0], 0, 1000));
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_OK);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(s.dry, 1);
	assert_int_equal(s.nread, 5);
	/* a record longer than the space: not dry, TLS holds the rest */
	assert_int_equal(SSL_write(t.cli, "0123456789", 10), 10);
	assert_true(tf_wait(t.fd[0], 0, 1000));
	assert_int_equal(side_read(&s, buf, 4, &n, &f), SIDE_OK);
	assert_int_equal(n, 4);
	assert_int_equal(s.dry, 0);
	assert_int_equal(s.rd_want, 0);
	assert_int_equal(side_pending(&s), 1);
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_OK);
	assert_int_equal(n, 6);
	assert_int_equal(s.nread, 15);
	/* the counter counted every byte read */
	assert_int_equal(metrics_render(m, &text, &tl), 0);
	assert_non_null(strstr(text, "t_bytes_total 15\n"));
	free(text);
	/* writing: one record */
	assert_int_equal(side_write(&s, (const uint8_t *)"world", 5, &n, &f), SIDE_OK);
	assert_int_equal(n, 5);
	assert_int_equal(s.full, 0);
	assert_true(tf_wait(t.fd[1], 0, 1000));
	assert_int_equal(SSL_read(t.cli, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "world", 5);
	/* the client's close_notify ends the stream: SIDE_END, no failure */
	assert_int_equal(SSL_shutdown(t.cli), 0);
	assert_true(tf_wait(t.fd[0], 0, 1000));
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_END);
	assert_int_equal(s.eof, 1);
	assert_int_equal(f.reason, REASON_NONE);
	/* our close_notify: sent, shut; the client reads a clean end */
	assert_int_equal(side_shutdown(&s), SIDE_OK);
	assert_int_equal(s.shut, 1);
	assert_true(tf_wait(t.fd[1], 0, 1000));
	assert_int_equal(SSL_read(t.cli, buf, sizeof(buf)), 0);
	assert_int_equal(SSL_get_error(t.cli, 0), SSL_ERROR_ZERO_RETURN);
	/* record buffers of a quiet side go back once */
	s.bufs = 1;
	assert_int_equal(side_release(&s), 1);
	assert_int_equal(side_release(&s), 0);
	tpair_free(&t);
	metrics_free(m);
}

/* A TLS stream cut without close_notify is a reset (or an end, with IGNORE_UNEXPECTED_EOF). */
static void
tls_cut(void **state)
{
	struct tpair t;
	struct side s;
	struct fail f = { REASON_NONE, "" };
	uint8_t buf[64];
	size_t n;
	enum side_st st;

	tpair_up(&t, 0, 0);
	side_init(&s, t.fd[0], t.srv, "the peer");
	close(t.fd[1]);
	t.fd[1] = -1;
	ERR_clear_error();
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_FAILED);
	assert_int_equal(f.reason, REASON_RESET);
	assert_int_equal(ERR_peek_error(), 0);
	tpair_free(&t);

	f.reason = REASON_NONE;
	tpair_up(&t, 0, 1);
	side_init(&s, t.fd[0], t.srv, "the peer");
	close(t.fd[1]);
	t.fd[1] = -1;
	st = side_read(&s, buf, sizeof(buf), &n, &f);
	assert_int_equal(st, SIDE_END);
	assert_int_equal(f.reason, REASON_NONE);
	/* our close_notify to a peer that is gone: done, nothing more to say */
	assert_int_equal(side_shutdown(&s), SIDE_END);
	assert_int_equal(s.shut, 1);
	tpair_free(&t);
}

/* Writing to a TLS peer that reset the connection is a reset. */
static void
tls_write_reset(void **state)
{
	struct linger lg = { 1, 0 };
	struct tpair t;
	struct side s;
	struct fail f = { REASON_NONE, "" };
	static uint8_t big[65536];
	size_t n;
	enum side_st st = SIDE_OK;

	tpair_up(&t, 1, 1);
	side_init(&s, t.fd[0], t.srv, "the peer");
	assert_int_equal(setsockopt(t.fd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(t.fd[1]);
	t.fd[1] = -1;
	ERR_clear_error();
	for (int i = 0; i < 100 && st == SIDE_OK; i++)
		st = side_write(&s, big, sizeof(big), &n, &f);
	assert_int_equal(st, SIDE_FAILED);
	assert_int_equal(f.reason, REASON_RESET);
	assert_int_equal(ERR_peek_error(), 0);
	tpair_free(&t);
}

/* ---- plain sides ---- */

static void
plain_io(void **state)
{
	struct side s;
	struct fail f = { REASON_NONE, "" };
	uint8_t buf[64];
	static uint8_t big[65536];
	size_t n, total = 0;
	int fd[2];
	enum side_st st;

	tf_socketpair(fd);
	side_init(&s, fd[0], NULL, "the app");
	assert_int_equal(s.rd_want, EPOLLIN);
	assert_int_equal(s.wr_want, EPOLLOUT);
	assert_int_equal(s.sd_want, 0);
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_WAIT);
	assert_int_equal(s.dry, 1);
	assert_int_equal(write(fd[1], "abcdef", 6), 6);
	/* exactly the space asked: not dry */
	assert_int_equal(side_read(&s, buf, 3, &n, &f), SIDE_OK);
	assert_int_equal(n, 3);
	assert_int_equal(s.dry, 0);
	/* less than asked: dry */
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_OK);
	assert_int_equal(n, 3);
	assert_int_equal(s.dry, 1);
	assert_int_equal(s.nread, 6);
	/* write until the socket is full: then SIDE_WAIT with full set */
	for (int i = 0; i < 1000; i++) {
		if ((st = side_write(&s, big, sizeof(big), &n, &f)) != SIDE_OK)
			break;
		total += n;
		assert_int_equal(s.full, n < sizeof(big));
	}
	assert_int_equal(st, SIDE_WAIT);
	assert_int_equal(s.full, 1);
	assert_true(total > 0);
	/* half-close: shutdown(SHUT_WR) at once, the peer still writes to us */
	assert_int_equal(side_shutdown(&s), SIDE_END);
	assert_int_equal(s.shut, 1);
	assert_int_equal(write(fd[1], "z", 1), 1);
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_OK);
	shutdown(fd[1], SHUT_WR);
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_END);
	assert_int_equal(s.eof, 1);
	assert_int_equal(f.reason, REASON_NONE);
	close(fd[0]);
	close(fd[1]);
}

static void
plain_reset(void **state)
{
	struct linger lg = { 1, 0 };
	struct side s;
	struct fail f = { REASON_NONE, "" };
	uint8_t buf[64];
	size_t n;
	int fd[2];

	tf_tcppair(fd);
	side_init(&s, fd[0], NULL, "the app");
	assert_int_equal(setsockopt(fd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fd[1]);
	assert_true(tf_wait(fd[0], 0, 1000));
	assert_int_equal(side_read(&s, buf, sizeof(buf), &n, &f), SIDE_FAILED);
	assert_int_equal(f.reason, REASON_RESET);
	assert_string_equal(f.detail, "read from the app: Connection reset by peer");
	/* writing to it fails too, and the first cause stays */
	assert_int_equal(side_write(&s, (const uint8_t *)"x", 1, &n, &f), SIDE_FAILED);
	assert_string_equal(f.detail, "read from the app: Connection reset by peer");
	f.reason = REASON_NONE;
	assert_int_equal(side_write(&s, (const uint8_t *)"x", 1, &n, &f), SIDE_FAILED);
	assert_int_equal(f.reason, REASON_RESET);
	assert_non_null(strstr(f.detail, "write to the app: "));
	close(fd[0]);
}

/* A plain side whose peer is gone: the write fails as a reset, with no SIGPIPE (send, MSG_NOSIGNAL). */
static void
plain_peer_gone_no_sigpipe(void **state)
{
	struct side s;
	struct fail f = { REASON_NONE, "" };
	size_t n;
	int fd[2];

	tf_socketpair(fd);
	side_init(&s, fd[0], NULL, "the app");
	close(fd[1]);
	signal(SIGPIPE, SIG_DFL);	/* a SIGPIPE would end this test program */
	assert_int_equal(side_write(&s, (const uint8_t *)"x", 1, &n, &f), SIDE_FAILED);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(f.reason, REASON_RESET);
	assert_string_equal(f.detail, "write to the app: Broken pipe");
	close(fd[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(handshake_wants_read),
		cmocka_unit_test(handshake_no_client_cert),
		cmocka_unit_test(handshake_peer_gone),
		cmocka_unit_test(handshake_garbage),
		cmocka_unit_test(key_operation),
		cmocka_unit_test(tls_read_write_shutdown),
		cmocka_unit_test(tls_cut),
		cmocka_unit_test(tls_write_reset),
		cmocka_unit_test(plain_io),
		cmocka_unit_test(plain_reset),
		cmocka_unit_test(plain_peer_gone_no_sigpipe),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, tf_teardown);
}
