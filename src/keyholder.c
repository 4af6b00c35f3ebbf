/*
 * keyholder.c - the key-holder process (`hsmesh keyholder`).
 *
 * The only process type that loads a PKCS#11 module or reads a PIN. It
 * never parses network input: its peers are local processes on a Unix
 * socket (or the socketpair of the process that started it), authorised by
 * SO_PEERCRED uid. It answers the framed protocol of khproto.h:
 * generate, public key, sign, destroy, find, ping. Keys are named by the
 * SHA-256 of their SubjectPublicKeyInfo and never leave the token.
 *
 * Threads (see struct kh below): token.workers threads at most perform
 * token operations at once, each with its own token session; an idle
 * thread reads and validates a peer's frames, performs the first request
 * itself and writes the reply, so a request costs one wake-up. One thread
 * more than the performers keeps reading while all of them are busy, so
 * many requests are in flight and a slow operation stops nobody. The main
 * thread runs signals, the listener and the flushing of replies a peer did
 * not take at once. Each request carries a deadline; a request still
 * queued when its deadline passes is answered with HSM_ETIMEDOUT without
 * touching the token. A malformed frame closes that peer only.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cmds.h"
#include "err.h"
#include "khproto.h"
#include "log.h"
#include "p11.h"
#include "util.h"

#define MAX_CONNS 256
#define MAX_INFLIGHT 2048		/* per peer (an agent serves many proxies); more is "busy" */
#define MAX_OUTBUF (1024 * 1024)	/* a peer that does not read is dropped */
#define MAX_UIDS 16
#define MAX_WORKERS 64
#define READ_BATCH 8			/* reads per turn on one peer before others get a turn */

/*
 * A peer. Its read side belongs to the one thread that took its readiness
 * from the workers' epoll (EPOLLONESHOT) until that thread re-arms it;
 * rmu makes that ownership visible to the memory model as well. Its write
 * side (replies come from any thread) is under wmu. It lives while
 * referenced: the read side (until conn_close), each job, an EPOLLOUT
 * watch of the main loop, and a thread working on it.
 */
struct conn {
	struct conn *next, *prev;	/* kh.conns, under kh.mu */
	int fd;
	uid_t uid;
	pid_t pid;
	atomic_int refs;
	atomic_int inflight;
	pthread_mutex_t rmu;
	uint8_t in[2 * KH_MAX_FRAME];
	size_t inlen;
	pthread_mutex_t wmu;
	int dead;			/* no more writes */
	int closed;			/* the read side ended (conn_close) */
	int out_watch;			/* the main loop watches EPOLLOUT (holds a reference) */
	int in_mep;			/* fd registered with the main loop's epoll */
	uint8_t *out;
	size_t outlen, outcap;
};

struct job {
	struct job *next;
	struct conn *conn;
	struct kh_request req;
	uint64_t deadline;
	uint8_t reply[KH_MAX_FRAME];
	int replylen;
};

/*
 * Threads: token.workers performers at most run token operations at once
 * (one token session each); there is one thread more than that, all alike.
 * An idle thread waits in the workers' epoll (wep) for a peer's request and
 * performs it itself, replying directly: one wake-up per request, no
 * hand-off between threads. Requests read beyond the first go to the queue;
 * an idle thread is woken for them through qefd while fewer than
 * token.workers perform, and a performer takes the next one when it
 * finishes. The extra thread means some thread always reads the sockets,
 * even with every performer stuck on a slow token: peers are never
 * blocked on a full socket, queued requests past their deadline are
 * answered without the token, and more than MAX_INFLIGHT is "busy".
 *
 * The main thread runs its own epoll (mep): signals, the listener, closes
 * (ctlefd) and the EPOLLOUT watch of peers that do not take their replies
 * at once.
 */
