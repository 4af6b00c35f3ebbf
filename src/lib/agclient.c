/*
 * agclient.c - client side of the agent's local API (see agclient.h).
 *
 * Built like khclient.c: one reader thread per client reads replies and
 * enforces deadlines, so a request always ends even when the agent hangs
 * or dies. Requests and the client are reference counted: a request may
 * outlive the client (an OpenSSL async job still holding it). The one
 * subscription a client may have lives in the client itself and ends at
 * the latest when the reader does. Frames are made and checked by
 * agentproto.c only.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agclient.h"
#include "agentproto.h"
#include "err.h"
#include "keytypes.h"
#include "util.h"

struct agc_req {
	struct agc_client *c;
	struct agc_req *next;		/* pending list, under c->mu */
	uint32_t id;
	uint8_t type;			/* AG_T_GET_SVID or AG_T_SIGN */
	uint64_t deadline;		/* monotonic ms */
	int refs;			/* owner + pending list, under c->mu */
	atomic_int done;
	int status;
	char errtext[AG_MAX_ERRTEXT + 1];
	uint8_t sig[HSM_MAX_SIG];	/* SIGN */
	size_t siglen;
	char *chain, *bundle;		/* GET_SVID, NUL-terminated */
	uint64_t not_after;
	int notify_fd;
	pthread_cond_t cv;
};

/* The client's subscription; cb == NULL when there is none. */
struct agc_sub {
	agc_update_fn cb;
	void *arg;
	uint32_t id;			/* the SUBSCRIBE's; its UPDATEs carry it too */
	uint64_t deadline;		/* monotonic ms for the reply; 0 once answered */
};

/* A callback decided under c->mu, made by the reader after dropping it. */
struct sub_call {
	agc_update_fn cb;		/* NULL: nothing to call */
	void *arg;
	int status;			/* 0: svid below; else the final status */
	const char *why;		/* its detail */
	struct agc_svid svid;
	char *pem;			/* svid's chain and bundle, NUL-terminated */
};

struct agc_client {
	int fd;
	int wake[2];			/* wakes the reader: new deadline or shutdown */
	pthread_t reader;
	pthread_mutex_t mu;		/* everything below and every agc_req field */
	pthread_mutex_t wmu;		/* serialises writes to fd */
	int refs;			/* creator + one per live request */
	int closed;
	uint32_t next_id;
	struct agc_req *pending;
	struct agc_sub sub;
};

static void
client_destroy(struct agc_client *c)
{
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->wmu);
	free(c);
}

/* Drop one reference of r; c->mu held. Returns 1 if c must be destroyed. */
static int
req_unref_locked(struct agc_req *r)
{
	struct agc_client *c = r->c;

	if (--r->refs > 0)
		return 0;
	free(r->chain);
	free(r->bundle);
	pthread_cond_destroy(&r->cv);
	free(r);
	return --c->refs == 0;
}

/* Wake whoever waits for r; c->mu held. */
static void
req_wake_locked(struct agc_req *r)
{
	uint64_t one = 1;
	ssize_t w;

	atomic_store(&r->done, 1);
	pthread_cond_broadcast(&r->cv);
	if (r->notify_fd >= 0) {
		do
			w = write(r->notify_fd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
	}
}

/* End r with a local status and text; c->mu held. */
static void
req_fail_locked(struct agc_req *r, int status, const char *why)
{
	r->status = status;
	snprintf(r->errtext, sizeof(r->errtext), "%s", why);
	req_wake_locked(r);
}

/* End r with the agent's reply; c->mu held. The reply was validated by ag_reply_decode. */
static void
req_finish_locked(struct agc_req *r, const struct ag_reply *rep)
{
	r->status = rep->status;
	if (rep->status != 0) {
		memcpy(r->errtext, rep->errtext, sizeof(r->errtext));
	} else if (r->type == AG_T_SIGN) {
		memcpy(r->sig, rep->sig, rep->siglen);
		r->siglen = rep->siglen;
	} else {
		r->not_after = rep->svid.not_after;
		if ((r->chain = malloc(rep->svid.chainlen + 1)) == NULL ||
		    (r->bundle = malloc(rep->svid.bundlelen + 1)) == NULL) {
			free(r->chain);
			r->chain = NULL;
			r->status = HSM_ENOMEM;
		} else {
			memcpy(r->chain, rep->svid.chain, rep->svid.chainlen);
			r->chain[rep->svid.chainlen] = '\0';
			if (rep->svid.bundlelen > 0)
				memcpy(r->bundle, rep->svid.bundle, rep->svid.bundlelen);
			r->bundle[rep->svid.bundlelen] = '\0';
		}
	}
	req_wake_locked(r);
}

/* Unlink r from the pending list; c->mu held. */
static void
unlink_locked(struct agc_client *c, struct agc_req *r)
{
	struct agc_req **pp;

	for (pp = &c->pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			r->next = NULL;
			return;
		}
	}
}

