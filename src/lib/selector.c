/*
 * selector.c - workload selectors and the inspection of a local process
 * (see selector.h).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "err.h"
#include "selector.h"
#include "util.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77		/* Linux 6.5 (asm-generic/socket.h); Debian 12's headers predate it */
#endif

#define HASH_CACHE 32		/* executables whose SHA-256 is remembered */

/* ---- parsing ---- */

/* "selector '<quoted text>': " + why, as the detail of HSM_EINVAL. */
static int
bad(const char *text, const char *why)
{
	char q[200];

	return hsm_err(HSM_EINVAL, "selector '%s': %s", hsm_quote(text, q, sizeof(q)), why);
}

/* A uid or gid: decimal, 0..4294967294 (-1 is "no id"), no sign or leading zero. */
static int
parse_id(const char *s, uint32_t *out)
{
	unsigned long long v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 10 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v >= 4294967295ULL)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/*
 * An absolute, canonical path: starts with '/', no empty, "." or ".."
 * segment, no trailing '/' (except "/" itself when root_ok), printable
 * ASCII without control bytes. NULL when fine, else why not.
 */
static const char *
path_problem(const char *s, int root_ok)
{
	size_t n = strlen(s);

	if (s[0] != '/')
		return "must be an absolute path";
	if (n >= PATH_MAX)
		return "path too long";
	if (n == 1)
		return root_ok ? NULL : "must name a file, not '/'";
	if (s[n - 1] == '/')
		return "must not end with '/'";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return "control characters are not allowed";
		if (c == '/') {
			const char *seg = s + i + 1;
			size_t l = strcspn(seg, "/");

			if (l == 0 || (l == 1 && seg[0] == '.') ||
			    (l == 2 && seg[0] == '.' && seg[1] == '.'))
				return "must be canonical (no empty, '.' or '..' segments)";
		}
	}
	return NULL;
}

void
sel_clear(struct selector *s)
{
	if (s == NULL)
		return;
	free(s->str);
	memset(s, 0, sizeof(*s));
}

int
sel_parse(const char *text, struct selector *out)
{
	const char *colon, *v, *why;
	size_t kl;

	memset(out, 0, sizeof(*out));
	if (text == NULL)
		return hsm_err(HSM_EINVAL, "missing selector");
	if (strnlen(text, SEL_TEXT_MAX + 1) > SEL_TEXT_MAX)
		return bad(text, "too long");
	if ((colon = strchr(text, ':')) == NULL)
		return bad(text, "must be KIND:VALUE (uid, gid, path, sha256 or cgroup)");
	kl = (size_t)(colon - text);
	v = colon + 1;
#define KIND(s) (kl == sizeof(s) - 1 && memcmp(text, s, kl) == 0)
	if (KIND("uid") || KIND("gid")) {
		out->kind = KIND("uid") ? SEL_UID : SEL_GID;
		if (parse_id(v, &out->num) != 0)
			return bad(text, out->kind == SEL_UID ?
			    "uid must be a number from 0 to 4294967294" :
			    "gid must be a number from 0 to 4294967294");
		return 0;
	}
	if (KIND("sha256")) {
		out->kind = SEL_SHA256;
		if (strlen(v) != 64 || hsm_unhex(v, 64, out->hash) != 0)
			return bad(text, "sha256 must be 64 hex digits");
		return 0;
	}
	if (KIND("path") || KIND("cgroup")) {
		out->kind = KIND("path") ? SEL_PATH : SEL_CGROUP;
		if ((why = path_problem(v, out->kind == SEL_CGROUP)) != NULL)
			return bad(text, why);
		if ((out->str = strdup(v)) == NULL)
			return hsm_err(HSM_ENOMEM, "out of memory");
		return 0;
	}
#undef KIND
	return bad(text, "unknown kind (uid, gid, path, sha256 or cgroup)");
}