static struct {
	struct p11_token *tok;
	int startup_err;			/* token could not be opened: answer every request with it */
	char startup_msg[KH_MAX_ERRTEXT + 1];
	unsigned sign_delay_ms;
	uid_t allow[MAX_UIDS];
	int nallow;
	int nworkers;				/* performers at most (token sessions) */
	int wep, mep;
	int qefd, stopefd, ctlefd;
	atomic_int stopping;
	pthread_mutex_t mu;			/* everything below */
	struct job *head, *tail;
	int performing;
	int qsignalled;				/* qefd written, its event not yet taken */
	int nconns;
	struct conn *conns;
} kh;

static void
efd_write(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0) {
		/* eventfd only fails on overflow, which still reads as ready */
	}
}

static void
efd_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
}

static void
conn_ref(struct conn *c)
{
	atomic_fetch_add(&c->refs, 1);
}

static void
conn_unref(struct conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_mutex_lock(&kh.mu);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		kh.conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&kh.mu);
	/* Closing the last descriptor also takes it out of both epolls. */
	close(c->fd);
	pthread_mutex_destroy(&c->rmu);
	pthread_mutex_destroy(&c->wmu);
	free(c->out);
	free(c);
}

/* Make the peer go: its reader sees the end of the stream and closes it. wmu held. */
static void
conn_kill_locked(struct conn *c, const char *why)
{
	if (c->dead)
		return;
	if (why != NULL)
		log_warn("closing peer pid %d uid %u: %s", (int)c->pid, (unsigned)c->uid, why);
	c->dead = 1;
	shutdown(c->fd, SHUT_RDWR);
}

/*
 * The read side ends (its owner only): no more requests are read, replies
 * still owed are dropped, and the reference of the read side goes.
 */
static void
conn_close(struct conn *c, const char *why)
{
	epoll_ctl(kh.wep, EPOLL_CTL_DEL, c->fd, NULL);
	pthread_mutex_lock(&c->wmu);
	conn_kill_locked(c, why);
	c->closed = 1;
	pthread_mutex_unlock(&c->wmu);
	pthread_mutex_lock(&kh.mu);
	kh.nconns--;
	pthread_mutex_unlock(&kh.mu);
	efd_write(kh.ctlefd);
	conn_unref(c);
}

/* Write what is buffered; wmu held. */
static void
conn_flush_locked(struct conn *c)
{
	size_t off = 0;

	while (off < c->outlen && !c->dead) {
		ssize_t w = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0)
			conn_kill_locked(c, NULL);
		else
			off += (size_t)w;
	}
	if (c->dead) {
		c->outlen = 0;
		return;
	}
	if (off > 0)
		memmove(c->out, c->out + off, c->outlen - off);
	c->outlen -= off;
}

/* Ask the main loop to finish writing when the peer reads again; wmu held. */
static void
conn_watch_locked(struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT, .data.ptr = c };

	if (c->out_watch || c->dead)
		return;
	conn_ref(c);
	if (epoll_ctl(kh.mep, c->in_mep ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		conn_kill_locked(c, "cannot watch the socket");
		atomic_fetch_sub(&c->refs, 1);	/* never the last: the caller holds one */
		return;
	}
	c->in_mep = 1;
	c->out_watch = 1;
}

/* Send a reply frame from any thread; whatever the socket does not take now is kept. */
static void
conn_send(struct conn *c, const uint8_t *frame, int len)
{
	size_t off = 0;

	if (len <= 0)
		return;
	pthread_mutex_lock(&c->wmu);
	if (c->dead)
		goto out;
	while (c->outlen == 0 && off < (size_t)len) {
		ssize_t w = send(c->fd, frame + off, (size_t)len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0) {
			conn_kill_locked(c, NULL);
			goto out;
		}
		off += (size_t)w;
	}
	if (off == (size_t)len)
		goto out;
	if (c->outlen + ((size_t)len - off) > MAX_OUTBUF) {
		conn_kill_locked(c, "peer does not read its replies");
		goto out;
	}
	if (c->outlen + ((size_t)len - off) > c->outcap) {
		size_t ncap = c->outcap ? c->outcap * 2 : 8192;
		uint8_t *n;

		while (ncap < c->outlen + ((size_t)len - off))
			ncap *= 2;
		if ((n = realloc(c->out, ncap)) == NULL) {
			conn_kill_locked(c, "out of memory");
			goto out;
		}
		c->out = n;
		c->outcap = ncap;
	}
	memcpy(c->out + c->outlen, frame + off, (size_t)len - off);
	c->outlen += (size_t)len - off;
	conn_watch_locked(c);
out:
	pthread_mutex_unlock(&c->wmu);
}

