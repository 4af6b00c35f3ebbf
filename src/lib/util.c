/* util.c - small helpers shared by every process (see util.h). */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "util.h"

#define SECRET_MAX 4096

int
hsm_parse_duration(const char *s, int64_t *seconds)
{
	int64_t n = 0, mult = 1;
	const char *p = s;

	*seconds = 0;
	if (s == NULL || *s < '0' || *s > '9')
		return hsm_err(HSM_EINVAL, "bad duration '%s': expected a number and s, m, h or d",
		    s ? s : "");
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (INT64_MAX - (*p - '0')) / 10)
			return hsm_err(HSM_EINVAL, "duration '%s' is too large", s);
		n = n * 10 + (*p - '0');
	}
	switch (*p) {
	case '\0': mult = 1; break;
	case 's': mult = 1; p++; break;
	case 'm': mult = 60; p++; break;
	case 'h': mult = 3600; p++; break;
	case 'd': mult = 86400; p++; break;
	default:
		return hsm_err(HSM_EINVAL, "bad duration '%s': unit must be s, m, h or d", s);
	}
	if (*p != '\0')
		return hsm_err(HSM_EINVAL, "bad duration '%s': trailing characters", s);
	if (n == 0)
		return hsm_err(HSM_EINVAL, "duration '%s' must be positive", s);
	if (n > INT64_MAX / mult)
		return hsm_err(HSM_EINVAL, "duration '%s' is too large", s);
	*seconds = n * mult;
	return 0;
}

char *
hsm_hex(const uint8_t *buf, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[buf[i] >> 4];
		out[2 * i + 1] = digits[buf[i] & 0xf];
	}
	out[2 * len] = '\0';
	return out;
}

const char *
hsm_quote(const char *s, char *buf, size_t len)
{
	size_t i, o = 0;

	if (len < 8) {
		if (len > 0)
			buf[0] = '\0';
		return buf;
	}
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		/* Keep room for one escape, "..." and the NUL. */
		if (o + 4 + 3 + 1 > len) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c >= 0x7f || c == '\\' || c == '\'')
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o] = '\0';
	return buf;
}

