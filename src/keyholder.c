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
 * token operations at once, each with its own token session. Unless
 * token.workers fixes it, that number follows the token (khsize.h): the
 * measured signature latency and demand grow it at once and shrink it
 * after a quiet period, within --workers MIN-MAX; an idle
 * thread reads and validates a peer's frames, performs the first request
 * itself and writes the reply, so a request costs one wake-up. One thread
 * more than the performers keeps reading while all of them are busy, so
 * many requests are in flight and a slow operation stops nobody. The main
 * thread runs signals, the listener and the flushing of replies a peer did
 * not take at once. Each request carries a deadline; a request still
 * queued when its deadline passes is answered with HSM_ETIMEDOUT without
 * touching the token. A malformed frame closes that peer only. Accepting,
 * SO_PEERCRED, the frame loop and the output buffers are the frame
 * server's (frameserver.h), shared with the agent's local API.
 *
 * Siblings (keyholder.h): keyholder_ops.c performs one request against
 * the token; keyholder_relay.c filters what PKCS#11 modules write to
 * stderr.
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
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmds.h"
#include "err.h"
#include "frameserver.h"
#include "heap.h"
#include "khproto.h"
#include "log.h"
#include "keyholder.h"
#include "khsize.h"
#include "p11.h"
#include "privdrop.h"
#include "sandbox.h"
#include "util.h"

#define MAX_CONNS 256
#define FRAME_TIMEOUT_MS 5000		/* --socket: half a frame, then silence: that peer is closed */
#define MAX_INFLIGHT 2048		/* per peer (an agent serves many proxies); more is "busy" */
#define MAX_OUTBUF (1024 * 1024)	/* a peer that does not read is dropped */
#define MAX_UIDS 16
#define MAX_WORKERS 64
#define DEFAULT_MIN_WORKERS 2
#define TPM_MAX_WORKERS 4		/* a TPM's default bound: it serialises anyway (docs/TPM.md) */
#define READ_BATCH 8			/* reads per turn on one peer before others get a turn */