/* Main loop: c's socket takes writes again (or failed). */
static void
conn_writable(struct conn *c)
{
	int keep;

	pthread_mutex_lock(&c->wmu);
	c->out_watch = 0;
	conn_flush_locked(c);
	keep = c->outlen > 0 && !c->dead;
	pthread_mutex_unlock(&c->wmu);
	if (keep) {
		pthread_mutex_lock(&c->wmu);
		conn_watch_locked(c);
		pthread_mutex_unlock(&c->wmu);
	}
	conn_unref(c);			/* the watch's */
}

/* Build the reply frame for request r with status st and body. */
static int
make_reply(uint8_t *out, size_t cap, const struct kh_request *r, int st,
    const uint8_t *b1, size_t l1, const uint8_t *b2, size_t l2)
{
	const char *msg;
	size_t n;

	if (st == 0)
		return kh_frame_encode(out, cap, r->type | KH_T_REPLY, r->id, 0, b1, l1, b2, l2);
	msg = hsm_err_msg(st);
	n = strlen(msg);
	if (n > KH_MAX_ERRTEXT)
		n = KH_MAX_ERRTEXT;
	return kh_frame_encode(out, cap, r->type | KH_T_REPLY, r->id, (uint32_t)-st,
	    (const uint8_t *)msg, n, NULL, 0);
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Runs on a worker thread: the token operation of one request. */
static void
perform(struct job *j)
{
	const struct kh_request *r = &j->req;
	uint8_t keyid[HSM_KEYID_LEN], sig[HSM_MAX_SIG], *spki = NULL;
	size_t spkilen = 0, siglen = 0;
	int st;

	hsm_err_clear();
	if (hsm_now_ms() >= j->deadline) {
		st = hsm_err(HSM_ETIMEDOUT, "deadline passed before the token was free");
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, NULL, 0, NULL, 0);
		return;
	}
	switch (r->type) {
	case KH_T_GENERATE:
		st = p11_generate(kh.tok, r->keytype, r->label[0] ? r->label : NULL, keyid, &spki, &spkilen);
		if (st == 0)
			log_info("generated %s key %.16s... label '%s'", hsm_keytype_name(r->keytype),
			    hsm_hex(keyid, 8, (char[17]){0}), r->label);
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, keyid, HSM_KEYID_LEN, spki, spkilen);
		break;
	case KH_T_FIND:
		st = p11_find_label(kh.tok, r->label, keyid, &spki, &spkilen);
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, keyid, HSM_KEYID_LEN, spki, spkilen);
		break;
	case KH_T_PUBKEY:
		st = p11_pubkey(kh.tok, r->keyid, &spki, &spkilen);
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, spki, spkilen, NULL, 0);
		break;
	case KH_T_DESTROY:
		st = p11_destroy(kh.tok, r->keyid);
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, NULL, 0, NULL, 0);
		break;
	case KH_T_ATTRS: {
		struct p11_key_info ki;
		uint8_t fl = 0;

		if ((st = p11_key_info(kh.tok, r->keyid, &ki)) == 0)
			fl = (uint8_t)((ki.sensitive ? KH_ATTR_SENSITIVE : 0) |
			    (ki.always_sensitive ? KH_ATTR_ALWAYS_SENSITIVE : 0) |
			    (ki.extractable ? KH_ATTR_EXTRACTABLE : 0) |
			    (ki.never_extractable ? KH_ATTR_NEVER_EXTRACTABLE : 0) |
			    (ki.token ? KH_ATTR_TOKEN : 0) | (ki.private_ ? KH_ATTR_PRIVATE : 0));
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, &fl, 1, NULL, 0);
		break;
	}
	case KH_T_SIGN:
		/* Test setting: model a slow token (a TPM takes ~6-10 ms). */
		if (kh.sign_delay_ms > 0)
			sleep_ms(kh.sign_delay_ms);
		st = p11_sign(kh.tok, r->keyid, r->alg, r->digest, r->dlen, sig, &siglen);
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, sig, siglen, NULL, 0);
		break;
	default:
		st = hsm_err(HSM_EPROTO, "unknown request");
		j->replylen = make_reply(j->reply, sizeof(j->reply), r, st, NULL, 0, NULL, 0);
		break;
	}
	free(spki);
}