int
sel_text(const struct selector *s, char *buf, size_t cap)
{
	char hex[65];
	int n;

	switch (s->kind) {
	case SEL_UID:
	case SEL_GID:
		n = snprintf(buf, cap, "%s:%lu", s->kind == SEL_UID ? "uid" : "gid",
		    (unsigned long)s->num);
		break;
	case SEL_SHA256:
		n = snprintf(buf, cap, "sha256:%s", hsm_hex(s->hash, 32, hex));
		break;
	case SEL_PATH:
	case SEL_CGROUP:
		n = snprintf(buf, cap, "%s:%s", s->kind == SEL_PATH ? "path" : "cgroup", s->str);
		break;
	default:
		n = -1;
		break;
	}
	return n < 0 || (size_t)n >= cap ? HSM_EINVAL : 0;
}

static int
sel_equal(const struct selector *a, const struct selector *b)
{
	if (a->kind != b->kind)
		return 0;
	switch (a->kind) {
	case SEL_UID:
	case SEL_GID:
		return a->num == b->num;
	case SEL_SHA256:
		return memcmp(a->hash, b->hash, 32) == 0;
	default:
		return strcmp(a->str, b->str) == 0;
	}
}

void
sel_set_clear(struct sel_set *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->n; i++)
		sel_clear(&set->v[i]);
	free(set->v);
	memset(set, 0, sizeof(*set));
}

int
sel_set_add(struct sel_set *set, const char *text)
{
	struct selector s, *v;
	int r;

	if ((r = sel_parse(text, &s)) != 0)
		return r;
	for (size_t i = 0; i < set->n; i++) {
		if (sel_equal(&set->v[i], &s)) {
			sel_clear(&s);
			return 0;
		}
	}
	if (set->n >= SEL_SET_MAX) {
		sel_clear(&s);
		return hsm_err(HSM_EINVAL, "more than %d selectors", SEL_SET_MAX);
	}
	if ((v = realloc(set->v, (set->n + 1) * sizeof(*v))) == NULL) {
		sel_clear(&s);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	set->v = v;
	set->v[set->n++] = s;
	return 0;
}

int
sel_set_copy(struct sel_set *dst, const struct sel_set *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src->n == 0)
		return 0;
	if ((dst->v = calloc(src->n, sizeof(*dst->v))) == NULL)
		return HSM_ENOMEM;
	for (size_t i = 0; i < src->n; i++) {
		dst->v[i] = src->v[i];
		dst->v[i].str = NULL;
		if (src->v[i].str != NULL && (dst->v[i].str = strdup(src->v[i].str)) == NULL) {
			dst->n = i;
			sel_set_clear(dst);
			return HSM_ENOMEM;
		}
	}
	dst->n = src->n;
	return 0;
}

int
sel_set_equal(const struct sel_set *a, const struct sel_set *b)
{
	size_t i, j;

	if (a->n != b->n)
		return 0;
	/* Sets hold no duplicates: each of a in b is enough. */
	for (i = 0; i < a->n; i++) {
		for (j = 0; j < b->n && !sel_equal(&a->v[i], &b->v[j]); j++)
			;
		if (j == b->n)
			return 0;
	}
	return 1;
}

void
sel_set_text(const struct sel_set *set, const char *sep, char *buf, size_t cap)
{
	char one[SEL_TEXT_MAX + 1];
	size_t o = 0;

	if (cap == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < set->n && o < cap; i++) {
		if (sel_text(&set->v[i], one, sizeof(one)) != 0)
			continue;
		o += (size_t)snprintf(buf + o, cap - o, "%s%s", i > 0 ? sep : "", one);
	}
}

/* ---- inspecting a process ---- */

void
sel_proc_clear(struct sel_proc *p)
{
	if (p == NULL)
		return;
	if (p->exe_fd >= 0)
		close(p->exe_fd);
	memset(p, 0, sizeof(*p));
	p->exe_fd = -1;
}

/*
 * The process pidfd refers to: its PID as this process sees it (the
 * "Pid:" line of /proc/self/fdinfo/<pidfd>; -1 once it has exited), or
 * 0 when that cannot be read.
 */
