/*
 * kacount.c - keep-alive requests over a fixed number of connections,
 * counted once every connection is up: counts per request (callgrind
 * instructions, strace system calls) that do not depend on how fast the
 * machine is today, and make bench's equal-budget keep-alive windows.
 *
 *   kacount -c CONNS (-n REQUESTS | -d SECONDS) [-w WARM] [-p] HOST:PORT PATH
 *
 * Opens CONNS plain TCP connections to HOST:PORT and sends one
 * "GET PATH HTTP/1.1" on each (the warm-up: every connection, and the
 * proxies behind it, fully set up), at most WARM (default: all) warming
 * up at once (-p: after printing "start" and reading a line from stdin, so
 * that the set-up itself can be profiled). Then prints "ready S" (S: the
 * seconds from the first connect until every connection had its first
 * response) on stdout and waits for a line on stdin, which starts a
 * window: exactly REQUESTS more requests (-n 0: none; -d: requests sent
 * for SECONDS, then the ones in flight complete), one in flight per
 * connection as wrk does (a connection sends its next request when its
 * response is complete). At the end of a window it prints
 * "done N S P50 P99" (its responses, the seconds from the line on stdin
 * to its last response, their latency percentiles in ms) and waits for
 * another line: "go" starts another window of the same kind on the same
 * open connections (its own count, seconds and percentiles; make bench
 * alternates short windows of two pairs this way), any other line or the
 * end of stdin closes the connections (so that a profile can be taken
 * before they close). Responses must carry a Content-Length. Used by hand
 * and from bench scripts; never by a timed test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF	65536

struct kc {
	int fd;
	size_t have;		/* bytes of the current response received */
	size_t want;		/* its full length once the head is in, else 0 */
	double sent;		/* when its request was sent */
	char head[4096];	/* the start of the response, for its head */
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
send_req(struct kc *k, const char *req, size_t len)
{
	ssize_t w = write(k->fd, req, len);

	k->have = k->want = 0;
	k->sent = now_s();
	return w == (ssize_t)len ? 0 : -1;
}

