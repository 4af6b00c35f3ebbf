/*
 * sockbio.c - a socket BIO that remembers whether the socket was drained
 * (see sockbio.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockbio.h"

struct sockbio {
	int fd;
	uint8_t drained;	/* the last recv left the socket empty */
	uint8_t eof;		/* the last recv found the end of the stream */
};

static BIO_METHOD *sb_meth;
static int sb_type;
static pthread_once_t sb_once = PTHREAD_ONCE_INIT;

/* What a failed recv or send means: 1 when it is worth retrying later. */
static int
sb_retry(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

static int
sb_read(BIO *b, char *buf, int len)
{
	struct sockbio *s = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	if (buf == NULL || len <= 0)
		return 0;
	r = recv(s->fd, buf, (size_t)len, 0);
	if (r > 0) {
		s->drained = r < len;
		return (int)r;
	}
	/* EINTR leaves bytes that may be there: not drained */
	s->drained = r == 0 || errno != EINTR;
	if (r == 0)
		s->eof = 1;
	else if (sb_retry())
		BIO_set_retry_read(b);
	return (int)r;
}

static int
sb_write(BIO *b, const char *buf, int len)
{
	struct sockbio *s = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	if (buf == NULL || len <= 0)
		return 0;
	if ((r = send(s->fd, buf, (size_t)len, MSG_NOSIGNAL)) < 0 && sb_retry())
		BIO_set_retry_write(b);
	return (int)r;
}

static int
sb_puts(BIO *b, const char *str)
{
	size_t n = strlen(str);

	return sb_write(b, str, n > INT32_MAX ? INT32_MAX : (int)n);
}

static long
sb_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct sockbio *s = BIO_get_data(b);

	switch (cmd) {
	case BIO_C_SET_FD:
		s->fd = *(int *)ptr;
		s->drained = s->eof = 0;
		BIO_set_shutdown(b, (int)num);
		BIO_set_init(b, 1);
		return 1;
	case BIO_C_GET_FD:
		if (!BIO_get_init(b))
			return -1;
		if (ptr != NULL)
			*(int *)ptr = s->fd;
		return s->fd;
	case BIO_CTRL_GET_CLOSE:
		return BIO_get_shutdown(b);
	case BIO_CTRL_SET_CLOSE:
		BIO_set_shutdown(b, (int)num);
		return 1;
	case BIO_CTRL_EOF:
		return s->eof;
	case BIO_CTRL_DUP:
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static int
sb_create(BIO *b)
{
	struct sockbio *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return 0;
	s->fd = -1;
	BIO_set_data(b, s);
	BIO_set_init(b, 0);
	return 1;
}

static int
sb_destroy(BIO *b)
{
	struct sockbio *s = BIO_get_data(b);

	if (s == NULL)
		return 0;
	if (BIO_get_shutdown(b) && BIO_get_init(b) && s->fd >= 0)
		close(s->fd);
	free(s);
	BIO_set_data(b, NULL);
	BIO_set_init(b, 0);
	return 1;
}

static void
sb_setup(void)
{
	BIO_METHOD *m;

	if ((sb_type = BIO_get_new_index()) < 0)
		return;
	sb_type |= BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
	if ((m = BIO_meth_new(sb_type, "hsmesh socket")) == NULL)
		return;
	if (!BIO_meth_set_read(m, sb_read) || !BIO_meth_set_write(m, sb_write) ||
	    !BIO_meth_set_puts(m, sb_puts) || !BIO_meth_set_ctrl(m, sb_ctrl) ||
	    !BIO_meth_set_create(m, sb_create) || !BIO_meth_set_destroy(m, sb_destroy)) {
		BIO_meth_free(m);
		return;
	}
	sb_meth = m;
}

BIO *
sockbio_new(int fd)
{
	BIO *b;

	if (pthread_once(&sb_once, sb_setup) != 0 || sb_meth == NULL ||
	    (b = BIO_new(sb_meth)) == NULL)
		return NULL;
	BIO_set_fd(b, fd, BIO_NOCLOSE);
	return b;
}

int
sockbio_attach(SSL *ssl, int fd)
{
	BIO *b;

	if ((b = sockbio_new(fd)) == NULL)
		return 0;
	/* one BIO for both directions: SSL_set_bio takes the one reference */
	SSL_set_bio(ssl, b, b);
	return 1;
}

int
sockbio_drained(BIO *b)
{
	const struct sockbio *s;

	if (b == NULL || pthread_once(&sb_once, sb_setup) != 0 || sb_meth == NULL ||
	    BIO_method_type(b) != sb_type)
		return 1;
	s = BIO_get_data(b);
	return s->drained;
}
