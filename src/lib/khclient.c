/*
 * khclient.c - client side of the keyholder protocol (see khclient.h).
 *
 * One reader thread per client reads replies and enforces deadlines, so a
 * request always ends even when the keyholder hangs or dies. Requests and
 * the client are reference counted: a request may outlive the client (an
 * OpenSSL async job still holding it), and then only reads its own result.
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
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "khclient.h"
#include "khproto.h"
#include "util.h"

struct kh_req {
	struct kh_client *c;
	struct kh_req *next;		/* pending list, under c->mu */
	uint32_t id;
	uint8_t type;
	uint64_t deadline;		/* monotonic ms */
	int refs;			/* owner + pending list, under c->mu */
	atomic_int done;
	int status;
	uint8_t *reply;
	size_t replylen;
	char errtext[KH_MAX_ERRTEXT + 1];
	int notify_fd;
	pthread_cond_t cv;
};

struct kh_client {
	int fd;
	int wake[2];			/* wakes the reader: new deadline or shutdown */
	pthread_t reader;
	pthread_mutex_t mu;		/* everything below and every kh_req field */
	pthread_mutex_t wmu;		/* serialises writes to fd */
	int refs;			/* creator + one per live request */
	int closed;
	uint32_t next_id;
	struct kh_req *pending;
};

static void
client_unref_locked(struct kh_client *c, int *free_it)
{
	*free_it = (--c->refs == 0);
}

static void
client_destroy(struct kh_client *c)
{
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->wmu);
	free(c);
}

/* Drop one reference of r; called with c->mu held. Returns 1 if c must be destroyed. */
static int
req_unref_locked(struct kh_req *r)
{
	struct kh_client *c = r->c;
	int free_c = 0;

	if (--r->refs > 0)
		return 0;
	free(r->reply);
	pthread_cond_destroy(&r->cv);
	free(r);
	client_unref_locked(c, &free_c);
	return free_c;
}

/* End r with status; c->mu held. The list reference is dropped by the caller. */
static void
req_finish_locked(struct kh_req *r, int status, const uint8_t *body, size_t len)
{
	uint64_t one = 1;
	ssize_t w;

	r->status = status;
	if (status == 0 && len > 0) {
		if ((r->reply = malloc(len)) == NULL) {
			r->status = HSM_ENOMEM;
		} else {
			memcpy(r->reply, body, len);
			r->replylen = len;
		}
	} else if (status != 0 && len > 0) {
		size_t n = len > KH_MAX_ERRTEXT ? KH_MAX_ERRTEXT : len;

		/* Error texts come from the keyholder: keep printable bytes only. */
		for (size_t i = 0; i < n; i++)
			r->errtext[i] = (body[i] >= 0x20 && body[i] < 0x7f) ? (char)body[i] : '?';
		r->errtext[n] = '\0';
	}
	atomic_store(&r->done, 1);
	pthread_cond_broadcast(&r->cv);
	if (r->notify_fd >= 0) {
		do
			w = write(r->notify_fd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
	}
}

/* Unlink r from the pending list; c->mu held. */
static void
unlink_locked(struct kh_client *c, struct kh_req *r)
{
	struct kh_req **pp;

	for (pp = &c->pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			r->next = NULL;
			return;
		}
	}
}

static void
fail_all_locked(struct kh_client *c, int status, const char *why)
{
	struct kh_req *r;

	while ((r = c->pending) != NULL) {
		c->pending = r->next;
		r->next = NULL;
		req_finish_locked(r, status, (const uint8_t *)why, strlen(why));
		(void)req_unref_locked(r);	/* owner still holds one */
	}
}

static void
handle_reply(struct kh_client *c, const struct kh_frame *f)
{
	struct kh_req *r;
	int status;

	pthread_mutex_lock(&c->mu);
	for (r = c->pending; r != NULL; r = r->next)
		if (r->id == f->id)
			break;
	/* A reply for a request that already timed out is dropped. */
	if (r != NULL && f->type == (r->type | KH_T_REPLY)) {
		status = -(int)f->arg;
		if (f->arg > (uint32_t)-HSM_ERR_MIN)
			status = HSM_EPROTO;
		unlink_locked(c, r);
		req_finish_locked(r, status, f->body, f->bodylen);
		(void)req_unref_locked(r);
	}
	pthread_mutex_unlock(&c->mu);
}

