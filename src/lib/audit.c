/* audit.c - JSON-lines audit log (see audit.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "err.h"
#include "log.h"

#define AUDIT_LINE_MAX 8192

struct audit {
	int fd;
	int owned;
	int warned;
	pthread_mutex_t mu;
};

int
audit_open(const char *path, struct audit **out)
{
	struct audit *a;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return HSM_ENOMEM;
	if (path == NULL) {
		a->fd = 2;
	} else if ((a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0) {
		int e = errno;

		free(a);
		return hsm_err(HSM_EIO, "cannot open audit log %s: %s", path, strerror(e));
	} else {
		a->owned = 1;
	}
	pthread_mutex_init(&a->mu, NULL);
	*out = a;
	return 0;
}

void
audit_close(struct audit *a)
{
	if (a == NULL)
		return;
	if (a->owned)
		close(a->fd);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

/* Append s JSON-escaped; returns the new length or cap when it did not fit. */
static size_t
put_json(char *buf, size_t n, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s != '\0' && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			buf[n++] = '\\';
			buf[n++] = 'u';
			buf[n++] = '0';
			buf[n++] = '0';
			buf[n++] = hex[c >> 4];
			buf[n++] = hex[c & 15];
		} else {
			buf[n++] = (char)c;
		}
	}
	return *s == '\0' ? n : cap;
}

static size_t
put_raw(char *buf, size_t n, size_t cap, const char *s)
{
	size_t l = strlen(s);

	if (n + l >= cap)
		return cap;
	memcpy(buf + n, s, l);
	return n + l;
}

void
audit_event_kv(struct audit *a, const char *event, const char *const *kv)
{
	char line[AUDIT_LINE_MAX], ts[64], sec[32];
	struct timespec now;
	struct tm tm;
	size_t n = 0;

	if (a == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts, sizeof(ts), "%s.%03dZ", sec, (int)(now.tv_nsec / 1000000));
	n = put_raw(line, n, sizeof(line), "{\"time\":\"");
	n = put_raw(line, n, sizeof(line), ts);
	n = put_raw(line, n, sizeof(line), "\",\"event\":\"");
	n = put_json(line, n, sizeof(line), event);
	n = put_raw(line, n, sizeof(line), "\"");
	for (; kv != NULL && kv[0] != NULL; kv += 2) {
		if (kv[1] == NULL)
			continue;
		n = put_raw(line, n, sizeof(line), ",\"");
		n = put_json(line, n, sizeof(line), kv[0]);
		n = put_raw(line, n, sizeof(line), "\":\"");
		n = put_json(line, n, sizeof(line), kv[1]);
		n = put_raw(line, n, sizeof(line), "\"");
	}
	n = put_raw(line, n, sizeof(line), "}\n");
	if (n >= sizeof(line)) {
		/* Never a truncated, unparseable line: say that it was too long. */
		n = (size_t)snprintf(line, sizeof(line),
		    "{\"time\":\"%s\",\"event\":\"audit_overflow\"}\n", ts);
	}
	pthread_mutex_lock(&a->mu);
	if (write(a->fd, line, n) != (ssize_t)n && !a->warned) {
		a->warned = 1;
		log_err("audit log write failed: %s", strerror(errno));
	}
	pthread_mutex_unlock(&a->mu);
}

void
audit_event(struct audit *a, const char *event, ...)
{
	const char *kv[2 * AUDIT_MAX_PAIRS + 1];
	size_t n = 0;
	const char *k;
	va_list ap;

	va_start(ap, event);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);

		if (n + 2 < sizeof(kv) / sizeof(kv[0])) {
			kv[n++] = k;
			kv[n++] = v;
		}
	}
	va_end(ap);
	kv[n] = NULL;
	audit_event_kv(a, event, kv);
}
