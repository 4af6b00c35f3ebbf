/* audit.c - JSON-lines audit log, every line whole (see audit.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "err.h"
#include "log.h"

#define AUDIT_LINE_MAX 8192
#define TAIL_CHUNK 4096
#define RESERVE_BYTES (64 * 1024)	/* room kept for records that must be written */

struct audit {
	int fd;
	int owned;
	int durable;
	int have_reserve;		/* <path>.reserve exists (DURABLE) */
	unsigned long failing;		/* writes failed since the last success */
	char path[256];
	char reserve[272];		/* <path>.reserve */
	pthread_mutex_t mu;
};

/*
 * DURABLE: keep RESERVE_BYTES of the file system in <path>.reserve, so a
 * record that must follow another (an issuance rolled back after its line
 * was written) can still be written when the disk is full: the reserve is
 * given back first (audit_event_urgent). Re-made after a write succeeds.
 */
static void
reserve_make(struct audit *a)
{
	char zero[4096];
	int fd;

	if (!a->durable || !a->owned || a->have_reserve)
		return;
	if ((fd = open(a->reserve, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		a->have_reserve = errno == EEXIST;
		return;
	}
	memset(zero, 0, sizeof(zero));
	for (size_t n = 0; n < RESERVE_BYTES; n += sizeof(zero)) {
		if (write(fd, zero, sizeof(zero)) != (ssize_t)sizeof(zero)) {
			close(fd);
			unlink(a->reserve);	/* not whole: no reserve, try again later */
			return;
		}
	}
	if (fsync(fd) != 0) {
		close(fd);
		unlink(a->reserve);
		return;
	}
	close(fd);
	a->have_reserve = 1;
}

/* Exclusive across processes (DURABLE). */
static void
file_lock(struct audit *a, int op)
{
	if (a->durable && a->owned)
		while (flock(a->fd, op) != 0 && errno == EINTR)
			;
}

/*
 * A last line without its newline (a write cut short by a crash): cut it
 * off. Returns the bytes removed (0: the file ends well), or -1 with errno.
 * *torn receives up to cap-1 bytes of it for the log.
 */
static long long
repair_tail(int fd, char *torn, size_t cap)
{
	struct stat st;
	char buf[TAIL_CHUNK];
	off_t end, pos;

	torn[0] = '\0';
	if (fstat(fd, &st) != 0)
		return -1;
	if (!S_ISREG(st.st_mode) || st.st_size == 0)
		return 0;
	end = st.st_size;
	if (pread(fd, buf, 1, end - 1) != 1)
		return -1;
	if (buf[0] == '\n')
		return 0;
	/* Find the last newline before the torn part. */
	for (pos = end; pos > 0;) {
		off_t from = pos > TAIL_CHUNK ? pos - TAIL_CHUNK : 0;
		ssize_t n = pread(fd, buf, (size_t)(pos - from), from);

		if (n != pos - from)
			return -1;
		for (ssize_t i = n - 1; i >= 0; i--) {
			if (buf[i] == '\n') {
				pos = from + i + 1;
				goto found;
			}
		}
		pos = from;
	}
found:
	{
		ssize_t n = pread(fd, torn, cap - 1 < (size_t)(end - pos) ? cap - 1 : (size_t)(end - pos),
		    pos);

		torn[n > 0 ? n : 0] = '\0';
		for (ssize_t i = 0; i < n; i++)
			if ((unsigned char)torn[i] < 0x20 || (unsigned char)torn[i] >= 0x7f)
				torn[i] = '?';
	}
	if (ftruncate(fd, pos) != 0)
		return -1;
	return (long long)(end - pos);
}

int
audit_open_as(const char *path, int flags, const char *what, struct audit **out)
{
	struct audit *a;
	char torn[121];
	long long cut = 0;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return HSM_ENOMEM;
	a->durable = (flags & AUDIT_DURABLE) != 0;
	if (path == NULL) {
		a->fd = 2;
	} else if ((a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0) {
		int e = errno;

		free(a);
		return hsm_err(HSM_EIO, "cannot open %s %s: %s", what, path, strerror(e));
	} else {
		a->owned = 1;
		snprintf(a->path, sizeof(a->path), "%s", path);
		snprintf(a->reserve, sizeof(a->reserve), "%s.reserve", path);
	}
	pthread_mutex_init(&a->mu, NULL);
	if (a->owned) {
		/* Under the lock: another process may be writing its line right now. */
		while (flock(a->fd, LOCK_EX) != 0 && errno == EINTR)
			;
		cut = repair_tail(a->fd, torn, sizeof(torn));
		flock(a->fd, LOCK_UN);
		if (cut < 0) {
			int e = errno;

			audit_close(a);
			return hsm_err(HSM_EIO, "cannot repair %s %s: %s", what, path, strerror(e));
		}
	}
	reserve_make(a);
	*out = a;
	if (cut > 0) {
		char n[24];

		log_warn("%s %s: removed a torn last line of %lld bytes (a write cut short): %s",
		    what, path, cut, torn);
		snprintf(n, sizeof(n), "%lld", cut);
		(void)audit_event(a, "audit_repaired", "removed_bytes", n, NULL);
	}
	return 0;
}

int
audit_open_flags(const char *path, int flags, struct audit **out)
{
	return audit_open_as(path, flags, "audit log", out);
}

int
audit_open(const char *path, struct audit **out)
{
	return audit_open_flags(path, 0, out);
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

/*
 * Write the whole line or nothing: one write; when only part of it went
 * out, cut the file back to where it was. 0 or an errno.
 */
static int
write_line(struct audit *a, const char *line, size_t n)
{
	struct stat st;
	off_t before = -1;
	ssize_t w;
	int e;

	if (a->owned && fstat(a->fd, &st) == 0)
		before = st.st_size;
	do
		w = write(a->fd, line, n);
	while (w < 0 && errno == EINTR);
	if (w == (ssize_t)n) {
		if (a->durable && a->owned && fdatasync(a->fd) != 0)
			return errno;
		return 0;
	}
	e = w < 0 ? errno : ENOSPC;
	/* A part of the line went out: remove it, so the file never holds a torn line. */
	if (w > 0 && a->owned && before >= 0 && ftruncate(a->fd, before) != 0)
		log_err("audit log %s: cannot remove a partial line: %s", a->path, strerror(errno));
	return e;
}

/* The line of a record; urgent: give the reserve back if there is no room for it. */
static int
record(struct audit *a, const char *event, const char *const *kv, int urgent)
{
	char line[AUDIT_LINE_MAX], ts[64], sec[32];
	struct timespec now;
	struct tm tm;
	size_t n = 0;
	int e;

	if (a == NULL)
		return 0;
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
	/*
	 * A record that an urgent one may have to follow (an issued line, its
	 * rolled_back) is written only while the reserve is there for it: when
	 * the reserve was spent and cannot be made again, the disk is full.
	 */
	reserve_make(a);
	if (!urgent && a->durable && a->owned && !a->have_reserve) {
		e = ENOSPC;
		goto done;
	}
	file_lock(a, LOCK_EX);
	e = write_line(a, line, n);
	if ((e == ENOSPC || e == EDQUOT) && urgent && a->have_reserve && unlink(a->reserve) == 0) {
		a->have_reserve = 0;
		log_warn("audit log %s: the disk is full; its reserve was used for a %s record",
		    a->path, event);
		e = write_line(a, line, n);
	}
	file_lock(a, LOCK_UN);
	if (e == 0)
		reserve_make(a);
 done:
	if (e != 0 && a->failing++ == 0)
		log_err("audit log %s write failed: %s (issuances fail until it can be written)",
		    a->path[0] ? a->path : "(stderr)", strerror(e));
	if (e == 0 && a->failing > 0) {
		log_warn("audit log %s written again after %lu failed writes", a->path, a->failing);
		a->failing = 0;
	}
	pthread_mutex_unlock(&a->mu);
	if (e != 0)
		return hsm_err(HSM_EIO, "audit log write failed: %s", strerror(e));
	return 0;
}

int
audit_event_kv(struct audit *a, const char *event, const char *const *kv)
{
	return record(a, event, kv, 0);
}

/* A record from the key, value, ..., NULL pairs of a varargs call. */
static int
record_ap(struct audit *a, const char *event, int urgent, va_list ap)
{
	const char *kv[2 * AUDIT_MAX_PAIRS + 1];
	size_t n = 0;
	const char *k;

	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);

		if (n + 2 < sizeof(kv) / sizeof(kv[0])) {
			kv[n++] = k;
			kv[n++] = v;
		}
	}
	kv[n] = NULL;
	return record(a, event, kv, urgent);
}

int
audit_event(struct audit *a, const char *event, ...)
{
	va_list ap;
	int r;

	va_start(ap, event);
	r = record_ap(a, event, 0, ap);
	va_end(ap);
	return r;
}

int
audit_event_urgent(struct audit *a, const char *event, ...)
{
	va_list ap;
	int r;

	va_start(ap, event);
	r = record_ap(a, event, 1, ap);
	va_end(ap);
	return r;
}
