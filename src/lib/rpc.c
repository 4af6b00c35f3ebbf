/*
 * rpc.c - the request/reply core of the keyholder and agent clients
 * (see rpc.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "rpc.h"
#include "util.h"

static void
conn_destroy(struct rpc_conn *c)
{
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->wmu);
	c->ops->conn_free(c);
}

/* Drop one reference of r; lock held. Returns 1 if c must be destroyed. */
static int
req_unref_locked(struct rpc_req *r)
{
	struct rpc_conn *c = r->c;

	if (--r->refs > 0)
		return 0;
	pthread_cond_destroy(&r->cv);
	c->ops->req_free(r);
	return --c->refs == 0;
}

static void
unlink_locked(struct rpc_conn *c, struct rpc_req *r)
{
	struct rpc_req **pp;

	for (pp = &c->pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			r->next = NULL;
			return;
		}
	}
}

/* End r; notify: also wake its notify_fd. Lock held. */
static void
end_locked(struct rpc_req *r, int status, const char *text, size_t textlen, int notify)
{
	uint64_t one = 1;
	ssize_t w;

	unlink_locked(r->c, r);
	r->status = status;
	if (status != 0 && text != NULL && textlen > 0) {
		size_t n = textlen > RPC_MAX_ERRTEXT ? RPC_MAX_ERRTEXT : textlen;

		/* Error texts come from the peer: keep printable bytes only. */
		for (size_t i = 0; i < n; i++)
			r->errtext[i] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
		r->errtext[n] = '\0';
	}
	atomic_store(&r->done, 1);
	if (r->done_cb != NULL) {
		/* The reader calls it after dropping the lock; the list's reference goes then. */
		if (notify) {
			r->cnext = r->c->completed;
			r->c->completed = r;
			return;
		}
		(void)req_unref_locked(r);
		return;
	}
	pthread_cond_broadcast(&r->cv);
	if (notify && r->notify_fd >= 0) {
		do
			w = write(r->notify_fd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
	}
	/* The list's reference: never the last while the reader runs (the creator holds c). */
	(void)req_unref_locked(r);
}

void
rpc_req_end_locked(struct rpc_req *r, int status, const char *text, size_t textlen)
{
	end_locked(r, status, text, textlen, 1);
}

struct rpc_req *
rpc_req_find_locked(struct rpc_conn *c, uint32_t id)
{
	struct rpc_req *r;

	for (r = c->pending; r != NULL; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

static void
fail_all_locked(struct rpc_conn *c, int status, const char *why)
{
	while (c->pending != NULL)
		rpc_req_end_locked(c->pending, status, why, strlen(why));
}

/* Fail requests past their deadline; ms to the next deadline, or -1. */
static int
expire_locked(struct rpc_conn *c, uint64_t now)
{
	struct rpc_req *r, *next;
	uint64_t soonest = 0;
	char why[96];

	for (r = c->pending; r != NULL; r = next) {
		next = r->next;
		if (r->deadline <= now) {
			snprintf(why, sizeof(why), "%s did not answer before the deadline", c->ops->peer);
			rpc_req_end_locked(r, HSM_ETIMEDOUT, why, strlen(why));
		} else if (soonest == 0 || r->deadline < soonest) {
			soonest = r->deadline;
		}
	}
	return soonest == 0 ? -1 : (int)(soonest - now);
}

/* Reader thread, lock not held: call the done_cb of requests that ended, oldest first. */
static void
run_completed(struct rpc_conn *c)
{
	struct rpc_req *list = NULL, *r;

	pthread_mutex_lock(&c->mu);
	while ((r = c->completed) != NULL) {
		c->completed = r->cnext;
		r->cnext = list;
		list = r;
	}
	pthread_mutex_unlock(&c->mu);
	while ((r = list) != NULL) {
		list = r->cnext;
		r->cnext = NULL;
		r->done_cb(r);
		pthread_mutex_lock(&c->mu);
		/* Never the last of c: the creator's reference lasts until the reader is joined. */
		(void)req_unref_locked(r);
		pthread_mutex_unlock(&c->mu);
	}
}

static void *
reader_main(void *arg)
{
	struct rpc_conn *c = arg;
	const struct rpc_ops *ops = c->ops;
	uint8_t *buf;
	size_t have = 0;
	char why[128];
	sigset_t all;

	/* Signals belong to the application's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	snprintf(why, sizeof(why), "%s closed the connection", ops->peer);
	if ((buf = malloc(ops->bufsize)) == NULL) {
		snprintf(why, sizeof(why), "out of memory for the %s reader", ops->peer);
		goto out;
	}
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = c->wake[0], .events = POLLIN },
		};
		int timeout, own = -1, n;
		ssize_t got;
		uint64_t now;

		if (ops->tick != NULL)
			own = ops->tick(c, hsm_now_ms());
		pthread_mutex_lock(&c->mu);
		now = hsm_now_ms();
		timeout = expire_locked(c, now);
		if (own >= 0 && (timeout < 0 || own < timeout))
			timeout = own;
		c->wait_until = timeout < 0 ? UINT64_MAX : now + (uint64_t)timeout;
		pthread_mutex_unlock(&c->mu);
		run_completed(c);
		n = poll(pfd, 2, timeout);
		if (n < 0 && errno != EINTR) {
			snprintf(why, sizeof(why), "poll on the socket to %s failed", ops->peer);
			break;
		}
		if (pfd[1].revents != 0) {
			char drain[64];

			if (read(c->wake[0], drain, sizeof(drain)) == 0) {
				snprintf(why, sizeof(why), "the %s client was closed", ops->peer);
				break;		/* write end closed: rpc_conn_close */
			}
		}
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
			continue;
		got = read(c->fd, buf + have, ops->bufsize - have);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			break;
		have += (size_t)got;
		for (;;) {
			int flen = ops->frame(c, buf, have);

			if (flen == 0)
				break;
			if (flen < 0) {
				snprintf(why, sizeof(why), "%s sent a malformed frame", ops->peer);
				goto out;
			}
			memmove(buf, buf + flen, have - (size_t)flen);
			have -= (size_t)flen;
		}
	}
out:
	free(buf);
	/* Make the peer see the close at once, whatever made us stop. */
	shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_lock(&c->mu);
	c->closed = 1;
	fail_all_locked(c, HSM_ECLOSED, why);
	pthread_mutex_unlock(&c->mu);
	run_completed(c);
	if (ops->closed != NULL)
		ops->closed(c, why);
	return NULL;
}