static void
fail_all_locked(struct agc_client *c, int status, const char *why)
{
	struct agc_req *r;

	while ((r = c->pending) != NULL) {
		c->pending = r->next;
		r->next = NULL;
		req_fail_locked(r, status, why);
		(void)req_unref_locked(r);	/* the owner still holds one */
	}
}

/* A request id, never 0; c->mu held. */
static uint32_t
next_id_locked(struct agc_client *c)
{
	uint32_t id = c->next_id++;

	if (c->next_id == 0)
		c->next_id = 1;
	return id;
}

/* End the subscription, if any, with status: its final call goes to *call. c->mu held. */
static void
sub_end_locked(struct agc_client *c, int status, const char *why, struct sub_call *call)
{
	if (c->sub.cb == NULL)
		return;
	call->cb = c->sub.cb;
	call->arg = c->sub.arg;
	call->status = status;
	call->why = why;
	memset(&c->sub, 0, sizeof(c->sub));
}

/*
 * A frame for the subscription (its reply or an UPDATE); c->mu held. A
 * "not enrolled yet" (HSM_EAGAIN) reply ends nothing: the agent keeps the
 * subscription and its first UPDATE follows the enrollment.
 */
static void
sub_frame_locked(struct agc_client *c, const struct ag_reply *rep, struct sub_call *call)
{
	const struct ag_svid *s = &rep->svid;

	if (rep->type != AG_T_UPDATE && rep->type != (AG_T_SUBSCRIBE | AG_T_REPLY)) {
		sub_end_locked(c, HSM_EPROTO, "agent answered with another reply type", call);
		return;
	}
	if (rep->status == HSM_EAGAIN && rep->type != AG_T_UPDATE) {
		c->sub.deadline = 0;
		return;
	}
	if (rep->status != 0) {
		sub_end_locked(c, rep->status, rep->errtext, call);
		return;
	}
	c->sub.deadline = 0;
	if ((call->pem = malloc(s->chainlen + 1 + s->bundlelen + 1)) == NULL) {
		sub_end_locked(c, HSM_ENOMEM, "out of memory for an SVID from the agent", call);
		return;
	}
	memcpy(call->pem, s->chain, s->chainlen);
	call->pem[s->chainlen] = '\0';
	if (s->bundlelen > 0)
		memcpy(call->pem + s->chainlen + 1, s->bundle, s->bundlelen);
	call->pem[s->chainlen + 1 + s->bundlelen] = '\0';
	call->svid.spiffe_id = s->spiffe_id;
	call->svid.chain_pem = call->pem;
	call->svid.bundle_pem = call->pem + s->chainlen + 1;
	call->svid.not_after = s->not_after;
	call->cb = c->sub.cb;
	call->arg = c->sub.arg;
}

/* Make a decided callback; reader thread, c->mu not held. */
static void
sub_call_run(struct sub_call *call)
{
	if (call->cb != NULL) {
		if (call->status == 0) {
			call->cb(call->arg, 0, &call->svid);
		} else {
			/* The callback may read the detail with hsm_err_msg(status). */
			(void)hsm_err(call->status, "%s", call->why[0] != '\0' ? call->why :
			    hsm_strerror(call->status));
			call->cb(call->arg, call->status, NULL);
		}
	}
	free(call->pem);
	memset(call, 0, sizeof(*call));
}

/* One validated frame from the agent. UPDATEs for no subscription are dropped. */
static void
handle_reply(struct agc_client *c, const struct ag_reply *rep)
{
	struct sub_call call = { 0 };
	struct agc_req *r;

	pthread_mutex_lock(&c->mu);
	if (c->sub.cb != NULL && rep->id == c->sub.id) {
		sub_frame_locked(c, rep, &call);
		pthread_mutex_unlock(&c->mu);
		sub_call_run(&call);
		return;
	}
	if (rep->type == AG_T_UPDATE) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	for (r = c->pending; r != NULL; r = r->next)
		if (r->id == rep->id)
			break;
	/* A reply for a request that already timed out is dropped. */
	if (r != NULL) {
		unlink_locked(c, r);
		if (rep->type == (r->type | AG_T_REPLY))
			req_finish_locked(r, rep);
		else
			req_fail_locked(r, HSM_EPROTO, "agent answered with another reply type");
		(void)req_unref_locked(r);
	}
	pthread_mutex_unlock(&c->mu);
}

