/*
 * slowcli.c - a TEST client that holds many slow HTTP connections open
 * against a server (tests/integration/t_ca_front.sh): the slow-client
 * attack on `hsmesh ca serve`. Never part of the hsmesh binary.
 *
 *   slowcli HOST PORT CONNS SOURCES INTERVAL_MS DURATION_MS [idle|hold]
 *
 * Keeps CONNS connections open for DURATION_MS, spread over SOURCES local
 * addresses 127.0.0.2, 127.0.0.3, ... (so a per-source limit can be met or
 * avoided). Each sends the start of a request and then one more header
 * line every INTERVAL_MS, never finishing it ("idle": sends nothing at
 * all). A connection the server closes is opened again at once, unless
 * "hold" (then it stays closed). At the end it prints one line:
 *
 *   opened=N open_max=M open_end=E status408=A status503=B other_status=C closed=D
 *
 * opened: connections made; open_max/open_end: most open at once / open
 * at the end; statusNNN: answers with that status; closed: connections
 * the server closed (after an answer or without). Exit status 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000

struct slot {
	int fd;
	int connected;
	int answered;
	long long next_send;
	unsigned lines;
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long
arg_num(const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "slowcli: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

static int
open_one(const struct sockaddr_in *dst, unsigned src)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(0x7f000002u + src);	/* 127.0.0.2 + src */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) != 0 && errno != EINPROGRESS)) {
		close(fd);
		return -1;
	}
	return fd;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in dst;
	struct pollfd *pfd;
	struct slot *sl;
	struct rlimit rl;
	long conns, sources, interval, duration;
	long long end, opened = 0, st408 = 0, st503 = 0, other = 0, closed = 0;
	int idle = 0, hold = 0, open_now = 0, open_max = 0;

	if (argc < 7 || argc > 8) {
		fprintf(stderr, "usage: slowcli HOST PORT CONNS SOURCES INTERVAL_MS DURATION_MS "
		    "[idle|hold]\n");
		return 2;
	}
	memset(&dst, 0, sizeof(dst));
	dst.sin_family = AF_INET;
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "slowcli: HOST must be an IPv4 address\n");
		return 2;
	}
	dst.sin_port = htons((unsigned short)arg_num(argv[2], 1, 65535));
	conns = arg_num(argv[3], 1, MAX_CONNS);
	sources = arg_num(argv[4], 1, 250);
	interval = arg_num(argv[5], 1, 3600000);
	duration = arg_num(argv[6], 1, 3600000);
	if (argc == 8) {
		idle = strcmp(argv[7], "idle") == 0;
		hold = strcmp(argv[7], "hold") == 0;
		if (!idle && !hold) {
			fprintf(stderr, "slowcli: the last argument is idle or hold\n");
			return 2;
		}
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 16) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)conns + 16 ? rl.rlim_max : (rlim_t)conns + 16;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((pfd = calloc((size_t)conns, sizeof(*pfd))) == NULL ||
	    (sl = calloc((size_t)conns, sizeof(*sl))) == NULL)
		return 1;
	for (long i = 0; i < conns; i++)
		sl[i].fd = -1;
	end = now_ms() + duration;
	while (now_ms() < end) {
		long long t = now_ms();

		for (long i = 0; i < conns; i++) {
			struct slot *s = &sl[i];

			if (s->fd < 0 && (!hold || s->lines == 0) && !s->answered) {
				if ((s->fd = open_one(&dst, (unsigned)(i % sources))) >= 0) {
					opened++;
					open_now++;
					if (open_now > open_max)
						open_max = open_now;
					s->connected = 0;
					s->lines = 0;
					s->next_send = t;
				}
			}
			if (s->fd >= 0 && s->connected && !idle && t >= s->next_send) {
				char line[64];
				int n = s->lines == 0 ?
				    snprintf(line, sizeof(line), "POST /.well-known/cmp HTTP/1.1\r\n") :
				    snprintf(line, sizeof(line), "X-Slow-%u: y\r\n", s->lines);

				(void)send(s->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
				s->lines++;
				s->next_send = t + interval;
			}
			pfd[i].fd = s->fd;
			pfd[i].events = s->fd >= 0 ? (short)(POLLIN | (s->connected ? 0 : POLLOUT)) : 0;
			pfd[i].revents = 0;
		}
		if (poll(pfd, (nfds_t)conns, 50) < 0 && errno != EINTR)
			break;
		for (long i = 0; i < conns; i++) {
			struct slot *s = &sl[i];
			char buf[512];
			ssize_t n;

			if (s->fd < 0 || pfd[i].revents == 0)
				continue;
			if (!s->connected && (pfd[i].revents & POLLOUT) != 0 &&
			    (pfd[i].revents & (POLLERR | POLLHUP)) == 0) {
				s->connected = 1;
			}
			if ((pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) == 0)
				continue;
			n = recv(s->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n > 0) {
				buf[n] = '\0';
				if (strncmp(buf, "HTTP/1.1 408", 12) == 0)
					st408++;
				else if (strncmp(buf, "HTTP/1.1 503", 12) == 0)
					st503++;
				else
					other++;
				if (hold)
					s->answered = 1;
			}
			/* Answered or closed: either way the server ended it. */
			closed++;
			close(s->fd);
			s->fd = -1;
			open_now--;
			if (hold)
				s->answered = 1;
		}
	}
	printf("opened=%lld open_max=%d open_end=%d status408=%lld status503=%lld other_status=%lld "
	    "closed=%lld\n", opened, open_max, open_now, st408, st503, other, closed);
	for (long i = 0; i < conns; i++)
		if (sl[i].fd >= 0)
			close(sl[i].fd);
	free(pfd);
	free(sl);
	return 0;
}
