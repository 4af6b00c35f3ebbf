/*
 * frameserver.c - the server side of the framed Unix-socket protocols
 * (see frameserver.h).
 *
 * Locks: s->mu guards the list of live connections (s->conns: every one
 * not yet freed, open or not), c->closed, s->nopen, the statistics and the
 * refusal log; c->rmu the read side (its owner's: one thread at a time by
 * EPOLLONESHOT, the lock makes that visible to the memory model); c->wmu
 * the write side (out, watching, in_oep, dead's writers). Order: s->mu,
 * c->rmu, c->wmu. The last reference of a connection takes s->mu to unlink
 * it: never dropped with a lock held. A connection's times are atomics:
 * the timer reads them from another thread than the read side's owner.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "frameserver.h"
#include "log.h"
#include "ratelog.h"
#include "util.h"

#define ACCEPT_BATCH 64		/* peers accepted per call: others get their turn */
#define FLUSH_BATCH 64
#define LISTEN_BACKLOG 256	/* a flood of connects from one uid leaves room for others */
#define IN_MIN 4096		/* a peer's input buffer to start with; grows to 2 x max_frame */
#define SWEEP_BATCH 64		/* peers closed per timer tick (the rest: next tick) */
#define LOG_SUMMARY_MS 10000	/* refusals not logged: one summary per uid this often */
#define LOG_PER_SEC 5

struct fsrv_conn {
	struct fsrv *s;
	struct fsrv_conn *next, *prev;	/* s->conns, under s->mu */
	int fd;
	struct fsrv_peer peer;
	atomic_int refs;
	atomic_int inflight;
	atomic_int dead;		/* no more output; set under wmu */
	atomic_int keep;		/* fsrv_keep: no idle timeout */
	atomic_int timed_out;		/* 0, FSRV_STALLED or FSRV_IDLE: why the timer shut it */
	int closed;			/* the read side ended; under s->mu */
	void *udata;
	/* read side */
	pthread_mutex_t rmu;
	uint8_t *in;
	size_t inlen, incap;
	uint64_t t_accepted;
	_Atomic uint64_t t_frame, t_partial, t_active;
	/* write side */
	pthread_mutex_t wmu;
	uint8_t *out;
	size_t outlen, outcap;
	int watching;			/* armed in s->oep, holding a reference */
	int in_oep;			/* fd registered with s->oep */
};

struct fsrv {
	struct fsrv_ops ops;
	void *ctx;
	int read_ep, oep, lfd;
	int tfd;			/* the timer (in oep, tag &tfd), or -1 */
	char *path;			/* the listener's, removed by fsrv_free */
	atomic_int refs;		/* the owner's and one per live connection */
	pthread_mutex_t mu;
	struct fsrv_conn *conns;
	int nopen;
	struct fsrv_stats stats;
	struct ratelog rlog;
};

static void
srv_unref(struct fsrv *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	if (s->oep >= 0)
		close(s->oep);
	if (s->tfd >= 0)
		close(s->tfd);
	pthread_mutex_destroy(&s->mu);
	free(s->path);
	free(s);
}

/* The timer's period: a quarter of the shortest timeout, at most a second, at least 50 ms. */
static unsigned
tick_ms(const struct fsrv_ops *o)
{
	unsigned t = 1000;

	if (o->frame_ms > 0 && o->frame_ms / 4 < t)
		t = o->frame_ms / 4;
	if (o->idle_ms > 0 && o->idle_ms / 4 < t)
		t = o->idle_ms / 4;
	return t < 50 ? 50 : t;
}

/* A periodic timer in s->oep when the server has limits or a tick. 0 or HSM_EIO. */
static int
timer_start(struct fsrv *s)
{
	const struct fsrv_ops *o = &s->ops;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->tfd };
	struct itimerspec its;
	unsigned t = tick_ms(o);

	if (o->max_conns == 0 && o->max_conns_uid == 0 && o->frame_ms == 0 && o->idle_ms == 0 &&
	    o->tick == NULL)
		return 0;
	its.it_value.tv_sec = its.it_interval.tv_sec = t / 1000;
	its.it_value.tv_nsec = its.it_interval.tv_nsec = (long)(t % 1000) * 1000000L;
	if ((s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0 ||
	    timerfd_settime(s->tfd, 0, &its, NULL) != 0 ||
	    epoll_ctl(s->oep, EPOLL_CTL_ADD, s->tfd, &ev) != 0)
		return hsm_err(HSM_EIO, "frame server timer: %s", strerror(errno));
	return 0;
}