static pid_t
pidfd_pid(int pidfd)
{
	char path[64], buf[512];
	ssize_t n;
	long v;
	char *l;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (l = buf; l != NULL; l = strchr(l, '\n')) {
		if (*l == '\n')
			l++;
		if (strncmp(l, "Pid:", 4) == 0 && sscanf(l + 4, "%ld", &v) == 1)
			return v < 0 ? -1 : (pid_t)v;
	}
	return 0;
}

/*
 * The process of pidfd (PID pid) has not exited (it may be a zombie: its
 * PID is still taken).
 */
static int
pidfd_alive(int pidfd, pid_t pid)
{
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0)
		return 1;
	/* EPERM: alive, we may just not signal it. */
	if (errno == EPERM)
		return 1;
	/*
	 * ENOSYS: no pidfd_send_signal (a seccomp filter or valgrind, which
	 * does not emulate it): the pidfd's "Pid:" line turns -1 once its
	 * process has exited, so asking again answers the same question.
	 */
	return errno == ENOSYS && pidfd_pid(pidfd) == pid;
}

/* Read at most cap-1 bytes of the file name in directory dfd into buf (NUL-terminated). */
static ssize_t
read_at(int dfd, const char *name, char *buf, size_t cap)
{
	ssize_t n, got = 0;
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)got + 1 < cap && (n = read(fd, buf + got, cap - 1 - (size_t)got)) > 0)
		got += n;
	close(fd);
	buf[got] = '\0';
	return got;
}