struct job {
	struct job *next;
	struct fsrv_conn *conn;		/* a request in flight on it (fsrv_begin) */
	struct kh_request req;
	uint64_t deadline;
	uint64_t arrived_us;		/* read from the peer (the sizing's time in the keyholder) */
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
 * (ctlefd) and the frame server's watch of peers that do not take their
 * replies at once (fsrv_watch_fd).
 *
 * Sizing (khsize.h): a performer that finishes a signature adds its times
 * to the interval's sums and, when KHSIZE_TICK_MS passed, ticks the sizer;
 * the main thread ticks it too while above min (a quiet keyholder must
 * shrink without requests). A new size changes nworkers at once, starts
 * the threads it lacks (they are never stopped: an idle one costs only
 * its stack) and is applied to the token's session pool outside kh.mu.
 */
static struct {
	struct p11_token *tok;
	const char *so_pin_file;		/* the SO PIN's source, for WRAP (or NULL) */
	const char *so_pin_env;
	int startup_err;			/* token could not be opened: answer every request with it */
	char startup_msg[KH_MAX_ERRTEXT + 1];
	unsigned sign_delay_ms;
	uid_t allow[MAX_UIDS];
	int nallow;
	int nworkers;				/* performers at most now (token sessions) */
	int maxworkers;				/* ... at most ever (threads and the session pool) */
	bool autosize;				/* nworkers follows kh.size */
	int wep, mep;
	int qefd, stopefd, ctlefd;
	atomic_int stopping;
	pthread_mutex_t mu;			/* everything below */
	struct job *head, *tail;
	int performing;
	int nqueued;
	int qsignalled;				/* qefd written, its event not yet taken */
	struct fsrv *srv;			/* peers: their read sides in wep */
	pthread_t threads[MAX_WORKERS + 1];
	int nthreads;
	struct khsize size;			/* the sizer and this interval's sums */
	uint64_t st_n, st_service_us, st_sojourn_us;
	pthread_mutex_t applymu;		/* orders p11_token_set_sessions calls */
} kh;

static void *worker_main(void *arg);

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

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
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
	kh.nqueued--;
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

/* Send a reply to c; a peer dropped for it is logged. */
static void
kh_send(struct fsrv_conn *c, const uint8_t *frame, int len)
{
	const struct fsrv_peer *p = fsrv_peer(c);
	int r;

	if (len <= 0)
		return;
	r = fsrv_send(c, frame, (size_t)len);
	if (r != 0 && r != HSM_ECLOSED)
		log_warn("closing peer pid %d uid %u: %s", (int)p->pid, (unsigned)p->uid,
		    hsm_err_msg(r));
}

/* The times of one signature, for the sizing (n 0: not one). */
struct job_times {
	uint64_t n, service_us, sojourn_us;
};

/* Start the threads that nworkers lacks (one more than performers); kh.mu held. */
static void
threads_start_locked(void)
{
	sigset_t all, old;

	/* Signals are the main loop's: a new thread starts with all blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (kh.nthreads < kh.nworkers + 1 && kh.nthreads < MAX_WORKERS + 1 &&
	    !atomic_load(&kh.stopping)) {
		if (pthread_create(&kh.threads[kh.nthreads], NULL, worker_main, NULL) != 0) {
			log_warn("cannot start a worker thread: %d performers at most", kh.nthreads - 1);
			kh.nworkers = kh.nthreads - 1;
			break;
		}
		kh.nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * One tick of the sizer at now_ms with this interval's sums; kh.mu held.
 * Returns true when the token's session pool must follow (size_apply,
 * after kh.mu is released).
 */
static bool
size_tick_locked(uint64_t now_ms)
{
	struct khsize_sample m = { kh.st_n, kh.st_service_us, kh.st_sojourn_us,
	    kh.performing + kh.nqueued };
	int old = kh.nworkers, cur;

	kh.st_n = kh.st_service_us = kh.st_sojourn_us = 0;
	cur = khsize_tick(&kh.size, &m, now_ms);
	if (kh.size.why == KHSIZE_SERIAL || kh.size.why == KHSIZE_REPROBE || cur != old)
		log_info("token sessions %d -> %d (%s: %.1f ms per signature, %.1f busy, "
		    "%.1f in the keyholder%s)", old, cur, khsize_why_name(kh.size.why), (double)kh.size.w_us / 1000,
		    (double)kh.size.busy_milli / 1000, (double)kh.size.demand_milli / 1000,
		    kh.size.cap != 0 ? ", the token serializes" : "");
	if (cur == old)
		return false;
	kh.nworkers = cur;
	if (cur > old) {
		threads_start_locked();
		queue_signal_locked();
		/* The main loop ticks from now on, to shrink when it is quiet. */
		efd_write(kh.ctlefd);
	}
	return true;
}

/* The token's session pool to the current size (any thread, kh.mu not held). */
static void
size_apply(void)
{
	int n, r;

	pthread_mutex_lock(&kh.applymu);
	pthread_mutex_lock(&kh.mu);
	n = kh.nworkers;
	pthread_mutex_unlock(&kh.mu);
	if ((r = p11_token_set_sessions(kh.tok, n)) != 0)
		log_warn("token sessions: %s", hsm_err_msg(r));
	pthread_mutex_unlock(&kh.applymu);
}

/* Perform j, reply, and release it; *t its times when it was a signature. */
static void
job_run(struct job *j, struct job_times *t)
{
	const struct kh_token_ops o = { kh.tok, kh.so_pin_file, kh.so_pin_env, kh.sign_delay_ms };
	uint64_t t0 = now_us(), t1;
	int signed_ = kh_perform(&o, &j->req, j->deadline, j->reply, sizeof(j->reply), &j->replylen);

	t1 = now_us();
	t->n = 0;
	if (signed_) {
		/* Refusals and timeouts never reached the token: they would fake a fast one. */
		t->n = 1;
		t->service_us = t1 - t0;
		t->sojourn_us = t1 - j->arrived_us;
	}
	kh_send(j->conn, j->reply, j->replylen);
	fsrv_end(j->conn);
	free(j);
}

/* A performer finished (its times t): the next queued job for it, or NULL. */
static struct job *
job_next(const struct job_times *t)
{
	struct job *j;
	bool apply = false;

	pthread_mutex_lock(&kh.mu);
	kh.performing--;
	if (kh.autosize && t->n != 0) {
		uint64_t now = hsm_now_ms();

		kh.st_n += t->n;
		kh.st_service_us += t->service_us;
		kh.st_sojourn_us += t->sojourn_us;
		if (now >= kh.size.last + KHSIZE_TICK_MS)
			apply = size_tick_locked(now);
	}
	j = queue_take_locked();
	pthread_mutex_unlock(&kh.mu);
	if (apply)
		size_apply();
	return j;
}

/* Answer r at once (ping, refusals). */
static void
reply_now(struct fsrv_conn *c, const struct kh_request *r, int st)
{
	uint8_t frame[KH_HDR_LEN + KH_MAX_ERRTEXT];

	kh_send(c, frame, kh_make_reply(frame, sizeof(frame), r, st, NULL, 0, NULL, 0));
}

/* Answer a POOL request: the sizing's state, without the token. */
static void
pool_reply(struct fsrv_conn *c, const struct kh_request *r)
{
	uint8_t frame[KH_HDR_LEN + KH_POOL_LEN], body[KH_POOL_LEN];
	struct kh_pool p;
	int max;

	memset(&p, 0, sizeof(p));
	p.open = (uint16_t)p11_token_sessions(kh.tok, &max);
	pthread_mutex_lock(&kh.mu);
	p.sessions = (uint16_t)kh.nworkers;
	p.min = (uint16_t)(kh.autosize ? kh.size.c.min : kh.nworkers);
	p.max = (uint16_t)kh.maxworkers;
	p.cap = (uint16_t)kh.size.cap;
	p.latency_us = (uint32_t)(kh.size.w_us > UINT32_MAX ? UINT32_MAX : kh.size.w_us);
	p.base_us = (uint32_t)(kh.size.base_us > UINT32_MAX ? UINT32_MAX : kh.size.base_us);
	pthread_mutex_unlock(&kh.mu);
	kh_pool_encode(&p, body);
	kh_send(c, frame, kh_frame_encode(frame, sizeof(frame), r->type | KH_T_REPLY, r->id, 0,
	    body, sizeof(body), NULL, 0));
}

/* Frame server: the first bytes of an incomplete frame (garbage closes at once). */
static int
kh_check(const uint8_t *buf, size_t len)
{
	struct kh_frame f;

	return kh_frame_parse(buf, len, &f) < 0 ? -1 : 0;
}

/*
 * Frame server: one frame, answered at once or appended as a job to the
 * reading thread's list (turn). 0, or -1 when c must close.
 */
static int
kh_frame(void *ctx, struct fsrv_conn *c, void *turn, const uint8_t *buf, size_t len)
{
	const struct fsrv_peer *p = fsrv_peer(c);
	struct job ***tailp = turn, *j;
	struct kh_frame f;
	struct kh_request r;
	int n = kh_frame_parse(buf, len, &f);

	if (n != (int)len || kh_request_decode(&f, &r) != 0) {
		log_warn("closing peer pid %d uid %u: %s", (int)p->pid, (unsigned)p->uid,
		    n != (int)len ? "malformed frame" : "malformed request");
		return -1;
	}
	hsm_err_clear();
	if (kh.startup_err != 0) {
		reply_now(c, &r, hsm_err(kh.startup_err, "%s", kh.startup_msg));
		return 0;
	}
	if (r.type == KH_T_PING) {
		reply_now(c, &r, 0);
		return 0;
	}
	if (r.type == KH_T_POOL) {
		pool_reply(c, &r);
		return 0;
	}
	if (fsrv_begin(c, MAX_INFLIGHT) != 0) {
		reply_now(c, &r, hsm_err(HSM_EBUSY, "too many requests in flight"));
		return 0;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		fsrv_end(c);
		reply_now(c, &r, HSM_ENOMEM);
		return 0;
	}
	j->conn = c;
	j->req = r;
	j->deadline = hsm_now_ms() + r.deadline_ms;
	j->arrived_us = now_us();
	**tailp = j;
	*tailp = &j->next;
	return 0;
}

/*
 * This thread took c's readiness: read what is there (the frame server
 * gives the peer its turn back), keep the first job for itself when a
 * performer slot is free and queue the rest. Returns the job to perform,
 * or NULL.
 */
static struct job *
conn_readable(struct fsrv_conn *c)
{
	struct job *list = NULL, **tail = &list, *mine = NULL;

	fsrv_readable(c, &tail);
	/* Jobs read before a malformed frame are still answered (if the peer is there). */
	if (list != NULL) {
		pthread_mutex_lock(&kh.mu);
		if (kh.autosize && kh.performing == 0 && kh.nqueued == 0 && kh.st_n == 0)
			khsize_restart(&kh.size, hsm_now_ms());
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
			kh.nqueued++;
			for (kh.tail = list; kh.tail->next != NULL; kh.tail = kh.tail->next)
				kh.nqueued++;
		}
		queue_signal_locked();
		pthread_mutex_unlock(&kh.mu);
	}
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
			struct job_times t;

			job_run(j, &t);
			j = job_next(&t);
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

/*
 * Frame server: a peer within MAX_CONNS connected (main thread). The frame
 * server logs a refusal (throttled) with the reason recorded here.
 */
static int
kh_accept(void *ctx, struct fsrv_conn *c, const struct fsrv_peer *p)
{
	if (!uid_allowed(p->uid))
		return hsm_err(HSM_EPERM, "uid %u not allowed", (unsigned)p->uid);
	log_debug("peer pid %d uid %u connected", (int)p->pid, (unsigned)p->uid);
	return 0;
}

/* Frame server: a peer's read side ended (any thread); the main loop counts peers. */
static void
kh_closed(void *ctx, struct fsrv_conn *c, enum fsrv_why why)
{
	const struct fsrv_peer *p = fsrv_peer(c);

	if (why == FSRV_MALFORMED || why == FSRV_SYSTEM)
		log_warn("closing peer pid %d uid %u: %s", (int)p->pid, (unsigned)p->uid,
		    why == FSRV_MALFORMED ? "malformed frame" : "cannot watch the socket");
	efd_write(kh.ctlefd);
}

static const struct fsrv_ops kh_fsrv_ops = {
	.min_frame = KH_HDR_LEN,
	.max_frame = KH_MAX_FRAME,
	.max_out = MAX_OUTBUF,
	.read_batch = READ_BATCH,
	.max_conns = MAX_CONNS,
	.check = kh_check,
	.accept = kh_accept,
	.frame = kh_frame,
	.closed = kh_closed,
};

/* After the workers stopped: drop queued jobs and every peer. */
static void
release_all(void)
{
	struct job *j;

	while ((j = kh.head) != NULL) {
		kh.head = j->next;
		fsrv_end(j->conn);
		free(j);
	}
	kh.tail = NULL;
	fsrv_free(kh.srv);
	kh.srv = NULL;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh keyholder --module PATH --token PKCS11_URI (--pin-file F | --pin-env VAR\n"
	    "                        | --pin-fd N)\n"
	    "                        (--socket PATH | --fd N) [--allow-uid UID]... [--workers N|MIN-MAX]\n"
	    "                        [--shrink-after-ms MS] [--so-pin-file F | --so-pin-env VAR]\n"
	    "                        [--sign-delay-ms MS] [--quiet] [--verbose] [--user NAME]\n"
	    "                        [--seccomp MODE] [--seccomp-allow CALLS]\n"
	    "\n"
	    "The only hsmesh process that loads a PKCS#11 module or reads a PIN. Serves\n"
	    "generate / public key / sign / destroy requests (docs/PROTOCOL.md) to local\n"
	    "peers whose uid is allowed (default: the keyholder's own uid).\n"
	    "  --socket PATH       listen on a Unix socket (mode 0660)\n"
	    "  --fd N              serve the one connected socket N, exit when it closes\n"
	    "  --workers N         token sessions used in parallel, fixed (1..64)\n"
	    "  --workers MIN-MAX   sized to the token between MIN and MAX (default 2-64; 2-4 on\n"
	    "                      tpm2-pkcs11): grown at once from the measured signature\n"
	    "                      latency and demand, shrunk after a quiet period; a serial\n"
	    "                      token (TPM) is kept at its useful concurrency\n"
	    "  --shrink-after-ms MS  the quiet period before shrinking (default 30000)\n"
	    "  --pin-fd N          read the PIN from descriptor N (a pipe) until end of file\n"
	    "  --so-pin-file F, --so-pin-env VAR\n"
	    "                      the security officer's PIN, for WRAP only (hsmesh ca replicate)\n"
	    "  --user NAME         started as root: become NAME before opening the token\n"
	    "  --seccomp MODE      enforce (default), log, kill or off (docs/ARCHITECTURE.md)\n"
	    "  --seccomp-allow L   more system calls the module needs (comma-separated names)\n"
	    "  --sign-delay-ms MS  TEST SETTING: add MS to every signature (slow-token model)\n"
	    "  --describe KEYID    print the token's security attributes of one key (hex id) and exit\n");
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

/* The main loop's wait: a tick while the sizing is above min (to shrink when quiet). */
static int
main_timeout(void)
{
	int t = -1;

	if (!kh.autosize)
		return -1;
	pthread_mutex_lock(&kh.mu);
	if (kh.nworkers > kh.size.c.min || kh.performing + kh.nqueued > 0)
		t = (int)KHSIZE_TICK_MS;
	pthread_mutex_unlock(&kh.mu);
	return t;
}

/* The main loop's tick: the sizing, when no performer ticked it lately. */
static void
main_tick(void)
{
	uint64_t now = hsm_now_ms();
	bool apply = false;

	pthread_mutex_lock(&kh.mu);
	if (kh.autosize && now >= kh.size.last + KHSIZE_TICK_MS)
		apply = size_tick_locked(now);
	pthread_mutex_unlock(&kh.mu);
	if (apply)
		size_apply();
}

int
keyholder_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "module", required_argument, NULL, 'm' },
		{ "token", required_argument, NULL, 't' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "pin-env", required_argument, NULL, 'e' },
		{ "so-pin-file", required_argument, NULL, 'P' },
		{ "so-pin-env", required_argument, NULL, 'E' },
		{ "socket", required_argument, NULL, 's' },
		{ "fd", required_argument, NULL, 'f' },
		{ "allow-uid", required_argument, NULL, 'u' },
		{ "workers", required_argument, NULL, 'w' },
		{ "sign-delay-ms", required_argument, NULL, 'd' },
		{ "shrink-after-ms", required_argument, NULL, 'S' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "describe", required_argument, NULL, 'D' },
		{ "pin-fd", required_argument, NULL, 'F' },
		{ "user", required_argument, NULL, 'U' },
		{ "seccomp", required_argument, NULL, 'C' },
		{ "seccomp-allow", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *module = NULL, *uri = NULL, *sock = NULL, *describe = NULL;
	const char *user = NULL, *sc_mode = NULL, *sc_allow = NULL;
	struct p11_pin_source pin = { NULL, NULL, NULL, 0 };
	struct khsize_conf sc = { DEFAULT_MIN_WORKERS, MAX_WORKERS, 0, 0 };
	bool bounds_given = false;
	char *pinmem = NULL;
	size_t pinlen = 0;
	unsigned long v;
	int ch, fd = -1, nthreads, level = HSM_LOG_INFO, sfd = -1, st, rc = 1;
	sigset_t sigs;
	struct epoll_event ev;
	struct fsrv_ops ops;
	struct rlimit nocore = { 0, 0 };

	/* Nobody, root included via ptrace of a non-root uid, reads this process's memory or cores. */
	prctl(PR_SET_DUMPABLE, 0);
	setrlimit(RLIMIT_CORE, &nocore);
	/* An arena per performer that can run at once, not 8 per CPU (heap.h). */
	hsm_heap_lean(0);

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'm': module = optarg; break;
		case 't': uri = optarg; break;
		case 'p': pin.file = optarg; break;
		case 'e': pin.env = optarg; break;
		case 'P': kh.so_pin_file = optarg; break;
		case 'E': kh.so_pin_env = optarg; break;
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
			if (khsize_parse(optarg, MAX_WORKERS, &sc) != 0) goto badarg;
			bounds_given = true;
			break;
		case 'S':
			if (parse_uint(optarg, 3600000, &v) != 0 || v == 0) goto badarg;
			sc.shrink_ms = v;
			break;
		case 'd':
			if (parse_uint(optarg, 10000, &v) != 0) goto badarg;
			kh.sign_delay_ms = (unsigned)v;
			break;
		case 'q': level = -1; break;
		case 'v': level = HSM_LOG_DEBUG; break;
		case 'D': describe = optarg; break;
		case 'F':
			if (parse_uint(optarg, 1023, &v) != 0 || v < 3 || pin.value != NULL) goto badarg;
			if ((st = hsm_secret_read_fd((int)v, &pinmem, &pinlen)) != 0) {
				fprintf(stderr, "hsmesh keyholder: %s\n", hsm_err_msg(st));
				return 1;
			}
			close((int)v);
			pin.value = pinmem;
			pin.value_len = pinlen;
			break;
		case 'U': user = optarg; break;
		case 'C': sc_mode = optarg; break;
		case 'A': sc_allow = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	kh_relay_start(level >= HSM_LOG_DEBUG);
	if (describe != NULL && optind == argc && module != NULL && uri != NULL &&
	    (pin.file != NULL) + (pin.env != NULL) + (pin.value != NULL) == 1 && sock == NULL && fd < 0)
		return kh_describe_key(module, uri, &pin, describe);
	if (optind != argc || module == NULL || uri == NULL ||
	    (pin.file != NULL) + (pin.env != NULL) + (pin.value != NULL) != 1 ||
	    (sock == NULL) == (fd < 0) || (kh.so_pin_file != NULL && kh.so_pin_env != NULL)) {
		usage(stderr);
		return 2;
	}
	hsm_log_init("hsmesh keyholder", level);
	/* Its user's from now on; the token's files are opened as that user. */
	if ((st = priv_drop(user)) != 0) {
		log_err("%s", hsm_err_msg(st));
		return 1;
	}
	if (kh.nallow == 0)
		kh.allow[kh.nallow++] = getuid();

	pthread_mutex_init(&kh.mu, NULL);
	pthread_mutex_init(&kh.applymu, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The pool can hold max sessions; it starts at min. */
	kh.maxworkers = sc.max;
	kh.autosize = sc.min < sc.max;
	khsize_init(&kh.size, &sc, hsm_now_ms());
	if ((st = p11_token_open(module, uri, &pin, sc.max, &kh.tok)) == 0) {
		/* A TPM without bounds given: at most a few sessions even while probing. */
		if (!bounds_given && p11_token_is_tpm(kh.tok)) {
			sc.max = TPM_MAX_WORKERS;
			kh.maxworkers = sc.max;
			khsize_init(&kh.size, &sc, hsm_now_ms());
		}
		st = p11_token_set_sessions(kh.tok, sc.min);
	}
	if (st != 0) {
		kh.startup_err = st;
		snprintf(kh.startup_msg, sizeof(kh.startup_msg), "%s", hsm_err_msg(st));
		log_err("%s", kh.startup_msg);
		/* A listener has nobody to tell: exit. A parent on --fd gets the reason in its first reply. */
		if (sock != NULL)
			return 1;
		sc.min = 0;
		kh.autosize = false;
	}
	kh.nworkers = sc.min;
	hsm_secret_free(pinmem, pinlen);
	pinmem = NULL;
	/* The module is loaded and logged in: from here on, only the calls a token needs. */
	if ((st = sandbox_enter_named(SANDBOX_KEYHOLDER, sc_mode, sc_allow)) != 0) {
		log_err("%s", hsm_err_msg(st));
		goto out;
	}

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

	/* Peers of a socket path get the incomplete-frame timeout; the one parent does not. */
	ops = kh_fsrv_ops;
	if (sock != NULL)
		ops.frame_ms = FRAME_TIMEOUT_MS;
	if ((st = fsrv_new(&ops, NULL, kh.wep, &kh.srv)) != 0) {
		log_err("%s", hsm_err_msg(st));
		goto out;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = &kh.srv;
	epoll_ctl(kh.mep, EPOLL_CTL_ADD, fsrv_watch_fd(kh.srv), &ev);

	/* One thread more than performers: some thread always reads (see struct kh). */
	pthread_mutex_lock(&kh.mu);
	threads_start_locked();
	nthreads = kh.nthreads;
	pthread_mutex_unlock(&kh.mu);
	if (nthreads < kh.nworkers + 1) {
		log_err("cannot start worker thread");
		goto out;
	}
	if (kh.autosize)
		log_debug("token sessions sized between %d and %d", sc.min, sc.max);

	if (sock != NULL) {
		if ((st = fsrv_listen(kh.srv, sock, 0660)) != 0) {
			log_err("%s", hsm_err_msg(st));
			goto out;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &sock;
		epoll_ctl(kh.mep, EPOLL_CTL_ADD, fsrv_listen_fd(kh.srv), &ev);
		log_info("serving token '%s' on %s", p11_token_label(kh.tok), sock);
	} else {
		(void)fsrv_adopt(kh.srv, fd);
	}

	/* Started (the module's start-up included): its freed memory back to the kernel. */
	hsm_heap_trim();
	for (;;) {
		struct epoll_event evs[64];
		int n;

		/* A keyholder started for one parent lives as long as that parent's socket. */
		if (sock == NULL && fsrv_count(kh.srv) == 0) {
			rc = 0;
			break;
		}
		n = epoll_wait(kh.mep, evs, 64, main_timeout());
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0)
			main_tick();
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &sfd) {
				log_info("terminating on signal");
				rc = 0;
				goto out;
			} else if (p == &kh.ctlefd) {
				efd_drain(kh.ctlefd);
			} else if (p == &sock) {
				fsrv_accept(kh.srv);
			} else if (p == &kh.srv) {
				fsrv_flush_ready(kh.srv);
			}
		}
	}
out:
	atomic_store(&kh.stopping, 1);
	if (kh.stopefd >= 0)
		efd_write(kh.stopefd);
	/* No thread starts once stopping is set (threads_start_locked). */
	pthread_mutex_lock(&kh.mu);
	nthreads = kh.nthreads;
	pthread_mutex_unlock(&kh.mu);
	for (int i = 0; i < nthreads; i++)
		pthread_join(kh.threads[i], NULL);
	/* Queued jobs and peers hold each other: release both (and the listener). */
	release_all();
	p11_token_close(kh.tok);
	return kh.startup_err != 0 ? 1 : rc;
badarg:
	fprintf(stderr, "hsmesh keyholder: invalid option value '%s'\n", optarg);
	return 2;
}