int
fsrv_new(const struct fsrv_ops *ops, void *ctx, int read_ep, struct fsrv **out)
{
	struct fsrv *s;
	int r;

	*out = NULL;
	if (ops->min_frame < 4 || ops->max_frame < ops->min_frame ||
	    ops->max_frame > (size_t)1 << 30 || ops->read_batch == 0 || ops->frame == NULL ||
	    ops->accept == NULL || ops->max_conns < 0 || ops->max_conns_uid < 0)
		return hsm_err(HSM_EINVAL, "frame server: bad limits or callbacks");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return HSM_ENOMEM;
	s->ops = *ops;
	if (s->ops.what == NULL)
		s->ops.what = "peer";
	s->ctx = ctx;
	s->read_ep = read_ep;
	s->lfd = -1;
	s->tfd = -1;
	ratelog_init(&s->rlog, ops->log_per_sec > 0 ? ops->log_per_sec : LOG_PER_SEC,
	    LOG_SUMMARY_MS);
	atomic_init(&s->refs, 1);
	pthread_mutex_init(&s->mu, NULL);
	if ((s->oep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		r = hsm_err(HSM_EIO, "epoll_create1: %s", strerror(errno));
		srv_unref(s);
		return r;
	}
	if ((r = timer_start(s)) != 0) {
		srv_unref(s);
		return r;
	}
	*out = s;
	return 0;
}

/* Kinds of lines in the refusal log (its key: uid << 1 | kind). */
enum { LOG_REFUSED = 0, LOG_CLOSED = 1 };

/*
 * A refusal or a timeout close of peer p (NULL: no credentials), with its
 * reason: counted, and logged unless throttled. s->mu held.
 */
static void
note_locked(struct fsrv *s, const struct fsrv_peer *p, int kind, const char *why)
{
	uint64_t key = p != NULL ? (uint64_t)p->uid << 1 | (unsigned)kind : RATELOG_OTHER - 1;

	if (!ratelog_hit(&s->rlog, key, hsm_now_ms())) {
		s->stats.log_suppressed++;
		return;
	}
	if (p == NULL)
		log_warn("refused a %s without credentials", s->ops.what);
	else
		log_warn("%s %s uid %lu pid %ld: %s", kind == LOG_REFUSED ? "refused" : "closed",
		    s->ops.what, (unsigned long)p->uid, (long)p->pid, why);
}

/* ratelog_flush's: one summary line for a uid's (or the others') lines not logged. */
static void
summary(void *arg, uint64_t key, unsigned long n, uint64_t since)
{
	struct fsrv *s = arg;
	unsigned long secs = (unsigned long)((hsm_now_ms() - since + 999) / 1000);

	if (key >= RATELOG_OTHER - 1)
		log_warn("%lu more refused or timed-out %s connections of other uids not logged "
		    "in the last %lu s", n, s->ops.what, secs);
	else
		log_warn("%lu more %s %s connections of uid %lu not logged in the last %lu s", n,
		    (key & 1) == LOG_REFUSED ? "refused" : "timed-out", s->ops.what,
		    (unsigned long)(key >> 1), secs);
}

void
fsrv_ref(struct fsrv_conn *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void
fsrv_unref(struct fsrv_conn *c)
{
	struct fsrv *s = c->s;

	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_mutex_lock(&s->mu);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&s->mu);
	/* The last descriptor of the socket: this also takes it out of both epolls. */
	close(c->fd);
	pthread_mutex_destroy(&c->rmu);
	pthread_mutex_destroy(&c->wmu);
	free(c->in);
	free(c->out);
	free(c);
	srv_unref(s);
}

/* wmu held. */
static void
kill_locked(struct fsrv_conn *c)
{
	if (atomic_load(&c->dead))
		return;
	atomic_store(&c->dead, 1);
	c->outlen = 0;
	shutdown(c->fd, SHUT_RDWR);
}

void
fsrv_kill(struct fsrv_conn *c)
{
	pthread_mutex_lock(&c->wmu);
	kill_locked(c);
	pthread_mutex_unlock(&c->wmu);
}

/* The read side ends; its owner only. */
static void
conn_close(struct fsrv_conn *c, enum fsrv_why why)
{
	struct fsrv *s = c->s;
	int t = atomic_load(&c->timed_out);

	/* The end the timer caused reads as its timeout. */
	if (why == FSRV_EOF && t != 0)
		why = (enum fsrv_why)t;

	epoll_ctl(s->read_ep, EPOLL_CTL_DEL, c->fd, NULL);
	fsrv_kill(c);
	pthread_mutex_lock(&s->mu);
	c->closed = 1;
	s->nopen--;
	pthread_mutex_unlock(&s->mu);
	if (s->ops.closed != NULL)
		s->ops.closed(s->ctx, c, why);
	fsrv_unref(c);
}

/* Open peers of uid; s->mu held. */
static int
count_uid_locked(struct fsrv *s, uid_t uid)
{
	int n = 0;

	for (struct fsrv_conn *c = s->conns; c != NULL; c = c->next)
		if (!c->closed && c->peer.uid == uid)
			n++;
	return n;
}

/*
 * Whether a peer of uid is within the limits; else the reason, in buf.
 * s->mu held.
 */
static int
within_limits_locked(struct fsrv *s, uid_t uid, char *buf, size_t cap)
{
	int n;

	if (s->ops.max_conns > 0 && s->nopen >= s->ops.max_conns) {
		snprintf(buf, cap, "%d connections open, the most allowed", s->nopen);
		return 0;
	}
	if (s->ops.max_conns_uid > 0 && uid != 0 &&
	    (n = count_uid_locked(s, uid)) >= s->ops.max_conns_uid) {
		snprintf(buf, cap, "uid %lu has %d connections open, the most one uid may have",
		    (unsigned long)uid, n);
		return 0;
	}
	return 1;
}

static void
conn_free_raw(struct fsrv_conn *c)
{
	pthread_mutex_destroy(&c->rmu);
	pthread_mutex_destroy(&c->wmu);
	free(c->in);
	free(c);
}

/* A new peer on fd: accepted and armed (0), or refused and fd closed. */
static int
conn_new(struct fsrv *s, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT };
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct fsrv_conn *c;
	char why[160];
	int r;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cl != sizeof(cred)) {
		pthread_mutex_lock(&s->mu);
		s->stats.refused_owner++;
		note_locked(s, NULL, LOG_REFUSED, "");
		pthread_mutex_unlock(&s->mu);
		close(fd);
		return HSM_EPERM;
	}
	/* The limits first: a flood of connects beyond them costs no allocation. */
	pthread_mutex_lock(&s->mu);
	if (!(r = within_limits_locked(s, cred.uid, why, sizeof(why)))) {
		struct fsrv_peer p = { cred.uid, cred.gid, cred.pid };

		s->stats.refused_limit++;
		note_locked(s, &p, LOG_REFUSED, why);
	}
	pthread_mutex_unlock(&s->mu);
	if (!r) {
		close(fd);
		return HSM_EBUSY;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->in = malloc(c->incap = IN_MIN < 2 * s->ops.max_frame ? IN_MIN :
	    2 * s->ops.max_frame)) == NULL) {
		free(c);
		close(fd);
		return HSM_ENOMEM;
	}
	c->s = s;
	c->fd = fd;
	c->peer.uid = cred.uid;
	c->peer.gid = cred.gid;
	c->peer.pid = cred.pid;
	atomic_init(&c->refs, 1);	/* the read side's */
	atomic_init(&c->inflight, 0);
	atomic_init(&c->dead, 0);
	atomic_init(&c->keep, 0);
	atomic_init(&c->timed_out, 0);
	pthread_mutex_init(&c->rmu, NULL);
	pthread_mutex_init(&c->wmu, NULL);
	c->t_accepted = hsm_now_ms();
	atomic_init(&c->t_frame, 0);
	atomic_init(&c->t_partial, 0);
	atomic_init(&c->t_active, c->t_accepted);

	hsm_err_clear();
	if ((r = s->ops.accept(s->ctx, c, &c->peer)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		pthread_mutex_lock(&s->mu);
		s->stats.refused_owner++;
		note_locked(s, &c->peer, LOG_REFUSED, why);
		pthread_mutex_unlock(&s->mu);
		conn_free_raw(c);
		close(fd);
		return HSM_EPERM;
	}
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_lock(&s->mu);
	s->nopen++;
	if ((c->next = s->conns) != NULL)
		s->conns->prev = c;
	s->conns = c;
	pthread_mutex_unlock(&s->mu);
	/* From here on the read side belongs to whoever takes its event. */
	ev.data.ptr = c;
	if (epoll_ctl(s->read_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		conn_close(c, FSRV_SYSTEM);
		return hsm_err(HSM_EIO, "epoll_ctl: %s", strerror(errno));
	}
	return 0;
}

int
fsrv_adopt(struct fsrv *s, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		int e = errno;

		close(fd);
		return hsm_err(HSM_EIO, "socket %d: %s", fd, strerror(e));
	}
	return conn_new(s, fd);
}