static int
expire_locked(struct kh_client *c, uint64_t now)
{
	struct kh_req *r, *next;
	uint64_t soonest = 0;
	static const char why[] = "keyholder did not answer before the deadline";

	for (r = c->pending; r != NULL; r = next) {
		next = r->next;
		if (r->deadline <= now) {
			unlink_locked(c, r);
			req_finish_locked(r, HSM_ETIMEDOUT, (const uint8_t *)why, sizeof(why) - 1);
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
	struct kh_client *c = arg;
	uint8_t buf[2 * KH_MAX_FRAME];
	size_t have = 0;
	const char *why = "keyholder closed the connection";
	sigset_t all;

	/* Signals belong to the application's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = c->wake[0], .events = POLLIN },
		};
		int timeout, n;
		ssize_t got;

		pthread_mutex_lock(&c->mu);
		timeout = expire_locked(c, hsm_now_ms());
		pthread_mutex_unlock(&c->mu);
		n = poll(pfd, 2, timeout);
		if (n < 0 && errno != EINTR) {
			why = "poll on keyholder socket failed";
			break;
		}
		if (pfd[1].revents != 0) {
			char drain[64];

			if (read(c->wake[0], drain, sizeof(drain)) == 0)
				break;		/* write end closed: shutdown */
		}
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
			continue;
		got = read(c->fd, buf + have, sizeof(buf) - have);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			break;
		have += (size_t)got;
		for (;;) {
			struct kh_frame f;
			int flen = kh_frame_parse(buf, have, &f);

			if (flen == 0)
				break;
			if (flen < 0) {
				why = "keyholder sent a malformed frame";
				goto out;
			}
			handle_reply(c, &f);
			memmove(buf, buf + flen, have - (size_t)flen);
			have -= (size_t)flen;
		}
	}
out:
	pthread_mutex_lock(&c->mu);
	c->closed = 1;
	fail_all_locked(c, HSM_ECLOSED, why);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int
kh_client_new(int fd, struct kh_client **out)
{
	struct kh_client *c;

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
		return hsm_err(HSM_EIO, "cannot start keyholder reader thread");
	}
	*out = c;
	return 0;
}

void
kh_client_free(struct kh_client *c)
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
	client_unref_locked(c, &free_c);
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		client_destroy(c);
}

int
kh_connect(const char *path, struct kh_client **out)
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
		    "cannot connect to keyholder at %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if ((r = kh_client_new(fd, out)) != 0)
		close(fd);
	return r;
}

/* Queue a request and send its frame. On success *out holds the owner's reference. */
static int
req_send(struct kh_client *c, uint8_t type, unsigned timeout_ms, const uint8_t *b1, size_t l1,
    const uint8_t *b2, size_t l2, int notify_fd, struct kh_req **out)
{
	uint8_t frame[KH_MAX_FRAME];
	struct kh_req *r;
	int n, free_c = 0;
	int sent;
	uint64_t one = 1;

	*out = NULL;
	if (timeout_ms == 0)
		timeout_ms = KH_DEFAULT_TIMEOUT_MS;
	if (timeout_ms > KH_MAX_DEADLINE_MS)
		timeout_ms = KH_MAX_DEADLINE_MS;
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
		return hsm_err(HSM_ECLOSED, "keyholder is gone");
	}
	r->id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	c->refs++;
	r->next = c->pending;
	c->pending = r;
	pthread_mutex_unlock(&c->mu);

	n = kh_frame_encode(frame, sizeof(frame), type, r->id, timeout_ms, b1, l1, b2, l2);
	if (n < 0)
		goto fail;
	pthread_mutex_lock(&c->wmu);
	sent = hsm_send_all(c->fd, frame, (size_t)n);
	pthread_mutex_unlock(&c->wmu);
	if (sent != 0)
		goto fail;
	/* The reader may be sleeping on a later deadline: make it look again. */
	if (write(c->wake[1], &one, 1) < 0) {
		/* A full pipe already guarantees a wake-up. */
	}
	*out = r;
	return 0;
fail:
	pthread_mutex_lock(&c->mu);
	if (!atomic_load(&r->done)) {
		unlink_locked(c, r);
		r->status = HSM_ECLOSED;
		atomic_store(&r->done, 1);
		r->refs--;	/* the list's reference; the owner's is dropped below */
	}
	free_c = req_unref_locked(r);
	pthread_mutex_unlock(&c->mu);
	if (free_c)
		client_destroy(c);
	return n < 0 ? hsm_err(HSM_EINVAL, "keyholder request too large")
	    : hsm_err(HSM_ECLOSED, "cannot write to keyholder: %s", strerror(errno));
}

int
kh_req_done(struct kh_req *r)
{
	return atomic_load(&r->done);
}

