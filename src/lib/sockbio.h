/*
 * sockbio.h - OpenSSL's I/O on a non-blocking socket (a BIO of our own in
 * place of OpenSSL's socket BIO), which remembers whether the socket was
 * found empty by the last receive.
 *
 * It behaves like the BIO SSL_set_fd makes (retry flags on EAGAIN and
 * EINTR, an end of the stream for BIO_eof, flush a no-op, the descriptor
 * for BIO_get_fd, never closing the socket unless told with
 * BIO_set_close), with two differences: it receives and sends with
 * recv/send (MSG_NOSIGNAL: a peer gone is an error, never a SIGPIPE), and
 * it records "drained": the last receive returned fewer bytes than asked,
 * an end, an error or EAGAIN, so the socket held nothing more at that
 * moment. With libssl's read-ahead on, a TLS read that returned less
 * than asked, with nothing pending in libssl and the socket drained, has
 * taken everything there was: bytes that come later make a new epoll
 * edge. libssl's "nothing pending" alone does not say that, since its
 * read-ahead stops at the end of its own buffer. A FIN that came with
 * the last bytes is still queued after a short receive and makes no new
 * edge: the sidecar's level-triggered epoll reports it (docs/PERFORMANCE.md).
 */
#ifndef HSM_SOCKBIO_H
#define HSM_SOCKBIO_H

#include <openssl/bio.h>
#include <openssl/ssl.h>

/*
 * A new BIO on socket fd (not closed when the BIO is freed), or NULL when
 * memory is short.
 */
BIO *sockbio_new(int fd);

/*
 * Give ssl a sockbio on fd for both directions (what SSL_set_fd does with
 * OpenSSL's socket BIO). 1, or 0 when memory is short (ssl unchanged).
 */
int sockbio_attach(SSL *ssl, int fd);

/*
 * 1 when b is a sockbio whose last receive left the socket empty (or
 * found its end), or b is not a sockbio (nothing is known: the caller's
 * other signs decide); 0 when the last receive filled the space it was
 * given, or nothing was received yet.
 */
int sockbio_drained(BIO *b);

#endif