int
fsrv_listen(struct fsrv *s, const char *path, unsigned mode)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat sb;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return hsm_err(HSM_EINVAL, "socket path too long: %s", path);
	if (s->lfd >= 0)
		return hsm_err(HSM_EINVAL, "frame server: already listening");
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode))
			return hsm_err(HSM_EEXIST, "%s exists and is not a socket", path);
		(void)unlink(path);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return hsm_err(HSM_EIO, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || chmod(path, mode) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0) {
		int e = errno;

		close(fd);
		return hsm_err(HSM_EIO, "cannot listen on %s: %s", path, strerror(e));
	}
	if ((s->path = strdup(path)) == NULL) {
		close(fd);
		(void)unlink(path);
		return HSM_ENOMEM;
	}
	s->lfd = fd;
	return 0;
}

int
fsrv_listen_fd(const struct fsrv *s)
{
	return s->lfd;
}

void
fsrv_accept(struct fsrv *s)
{
	for (int i = 0; i < ACCEPT_BATCH && s->lfd >= 0; i++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0)
			return;
		(void)conn_new(s, fd);
	}
}

/*
 * Split whole frames off c's input and hand them on. Returns 0, or why the
 * read side must end. rmu held.
 */
static enum fsrv_why
frames(struct fsrv_conn *c, void *turn, uint64_t now)
{
	struct fsrv *s = c->s;
	size_t off = 0;
	enum fsrv_why why = 0;

	while (c->inlen - off >= 4) {
		size_t flen = (size_t)hsm_get32(c->in + off) + 4, have = c->inlen - off;

		if (flen < s->ops.min_frame || flen > s->ops.max_frame) {
			why = FSRV_MALFORMED;
			break;
		}
		if (have < flen) {
			if (s->ops.check != NULL && s->ops.check(c->in + off, have) < 0)
				why = FSRV_MALFORMED;
			break;
		}
		atomic_store(&c->t_frame, now);
		atomic_store(&c->t_active, now);
		if (s->ops.frame(s->ctx, c, turn, c->in + off, flen) < 0) {
			why = FSRV_REFUSED;
			break;
		}
		off += flen;
		/* Killed meanwhile (by the callback or another thread): read no further. */
		if (atomic_load(&c->dead)) {
			why = FSRV_EOF;
			break;
		}
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	if (c->inlen == 0)
		atomic_store(&c->t_partial, 0);
	else if (off > 0 || atomic_load(&c->t_partial) == 0)
		atomic_store(&c->t_partial, now);
	return why;
}

/*
 * Room to read into: the buffer grows (doubling, up to 2 x max_frame) when
 * nearly full, and shrinks back when a big frame has gone. rmu held.
 * 0 or HSM_ENOMEM.
 */
static int
in_room(struct fsrv_conn *c)
{
	size_t cap = 2 * c->s->ops.max_frame, want;
	uint8_t *n;

	if (c->inlen == 0 && c->incap > 4 * IN_MIN) {
		if ((n = malloc(IN_MIN)) == NULL)
			return HSM_ENOMEM;
		free(c->in);
		c->in = n;
		c->incap = IN_MIN;
		return 0;
	}
	if (c->incap - c->inlen >= IN_MIN / 4 || c->incap >= cap)
		return 0;
	want = c->incap * 2 < cap ? c->incap * 2 : cap;
	if ((n = realloc(c->in, want)) == NULL)
		return HSM_ENOMEM;
	c->in = n;
	c->incap = want;
	return 0;
}

void
fsrv_readable(struct fsrv_conn *c, void *turn)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = c };
	struct fsrv *s = c->s;
	enum fsrv_why why = 0;

	fsrv_ref(c);
	pthread_mutex_lock(&c->rmu);
	for (unsigned turn_no = 0; turn_no < s->ops.read_batch && why == 0; turn_no++) {
		ssize_t got;

		if (atomic_load(&c->dead)) {
			why = FSRV_EOF;
			break;
		}
		if (in_room(c) != 0) {
			why = FSRV_SYSTEM;
			break;
		}
		got = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (got <= 0) {
			why = FSRV_EOF;
			break;
		}
		c->inlen += (size_t)got;
		why = frames(c, turn, hsm_now_ms());
	}
	pthread_mutex_unlock(&c->rmu);
	if (why != 0)
		conn_close(c, why);
	else if (epoll_ctl(s->read_ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
		conn_close(c, FSRV_SYSTEM);
	fsrv_unref(c);
}

/* Write what the socket takes of c's pending output; wmu held. */
static void
flush_locked(struct fsrv_conn *c)
{
	size_t off = 0;

	while (off < c->outlen && !atomic_load(&c->dead)) {
		ssize_t w = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0)
			kill_locked(c);
		else
			off += (size_t)w;
	}
	if (atomic_load(&c->dead))
		return;
	memmove(c->out, c->out + off, c->outlen - off);
	c->outlen -= off;
}

