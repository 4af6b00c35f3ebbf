/*
 * sslfloor.c - the memory floor of this machine's OpenSSL (make bench).
 *
 * Initialises libssl, creates one TLS server SSL_CTX (no key, no socket,
 * no connection), prints "ready" and waits for a signal to end it.
 * bench/run.sh reads its VmRSS and private memory meanwhile: the
 * least any process holding an SSL_CTX of the same shared libssl and
 * libcrypto maps, before it does any work.
 */
#include <stdio.h>
#include <unistd.h>

#include <openssl/ssl.h>

int
main(void)
{
	SSL_CTX *ctx;

	if (OPENSSL_init_ssl(0, NULL) != 1 || (ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		fprintf(stderr, "sslfloor: cannot create an SSL_CTX\n");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