static int
unix_connect(const char *path, const char *peer, int *fd)
{
	struct sockaddr_un sun;
	int r;

	*fd = -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return hsm_err(HSM_EINVAL, "socket path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return hsm_err(HSM_EIO, "socket: %s", strerror(errno));
	if (connect(*fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		r = hsm_err(errno == ENOENT || errno == ECONNREFUSED ? HSM_ECLOSED : HSM_EIO,
		    "cannot connect to %s at %s: %s", peer, path, strerror(errno));
		close(*fd);
		*fd = -1;
		return r;
	}
	return 0;
}

int
rpc_conn_new(size_t size, int fd, const struct rpc_ops *ops, struct rpc_conn **out)
{
	struct rpc_conn *c;

	*out = NULL;
	if (size < sizeof(*c) || (c = calloc(1, size)) == NULL)
		return HSM_ENOMEM;
	c->ops = ops;
	c->fd = fd;
	c->refs = 1;
	c->next_id = 1;
	c->wait_until = UINT64_MAX;
	if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(c);
		return hsm_err(HSM_EIO, "pipe: %s", strerror(errno));
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->wmu, NULL);
	if (pthread_create(&c->reader, NULL, reader_main, c) != 0) {
		close(c->wake[0]);
		close(c->wake[1]);
		pthread_mutex_destroy(&c->mu);
		pthread_mutex_destroy(&c->wmu);
		free(c);
		return hsm_err(HSM_EIO, "cannot start the %s reader thread", ops->peer);
	}
	c->has_reader = 1;
	*out = c;
	return 0;
}

int
rpc_conn_reset(struct rpc_conn *c, int fd)
{
	char drain[64];
	int st = 0;

	/*
	 * End the old reader first, without the write lock: the completion
	 * callbacks it runs on its way out may write to the connection (and
	 * fail fast on the shut-down socket).
	 */
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	if (c->has_reader)
		pthread_join(c->reader, NULL);
	c->has_reader = 0;
	/* Then no writer may use the old fd while it is swapped. */
	pthread_mutex_lock(&c->wmu);
	if (c->fd >= 0)
		close(c->fd);
	while (read(c->wake[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&c->mu);
	c->fd = fd;
	c->closed = 0;
	c->gone[0] = '\0';
	c->wait_until = UINT64_MAX;
	pthread_mutex_unlock(&c->mu);
	if (pthread_create(&c->reader, NULL, reader_main, c) != 0) {
		pthread_mutex_lock(&c->mu);
		c->closed = 1;
		c->fd = -1;
		pthread_mutex_unlock(&c->mu);
		close(fd);
		st = hsm_err(HSM_EIO, "cannot start the %s reader thread", c->ops->peer);
	} else {
		c->has_reader = 1;
	}
	pthread_mutex_unlock(&c->wmu);
	return st;
}

void
rpc_conn_set_gone(struct rpc_conn *c, const char *why)
{
	pthread_mutex_lock(&c->mu);
	snprintf(c->gone, sizeof(c->gone), "%s", why != NULL ? why : "");
	pthread_mutex_unlock(&c->mu);
}

int
rpc_conn_connect(const char *path, size_t size, const struct rpc_ops *ops,
    struct rpc_conn **out)
{
	int fd, r;

	*out = NULL;
	if ((r = unix_connect(path, ops->peer, &fd)) != 0)
		return r;
	if ((r = rpc_conn_new(size, fd, ops, out)) != 0)
		close(fd);
	return r;
}

void
rpc_conn_close(struct rpc_conn *c)
{
	int free_c;

	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	close(c->wake[1]);
	if (c->has_reader)
		pthread_join(c->reader, NULL);
	c->has_reader = 0;
	close(c->wake[0]);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_lock(&c->mu);
	free_c = --c->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		conn_destroy(c);
}

void
rpc_lock(struct rpc_conn *c)
{
	pthread_mutex_lock(&c->mu);
}

void
rpc_unlock(struct rpc_conn *c)
{
	pthread_mutex_unlock(&c->mu);
}

uint32_t
rpc_next_id_locked(struct rpc_conn *c)
{
	uint32_t id = c->next_id++;

	if (c->next_id == 0)
		c->next_id = 1;
	return id;
}

int
rpc_req_queue(struct rpc_conn *c, struct rpc_req *r, uint8_t type, unsigned timeout_ms,
    int notify_fd)
{
	pthread_cond_init(&r->cv, NULL);
	r->c = c;
	r->type = type;
	r->notify_fd = notify_fd;
	r->refs = 2;			/* owner + pending list */
	r->deadline = hsm_now_ms() + timeout_ms;
	pthread_mutex_lock(&c->mu);
	if (c->closed) {
		int st = hsm_err(HSM_ECLOSED, "%s is gone%s%s%s", c->ops->peer,
		    c->gone[0] != '\0' ? " (" : "", c->gone, c->gone[0] != '\0' ? ")" : "");

		pthread_mutex_unlock(&c->mu);
		pthread_cond_destroy(&r->cv);
		return st;
	}
	r->id = rpc_next_id_locked(c);
	/* Only a request due before the reader's wait ends needs to wake it. */
	r->wake = r->deadline < c->wait_until;
	if (r->wake)
		c->wait_until = r->deadline;
	c->refs++;
	r->next = c->pending;
	c->pending = r;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* Write a frame; wake: make the reader look at its deadlines again. */
static int
send_frame(struct rpc_conn *c, const uint8_t *frame, size_t len, int wake)
{
	uint8_t one = 1;
	int st, e;

	pthread_mutex_lock(&c->wmu);
	st = hsm_send_all(c->fd, frame, len);
	e = errno;
	pthread_mutex_unlock(&c->wmu);
	if (st != 0)
		return hsm_err(HSM_ECLOSED, "cannot write to %s: %s", c->ops->peer, strerror(e));
	if (wake && write(c->wake[1], &one, 1) < 0) {
		/* A full pipe already guarantees a wake-up. */
	}
	return 0;
}

int
rpc_send(struct rpc_conn *c, const uint8_t *frame, size_t len)
{
	/* Not a request: the client's own deadline (tick) may have changed. */
	return send_frame(c, frame, len, 1);
}

void
rpc_req_cancel(struct rpc_req *r)
{
	struct rpc_conn *c = r->c;
	int free_c;

	pthread_mutex_lock(&c->mu);
	/* Never sent: nobody waits on it, so nothing is woken. */
	if (!atomic_load(&r->done))
		end_locked(r, HSM_ECLOSED, NULL, 0, 0);
	free_c = req_unref_locked(r);	/* the owner's */
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		conn_destroy(c);
}

int
rpc_req_send(struct rpc_req *r, const uint8_t *frame, size_t len)
{
	int st;

	/*
	 * The wake-up was decided when r was queued: a request due after the
	 * reader's current wait (the usual case, equal timeouts) costs the
	 * reader no context switch.
	 */
	if ((st = send_frame(r->c, frame, len, r->wake)) != 0)
		rpc_req_cancel(r);
	return st;
}

int
rpc_req_send_cb(struct rpc_req *r, const uint8_t *frame, size_t len)
{
	struct rpc_conn *c = r->c;
	int st, free_c;

	st = send_frame(c, frame, len, r->wake);
	pthread_mutex_lock(&c->mu);
	if (st != 0) {
		/* Ended meanwhile (the reader saw the close): its callback tells. */
		if (atomic_load(&r->done))
			st = 0;
		else
			end_locked(r, HSM_ECLOSED, NULL, 0, 0);
	}
	free_c = req_unref_locked(r);	/* the owner's */
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		conn_destroy(c);
	return st;
}

int
rpc_req_done(struct rpc_req *r)
{
	return atomic_load(&r->done);
}

int
rpc_req_status(const struct rpc_req *r)
{
	if (r->status == 0)
		return 0;
	return hsm_err(r->status, "%s", r->errtext[0] != '\0' ? r->errtext : hsm_strerror(r->status));
}

int
rpc_req_wait(struct rpc_req *r)
{
	struct rpc_conn *c = r->c;
	int st;

	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&r->done))
		pthread_cond_wait(&r->cv, &c->mu);
	st = rpc_req_status(r);
	pthread_mutex_unlock(&c->mu);
	return st;
}

void
rpc_req_free(struct rpc_req *r)
{
	struct rpc_conn *c;
	int free_c;

	if (r == NULL)
		return;
	c = r->c;
	pthread_mutex_lock(&c->mu);
	free_c = req_unref_locked(r);
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		conn_destroy(c);
}