/* Watch for EPOLLOUT while output is pending (one reference while armed); wmu held. */
static int
watch_locked(struct fsrv_conn *c)
{
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT, .data.ptr = c };

	if (c->watching || atomic_load(&c->dead))
		return 0;
	fsrv_ref(c);
	if (epoll_ctl(c->s->oep, c->in_oep ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		kill_locked(c);
		atomic_fetch_sub(&c->refs, 1);	/* never the last: the caller holds one */
		return hsm_err(HSM_EIO, "cannot watch the socket");
	}
	c->in_oep = 1;
	c->watching = 1;
	return 0;
}

int
fsrv_send(struct fsrv_conn *c, const uint8_t *buf, size_t len)
{
	size_t off = 0, rest, cap;
	int r = 0;

	pthread_mutex_lock(&c->wmu);
	if (atomic_load(&c->dead)) {
		r = HSM_ECLOSED;
		goto out;
	}
	while (c->outlen == 0 && off < len) {
		ssize_t w = send(c->fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			kill_locked(c);
			r = HSM_ECLOSED;
			goto out;
		}
		off += (size_t)w;
	}
	if (off == len)
		goto out;
	rest = len - off;
	if (c->outlen + rest > c->s->ops.max_out) {
		kill_locked(c);
		r = hsm_err(HSM_EBUSY, "peer does not read its replies");
		goto out;
	}
	if (c->outlen + rest > c->outcap) {
		uint8_t *n;

		for (cap = c->outcap != 0 ? c->outcap : 8192; cap < c->outlen + rest; cap *= 2)
			;
		if ((n = realloc(c->out, cap)) == NULL) {
			kill_locked(c);
			r = hsm_err(HSM_ENOMEM, "out of memory");
			goto out;
		}
		c->out = n;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, buf + off, rest);
	c->outlen += rest;
	r = watch_locked(c);
 out:
	pthread_mutex_unlock(&c->wmu);
	return r;
}

