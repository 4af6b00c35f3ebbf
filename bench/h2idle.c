/*
 * h2idle.c - `make bench`: N idle HTTP/2 connections, for the memory a
 * proxy spends on each. Opens N plaintext HTTP/2 connections (h2c with
 * prior knowledge) to 127.0.0.1:PORT, one after the other, sends one
 * GET PATH on each and reads its response to the end, then keeps every
 * connection open and quiet until it is killed. Prints "ready K" on
 * stdout once done, K being the connections that got their 2xx (it stops
 * at the first that does not).
 *
 *   h2idle PORT N PATH
 *
 * HTTP/2 through the project's adapter (src/lib/h2.h, libnghttp2).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "h2.h"
#include "hmsg.h"

struct one {
	int status, done;
};

static void
on_head(void *arg, struct h2_stream *st, struct hmsg *m, int end, int refuse)
{
	struct one *o = arg;

	if (m->status >= 200)
		o->status = refuse ? refuse : m->status;
}

static void
on_close(void *arg, struct h2_stream *st, uint32_t code)
{
	struct one *o = arg;

	o->done = 1;
	if (code != 0)
		o->status = 0;
}

/* One connection: connect, one GET, its response. The socket, or -1. */
static int
open_one(long port, const char *path)
{
	static const struct h2_ops ops = { .head = on_head, .close = on_close };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 10 };
	struct h2_stream *st;
	struct one o = { 0, 0 };
	struct h2 *h = NULL;
	struct hmsg m;
	uint8_t buf[16384];
	const uint8_t *p;
	size_t n;
	ssize_t r;
	int fd, one = 1, ok = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	hmsg_init(&m, 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    h2_new(H2_CLIENT, NULL, &ops, &o, &h) != 0 ||
	    hmsg_set(&m, HMSG_METHOD, "GET", 3) != 0 || hmsg_set(&m, HMSG_SCHEME, "http", 4) != 0 ||
	    hmsg_set(&m, HMSG_AUTHORITY, "bench", 5) != 0 ||
	    hmsg_set(&m, HMSG_PATH, path, strlen(path)) != 0 || h2_request(h, &m, 1, NULL, &st) != 0)
		goto out;
	while (!o.done) {
		for (;;) {
			if (h2_out(h, &p, &n) != 0)
				goto out;
			if (n == 0)
				break;
			if ((r = send(fd, p, n, MSG_NOSIGNAL)) <= 0)
				goto out;
			h2_out_done(h, (size_t)r);
		}
		if ((r = recv(fd, buf, sizeof(buf), 0)) <= 0 || h2_feed(h, buf, (size_t)r) != 0)
			goto out;
	}
	/* the stream's handle: given back, its acknowledgements sent */
	h2_stream_done(h, st);
	while (h2_out(h, &p, &n) == 0 && n > 0 && (r = send(fd, p, n, MSG_NOSIGNAL)) > 0)
		h2_out_done(h, (size_t)r);
	if (o.status >= 200 && o.status < 300)
		ok = 0;
 out:
	hmsg_clear(&m);
	h2_free(h);	/* the connection stays open, quiet: no session needed for that */
	if (ok != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A decimal number in [1, max], or -1. */
static long
num(const char *s, long max)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s >= '0' && *s <= '9' && *end == '\0' && v >= 1 && v <= max ? v : -1;
}

int
main(int argc, char **argv)
{
	struct rlimit rl;
	sigset_t s;
	long port, n;
	int k, sig;

	if (argc != 4 || (port = num(argv[1], 65535)) < 0 || (n = num(argv[2], 100000)) < 0) {
		fprintf(stderr, "usage: h2idle PORT N PATH\n");
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	sigprocmask(SIG_BLOCK, &s, NULL);
	for (k = 0; k < n && open_one(port, argv[3]) >= 0; k++)
		;
	printf("ready %d\n", k);
	fflush(stdout);
	sigwait(&s, &sig);
	return k == n ? 0 : 1;
}