/* The executable: its path, the file itself (an open descriptor), whether deleted. */
static void
inspect_exe(int dfd, struct sel_proc *p)
{
	struct stat sb;
	ssize_t n;
	int fd;

	if ((n = readlinkat(dfd, "exe", p->exe, sizeof(p->exe) - 1)) < 0) {
		snprintf(p->why_exe, sizeof(p->why_exe), "executable unreadable: %s",
		    strerror(errno));
		return;
	}
	p->exe[n] = '\0';
	/* The file the process runs, whatever its path: what path and sha256 compare. */
	if ((fd = openat(dfd, "exe", O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(p->why_exe, sizeof(p->why_exe), "executable unreadable: %s",
		    strerror(errno));
		return;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		snprintf(p->why_exe, sizeof(p->why_exe), "executable is not a regular file");
		close(fd);
		return;
	}
	p->exe_fd = fd;
	p->exe_dev = sb.st_dev;
	p->exe_ino = sb.st_ino;
	p->exe_deleted = sb.st_nlink == 0;
	p->have_exe = 1;
}

/* The cgroup v2 path: the "0::" line of /proc/PID/cgroup. */
static void
inspect_cgroup(int dfd, struct sel_proc *p)
{
	char buf[8192], *l, *e;

	if (read_at(dfd, "cgroup", buf, sizeof(buf)) < 0) {
		snprintf(p->why_cgroup, sizeof(p->why_cgroup), "cgroup unreadable: %s",
		    strerror(errno));
		return;
	}
	for (l = buf; *l != '\0'; l = e + (*e != '\0')) {
		e = l + strcspn(l, "\n");
		if (strncmp(l, "0::", 3) == 0 && (size_t)(e - l - 3) < sizeof(p->cgroup)) {
			memcpy(p->cgroup, l + 3, (size_t)(e - l - 3));
			p->cgroup[e - l - 3] = '\0';
			if (p->cgroup[0] == '/') {
				p->have_cgroup = 1;
				return;
			}
		}
	}
	snprintf(p->why_cgroup, sizeof(p->why_cgroup), "no cgroup v2 path");
}

int
sel_proc_inspect(pid_t pid, int pidfd, uid_t uid, gid_t gid, struct sel_proc *p)
{
	char path[64];
	pid_t seen;
	int dfd;

	memset(p, 0, sizeof(*p));
	p->exe_fd = -1;
	p->pid = pid;
	p->uid = uid;
	p->gid = gid;
	if (pid <= 0 || pidfd < 0)
		return hsm_err(HSM_EPERM, "no process to inspect");
	/* The pidfd names the process that connected: it must be this PID, still running. */
	if ((seen = pidfd_pid(pidfd)) == -1)
		return hsm_err(HSM_EPERM, "process %ld exited", (long)pid);
	if (seen == 0)
		return hsm_err(HSM_EPERM, "process %ld: cannot read its pidfd", (long)pid);
	if (seen != pid)
		return hsm_err(HSM_EPERM, "process %ld: its pidfd names process %ld", (long)pid,
		    (long)seen);
	snprintf(path, sizeof(path), "/proc/%ld", (long)pid);
	if ((dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return hsm_err(HSM_EPERM, "process %ld: %s: %s", (long)pid, path, strerror(errno));
	/*
	 * Alive now, so the directory opened above was its own: a PID is
	 * reused only after its process died. The directory keeps referring
	 * to that process, whatever the number means later.
	 */
	if (!pidfd_alive(pidfd, pid)) {
		close(dfd);
		return hsm_err(HSM_EPERM, "process %ld exited", (long)pid);
	}
	inspect_exe(dfd, p);
	inspect_cgroup(dfd, p);
	close(dfd);
	return 0;
}

int
sel_proc_from_socket(int fd, struct sel_proc *p, int *weak)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int pidfd = -1, r;

	if (weak != NULL)
		*weak = 0;
	memset(p, 0, sizeof(*p));
	p->exe_fd = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
		return hsm_err(HSM_EIO, "SO_PEERCRED: %s", strerror(errno));
	len = sizeof(pidfd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
		if (errno != ENOPROTOOPT)
			return hsm_err(HSM_EPERM, "process %ld: SO_PEERPIDFD: %s", (long)cred.pid,
			    strerror(errno));
		/* Before Linux 6.5: a pidfd for the PID as it is now (see selector.h). */
		if ((pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0)) < 0)
			return hsm_err(HSM_EPERM, "process %ld: pidfd_open: %s", (long)cred.pid,
			    strerror(errno));
		if (weak != NULL)
			*weak = 1;
	}
	r = sel_proc_inspect(cred.pid, pidfd, cred.uid, cred.gid, p);
	close(pidfd);
	return r;
}

/* ---- matching ---- */

/* Executables hashed so far, by file identity: hashing one is a read of it. */
static struct {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	uint8_t hash[32];
	int used;
} cache[HASH_CACHE];
static unsigned cache_next;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static int
same_file(const struct stat *sb, size_t i)
{
	return cache[i].used && cache[i].dev == sb->st_dev && cache[i].ino == sb->st_ino &&
	    cache[i].size == sb->st_size && cache[i].mtime.tv_sec == sb->st_mtim.tv_sec &&
	    cache[i].mtime.tv_nsec == sb->st_mtim.tv_nsec &&
	    cache[i].ctime.tv_sec == sb->st_ctim.tv_sec &&
	    cache[i].ctime.tv_nsec == sb->st_ctim.tv_nsec;
}

/* SHA-256 of the file open on fd (from its start, pread: the offset is untouched). */
static int
hash_fd(int fd, off_t size, uint8_t out[32], char *why, size_t whylen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t buf[65536];
	off_t off = 0;
	ssize_t n;
	int ok;

	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	while (ok && (n = pread(fd, buf, sizeof(buf), off)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(why, whylen, "executable unreadable: %s", strerror(errno));
			ok = 0;
			break;
		}
		off += n;
		ok = off <= size && EVP_DigestUpdate(md, buf, (size_t)n) == 1;
	}
	if (ok && off != size) {
		snprintf(why, whylen, "executable changed while it was hashed");
		ok = 0;
	}
	ok = ok && EVP_DigestFinal_ex(md, out, NULL) == 1;
	EVP_MD_CTX_free(md);
	if (!ok && why[0] == '\0')
		snprintf(why, whylen, "cannot hash the executable");
	return ok ? 0 : -1;
}

/* p->hash from the executable p runs (once per process; once per file with the cache). */
static int
proc_hash(struct sel_proc *p)
{
	struct stat sb;
	size_t i;

	if (p->hash_state != 0)
		return p->hash_state > 0 ? 0 : -1;
	p->hash_state = -1;
	if (!p->have_exe)
		return -1;
	if (fstat(p->exe_fd, &sb) != 0) {
		snprintf(p->why_exe, sizeof(p->why_exe), "executable unreadable: %s",
		    strerror(errno));
		return -1;
	}
	if (sb.st_size > SEL_HASH_MAX) {
		snprintf(p->why_exe, sizeof(p->why_exe), "executable larger than %lld MiB: not hashed",
		    (long long)(SEL_HASH_MAX >> 20));
		return -1;
	}
	pthread_mutex_lock(&cache_mu);
	for (i = 0; i < HASH_CACHE && !same_file(&sb, i); i++)
		;
	if (i < HASH_CACHE)
		memcpy(p->hash, cache[i].hash, 32);
	pthread_mutex_unlock(&cache_mu);
	if (i == HASH_CACHE) {
		if (hash_fd(p->exe_fd, sb.st_size, p->hash, p->why_exe, sizeof(p->why_exe)) != 0)
			return -1;
		pthread_mutex_lock(&cache_mu);
		i = cache_next++ % HASH_CACHE;
		cache[i].dev = sb.st_dev;
		cache[i].ino = sb.st_ino;
		cache[i].size = sb.st_size;
		cache[i].mtime = sb.st_mtim;
		cache[i].ctime = sb.st_ctim;
		memcpy(cache[i].hash, p->hash, 32);
		cache[i].used = 1;
		pthread_mutex_unlock(&cache_mu);
	}
	p->hash_state = 1;
	return 0;
}

/* path:P matches: the process runs exactly the file that P names, not deleted. */
static const char *
match_path(const struct selector *s, struct sel_proc *p)
{
	struct stat sb;

	if (!p->have_exe)
		return p->why_exe;
	if (p->exe_deleted)
		return "path: the process's executable was deleted or replaced";
	if (strcmp(p->exe, s->str) != 0)
		return "path: the process runs another executable";
	/* The name could now be another file (a rename over it): compare the files. */
	if (stat(s->str, &sb) != 0 || sb.st_dev != p->exe_dev || sb.st_ino != p->exe_ino)
		return "path: that path names another file than the one the process runs";
	return NULL;
}

/* cgroup:/prefix matches the prefix itself and everything below it. */
static const char *
match_cgroup(const struct selector *s, const struct sel_proc *p)
{
	size_t n = strlen(s->str);

	if (!p->have_cgroup)
		return p->why_cgroup;
	if (n == 1 || (strncmp(p->cgroup, s->str, n) == 0 &&
	    (p->cgroup[n] == '\0' || p->cgroup[n] == '/')))
		return NULL;
	return "cgroup: the process is in another cgroup";
}

/* Why s does not match p, or NULL when it does. */
static const char *
match_one(const struct selector *s, struct sel_proc *p)
{
	switch (s->kind) {
	case SEL_UID:
		return p->uid == s->num ? NULL : "uid: another uid";
	case SEL_GID:
		return p->gid == s->num ? NULL : "gid: another gid";
	case SEL_CGROUP:
		return match_cgroup(s, p);
	case SEL_PATH:
		return match_path(s, p);
	case SEL_SHA256:
		if (proc_hash(p) != 0)
			return p->why_exe[0] != '\0' ? p->why_exe : "sha256: executable not hashed";
		return memcmp(p->hash, s->hash, 32) == 0 ? NULL :
		    "sha256: the executable has another hash";
	}
	return "unknown selector";
}

int
sel_match(const struct sel_set *set, struct sel_proc *p, const char **why)
{
	/* Cheapest first: the hash of the executable only when the rest matched. */
	static const enum sel_kind order[] = { SEL_UID, SEL_GID, SEL_CGROUP, SEL_PATH, SEL_SHA256 };
	const char *w;

	if (why != NULL)
		*why = NULL;
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		for (size_t i = 0; i < set->n; i++) {
			if (set->v[i].kind != order[k] || (w = match_one(&set->v[i], p)) == NULL)
				continue;
			if (why != NULL)
				*why = w;
			return 0;
		}
	}
	return 1;
}