int
fsrv_watch_fd(const struct fsrv *s)
{
	return s->oep;
}

/* "5 s" or "250 ms" into buf (32 bytes). */
static const char *
ms_text(unsigned ms, char *buf)
{
	if (ms % 1000 == 0)
		snprintf(buf, 32, "%u s", ms / 1000);
	else
		snprintf(buf, 32, "%u ms", ms);
	return buf;
}

/* Which timeout c is past at now, or 0. s->mu held. */
static int
timed_out_locked(const struct fsrv *s, struct fsrv_conn *c, uint64_t now)
{
	uint64_t partial = atomic_load(&c->t_partial), active = atomic_load(&c->t_active);

	if (c->closed || atomic_load(&c->dead) || atomic_load(&c->timed_out) != 0)
		return 0;
	if (partial != 0)
		return s->ops.frame_ms > 0 && now - partial >= s->ops.frame_ms ? FSRV_STALLED : 0;
	if (s->ops.idle_ms > 0 && atomic_load(&c->inflight) == 0 && !atomic_load(&c->keep) &&
	    now - active >= s->ops.idle_ms)
		return FSRV_IDLE;
	return 0;
}

/*
 * The timer: close the peers past a timeout (the timer shuts their
 * sockets; their read side's owner then closes them and the closed
 * callback reads the timeout), log the summaries due, run the owner's tick.
 */