int
hsm_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
hsm_unhex(const char *s, size_t slen, uint8_t *out)
{
	int hi, lo;

	if (slen % 2 != 0)
		return hsm_err(HSM_EINVAL, "odd number of hex digits");
	for (size_t i = 0; i < slen / 2; i++) {
		if ((hi = hsm_hexval((unsigned char)s[2 * i])) < 0 ||
		    (lo = hsm_hexval((unsigned char)s[2 * i + 1])) < 0)
			return hsm_err(HSM_EINVAL, "not a hex digit");
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/*
 * Secret memory: page-aligned so it can be excluded from core dumps
 * (MADV_DONTDUMP works on whole pages) and locked against swap. Both are
 * best effort: an unprivileged process may exceed RLIMIT_MEMLOCK, and a
 * PIN that works matters more than one that is also unswappable.
 * Allocated with posix_memalign, so it stays valid for free().
 */
static size_t
secret_size(size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = pg > 0 ? (size_t)pg : 4096;

	return (len + 1 + page - 1) / page * page;
}

static char *
secret_alloc(size_t len)
{
	size_t sz = secret_size(len);
	long pg = sysconf(_SC_PAGESIZE);
	void *p = NULL;

	if (posix_memalign(&p, pg > 0 ? (size_t)pg : 4096, sz) != 0)
		return NULL;
	(void)madvise(p, sz, MADV_DONTDUMP);
	(void)mlock(p, sz);
	memset(p, 0, sz);
	return p;
}

void
hsm_secret_free(char *s, size_t len)
{
	size_t sz;

	if (s == NULL)
		return;
	sz = secret_size(len);
	OPENSSL_cleanse(s, sz);
	(void)munlock(s, sz);
	/* The pages go back to malloc: let them be dumped again. */
	(void)madvise(s, sz, MADV_DODUMP);
	free(s);
}

/* Copy len bytes of src into fresh secret memory. */
static int
secret_dup(const char *src, size_t len, char **out, size_t *outlen);

int
hsm_secret_dup(const char *src, size_t len, char **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (len > SECRET_MAX)
		return hsm_err(HSM_EINVAL, "a secret is longer than %d bytes", SECRET_MAX);
	return secret_dup(src, len, out, outlen);
}

static int
secret_dup(const char *src, size_t len, char **out, size_t *outlen)
{
	char *s;

	if ((s = secret_alloc(len)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory for a secret");
	memcpy(s, src, len);
	s[len] = '\0';
	*out = s;
	*outlen = len;
	return 0;
}

int
hsm_secret_read_file(const char *path, char **out, size_t *len)
{
	char *buf = NULL;
	size_t n = 0, l;
	ssize_t r;
	int fd = -1, st;
	struct stat sb;

	*out = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		st = errno == ENOENT ? HSM_ENOENT : HSM_EIO;
		return hsm_err(st, "cannot open secret file %s: %s", path, strerror(errno));
	}
	if (fstat(fd, &sb) == -1) {
		st = hsm_err(HSM_EIO, "stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size > SECRET_MAX) {
		st = hsm_err(HSM_EINVAL, "secret file %s is not a regular file of at most %d bytes",
		    path, SECRET_MAX);
		goto out;
	}
	/* One byte of slack detects a file that grew past the limit. */
	if ((buf = secret_alloc(SECRET_MAX + 1)) == NULL) {
		st = hsm_err(HSM_ENOMEM, "out of memory for a secret");
		goto out;
	}
	while (n < SECRET_MAX + 1) {
		r = read(fd, buf + n, SECRET_MAX + 1 - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			st = hsm_err(HSM_EIO, "read %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > SECRET_MAX) {
		st = hsm_err(HSM_EINVAL, "secret file %s is larger than %d bytes", path, SECRET_MAX);
		goto out;
	}
	/* First line only, without its CR/LF. */
	for (l = 0; l < n && buf[l] != '\n'; l++)
		;
	while (l > 0 && buf[l - 1] == '\r')
		l--;
	if (l == 0) {
		st = hsm_err(HSM_EINVAL, "secret file %s is empty", path);
		goto out;
	}
	if (memchr(buf, '\0', l) != NULL) {
		st = hsm_err(HSM_EINVAL, "secret file %s contains a NUL byte", path);
		goto out;
	}
	st = secret_dup(buf, l, out, len);
 out:
	hsm_secret_free(buf, SECRET_MAX + 1);
	if (fd != -1)
		close(fd);
	return st;
}

int
hsm_secret_read_env(const char *name, char **out, size_t *len)
{
	const char *v;
	size_t l;

	*out = NULL;
	*len = 0;
	if ((v = getenv(name)) == NULL)
		return hsm_err(HSM_ENOENT, "environment variable %s is not set", name);
	l = strlen(v);
	if (l == 0)
		return hsm_err(HSM_EINVAL, "environment variable %s is empty", name);
	if (l > SECRET_MAX)
		return hsm_err(HSM_EINVAL, "environment variable %s is longer than %d bytes",
		    name, SECRET_MAX);
	return secret_dup(v, l, out, len);
}

int
hsm_secret_take_env(const char *name, char **out, size_t *len)
{
	int st = hsm_secret_read_env(name, out, len);

	(void)hsm_env_scrub_self(name);
	return st;
}

int
hsm_secret_read_fd(int fd, char **out, size_t *len)
{
	char *buf;
	size_t n = 0;
	ssize_t r;
	int st;

	*out = NULL;
	*len = 0;
	if ((buf = secret_alloc(SECRET_MAX + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory for a secret");
	while (n < SECRET_MAX + 1) {
		r = read(fd, buf + n, SECRET_MAX + 1 - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			st = hsm_err(HSM_EIO, "reading the secret from descriptor %d: %s", fd,
			    strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n == 0 || n > SECRET_MAX || memchr(buf, '\0', n) != NULL) {
		st = hsm_err(HSM_EINVAL, "the secret on descriptor %d is %s", fd, n == 0 ? "empty" :
		    n > SECRET_MAX ? "longer than 4096 bytes" : "not text (a NUL byte)");
		goto out;
	}
	st = secret_dup(buf, n, out, len);
 out:
	hsm_secret_free(buf, SECRET_MAX + 1);
	return st;
}

size_t
hsm_env_scrub(char **envp, const char *name, char *lo, char *hi)
{
	size_t nl = strlen(name), removed = 0, w = 0;

	if (envp == NULL || nl == 0)
		return 0;
	for (size_t r = 0; envp[r] != NULL; r++) {
		char *e = envp[r];

		if (strncmp(e, name, nl) != 0 || e[nl] != '=') {
			envp[w++] = e;
			continue;
		}
		removed++;
		if (lo != NULL && e >= lo && e < hi) {
			size_t l = strlen(e);

			/* Never past the block, even for a string not terminated inside it. */
			if (l > (size_t)(hi - e))
				l = (size_t)(hi - e);
			OPENSSL_cleanse(e, l);
		}
	}
	envp[w] = NULL;
	return removed;
}

/* The initial environment block [*lo, *hi) from /proc/self/stat (fields 50 and 51). */
static int
env_block(char **lo, char **hi)
{
	char buf[2048], *p, *end;
	unsigned long long v[2] = { 0, 0 };
	ssize_t n;
	int fd, field;

	*lo = *hi = NULL;
	if ((fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields restart after the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	p++;
	for (field = 3; field <= 51; field++) {
		unsigned long long x;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			return -1;
		errno = 0;
		x = strtoull(p, &end, 10);
		if (field >= 50) {
			if (end == p || errno != 0)
				return -1;
			v[field - 50] = x;
		}
		for (p = end; *p != ' ' && *p != '\0'; p++)
			;
	}
	if (v[0] == 0 || v[1] <= v[0])
		return -1;
	*lo = (char *)(uintptr_t)v[0];
	*hi = (char *)(uintptr_t)v[1];
	return 0;
}

size_t
hsm_env_scrub_self(const char *name)
{
	extern char **environ;
	char *lo, *hi;

	if (env_block(&lo, &hi) != 0)
		lo = hi = NULL;
	return hsm_env_scrub(environ, name, lo, hi);
}

int
hsm_lock_dir_path(char *buf, size_t cap)
{
	const char *t = getenv("TMPDIR");
	int n;

	if (t == NULL || t[0] != '/')
		t = "/tmp";
	n = snprintf(buf, cap, "%s/hsmesh-%u", t, (unsigned)geteuid());
	if (n < 0 || (size_t)n >= cap)
		return hsm_err(HSM_EINVAL, "the lock directory's path is too long");
	return 0;
}

int
hsm_private_dir_open(const char *path, int *dfd)
{
	struct stat sb;
	int fd;

	*dfd = -1;
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return hsm_err(HSM_EIO, "cannot create %s: %s", path, strerror(errno));
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return hsm_err(HSM_EIO, "cannot open %s: %s", path,
		    errno == ELOOP || errno == ENOTDIR ? "not a directory (a link?)" : strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
	    (sb.st_mode & 022) != 0) {
		close(fd);
		return hsm_err(HSM_EPERM, "%s is not a directory of uid %u that only it may write to",
		    path, (unsigned)geteuid());
	}
	*dfd = fd;
	return 0;
}

int
hsm_lockfile_open(int dfd, const char *name, int *fd)
{
	struct stat sb;
	int f;

	*fd = -1;
	f = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
	    0600);
	if (f == -1)
		return hsm_err(HSM_EIO, "cannot open the lock file %s: %s", name,
		    errno == ELOOP ? "a link" : strerror(errno));
	if (fstat(f, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
		close(f);
		return hsm_err(HSM_EPERM, "the lock file %s is not a regular file of uid %u", name,
		    (unsigned)geteuid());
	}
	*fd = f;
	return 0;
}

int
hsm_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
	uint8_t *buf = NULL, *nb;
	size_t n = 0, cap = 0;
	ssize_t r;
	int fd, st;

	*out = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		st = errno == ENOENT ? HSM_ENOENT : HSM_EIO;
		return hsm_err(st, "cannot open %s: %s", path, strerror(errno));
	}
	for (;;) {
		if (n == cap) {
			/* Grow geometrically; one byte past max detects an oversized file. */
			size_t ncap = cap == 0 ? 4096 : cap * 2;

			if (ncap > max + 1)
				ncap = max + 1;
			if (ncap <= cap) {
				st = hsm_err(HSM_EINVAL, "%s is larger than %zu bytes", path, max);
				goto out;
			}
			if ((nb = realloc(buf, ncap + 1)) == NULL) {
				st = hsm_err(HSM_ENOMEM, "out of memory reading %s", path);
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		r = read(fd, buf + n, cap - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			st = hsm_err(HSM_EIO, "read %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max) {
			st = hsm_err(HSM_EINVAL, "%s is larger than %zu bytes", path, max);
			goto out;
		}
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		st = hsm_err(HSM_ENOMEM, "out of memory reading %s", path);
		goto out;
	}
	/* NUL-terminate for callers parsing text; not counted in len. */
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	st = 0;
 out:
	free(buf);
	close(fd);
	return st;
}

int
hsm_write_file_atomic(const char *path, const void *buf, size_t len, unsigned mode)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const char *p = buf, *slash;
	size_t off = 0;
	ssize_t r;
	int fd = -1, dfd, st, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return hsm_err(HSM_EINVAL, "path too long: %s", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1)
		return hsm_err(HSM_EIO, "cannot create temporary file for %s: %s", path,
		    strerror(errno));
	if (fchmod(fd, (mode_t)mode) == -1) {
		st = hsm_err(HSM_EIO, "chmod %s: %s", tmp, strerror(errno));
		goto fail;
	}
	while (off < len) {
		r = write(fd, p + off, len - off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			st = hsm_err(HSM_EIO, "write %s: %s", tmp, strerror(errno));
			goto fail;
		}
		off += (size_t)r;
	}
	if (fsync(fd) == -1) {
		st = hsm_err(HSM_EIO, "fsync %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		st = hsm_err(HSM_EIO, "close %s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		st = hsm_err(HSM_EIO, "rename %s to %s: %s", tmp, path, strerror(errno));
		goto fail;
	}
	/* Make the rename itself durable; failure here is not worth an error. */
	if ((slash = strrchr(path, '/')) == NULL)
		n = snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		n = snprintf(dir, sizeof(dir), "/");
	else
		n = snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (n > 0 && (size_t)n < sizeof(dir) &&
	    (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
 fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return st;
}

uint64_t
hsm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
hsm_send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EPIPE;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int
hsm_mkdir_p(const char *path, unsigned mode)
{
	char buf[PATH_MAX];
	struct stat st;
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return hsm_err(HSM_EINVAL, "bad directory name '%s'", path);
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
			return hsm_err(HSM_EIO, "cannot create %s: %s", buf, strerror(errno));
		buf[i] = i < n ? '/' : '\0';
	}
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return hsm_err(HSM_EIO, "%s is not a directory", path);
	return 0;
}

char *
hsm_fmt_time(int64_t t, char out[HSM_TIME_STR])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, HSM_TIME_STR, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, HSM_TIME_STR, "@%lld", (long long)t);
	return out;
}