/* Wake one idle thread for the queue; kh.mu held. */
static void
queue_signal_locked(void)
{
	if (kh.head != NULL && kh.performing < kh.nworkers && !kh.qsignalled) {
		kh.qsignalled = 1;
		efd_write(kh.qefd);
	}
}

/* A queued job for the caller to perform, or NULL; kh.mu held. */
static struct job *
queue_take_locked(void)
{
	struct job *j = kh.head;

	if (j == NULL || kh.performing >= kh.nworkers || atomic_load(&kh.stopping))
		return NULL;
	if ((kh.head = j->next) == NULL)
		kh.tail = NULL;
	j->next = NULL;
	kh.performing++;
	return j;
}

/* This thread was woken for the queue. */
static struct job *
queue_woken(void)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = &kh.qefd };
	struct job *j;

	pthread_mutex_lock(&kh.mu);
	efd_drain(kh.qefd);
	kh.qsignalled = 0;
	epoll_ctl(kh.wep, EPOLL_CTL_MOD, kh.qefd, &ev);
	j = queue_take_locked();
	queue_signal_locked();		/* more for more idle threads: pass it on */
	pthread_mutex_unlock(&kh.mu);
	return j;
}

/* Perform j, reply, and release it. */
static void
job_run(struct job *j)
{
	struct conn *c = j->conn;

	perform(j);
	conn_send(c, j->reply, j->replylen);
	atomic_fetch_sub(&c->inflight, 1);
	conn_unref(c);
	free(j);
}

/* A performer finished: the next queued job for it, or NULL. */
static struct job *
job_next(void)
{
	struct job *j;

	pthread_mutex_lock(&kh.mu);
	kh.performing--;
	j = queue_take_locked();
	pthread_mutex_unlock(&kh.mu);
	return j;
}

/* Answer r at once (ping, refusals). */
static void
reply_now(struct conn *c, const struct kh_request *r, int st)
{
	uint8_t frame[KH_HDR_LEN + KH_MAX_ERRTEXT];

	conn_send(c, frame, make_reply(frame, sizeof(frame), r, st, NULL, 0, NULL, 0));
}

/* One frame: answered at once, or a job appended to *list. 0, or -1 when c must close. */
static int
dispatch(struct conn *c, const struct kh_frame *f, struct job ***tailp)
{
	struct kh_request r;
	struct job *j;

	if (kh_request_decode(f, &r) != 0)
		return -1;
	hsm_err_clear();
	if (kh.startup_err != 0) {
		reply_now(c, &r, hsm_err(kh.startup_err, "%s", kh.startup_msg));
		return 0;
	}
	if (r.type == KH_T_PING) {
		reply_now(c, &r, 0);
		return 0;
	}
	if (atomic_load(&c->inflight) >= MAX_INFLIGHT) {
		reply_now(c, &r, hsm_err(HSM_EBUSY, "too many requests in flight"));
		return 0;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		reply_now(c, &r, HSM_ENOMEM);
		return 0;
	}
	j->conn = c;
	j->req = r;
	j->deadline = hsm_now_ms() + r.deadline_ms;
	conn_ref(c);
	atomic_fetch_add(&c->inflight, 1);
	**tailp = j;
	*tailp = &j->next;
	return 0;
}