static void
timer_due(struct fsrv *s)
{
	struct fsrv_conn *late[SWEEP_BATCH];
	int n = 0;
	uint64_t v, now = hsm_now_ms();
	char text[96], buf[32];

	if (read(s->tfd, &v, sizeof(v)) < 0) {
		/* EAGAIN: another thread took it */
	}
	pthread_mutex_lock(&s->mu);
	for (struct fsrv_conn *c = s->conns; c != NULL && n < SWEEP_BATCH; c = c->next) {
		int t = timed_out_locked(s, c, now);

		if (t == 0)
			continue;
		atomic_store(&c->timed_out, t);
		fsrv_ref(c);
		late[n++] = c;
		if (t == FSRV_STALLED) {
			s->stats.closed_stalled++;
			snprintf(text, sizeof(text), "an incomplete frame for %s",
			    ms_text(s->ops.frame_ms, buf));
		} else {
			s->stats.closed_idle++;
			snprintf(text, sizeof(text), "idle for %s", ms_text(s->ops.idle_ms, buf));
		}
		note_locked(s, &c->peer, LOG_CLOSED, text);
	}
	ratelog_flush(&s->rlog, now, summary, s);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < n; i++) {
		fsrv_kill(late[i]);
		fsrv_unref(late[i]);
	}
	if (s->ops.tick != NULL)
		s->ops.tick(s->ctx, now);
}