/*
 * Fail requests past their deadline, and end a subscription whose reply is
 * late (its final call goes to *call); returns ms to the next deadline or -1.
 */
static int
expire_locked(struct agc_client *c, uint64_t now, struct sub_call *call)
{
	struct agc_req *r, *next;
	uint64_t soonest = 0;

	if (c->sub.cb != NULL && c->sub.deadline != 0) {
		if (c->sub.deadline <= now)
			sub_end_locked(c, HSM_ETIMEDOUT,
			    "agent did not answer the subscription before the deadline", call);
		else
			soonest = c->sub.deadline;
	}
	for (r = c->pending; r != NULL; r = next) {
		next = r->next;
		if (r->deadline <= now) {
			unlink_locked(c, r);
			req_fail_locked(r, HSM_ETIMEDOUT, "agent did not answer before the deadline");
			(void)req_unref_locked(r);
		} else if (soonest == 0 || r->deadline < soonest) {
			soonest = r->deadline;
		}
	}
	if (soonest == 0)
		return -1;
	return (int)(soonest - now);
}

static void *
reader_main(void *arg)
{
	struct agc_client *c = arg;
	struct sub_call call = { 0 };
	uint8_t *buf;
	size_t have = 0;
	const char *why = "the agent closed the connection";
	sigset_t all;

	/* Signals belong to the application's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	/* A whole frame always fits: ag_frame_parse refuses longer ones. */
	if ((buf = malloc(AG_MAX_FRAME)) == NULL) {
		why = "out of memory for the agent reader";
		goto out;
	}
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = c->wake[0], .events = POLLIN },
		};
		int timeout, n;
		ssize_t got;

		pthread_mutex_lock(&c->mu);
		timeout = expire_locked(c, hsm_now_ms(), &call);
		pthread_mutex_unlock(&c->mu);
		if (call.cb != NULL) {
			sub_call_run(&call);
			continue;	/* time passed in the callback: look again */
		}
		n = poll(pfd, 2, timeout);
		if (n < 0 && errno != EINTR) {
			why = "poll on the agent socket failed";
			break;
		}
		if (pfd[1].revents != 0) {
			char drain[64];

			if (read(c->wake[0], drain, sizeof(drain)) == 0) {
				why = "the agent client was closed";
				break;		/* write end closed: agc_free */
			}
		}
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
			continue;
		got = read(c->fd, buf + have, AG_MAX_FRAME - have);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			break;
		have += (size_t)got;
		for (;;) {
			struct ag_frame f;
			struct ag_reply rep;
			int flen = ag_frame_parse(buf, have, &f);

			if (flen == 0)
				break;
			if (flen < 0 || ag_reply_decode(&f, &rep) != 0) {
				why = "the agent sent a malformed frame";
				goto out;
			}
			handle_reply(c, &rep);
			memmove(buf, buf + flen, have - (size_t)flen);
			have -= (size_t)flen;
		}
	}
out:
	free(buf);
	/* Make the agent see the close at once, whatever made us stop. */
	shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_lock(&c->mu);
	c->closed = 1;
	fail_all_locked(c, HSM_ECLOSED, why);
	sub_end_locked(c, HSM_ECLOSED, why, &call);
	pthread_mutex_unlock(&c->mu);
	sub_call_run(&call);
	return NULL;
}

int
agc_client_new(int fd, struct agc_client **out)
{
	struct agc_client *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return HSM_ENOMEM;
	c->fd = fd;
	c->refs = 1;
	c->next_id = 1;
	if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(c);
		return hsm_err(HSM_EIO, "pipe: %s", strerror(errno));
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->wmu, NULL);
	if (pthread_create(&c->reader, NULL, reader_main, c) != 0) {
		close(c->wake[0]);
		close(c->wake[1]);
		client_destroy(c);
		return hsm_err(HSM_EIO, "cannot start the agent reader thread");
	}
	*out = c;
	return 0;
}