/*
 * This thread took c's readiness: read what is there, give the peer its
 * turn back, keep the first job for itself when a performer slot is free
 * and queue the rest. Returns the job to perform, or NULL.
 */
static struct job *
conn_readable(struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = c };
	struct job *list = NULL, **tail = &list, *mine = NULL;
	const char *why = NULL;
	int end = 0;

	conn_ref(c);
	pthread_mutex_lock(&c->rmu);
	for (int turn = 0; turn < READ_BATCH && !end; turn++) {
		ssize_t got = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
		size_t off = 0;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			break;
		if (got <= 0) {
			end = 1;
			break;
		}
		c->inlen += (size_t)got;
		for (;;) {
			struct kh_frame f;
			int n = kh_frame_parse(c->in + off, c->inlen - off, &f);

			if (n == 0)
				break;
			if (n < 0 || dispatch(c, &f, &tail) != 0) {
				why = n < 0 ? "malformed frame" : "malformed request";
				end = 1;
				break;
			}
			off += (size_t)n;
		}
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
	pthread_mutex_unlock(&c->rmu);
	if (end)
		conn_close(c, why);
	else if (epoll_ctl(kh.wep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
		conn_close(c, "cannot watch the socket");
	/* Jobs read before a malformed frame are still answered (if the peer is there). */
	if (list != NULL) {
		pthread_mutex_lock(&kh.mu);
		if (kh.performing < kh.nworkers && !atomic_load(&kh.stopping)) {
			mine = list;
			list = list->next;
			mine->next = NULL;
			kh.performing++;
		}
		if (list != NULL) {
			if (kh.tail != NULL)
				kh.tail->next = list;
			else
				kh.head = list;
			for (kh.tail = list; kh.tail->next != NULL; kh.tail = kh.tail->next)
				;
		}
		queue_signal_locked();
		pthread_mutex_unlock(&kh.mu);
	}
	conn_unref(c);
	return mine;
}

static void *
worker_main(void *arg)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (!atomic_load(&kh.stopping)) {
		struct epoll_event ev;
		struct job *j;
		int n = epoll_wait(kh.wep, &ev, 1, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_err("epoll_wait: %s", strerror(errno));
			break;
		}
		if (n == 0 || ev.data.ptr == &kh.stopefd)
			continue;
		j = ev.data.ptr == &kh.qefd ? queue_woken() : conn_readable(ev.data.ptr);
		while (j != NULL) {
			job_run(j);
			j = job_next();
		}
	}
	return NULL;
}

static int
uid_allowed(uid_t uid)
{
	for (int i = 0; i < kh.nallow; i++)
		if (kh.allow[i] == uid)
			return 1;
	return 0;
}

static void
conn_add(int fd)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT };
	struct conn *c;
	int full;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cl != sizeof(cred)) {
		log_warn("refusing peer: no credentials");
		close(fd);
		return;
	}
	if (!uid_allowed(cred.uid)) {
		log_warn("refusing peer pid %d: uid %u not allowed", (int)cred.pid, (unsigned)cred.uid);
		close(fd);
		return;
	}
	pthread_mutex_lock(&kh.mu);
	full = kh.nconns >= MAX_CONNS;
	pthread_mutex_unlock(&kh.mu);
	if (full || (c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("refusing peer pid %d: too many peers", (int)cred.pid);
		close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	c->uid = cred.uid;
	c->pid = cred.pid;
	atomic_init(&c->refs, 1);	/* the read side's */
	atomic_init(&c->inflight, 0);
	pthread_mutex_init(&c->rmu, NULL);
	pthread_mutex_init(&c->wmu, NULL);
	pthread_mutex_lock(&kh.mu);
	kh.nconns++;
	if ((c->next = kh.conns) != NULL)
		kh.conns->prev = c;
	kh.conns = c;
	pthread_mutex_unlock(&kh.mu);
	ev.data.ptr = c;
	/* From here on the workers own the read side. */
	if (epoll_ctl(kh.wep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		pthread_mutex_lock(&kh.mu);
		kh.nconns--;
		pthread_mutex_unlock(&kh.mu);
		conn_unref(c);
		return;
	}
	log_debug("peer pid %d uid %u connected", (int)cred.pid, (unsigned)cred.uid);
}

/* After the workers stopped: drop queued jobs and every peer. */
static void
release_all(void)
{
	struct job *j;
	struct conn *c;

	while ((j = kh.head) != NULL) {
		kh.head = j->next;
		conn_unref(j->conn);
		free(j);
	}
	kh.tail = NULL;
	/* Each close takes the read side's reference; what remains is held by a watch. */
	for (;;) {
		pthread_mutex_lock(&kh.mu);
		for (c = kh.conns; c != NULL; c = c->next) {
			pthread_mutex_lock(&c->wmu);
			if (!c->closed || c->out_watch)
				break;
			pthread_mutex_unlock(&c->wmu);
		}
		pthread_mutex_unlock(&kh.mu);
		if (c == NULL)
			break;
		if (c->closed) {
			c->out_watch = 0;
			pthread_mutex_unlock(&c->wmu);
			conn_unref(c);
		} else {
			pthread_mutex_unlock(&c->wmu);
			conn_close(c, NULL);
		}
	}
}

static int
listen_unix(const char *path, int *out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	*out = -1;
	if (strlen(path) >= sizeof(sun.sun_path))
		return hsm_err(HSM_EINVAL, "socket path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return hsm_err(HSM_EIO, "socket: %s", strerror(errno));
	(void)unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || chmod(path, 0660) != 0 ||
	    listen(fd, 64) != 0) {
		int e = errno;

		close(fd);
		return hsm_err(HSM_EIO, "cannot listen on %s: %s", path, strerror(e));
	}
	*out = fd;
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh keyholder --module PATH --token PKCS11_URI (--pin-file F | --pin-env VAR)\n"
	    "                        (--socket PATH | --fd N) [--allow-uid UID]... [--workers N]\n"
	    "                        [--sign-delay-ms MS] [--quiet] [--verbose]\n"
	    "\n"
	    "The only hsmesh process that loads a PKCS#11 module or reads a PIN. Serves\n"
	    "generate / public key / sign / destroy requests (docs/PROTOCOL.md) to local\n"
	    "peers whose uid is allowed (default: the keyholder's own uid).\n"
	    "  --socket PATH       listen on a Unix socket (mode 0660)\n"
	    "  --fd N              serve the one connected socket N, exit when it closes\n"
	    "  --workers N         token sessions used in parallel (default 2, at most 64)\n"
	    "  --sign-delay-ms MS  TEST SETTING: add MS to every signature (slow-token model)\n"
	    "  --describe KEYID    print the token's security attributes of one key (hex id) and exit\n");
}

/* Operator view of one key: what the token itself says about its protection. */
static int
describe_key(const char *module, const char *uri, const struct p11_pin_source *pin, const char *hex)
{
	struct p11_token *tok = NULL;
	struct p11_key_info ki;
	uint8_t id[HSM_KEYID_LEN];
	int st;

	if (strlen(hex) != 2 * HSM_KEYID_LEN) {
		fprintf(stderr, "hsmesh keyholder: --describe wants a %d-hex-digit key id\n", 2 * HSM_KEYID_LEN);
		return 2;
	}
	/* sscanf("%2x") would take " 1" or "+1": decode strictly. */
	if (hsm_unhex(hex, 2 * HSM_KEYID_LEN, id) != 0) {
		fprintf(stderr, "hsmesh keyholder: --describe: not a hex key id\n");
		return 2;
	}
	if ((st = p11_token_open(module, uri, pin, 1, &tok)) != 0 ||
	    (st = p11_key_info(tok, id, &ki)) != 0) {
		fprintf(stderr, "hsmesh keyholder: %s\n", hsm_err_msg(st));
		p11_token_close(tok);
		return 1;
	}
	printf("key %s in token '%s'\n", hex, p11_token_label(tok));
	printf("  type              %s\n", hsm_keytype_name(ki.type));
	printf("  label             %s\n", ki.label);
	printf("  token object      %s\n", ki.token ? "yes" : "no");
	printf("  private (login)   %s\n", ki.private_ ? "yes" : "no");
	printf("  sensitive         %s\n", ki.sensitive ? "yes" : "NO");
	printf("  always sensitive  %s\n", ki.always_sensitive ? "yes" : "NO");
	printf("  extractable       %s\n", ki.extractable ? "YES" : "no");
	printf("  never extractable %s\n", ki.never_extractable ? "yes" : "NO");
	p11_token_close(tok);
	return 0;
}

/*
 * PKCS#11 modules write to stderr on their own: tpm2-pkcs11 prints two
 * "ERROR:" lines for a wrong PIN beside our one-line message, and its
 * TPM2_PKCS11_LOG_LEVEL cannot silence errors. So fd 2 becomes a pipe
 * read by a relay thread: lines in the log format of tpm2-pkcs11 and tss2
 * ("ERROR: ...", "WARNING:esys:...") appear only with --verbose, the rest
 * (ours, sanitizer reports) pass to the real stderr. Lines are written
 * whole (stderr is unbuffered, a line is one write under PIPE_BUF).
 */
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
static void
relay_start(bool verbose)
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

static int
parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s == '-' || v > max)
		return HSM_EINVAL;
	*out = v;
	return 0;
}

