/*
 * keyholder_relay.c - the keyholder's stderr. PKCS#11 modules write to
 * stderr on their own: tpm2-pkcs11 prints two "ERROR:" lines for a wrong
 * PIN beside our one-line message, and its
 * TPM2_PKCS11_LOG_LEVEL cannot silence errors. So fd 2 becomes a pipe
 * read by a relay thread: lines in the log format of tpm2-pkcs11 and tss2
 * ("ERROR: ...", "WARNING:esys:...") appear only with --verbose, the rest
 * (ours, sanitizer reports) pass to the real stderr. Lines are written
 * whole (stderr is unbuffered, a line is one write under PIPE_BUF).
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyholder.h"

static struct {
	int saved;			/* the real stderr, -1 when not relaying */
	int rfd;
	bool verbose;
	pthread_t th;
} relay = { -1, -1, false, 0 };

static void
relay_put(const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(relay.saved, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

static void
relay_line(const char *p, size_t len)
{
	static const char *const chatter[] = { "ERROR:", "WARNING:", "INFO:", "DEBUG:", "TRACE:" };
	static const char pre[] = "hsmesh keyholder: debug: module: ";
	size_t i;

	for (i = 0; i < sizeof(chatter) / sizeof(chatter[0]); i++)
		if (len >= strlen(chatter[i]) && memcmp(p, chatter[i], strlen(chatter[i])) == 0)
			break;
	if (i == sizeof(chatter) / sizeof(chatter[0])) {
		relay_put(p, len);
		return;
	}
	if (!relay.verbose)
		return;
	relay_put(pre, sizeof(pre) - 1);
	relay_put(p, len);
	if (p[len - 1] != '\n')
		relay_put("\n", 1);
}

static void *
relay_main(void *arg)
{
	char buf[4096], *nl;
	size_t len = 0, ll;
	ssize_t n;

	for (;;) {
		n = read(relay.rfd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		while (len > 0 && ((nl = memchr(buf, '\n', len)) != NULL || len == sizeof(buf))) {
			ll = nl != NULL ? (size_t)(nl - buf) + 1 : len;
			relay_line(buf, ll);
			memmove(buf, buf + ll, len - ll);
			len -= ll;
		}
	}
	if (len > 0)
		relay_line(buf, len);
	close(relay.rfd);
	return NULL;
}

/* At exit: the real stderr back on fd 2, which ends the pipe; the relay drains it. */
static void
relay_stop(void)
{
	if (relay.saved < 0)
		return;
	fflush(stderr);
	dup2(relay.saved, 2);
	pthread_join(relay.th, NULL);
	close(relay.saved);
	relay.saved = -1;
}

/* Best effort: without a relay, module lines simply reach stderr. */
void
kh_relay_start(bool verbose)
{
	sigset_t all, old;
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) != 0)
		return;
	relay.verbose = verbose;
	relay.rfd = p[0];
	if ((relay.saved = fcntl(2, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	/* Signals are for the main loop's signalfd: the relay blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = dup2(p[1], 2) < 0 || pthread_create(&relay.th, NULL, relay_main, NULL) != 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		dup2(relay.saved, 2);
		close(relay.saved);
		relay.saved = -1;
		goto fail;
	}
	close(p[1]);
	atexit(relay_stop);
	return;
 fail:
	close(p[0]);
	close(p[1]);
}