void
agc_free(struct agc_client *c)
{
	int free_c;

	if (c == NULL)
		return;
	shutdown(c->fd, SHUT_RDWR);
	close(c->wake[1]);
	pthread_join(c->reader, NULL);
	close(c->wake[0]);
	close(c->fd);
	pthread_mutex_lock(&c->mu);
	free_c = --c->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		client_destroy(c);
}

int
agc_connect(const char *path, struct agc_client **out)
{
	struct sockaddr_un sun;
	int fd, r;

	*out = NULL;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return hsm_err(HSM_EINVAL, "socket path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return hsm_err(HSM_EIO, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		r = hsm_err(errno == ENOENT || errno == ECONNREFUSED ? HSM_ECLOSED : HSM_EIO,
		    "cannot connect to the agent at %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if ((r = agc_client_new(fd, out)) != 0)
		close(fd);
	return r;
}

/*
 * Write a whole frame (the caller's) and make the reader look at the
 * deadlines again. 0 or HSM_ECLOSED.
 */
static int
send_frame(struct agc_client *c, const uint8_t *frame, size_t len)
{
	uint64_t one = 1;
	int st;

	pthread_mutex_lock(&c->wmu);
	st = hsm_send_all(c->fd, frame, len);
	pthread_mutex_unlock(&c->wmu);
	if (st != 0)
		return hsm_err(HSM_ECLOSED, "cannot write to the agent: %s", strerror(errno));
	/* The reader may be sleeping on a later deadline. */
	if (write(c->wake[1], &one, 1) < 0) {
		/* A full pipe already guarantees a wake-up. */
	}
	return 0;
}

/*
 * Queue a request, encode its frame with the id it was given and send it:
 * SIGN (keyid, alg, dgst, dlen) or GET_SVID. On success *out holds the
 * owner's reference. Runs inside OpenSSL async jobs: keep the stack small.
 */
static int
req_send(struct agc_client *c, uint8_t type, const char *spiffe_id, const uint8_t *keyid,
    int alg, const uint8_t *dgst, size_t dlen, unsigned timeout_ms, int notify_fd,
    struct agc_req **out)
{
	struct agc_req *r;
	uint8_t *frame = NULL;
	size_t len = 0;
	int st, free_c;

	*out = NULL;
	if (type == AG_T_SIGN && (alg < 1 || alg > 255))
		return hsm_err(HSM_EINVAL, "bad signature algorithm %d", alg);
	if (timeout_ms == 0)
		timeout_ms = AGC_DEFAULT_TIMEOUT_MS;
	if (timeout_ms > AGC_MAX_TIMEOUT_MS)
		timeout_ms = AGC_MAX_TIMEOUT_MS;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return HSM_ENOMEM;
	pthread_cond_init(&r->cv, NULL);
	r->c = c;
	r->type = type;
	r->notify_fd = notify_fd;
	r->refs = 2;			/* owner + pending list */
	r->deadline = hsm_now_ms() + timeout_ms;

	pthread_mutex_lock(&c->mu);
	if (c->closed) {
		pthread_mutex_unlock(&c->mu);
		pthread_cond_destroy(&r->cv);
		free(r);
		return hsm_err(HSM_ECLOSED, "the agent is gone");
	}
	r->id = next_id_locked(c);
	c->refs++;
	r->next = c->pending;
	c->pending = r;
	pthread_mutex_unlock(&c->mu);

	if (type == AG_T_SIGN)
		st = ag_encode_sign(r->id, spiffe_id, keyid, (uint8_t)alg, dgst, dlen, &frame, &len);
	else
		st = ag_encode_get(type, r->id, spiffe_id, &frame, &len);
	if (st != 0) {
		st = hsm_err(st, "cannot encode the request (SPIFFE ID, algorithm or digest length)");
		goto fail;
	}
	if ((st = send_frame(c, frame, len)) != 0)
		goto fail;
	free(frame);
	*out = r;
	return 0;
fail:
	free(frame);
	pthread_mutex_lock(&c->mu);
	if (!atomic_load(&r->done)) {
		unlink_locked(c, r);
		atomic_store(&r->done, 1);
		r->refs--;	/* the list's reference; the owner's is dropped below */
	}
	free_c = req_unref_locked(r);
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		client_destroy(c);
	return st;
}

int
agc_req_done(struct agc_req *r)
{
	return atomic_load(&r->done);
}

void
agc_req_free(struct agc_req *r)
{
	struct agc_client *c;
	int free_c;

	if (r == NULL)
		return;
	c = r->c;
	pthread_mutex_lock(&c->mu);
	free_c = req_unref_locked(r);
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		client_destroy(c);
}

/* The status of an ended request, with its detail recorded for this thread. */
static int
req_status(const struct agc_req *r)
{
	if (r->status == 0)
		return 0;
	return hsm_err(r->status, "%s", r->errtext[0] != '\0' ? r->errtext : hsm_strerror(r->status));
}

/* Wait for r to end; returns its status with the detail set. */
static int
req_wait(struct agc_req *r)
{
	struct agc_client *c = r->c;
	int st;

	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&r->done))
		pthread_cond_wait(&r->cv, &c->mu);
	st = req_status(r);
	pthread_mutex_unlock(&c->mu);
	return st;
}

