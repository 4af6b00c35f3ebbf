/*
 * frameserver.c - the server side of the framed Unix-socket protocols
 * (see frameserver.h).
 *
 * Locks: s->mu guards the list of live connections (s->conns: every one
 * not yet freed, open or not), c->closed and s->nopen; c->rmu the read
 * side (its owner's: one thread at a time by EPOLLONESHOT, the lock makes
 * that visible to the memory model); c->wmu the write side (out, watching,
 * in_oep, dead's writers). Order: s->mu, c->rmu, c->wmu. The last
 * reference of a connection takes s->mu to unlink it: never dropped with a
 * lock held.
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
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "frameserver.h"
#include "util.h"

#define ACCEPT_BATCH 64		/* peers accepted per call: others get their turn */
#define FLUSH_BATCH 64

struct fsrv_conn {
	struct fsrv *s;
	struct fsrv_conn *next, *prev;	/* s->conns, under s->mu */
	int fd;
	struct fsrv_peer peer;
	atomic_int refs;
	atomic_int inflight;
	atomic_int dead;		/* no more output; set under wmu */
	int closed;			/* the read side ended; under s->mu */
	void *udata;
	/* read side */
	pthread_mutex_t rmu;
	uint8_t *in;
	size_t inlen, incap;
	uint64_t t_accepted, t_frame, t_partial;
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
	char *path;			/* the listener's, removed by fsrv_free */
	atomic_int refs;		/* the owner's and one per live connection */
	pthread_mutex_t mu;
	struct fsrv_conn *conns;
	int nopen;
};

static void
srv_unref(struct fsrv *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	if (s->oep >= 0)
		close(s->oep);
	pthread_mutex_destroy(&s->mu);
	free(s->path);
	free(s);
}

int
fsrv_new(const struct fsrv_ops *ops, void *ctx, int read_ep, struct fsrv **out)
{
	struct fsrv *s;

	*out = NULL;
	if (ops->min_frame < 4 || ops->max_frame < ops->min_frame ||
	    ops->max_frame > (size_t)1 << 30 || ops->read_batch == 0 || ops->frame == NULL ||
	    ops->accept == NULL)
		return hsm_err(HSM_EINVAL, "frame server: bad limits or callbacks");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return HSM_ENOMEM;
	s->ops = *ops;
	s->ctx = ctx;
	s->read_ep = read_ep;
	s->lfd = -1;
	if ((s->oep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		free(s);
		return hsm_err(HSM_EIO, "epoll_create1: %s", strerror(errno));
	}
	atomic_init(&s->refs, 1);
	pthread_mutex_init(&s->mu, NULL);
	*out = s;
	return 0;
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

/* A new peer on fd: accepted and armed (0), or refused and fd closed. */
static int
conn_new(struct fsrv *s, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT };
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct fsrv_conn *c;
	int have_cred, r;

	have_cred = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cl == sizeof(cred);
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->in = malloc(2 * s->ops.max_frame)) == NULL) {
		if (c != NULL)
			free(c);
		close(fd);
		return HSM_ENOMEM;
	}
	c->s = s;
	c->fd = fd;
	c->incap = 2 * s->ops.max_frame;
	if (have_cred) {
		c->peer.uid = cred.uid;
		c->peer.gid = cred.gid;
		c->peer.pid = cred.pid;
	}
	atomic_init(&c->refs, 1);	/* the read side's */
	atomic_init(&c->inflight, 0);
	atomic_init(&c->dead, 0);
	pthread_mutex_init(&c->rmu, NULL);
	pthread_mutex_init(&c->wmu, NULL);
	c->t_accepted = hsm_now_ms();
	r = s->ops.accept(s->ctx, c, have_cred ? &c->peer : NULL);
	if (r != 0 || !have_cred) {
		pthread_mutex_destroy(&c->rmu);
		pthread_mutex_destroy(&c->wmu);
		free(c->in);
		free(c);
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
	    listen(fd, 64) != 0) {
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
		c->t_frame = now;
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
		c->t_partial = 0;
	else if (off > 0 || c->t_partial == 0)
		c->t_partial = now;
	return why;
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

int
fsrv_flush_ready(struct fsrv *s)
{
	struct epoll_event evs[FLUSH_BATCH];
	int n = epoll_wait(s->oep, evs, FLUSH_BATCH, 0);

	for (int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT };
		struct fsrv_conn *c = evs[i].data.ptr;
		int keep = 0;

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
	return n < 0 ? 0 : n;
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
	atomic_fetch_sub(&c->inflight, 1);
	fsrv_unref(c);
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
	t->last_frame = c->t_frame;
	t->partial_since = c->t_partial;
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
	int n = 0;

	pthread_mutex_lock(&s->mu);
	for (struct fsrv_conn *c = s->conns; c != NULL; c = c->next)
		if (!c->closed && c->peer.uid == uid)
			n++;
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