int
keyholder_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "module", required_argument, NULL, 'm' },
		{ "token", required_argument, NULL, 't' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "pin-env", required_argument, NULL, 'e' },
		{ "socket", required_argument, NULL, 's' },
		{ "fd", required_argument, NULL, 'f' },
		{ "allow-uid", required_argument, NULL, 'u' },
		{ "workers", required_argument, NULL, 'w' },
		{ "sign-delay-ms", required_argument, NULL, 'd' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "describe", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *module = NULL, *uri = NULL, *sock = NULL, *describe = NULL;
	struct p11_pin_source pin = { NULL, NULL };
	pthread_t workers[MAX_WORKERS + 1];
	unsigned long v;
	int ch, fd = -1, nworkers = 2, nthreads = 0, level = HSM_LOG_INFO, lfd = -1, sfd = -1, st, rc = 1;
	sigset_t sigs;
	struct epoll_event ev;
	struct rlimit nocore = { 0, 0 };

	/* Nobody, root included via ptrace of a non-root uid, reads this process's memory or cores. */
	prctl(PR_SET_DUMPABLE, 0);
	setrlimit(RLIMIT_CORE, &nocore);

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'm': module = optarg; break;
		case 't': uri = optarg; break;
		case 'p': pin.file = optarg; break;
		case 'e': pin.env = optarg; break;
		case 's': sock = optarg; break;
		case 'f':
			if (parse_uint(optarg, 1 << 20, &v) != 0) goto badarg;
			fd = (int)v;
			break;
		case 'u':
			if (parse_uint(optarg, (uid_t)-2, &v) != 0 || kh.nallow >= MAX_UIDS) goto badarg;
			kh.allow[kh.nallow++] = (uid_t)v;
			break;
		case 'w':
			if (parse_uint(optarg, MAX_WORKERS, &v) != 0 || v == 0) goto badarg;
			nworkers = (int)v;
			break;
		case 'd':
			if (parse_uint(optarg, 10000, &v) != 0) goto badarg;
			kh.sign_delay_ms = (unsigned)v;
			break;
		case 'q': level = -1; break;
		case 'v': level = HSM_LOG_DEBUG; break;
		case 'D': describe = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	relay_start(level >= HSM_LOG_DEBUG);
	if (describe != NULL && optind == argc && module != NULL && uri != NULL &&
	    (pin.file == NULL) != (pin.env == NULL) && sock == NULL && fd < 0)
		return describe_key(module, uri, &pin, describe);
	if (optind != argc || module == NULL || uri == NULL || (pin.file == NULL) == (pin.env == NULL) ||
	    (sock == NULL) == (fd < 0)) {
		usage(stderr);
		return 2;
	}
	hsm_log_init("hsmesh keyholder", level);
	if (kh.nallow == 0)
		kh.allow[kh.nallow++] = getuid();

	pthread_mutex_init(&kh.mu, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((st = p11_token_open(module, uri, &pin, nworkers, &kh.tok)) != 0) {
		kh.startup_err = st;
		snprintf(kh.startup_msg, sizeof(kh.startup_msg), "%s", hsm_err_msg(st));
		log_err("%s", kh.startup_msg);
		/* A listener has nobody to tell: exit. A parent on --fd gets the reason in its first reply. */
		if (sock != NULL)
			return 1;
		nworkers = 0;
	}
	kh.nworkers = nworkers;

	kh.qefd = kh.stopefd = kh.ctlefd = -1;
	if ((kh.mep = epoll_create1(EPOLL_CLOEXEC)) < 0 || (kh.wep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (kh.qefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (kh.stopefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (kh.ctlefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		log_err("epoll/eventfd: %s", strerror(errno));
		goto out;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	ev.events = EPOLLIN;
	ev.data.ptr = &sfd;
	epoll_ctl(kh.mep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.ptr = &kh.ctlefd;
	epoll_ctl(kh.mep, EPOLL_CTL_ADD, kh.ctlefd, &ev);
	/* Level-triggered: every waiting thread sees it, one after the other. */
	ev.data.ptr = &kh.stopefd;
	epoll_ctl(kh.wep, EPOLL_CTL_ADD, kh.stopefd, &ev);
	/* One thread per signal of the queue. */
	ev.events = EPOLLIN | EPOLLONESHOT;
	ev.data.ptr = &kh.qefd;
	epoll_ctl(kh.wep, EPOLL_CTL_ADD, kh.qefd, &ev);

	/* One thread more than performers: some thread always reads (see struct kh). */
	for (int i = 0; i < nworkers + 1; i++) {
		if (pthread_create(&workers[i], NULL, worker_main, NULL) != 0) {
			log_err("cannot start worker thread");
			nthreads = i;
			goto out;
		}
		nthreads = i + 1;
	}

	if (sock != NULL) {
		if ((st = listen_unix(sock, &lfd)) != 0) {
			log_err("%s", hsm_err_msg(st));
			goto out;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &lfd;
		epoll_ctl(kh.mep, EPOLL_CTL_ADD, lfd, &ev);
		log_info("serving token '%s' on %s", p11_token_label(kh.tok), sock);
	} else {
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		conn_add(fd);
	}

	for (;;) {
		struct epoll_event evs[64];
		int n, left;

		/* A keyholder started for one parent lives as long as that parent's socket. */
		pthread_mutex_lock(&kh.mu);
		left = kh.nconns;
		pthread_mutex_unlock(&kh.mu);
		if (sock == NULL && left == 0) {
			rc = 0;
			break;
		}
		n = epoll_wait(kh.mep, evs, 64, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &sfd) {
				log_info("terminating on signal");
				rc = 0;
				goto out;
			} else if (p == &kh.ctlefd) {
				efd_drain(kh.ctlefd);
			} else if (p == &lfd) {
				int cfd;

				while ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
					conn_add(cfd);
			} else {
				conn_writable(p);
			}
		}
	}
out:
	atomic_store(&kh.stopping, 1);
	if (kh.stopefd >= 0)
		efd_write(kh.stopefd);
	for (int i = 0; i < nthreads; i++)
		pthread_join(workers[i], NULL);
	/* Queued jobs and peers hold each other: release both. */
	release_all();
	p11_token_close(kh.tok);
	if (lfd >= 0) {
		close(lfd);
		unlink(sock);
	}
	return kh.startup_err != 0 ? 1 : rc;
badarg:
	fprintf(stderr, "hsmesh keyholder: invalid option value '%s'\n", optarg);
	return 2;
}