void
kh_req_free(struct kh_req *r)
{
	struct kh_client *c;
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

/* Wait for r to end; returns its status with the detail set. */
static int
req_wait(struct kh_req *r)
{
	struct kh_client *c = r->c;
	int st;

	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&r->done))
		pthread_cond_wait(&r->cv, &c->mu);
	st = r->status;
	if (st != 0)
		hsm_err(st, "%s", r->errtext[0] != '\0' ? r->errtext : hsm_strerror(st));
	pthread_mutex_unlock(&c->mu);
	return st;
}

/* Send, wait, and hand back the reply body (owned by the caller). */
static int
call(struct kh_client *c, uint8_t type, unsigned timeout_ms, const uint8_t *b1, size_t l1,
    const uint8_t *b2, size_t l2, uint8_t **body, size_t *bodylen)
{
	struct kh_req *r;
	int st;

	*body = NULL;
	*bodylen = 0;
	if ((st = req_send(c, type, timeout_ms, b1, l1, b2, l2, -1, &r)) != 0)
		return st;
	if ((st = req_wait(r)) == 0) {
		*body = r->reply;
		*bodylen = r->replylen;
		r->reply = NULL;
	}
	kh_req_free(r);
	return st;
}

int
kh_ping(struct kh_client *c, unsigned timeout_ms)
{
	uint8_t *b;
	size_t bl;
	int st;

	st = call(c, KH_T_PING, timeout_ms, NULL, 0, NULL, 0, &b, &bl);
	free(b);
	return st;
}

/* Split a keyid + SPKI reply. */
static int
keyid_spki(uint8_t *b, size_t bl, uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	if (bl <= HSM_KEYID_LEN || bl > HSM_KEYID_LEN + HSM_MAX_SPKI) {
		free(b);
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed key reply");
	}
	memcpy(keyid, b, HSM_KEYID_LEN);
	memmove(b, b + HSM_KEYID_LEN, bl - HSM_KEYID_LEN);
	*spki = b;
	*spkilen = bl - HSM_KEYID_LEN;
	return 0;
}

