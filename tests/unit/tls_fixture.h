/*
 * tls_fixture.h - real TLS between two non-blocking sockets in one thread,
 * for the tests of side.c and relay.c: a throwaway EC P-256 key and
 * self-signed certificate made in memory, server and client contexts,
 * socketpairs and loopback TCP pairs, and a handshake driven by poll(2).
 * Include after <cmocka.h>.
 */
#ifndef HSM_TEST_TLS_FIXTURE_H
#define HSM_TEST_TLS_FIXTURE_H

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static EVP_PKEY *tf_key;
static X509 *tf_cert;

/* The key and certificate every context uses; made once per test program. */
static void
tf_identity(void)
{
	X509_NAME *n;

	if (tf_cert != NULL)
		return;
	assert_non_null(tf_key = EVP_EC_gen("P-256"));
	assert_non_null(tf_cert = X509_new());
	assert_int_equal(X509_set_version(tf_cert, 2), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(tf_cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(tf_cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(tf_cert), 3600);
	n = X509_get_subject_name(tf_cert);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"relay test",
	    -1, -1, 0);
	X509_set_issuer_name(tf_cert, n);
	assert_int_equal(X509_set_pubkey(tf_cert, tf_key), 1);
	assert_true(X509_sign(tf_cert, tf_key, EVP_sha256()) > 0);
}

/* cmocka group teardown: free the key and certificate. */
static int
tf_teardown(void **state)
{
	X509_free(tf_cert);
	EVP_PKEY_free(tf_key);
	tf_cert = NULL;
	tf_key = NULL;
	return 0;
}

/*
 * A context: server or client, with our certificate or none (client),
 * requiring a client certificate (server, require), and with
 * SSL_OP_IGNORE_UNEXPECTED_EOF (as the sidecar sets it) or without.
 */
static SSL_CTX *
tf_ctx(int server, int with_cert, int require, int ignore_eof)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	assert_non_null(ctx);
	tf_identity();
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | (ignore_eof ? SSL_OP_IGNORE_UNEXPECTED_EOF : 0));
	/* no post-handshake ticket left unread: a close is then a clean EOF, not a reset */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (with_cert) {
		assert_int_equal(SSL_CTX_use_certificate(ctx, tf_cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey(ctx, tf_key), 1);
	}
	/* the peer is our own self-signed certificate: verification is not the point here */
	SSL_CTX_set_verify(ctx, require ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT :
	    SSL_VERIFY_NONE, NULL);
	if (require) {
		X509_STORE *st = SSL_CTX_get_cert_store(ctx);

		assert_int_equal(X509_STORE_add_cert(st, tf_cert), 1);
	}
	return ctx;
}

static void
tf_nonblock(int fd)
{
	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* A connected pair of non-blocking Unix stream sockets. */
static void
tf_socketpair(int fd[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0);
}

/* A connected pair of non-blocking loopback TCP sockets (a reset is a real RST). */
static void
tf_tcppair(int fd[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
	assert_true((fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	assert_int_equal(connect(fd[0], (struct sockaddr *)&a, sizeof(a)), 0);
	assert_true((fd[1] = accept(l, NULL, NULL)) >= 0);
	close(l);
	tf_nonblock(fd[0]);
	tf_nonblock(fd[1]);
}

/* Wait up to ms for fd to be readable (or writable with out). 1 when it is. */
static int
tf_wait(int fd, int out, int ms)
{
	struct pollfd p = { .fd = fd, .events = out ? POLLOUT : POLLIN };

	return poll(&p, 1, ms) == 1;
}

/*
 * Handshake srv (accept state) against cli (connect state), each on its own
 * non-blocking socket, alternating until both finish or one fails, within
 * 5 s. 1 when both finished, 0 when either failed (the server's failure is
 * left for the caller to inspect: its last result in *srv_r).
 */
static int
tf_handshake(SSL *srv, SSL *cli, int *srv_r)
{
	int sdone = 0, cdone = 0, r;

	*srv_r = 0;
	for (int i = 0; i < 5000 && !(sdone && cdone); i++) {
		if (!sdone) {
			ERR_clear_error();
			if ((r = SSL_do_handshake(srv)) == 1)
				sdone = 1;
			else if (SSL_get_error(srv, r) != SSL_ERROR_WANT_READ &&
			    SSL_get_error(srv, r) != SSL_ERROR_WANT_WRITE) {
				*srv_r = r;
				return 0;
			}
		}
		if (!cdone) {
			if ((r = SSL_do_handshake(cli)) == 1)
				cdone = 1;
			else if (SSL_get_error(cli, r) != SSL_ERROR_WANT_READ &&
			    SSL_get_error(cli, r) != SSL_ERROR_WANT_WRITE)
				return 0;
		}
		if (!(sdone && cdone))
			tf_wait(SSL_get_fd(srv), 0, 1);
	}
	return sdone && cdone;
}

#endif
