/*
 * agent_hog.c - a TEST client that tries to hold the agent's local API
 * hostage (issue 15): as many connections as it can get, some with half a
 * frame and then silence. Never part of the hsmesh binary.
 *
 *   agent_hog SOCKET CONNECTS HALF SECS
 *
 * Connects CONNECTS times (at most 4096), writes half a frame header on
 * the first HALF connections the agent kept, and holds them all for SECS
 * seconds, noticing when the agent closes one. Prints two lines on stdout:
 *
 *   held=K refused=R                       (0.5 s after connecting)
 *   half_closed=H first_ms=F last_ms=L others_open=O
 *
 * held: connections the agent kept open; refused: those it closed at once
 * (beyond its quota); half_closed: half-frame connections the agent closed
 * within SECS, the first and last after F and L ms; others_open: kept
 * connections without half a frame still open at the end. Exit status 0,
 * or 2 on a usage error.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTS 4096

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether the agent closed fd (EOF or reset), without waiting. */
static int
closed(int fd)
{
	char b[64];
	ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

int
main(int argc, char **argv)
{
	static int fds[MAX_CONNECTS], half[MAX_CONNECTS], gone[MAX_CONNECTS];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	long connects, nhalf, secs;
	int held = 0, refused = 0, hc = 0, others = 0, marked = 0;
	uint64_t t_half = 0, first = 0, last = 0, end;

	if (argc != 5 || strlen(argv[1]) >= sizeof(sun.sun_path) ||
	    (connects = strtol(argv[2], NULL, 10)) < 1 || connects > MAX_CONNECTS ||
	    (nhalf = strtol(argv[3], NULL, 10)) < 0 || (secs = strtol(argv[4], NULL, 10)) < 1) {
		fprintf(stderr, "usage: agent_hog SOCKET CONNECTS HALF SECS\n");
		return 2;
	}
	memcpy(sun.sun_path, argv[1], strlen(argv[1]) + 1);
	for (long i = 0; i < connects; i++) {
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			fprintf(stderr, "agent_hog: connect %ld: %s\n", i, strerror(errno));
			return 2;
		}
	}
	usleep(500000);
	for (long i = 0; i < connects; i++) {
		if (closed(fds[i])) {
			refused++;
			close(fds[i]);
			fds[i] = -1;
			continue;
		}
		held++;
		/* Half a frame: the length and the version, then silence. */
		if (marked < nhalf && write(fds[i], "\0\0\0\x10\x01", 5) == 5) {
			half[i] = 1;
			marked++;
		}
	}
	t_half = now_ms();
	printf("held=%d refused=%d\n", held, refused);
	fflush(stdout);
	for (end = now_ms() + (uint64_t)secs * 1000; now_ms() < end; usleep(20000)) {
		for (long i = 0; i < connects; i++) {
			if (fds[i] < 0 || gone[i] || !closed(fds[i]))
				continue;
			gone[i] = 1;
			if (half[i]) {
				last = now_ms() - t_half;
				if (hc++ == 0)
					first = last;
			}
		}
	}
	for (long i = 0; i < connects; i++)
		if (fds[i] >= 0 && !half[i] && !gone[i])
			others++;
	printf("half_closed=%d first_ms=%llu last_ms=%llu others_open=%d\n", hc,
	    (unsigned long long)first, (unsigned long long)last, others);
	return 0;
}