static int
label_body(const char *label, uint8_t *lb, size_t *len)
{
	size_t n = label == NULL ? 0 : strlen(label);

	if (n > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label longer than %d bytes", HSM_MAX_LABEL);
	lb[0] = (uint8_t)n;
	if (n > 0)
		memcpy(lb + 1, label, n);
	*len = n + 1;
	return 0;
}

int
kh_generate(struct kh_client *c, enum hsm_keytype kt, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	uint8_t lb[HSM_MAX_LABEL + 1], k = (uint8_t)kt, *b;
	size_t ll, bl;
	int st;

	*spki = NULL;
	*spkilen = 0;
	if ((st = label_body(label, lb, &ll)) != 0)
		return st;
	if ((st = call(c, KH_T_GENERATE, timeout_ms, &k, 1, lb, ll, &b, &bl)) != 0)
		return st;
	return keyid_spki(b, bl, keyid, spki, spkilen);
}

int
kh_find(struct kh_client *c, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	uint8_t lb[HSM_MAX_LABEL + 1], *b;
	size_t ll, bl;
	int st;

	*spki = NULL;
	*spkilen = 0;
	if (label == NULL || *label == '\0')
		return hsm_err(HSM_EINVAL, "empty key label");
	if ((st = label_body(label, lb, &ll)) != 0)
		return st;
	if ((st = call(c, KH_T_FIND, timeout_ms, lb, ll, NULL, 0, &b, &bl)) != 0)
		return st;
	return keyid_spki(b, bl, keyid, spki, spkilen);
}

int
kh_pubkey(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms,
    uint8_t **spki, size_t *spkilen)
{
	uint8_t *b;
	size_t bl;
	int st;

	*spki = NULL;
	*spkilen = 0;
	if ((st = call(c, KH_T_PUBKEY, timeout_ms, keyid, HSM_KEYID_LEN, NULL, 0, &b, &bl)) != 0)
		return st;
	if (bl == 0 || bl > HSM_MAX_SPKI) {
		free(b);
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed public key");
	}
	*spki = b;
	*spkilen = bl;
	return 0;
}

int
kh_destroy(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms)
{
	uint8_t *b;
	size_t bl;
	int st;

	st = call(c, KH_T_DESTROY, timeout_ms, keyid, HSM_KEYID_LEN, NULL, 0, &b, &bl);
	free(b);
	return st;
}

static int
sign_body(const uint8_t keyid[HSM_KEYID_LEN], int alg, const uint8_t *dgst, size_t dlen,
    uint8_t *body, size_t *len)
{
	if (dlen < 20 || dlen > 64 || alg < 1 || alg > 255)
		return hsm_err(HSM_EINVAL, "bad digest length %zu or algorithm %d", dlen, alg);
	memcpy(body, keyid, HSM_KEYID_LEN);
	body[HSM_KEYID_LEN] = (uint8_t)alg;
	body[HSM_KEYID_LEN + 1] = (uint8_t)dlen;
	memcpy(body + HSM_KEYID_LEN + 2, dgst, dlen);
	*len = HSM_KEYID_LEN + 2 + dlen;
	return 0;
}

int
kh_sign(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, uint8_t *sig, size_t *siglen)
{
	uint8_t body[HSM_KEYID_LEN + 2 + 64], *b;
	size_t len = 0, bl;
	int st;

	*siglen = 0;
	if ((st = sign_body(keyid, alg, dgst, dlen, body, &len)) != 0)
		return st;
	if ((st = call(c, KH_T_SIGN, timeout_ms, body, len, NULL, 0, &b, &bl)) != 0)
		return st;
	if (bl == 0 || bl > HSM_MAX_SIG) {
		free(b);
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed signature");
	}
	memcpy(sig, b, bl);
	*siglen = bl;
	free(b);
	return 0;
}

int
kh_sign_start(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, int notify_fd, struct kh_req **out)
{
	uint8_t body[HSM_KEYID_LEN + 2 + 64];
	size_t len = 0;
	int st;

	*out = NULL;
	if ((st = sign_body(keyid, alg, dgst, dlen, body, &len)) != 0)
		return st;
	return req_send(c, KH_T_SIGN, timeout_ms, body, len, NULL, 0, notify_fd, out);
}

int
kh_req_result(struct kh_req *r, uint8_t *sig, size_t *siglen)
{
	int st;

	*siglen = 0;
	if (!atomic_load(&r->done))
		return HSM_EAGAIN;
	st = r->status;
	if (st != 0)
		return hsm_err(st, "%s", r->errtext[0] != '\0' ? r->errtext : hsm_strerror(st));
	if (r->replylen == 0 || r->replylen > HSM_MAX_SIG)
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed signature");
	memcpy(sig, r->reply, r->replylen);
	*siglen = r->replylen;
	return 0;
}

int
kh_spawn(const struct kh_spawn_opts *o, struct kh_client **out, pid_t *pid)
{
	char delay[16], workers[16];
	const char *argv[24];
	int sv[2], n = 0, st;
	pid_t p;

	*out = NULL;
	*pid = -1;
	if (o->module == NULL || o->token_uri == NULL || (o->pin_file == NULL) == (o->pin_env == NULL))
		return hsm_err(HSM_EINVAL, "keyholder needs a module, a token URI and one PIN source");
	snprintf(delay, sizeof(delay), "%u", o->sign_delay_ms);
	snprintf(workers, sizeof(workers), "%d", o->workers);
	argv[n++] = "hsmesh";
	argv[n++] = "keyholder";
	argv[n++] = "--fd";
	argv[n++] = "3";
	argv[n++] = "--quiet";
	argv[n++] = "--module";
	argv[n++] = o->module;
	argv[n++] = "--token";
	argv[n++] = o->token_uri;
	argv[n++] = o->pin_file != NULL ? "--pin-file" : "--pin-env";
	argv[n++] = o->pin_file != NULL ? o->pin_file : o->pin_env;
	if (o->sign_delay_ms > 0) {
		argv[n++] = "--sign-delay-ms";
		argv[n++] = delay;
	}
	if (o->workers > 0) {
		argv[n++] = "--workers";
		argv[n++] = workers;
	}
	argv[n] = NULL;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return hsm_err(HSM_EIO, "socketpair: %s", strerror(errno));
	if ((p = fork()) < 0) {
		close(sv[0]);
		close(sv[1]);
		return hsm_err(HSM_EIO, "fork: %s", strerror(errno));
	}
	if (p == 0) {
		/* Child: fd 3 is the keyholder's end; everything else closes on exec. */
		if (sv[1] == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(sv[1], 3) < 0)
			_exit(127);
		execv(o->exe != NULL ? o->exe : "/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	close(sv[1]);
	if ((st = kh_client_new(sv[0], out)) != 0) {
		close(sv[0]);
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		return st;
	}
	/* The first answer says whether the token opened; a TPM login can be slow. */
	if ((st = kh_ping(*out, 60000)) != 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
		kh_client_free(*out);
		*out = NULL;
		/* It exits after reporting; a hung one must not hang us. */
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		if (st == HSM_ECLOSED)
			snprintf(why, sizeof(why), "keyholder exited during start-up");
		return hsm_err(st, "%s", why);
	}
	*pid = p;
	return 0;
}
