/*
 * test_sockbio.c - the socket BIO of the sidecar's TLS sides
 * (lib/sockbio.c) over real sockets: what a receive tells of the socket
 * (drained after a short receive, EAGAIN, an end or an error; not after a
 * receive that filled the space given), the retry flags and BIO_eof
 * libssl relies on, send without SIGPIPE to a peer gone, the controls
 * (descriptor, close flag, flush), TLS through it, and side_read's dry
 * on a TLS side read with libssl's read-ahead.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reason.h"
#include "side.h"
#include "sockbio.h"
#include "tls_fixture.h"

/* A short receive, one that fills the space given, EAGAIN, then the end. */
static void
reads(void **state)
{
	char buf[16];
	int fd[2];
	BIO *b;

	tf_socketpair(fd);
	assert_non_null(b = sockbio_new(fd[0]));
	assert_int_equal(sockbio_drained(b), 0);
	assert_int_equal(write(fd[1], "abcdefgh", 8), 8);
	/* fills the 4 bytes asked: more may follow */
	assert_int_equal(BIO_read(b, buf, 4), 4);
	assert_memory_equal(buf, "abcd", 4);
	assert_int_equal(sockbio_drained(b), 0);
	/* fewer than asked: the socket is empty */
	assert_int_equal(BIO_read(b, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "efgh", 4);
	assert_int_equal(sockbio_drained(b), 1);
	assert_int_equal(BIO_should_retry(b), 0);
	/* exactly what was there, asked for exactly: not known to be empty */
	assert_int_equal(write(fd[1], "ij", 2), 2);
	assert_int_equal(BIO_read(b, buf, 2), 2);
	assert_int_equal(sockbio_drained(b), 0);
	/* EAGAIN: retry later, drained */
	assert_true(BIO_read(b, buf, sizeof(buf)) < 0);
	assert_true(BIO_should_retry(b));
	assert_true(BIO_should_read(b));
	assert_int_equal(BIO_eof(b), 0);
	assert_int_equal(sockbio_drained(b), 1);
	/* bytes again clear the retry flags */
	assert_int_equal(write(fd[1], "k", 1), 1);
	assert_int_equal(BIO_read(b, buf, sizeof(buf)), 1);
	assert_int_equal(BIO_should_retry(b), 0);
	/* the end: no retry, BIO_eof (libssl's unexpected-EOF handling asks it) */
	close(fd[1]);
	assert_int_equal(BIO_read(b, buf, sizeof(buf)), 0);
	assert_int_equal(BIO_should_retry(b), 0);
	assert_int_equal(BIO_eof(b), 1);
	assert_int_equal(sockbio_drained(b), 1);
	BIO_free(b);
	/* BIO_NOCLOSE: the socket is still ours */
	assert_int_equal(close(fd[0]), 0);
}

/* A receive error (a reset) is no retry and no end: libssl calls it a syscall failure. */
static void
read_error(void **state)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	char buf[16];
	int fd[2];
	BIO *b;

	tf_tcppair(fd);
	assert_non_null(b = sockbio_new(fd[0]));
	assert_int_equal(write(fd[0], "x", 1), 1);
	assert_true(tf_wait(fd[1], 0, 1000));
	/* unread bytes at close, with linger 0: an RST */
	assert_int_equal(setsockopt(fd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fd[1]);
	assert_true(tf_wait(fd[0], 0, 1000));
	errno = 0;
	assert_true(BIO_read(b, buf, sizeof(buf)) < 0);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(BIO_should_retry(b), 0);
	assert_int_equal(BIO_eof(b), 0);
	assert_int_equal(sockbio_drained(b), 1);
	BIO_free(b);
	close(fd[0]);
}

/* Sends: all, then EAGAIN when full (retry), then EPIPE to a peer gone, with no SIGPIPE. */
static void
writes(void **state)
{
	static char big[65536];
	char buf[8];
	int fd[2], r;
	BIO *b;

	tf_socketpair(fd);
	assert_non_null(b = sockbio_new(fd[0]));
	assert_int_equal(BIO_write(b, "hello", 5), 5);
	assert_int_equal(BIO_should_retry(b), 0);
	assert_int_equal(read(fd[1], buf, sizeof(buf)), 5);
	while ((r = BIO_write(b, big, sizeof(big))) > 0)
		;
	assert_true(BIO_should_retry(b));
	assert_true(BIO_should_write(b));
	assert_int_equal(BIO_flush(b), 1);
	close(fd[1]);
	/* SIGPIPE would end this test program */
	errno = 0;
	assert_true(BIO_write(b, "x", 1) < 0);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(BIO_should_retry(b), 0);
	assert_int_equal(BIO_puts(b, "y") < 0, 1);
	BIO_free(b);
	close(fd[0]);
}

/* The controls libssl and its callers use: descriptor, close flag, type. */
static void
controls(void **state)
{
	int fd[2], got = -1;
	BIO *b, *mem;

	tf_socketpair(fd);
	assert_non_null(b = sockbio_new(fd[0]));
	assert_int_equal(BIO_get_fd(b, &got), fd[0]);
	assert_int_equal(got, fd[0]);
	assert_true(BIO_method_type(b) & BIO_TYPE_DESCRIPTOR);
	assert_int_equal(BIO_get_close(b), BIO_NOCLOSE);
	/* told to close it: freeing the BIO closes the socket */
	assert_int_equal(BIO_set_close(b, BIO_CLOSE), 1);
	BIO_free(b);
	errno = 0;
	assert_int_equal(close(fd[0]), -1);
	assert_int_equal(errno, EBADF);
	close(fd[1]);
	/* another BIO: nothing known, the caller's other signs decide */
	assert_non_null(mem = BIO_new(BIO_s_mem()));
	assert_int_equal(sockbio_drained(mem), 1);
	assert_int_equal(sockbio_drained(NULL), 1);
	BIO_free(mem);
}

/*
 * TLS through sockbios on both ends, read-ahead on the reader: SSL_get_fd
 * finds the socket, and a TLS side is dry only once its socket was found
 * empty: a burst larger than libssl's buffer is read whole before dry
 * (test_relay's tls_edge_triggered sweeps record sizes for the case where
 * libssl's buffer ends exactly at a record's end).
 */
static void
tls_dry(void **state)
{
	static uint8_t rec[1000], buf[65536];
	SSL_CTX *sctx = tf_ctx(1, 1, 0, 1), *cctx = tf_ctx(0, 0, 0, 1);
	SSL *srv, *cli;
	struct side s;
	struct fail f = { REASON_NONE, "" };
	size_t n, total = 0, sent = 0;
	int fd[2], r;

	tf_socketpair(fd);
	assert_non_null(srv = SSL_new(sctx));
	assert_non_null(cli = SSL_new(cctx));
	assert_int_equal(sockbio_attach(srv, fd[0]), 1);
	assert_int_equal(sockbio_attach(cli, fd[1]), 1);
	assert_int_equal(SSL_get_fd(srv), fd[0]);
	SSL_set_read_ahead(srv, 1);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	assert_int_equal(tf_handshake(srv, cli, &r), 1);
	memset(rec, 'r', sizeof(rec));
	for (int i = 0; i < 60; i++) {
		assert_int_equal(SSL_write(cli, rec, sizeof(rec)), sizeof(rec));
		sent += sizeof(rec);
	}
	side_init(&s, fd[0], srv, "the peer");
	/* read until dry: every byte sent has then been read */
	for (int i = 0; i < 1000; i++) {
		enum side_st st = side_read(&s, buf, sizeof(buf), &n, &f);

		assert_true(st == SIDE_OK || st == SIDE_WAIT);
		total += n;
		if (s.dry)
			break;
	}
	assert_int_equal(s.dry, 1);
	assert_int_equal(total, sent);
	SSL_free(srv);
	SSL_free(cli);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	close(fd[0]);
	close(fd[1]);
	ERR_clear_error();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads),
		cmocka_unit_test(read_error),
		cmocka_unit_test(writes),
		cmocka_unit_test(controls),
		cmocka_unit_test(tls_dry),
	};

	return cmocka_run_group_tests(tests, NULL, tf_teardown);
}