int
fsrv_flush_ready(struct fsrv *s)
{
	struct epoll_event evs[FLUSH_BATCH];
	int n = epoll_wait(s->oep, evs, FLUSH_BATCH, 0), served = 0;

	for (int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT };
		struct fsrv_conn *c = evs[i].data.ptr;
		int keep = 0;

		if (evs[i].data.ptr == &s->tfd) {
			timer_due(s);
			continue;
		}
		served++;
		pthread_mutex_lock(&c->wmu);
		c->watching = 0;
		flush_locked(c);
		if (c->outlen > 0 && !atomic_load(&c->dead)) {
			ev.data.ptr = c;
			if (epoll_ctl(s->oep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
				keep = c->watching = 1;	/* the watch keeps its reference */
			else
				kill_locked(c);
		}
		pthread_mutex_unlock(&c->wmu);
		if (!keep)
			fsrv_unref(c);
	}
	return served;
}

int
fsrv_begin(struct fsrv_conn *c, int max)
{
	if (atomic_fetch_add(&c->inflight, 1) >= max) {
		atomic_fetch_sub(&c->inflight, 1);
		return HSM_EBUSY;
	}
	fsrv_ref(c);
	return 0;
}

void
fsrv_end(struct fsrv_conn *c)
{
	atomic_store(&c->t_active, hsm_now_ms());
	atomic_fetch_sub(&c->inflight, 1);
	fsrv_unref(c);
}

void
fsrv_keep(struct fsrv_conn *c, int on)
{
	atomic_store(&c->keep, on != 0);
}

int
fsrv_inflight(const struct fsrv_conn *c)
{
	return atomic_load(&c->inflight);
}

const struct fsrv_peer *
fsrv_peer(const struct fsrv_conn *c)
{
	return &c->peer;
}

int
fsrv_conn_fd(const struct fsrv_conn *c)
{
	return c->fd;
}

void
fsrv_set_udata(struct fsrv_conn *c, void *udata)
{
	c->udata = udata;
}

void *
fsrv_udata(const struct fsrv_conn *c)
{
	return c->udata;
}

void
fsrv_conn_times(const struct fsrv_conn *c, struct fsrv_times *t)
{
	t->accepted = c->t_accepted;
	t->last_frame = atomic_load(&c->t_frame);
	t->partial_since = atomic_load(&c->t_partial);
	t->active = atomic_load(&c->t_active);
}

void
fsrv_stats(struct fsrv *s, struct fsrv_stats *st)
{
	pthread_mutex_lock(&s->mu);
	*st = s->stats;
	pthread_mutex_unlock(&s->mu);
}

int
fsrv_count(struct fsrv *s)
{
	int n;

	pthread_mutex_lock(&s->mu);
	n = s->nopen;
	pthread_mutex_unlock(&s->mu);
	return n;
}

int
fsrv_count_uid(struct fsrv *s, uid_t uid)
{
	int n;

	pthread_mutex_lock(&s->mu);
	n = count_uid_locked(s, uid);
	pthread_mutex_unlock(&s->mu);
	return n;
}

int
fsrv_inflight_total(struct fsrv *s)
{
	int n = 0;

	pthread_mutex_lock(&s->mu);
	for (struct fsrv_conn *c = s->conns; c != NULL; c = c->next)
		if (!c->closed)
			n += atomic_load(&c->inflight);
	pthread_mutex_unlock(&s->mu);
	return n;
}

void
fsrv_foreach(struct fsrv *s, void (*fn)(void *arg, struct fsrv_conn *c), void *arg)
{
	pthread_mutex_lock(&s->mu);
	for (struct fsrv_conn *c = s->conns; c != NULL; c = c->next)
		if (!c->closed)
			fn(arg, c);
	pthread_mutex_unlock(&s->mu);
}

/* A connection matching want (open, or watched), with a reference, or NULL. */
static struct fsrv_conn *
find_ref(struct fsrv *s, int open)
{
	struct fsrv_conn *c;

	pthread_mutex_lock(&s->mu);
	for (c = s->conns; c != NULL; c = c->next) {
		int hit;

		if (open) {
			hit = !c->closed;
		} else {
			pthread_mutex_lock(&c->wmu);
			hit = c->watching;
			c->watching = 0;	/* its reference is handed to the caller */
			pthread_mutex_unlock(&c->wmu);
		}
		if (hit)
			break;
	}
	if (c != NULL && open)
		fsrv_ref(c);
	pthread_mutex_unlock(&s->mu);
	return c;
}

void
fsrv_free(struct fsrv *s)
{
	struct fsrv_conn *c;

	if (s == NULL)
		return;
	if (s->lfd >= 0) {
		close(s->lfd);
		s->lfd = -1;
		if (s->path != NULL)
			(void)unlink(s->path);
	}
	while ((c = find_ref(s, 1)) != NULL) {
		conn_close(c, FSRV_SHUTDOWN);
		fsrv_unref(c);
	}
	/* Every peer is dead now: its watch never fires usefully; drop the references. */
	while ((c = find_ref(s, 0)) != NULL)
		fsrv_unref(c);
	srv_unref(s);
}