int
agc_get_svid(struct agc_client *c, const char *spiffe_id, unsigned timeout_ms,
    char **chain_pem, char **bundle_pem, uint64_t *not_after)
{
	struct agc_req *r;
	int st;

	*chain_pem = NULL;
	*bundle_pem = NULL;
	*not_after = 0;
	if ((st = req_send(c, AG_T_GET_SVID, spiffe_id, NULL, 0, NULL, 0, timeout_ms, -1, &r)) != 0)
		return st;
	if ((st = req_wait(r)) == 0) {
		/* The reader is done with r: its fields are ours to take. */
		*chain_pem = r->chain;
		*bundle_pem = r->bundle;
		*not_after = r->not_after;
		r->chain = r->bundle = NULL;
	}
	agc_req_free(r);
	return st;
}

int
agc_sign_start(struct agc_client *c, const char *spiffe_id, const uint8_t *keyid, int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, int notify_fd, struct agc_req **out)
{
	return req_send(c, AG_T_SIGN, spiffe_id, keyid, alg, dgst, dlen, timeout_ms, notify_fd,
	    out);
}

int
agc_req_result(struct agc_req *r, uint8_t *sig, size_t *siglen)
{
	int st;

	*siglen = 0;
	if (!atomic_load(&r->done))
		return HSM_EAGAIN;
	if ((st = req_status(r)) != 0)
		return st;
	if (r->type != AG_T_SIGN || r->siglen == 0)
		return hsm_err(HSM_EINVAL, "not a finished signature request");
	memcpy(sig, r->sig, r->siglen);
	*siglen = r->siglen;
	return 0;
}

int
agc_sign(struct agc_client *c, const char *spiffe_id, const uint8_t *keyid, int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, uint8_t *sig, size_t *siglen)
{
	struct agc_req *r;
	int st;

	*siglen = 0;
	if ((st = req_send(c, AG_T_SIGN, spiffe_id, keyid, alg, dgst, dlen, timeout_ms, -1,
	    &r)) != 0)
		return st;
	if ((st = req_wait(r)) == 0)
		st = agc_req_result(r, sig, siglen);
	agc_req_free(r);
	return st;
}

int
agc_subscribe(struct agc_client *c, const char *spiffe_id, agc_update_fn cb, void *arg)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	uint32_t id;
	int st;

	if (cb == NULL)
		return hsm_err(HSM_EINVAL, "agc_subscribe: no callback");
	pthread_mutex_lock(&c->mu);
	if (c->closed || c->sub.cb != NULL) {
		st = c->closed ? hsm_err(HSM_ECLOSED, "the agent is gone") :
		    hsm_err(HSM_EBUSY, "this agent client already has a subscription");
		pthread_mutex_unlock(&c->mu);
		return st;
	}
	id = next_id_locked(c);
	/* Encoded first: a request that cannot be sent registers nothing. */
	if ((st = ag_encode_get(AG_T_SUBSCRIBE, id, spiffe_id, &frame, &len)) == 0)
		c->sub = (struct agc_sub){ cb, arg, id, hsm_now_ms() + AGC_DEFAULT_TIMEOUT_MS };
	pthread_mutex_unlock(&c->mu);
	if (st != 0)
		return hsm_err(st, "cannot encode the subscription (bad SPIFFE ID?)");
	st = send_frame(c, frame, len);
	free(frame);
	if (st == 0)
		return 0;
	/*
	 * Not sent. Unless the reader has ended the subscription meanwhile
	 * (the agent went away; the final call is then made), it never began.
	 */
	pthread_mutex_lock(&c->mu);
	if (c->sub.cb != NULL && c->sub.id == id)
		memset(&c->sub, 0, sizeof(c->sub));
	else
		st = 0;
	pthread_mutex_unlock(&c->mu);
	return st;
}