/* Whole response length from its head in k->head (0: head not complete yet). */
static size_t
resp_len(const struct kc *k)
{
	size_t n = k->have < sizeof(k->head) ? k->have : sizeof(k->head);
	const char *e = memmem(k->head, n, "\r\n\r\n", 4), *p;

	if (e == NULL)
		return 0;
	for (p = k->head; p < e; p++)
		if ((p == k->head || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
			return (size_t)(e + 4 - k->head) + strtoul(p + 15, NULL, 10);
	return (size_t)-1;
}

/* Connect k (blocking) and send its first request; 0 or -1. */
static int
open_one(struct kc *k, int ep, const struct sockaddr_in *sa, uint32_t i, const char *req,
    size_t len)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

	if ((k->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(k->fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
		fprintf(stderr, "kacount: connect %u: %s\n", i, strerror(errno));
		return -1;
	}
	/* writes stay blocking (a request is small), reads stop at EAGAIN */
	if (epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &ev) != 0 || send_req(k, req, len) != 0 ||
	    fcntl(k->fd, F_SETFL, fcntl(k->fd, F_GETFL) | O_NONBLOCK) != 0)
		return -1;
	return 0;
}

/* Read what is there; 1 when the response is complete, 0 when not yet, -1 on error. */
static int
on_read(struct kc *k)
{
	char buf[RBUF];
	ssize_t r;

	while ((r = read(k->fd, buf, sizeof(buf))) > 0) {
		if (k->have < sizeof(k->head))
			memcpy(k->head + k->have, buf,
			    (size_t)r < sizeof(k->head) - k->have ? (size_t)r : sizeof(k->head) - k->have);
		k->have += (size_t)r;
		if (k->want == 0 && (k->want = resp_len(k)) == (size_t)-1)
			return -1;
		if ((size_t)r < sizeof(buf))	/* drained: no read that finds nothing */
			break;
	}
	if (r == 0 || (r < 0 && errno != EAGAIN))
		return -1;
	return k->want != 0 && k->have >= k->want;
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The q-quantile of the n sorted latencies, in ms. */
static double
pct_ms(const double *lat, long n, double q)
{
	long i = (long)(q * (double)n + 0.5) - 1;

	if (n == 0)
		return 0;
	return lat[i < 0 ? 0 : i >= n ? n - 1 : i] * 1000.0;
}

/*
 * One window over the conns open connections ks (their epoll set ep):
 * total requests, or with dur > 0 as many as dur seconds take (then the
 * ones in flight complete); prints its "done N S P50 P99" line. *lat (of
 * *cap entries) is the latency buffer, kept from one window to the next.
 * 0, or -1 when a connection failed or stalled.
 */
static int
window(struct kc *ks, long conns, int ep, const char *req, size_t reqlen, long total, double dur,
    double **lat, long *cap)
{
	struct epoll_event evs[256];
	long sent = 0, got = 0, nlat = 0, i;
	double t0 = now_s(), tl = 0;
	int n, j;

	if (dur > 0)	/* -d: as many as the window takes; stop sending once it is over */
		total = LONG_MAX;
	for (i = 0; i < conns && sent < total; i++, sent++)
		if (send_req(&ks[i], req, reqlen) != 0)
			return -1;
	while (got < sent) {
		if ((n = epoll_wait(ep, evs, 256, 60000)) <= 0) {
			fprintf(stderr, "kacount: stalled at %ld of %ld responses\n", got, sent);
			return -1;
		}
		for (j = 0; j < n; j++) {
			struct kc *k = &ks[evs[j].data.u32];
			int r = on_read(k);

			if (r < 0) {
				fprintf(stderr, "kacount: connection %u failed\n", evs[j].data.u32);
				return -1;
			}
			if (r > 0) {
				got++;
				tl = now_s();
				if (nlat == *cap) {
					long nc = *cap ? *cap * 2 : 65536;
					double *nl = realloc(*lat, (size_t)nc * sizeof(**lat));

					if (nl == NULL)
						return -1;
					*lat = nl;
					*cap = nc;
				}
				(*lat)[nlat++] = tl - k->sent;
				if (dur > 0 && tl - t0 >= dur)
					total = sent;	/* the window is over: drain what is in flight */
				if (sent < total) {
					if (send_req(k, req, reqlen) != 0)
						return -1;
					sent++;
				}
			}
		}
	}
	qsort(*lat, (size_t)nlat, sizeof(**lat), cmp_dbl);
	printf("done %ld %.3f %.3f %.3f\n", got, got > 0 ? tl - t0 : 0.0, pct_ms(*lat, nlat, 0.50),
	    pct_ms(*lat, nlat, 0.99));
	fflush(stdout);
	return 0;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event evs[256];
	struct rlimit rl;
	char req[512], line[64], *colon;
	size_t reqlen;
	long conns = 0, total = 0, warm = 0, opened, nwarm = 0, cap = 0;
	struct kc *ks;
	double tw, dur = 0, *lat = NULL;
	int ep, o, i, n, pause = 0;

	while ((o = getopt(argc, argv, "c:d:n:w:p")) != -1) {
		if (o == 'c')
			conns = strtol(optarg, NULL, 10);
		else if (o == 'd')
			dur = strtod(optarg, NULL);
		else if (o == 'p')
			pause = 1;
		else if (o == 'w')
			nwarm = strtol(optarg, NULL, 10);
		else if (o == 'n')
			total = strtol(optarg, NULL, 10);
		else
			goto usage;
	}
	if (argc - optind != 2 || conns <= 0 || total < 0 || dur < 0 || (total > 0 && dur > 0) ||
	    dur > 3600 || (colon = strchr(argv[optind], ':')) == NULL)
		goto usage;
	*colon = '\0';
	if (inet_pton(AF_INET, argv[optind], &sa.sin_addr) != 1)
		goto usage;
	sa.sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
	reqlen = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
	    argv[optind + 1], argv[optind], colon + 1);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (nwarm <= 0)
		nwarm = conns;
	if ((ks = calloc((size_t)conns, sizeof(*ks))) == NULL || (ep = epoll_create1(0)) < 0)
		return 1;
	if (pause) {
		printf("start\n");
		fflush(stdout);
		if (fgets(line, sizeof(line), stdin) == NULL)
			return 0;
	}
	/* warm-up: connect, one request each, at most nwarm at once */
	tw = now_s();
	for (opened = 0; opened < conns && opened < nwarm; opened++)
		if (open_one(&ks[opened], ep, &sa, (uint32_t)opened, req, reqlen) != 0)
			return 1;
	while (warm < conns) {
		if ((n = epoll_wait(ep, evs, 256, 30000)) <= 0) {
			fprintf(stderr, "kacount: warm-up stalled at %ld of %ld\n", warm, conns);
			return 1;
		}
		for (i = 0; i < n; i++) {
			struct kc *k = &ks[evs[i].data.u32];
			int r = on_read(k);

			if (r < 0) {
				fprintf(stderr, "kacount: connection %u failed in warm-up\n", evs[i].data.u32);
				return 1;
			}
			if (r > 0) {
				warm++;
				k->have = k->want = 0;
				if (opened < conns && open_one(&ks[opened], ep, &sa, (uint32_t)opened,
				    req, reqlen) != 0)
					return 1;
				if (opened < conns)
					opened++;
			}
		}
	}
	printf("ready %.3f\n", now_s() - tw);
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL)
		return 0;
	do {
		if (window(ks, conns, ep, req, reqlen, total, dur, &lat, &cap) != 0)
			return 1;
	} while (fgets(line, sizeof(line), stdin) != NULL && strcmp(line, "go\n") == 0);
	for (i = 0; i < conns; i++)
		close(ks[i].fd);
	return 0;
 usage:
	fprintf(stderr, "usage: kacount -c CONNS (-n REQUESTS | -d SECONDS) [-w WARM] [-p] HOST:PORT PATH\n");
	return 2;
}
