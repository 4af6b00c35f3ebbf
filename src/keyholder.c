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
 * Threads: the main thread runs an epoll loop that reads and validates
 * frames and writes replies; a pool of workers, each using its own token
 * session, performs the token operations, so many requests are in flight
 * and a slow operation does not stop the loop. Each request carries a
 * deadline; a request still queued when its deadline passes is answered
 * with HSM_ETIMEDOUT without touching the token. A malformed frame closes
 * that peer only.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
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

struct conn {
	int fd;
	uid_t uid;
	pid_t pid;
	int refs;			/* the loop + queued/running jobs; main thread only */
	int dead;
	int inflight;
	uint8_t in[2 * KH_MAX_FRAME];
	size_t inlen;
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

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
};

static struct {
	struct p11_token *tok;
	int startup_err;			/* token could not be opened: answer every request with it */
	char startup_msg[KH_MAX_ERRTEXT + 1];
	unsigned sign_delay_ms;
	uid_t allow[MAX_UIDS];
	int nallow;
	struct queue todo, done;
	int done_efd;
	int stopping;
	int epfd;
	int nconns;
} kh;

static void
q_push(struct queue *q, struct job *j)
{
	pthread_mutex_lock(&q->mu);
	j->next = NULL;
	if (q->tail != NULL)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

/* Pop one job; blocks when wait is set until a job arrives or stopping. */
static struct job *
q_pop(struct queue *q, int wait)
{
	struct job *j;

	pthread_mutex_lock(&q->mu);
	while (wait && q->head == NULL && !kh.stopping)
		pthread_cond_wait(&q->cv, &q->mu);
	if ((j = q->head) != NULL) {
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	pthread_mutex_unlock(&q->mu);
	return j;
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

static void *
worker_main(void *arg)
{
	struct job *j;
	uint64_t one = 1;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while ((j = q_pop(&kh.todo, 1)) != NULL) {
		perform(j);
		q_push(&kh.done, j);
		if (write(kh.done_efd, &one, sizeof(one)) < 0) {
			/* eventfd only fails on overflow, which still wakes the loop */
		}
	}
	return NULL;
}

static void
conn_unref(struct conn *c)
{
	if (--c->refs > 0)
		return;
	free(c->out);
	free(c);
}

static void
conn_close(struct conn *c, const char *why)
{
	if (c->dead)
		return;
	if (why != NULL)
		log_warn("closing peer pid %d uid %u: %s", (int)c->pid, (unsigned)c->uid, why);
	epoll_ctl(kh.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->dead = 1;
	kh.nconns--;
	conn_unref(c);
}

static void
conn_flush(struct conn *c)
{
	struct epoll_event ev = { .data.ptr = c };

	while (c->outlen > 0) {
		ssize_t w = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0) {
			conn_close(c, NULL);
			return;
		}
		memmove(c->out, c->out + w, c->outlen - (size_t)w);
		c->outlen -= (size_t)w;
	}
	ev.events = EPOLLIN | (c->outlen > 0 ? EPOLLOUT : 0);
	epoll_ctl(kh.epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
conn_send(struct conn *c, const uint8_t *frame, int len)
{
	if (c->dead || len <= 0)
		return;
	if (c->outlen + (size_t)len > MAX_OUTBUF) {
		conn_close(c, "peer does not read its replies");
		return;
	}
	if (c->outlen + (size_t)len > c->outcap) {
		size_t ncap = c->outcap ? c->outcap * 2 : 8192;
		uint8_t *n;

		while (ncap < c->outlen + (size_t)len)
			ncap *= 2;
		if ((n = realloc(c->out, ncap)) == NULL) {
			conn_close(c, "out of memory");
			return;
		}
		c->out = n;
		c->outcap = ncap;
	}
	memcpy(c->out + c->outlen, frame, (size_t)len);
	c->outlen += (size_t)len;
	conn_flush(c);
}

/* Answer r at once from the loop (ping, refusals). */
static void
reply_now(struct conn *c, const struct kh_request *r, int st)
{
	uint8_t frame[KH_HDR_LEN + KH_MAX_ERRTEXT];

	conn_send(c, frame, make_reply(frame, sizeof(frame), r, st, NULL, 0, NULL, 0));
}

static void
dispatch(struct conn *c, const struct kh_frame *f)
{
	struct kh_request r;
	struct job *j;

	if (kh_request_decode(f, &r) != 0) {
		conn_close(c, "malformed request");
		return;
	}
	hsm_err_clear();
	if (kh.startup_err != 0) {
		reply_now(c, &r, hsm_err(kh.startup_err, "%s", kh.startup_msg));
		return;
	}
	if (r.type == KH_T_PING) {
		reply_now(c, &r, 0);
		return;
	}
	if (c->inflight >= MAX_INFLIGHT) {
		reply_now(c, &r, hsm_err(HSM_EBUSY, "too many requests in flight"));
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		reply_now(c, &r, HSM_ENOMEM);
		return;
	}
	j->conn = c;
	j->req = r;
	j->deadline = hsm_now_ms() + r.deadline_ms;
	c->refs++;
	c->inflight++;
	q_push(&kh.todo, j);
}

static void
conn_read(struct conn *c)
{
	for (;;) {
		ssize_t got = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
		size_t off = 0;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			return;
		if (got <= 0) {
			conn_close(c, NULL);
			return;
		}
		c->inlen += (size_t)got;
		while (!c->dead) {
			struct kh_frame f;
			int n = kh_frame_parse(c->in + off, c->inlen - off, &f);

			if (n == 0)
				break;
			if (n < 0) {
				conn_close(c, "malformed frame");
				return;
			}
			dispatch(c, &f);
			off += (size_t)n;
		}
		if (c->dead)
			return;
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
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
	struct epoll_event ev = { .events = EPOLLIN };
	struct conn *c;

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
	if (kh.nconns >= MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("refusing peer pid %d: too many peers", (int)cred.pid);
		close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	c->uid = cred.uid;
	c->pid = cred.pid;
	c->refs = 1;
	ev.data.ptr = c;
	if (epoll_ctl(kh.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		free(c);
		return;
	}
	kh.nconns++;
	log_debug("peer pid %d uid %u connected", (int)cred.pid, (unsigned)cred.uid);
}

static void
drain_done(void)
{
	struct job *j;
	uint64_t v;

	if (read(kh.done_efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
	while ((j = q_pop(&kh.done, 0)) != NULL) {
		struct conn *c = j->conn;

		c->inflight--;
		conn_send(c, j->reply, j->replylen);
		conn_unref(c);
		free(j);
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
	pthread_t workers[MAX_WORKERS];
	unsigned long v;
	int ch, fd = -1, nworkers = 2, level = HSM_LOG_INFO, lfd = -1, sfd = -1, st, rc = 1;
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

	pthread_mutex_init(&kh.todo.mu, NULL);
	pthread_cond_init(&kh.todo.cv, NULL);
	pthread_mutex_init(&kh.done.mu, NULL);
	pthread_cond_init(&kh.done.cv, NULL);
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

	if ((kh.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (kh.done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
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
	epoll_ctl(kh.epfd, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.ptr = &kh.done_efd;
	epoll_ctl(kh.epfd, EPOLL_CTL_ADD, kh.done_efd, &ev);

	for (int i = 0; i < nworkers; i++) {
		if (pthread_create(&workers[i], NULL, worker_main, NULL) != 0) {
			log_err("cannot start worker thread");
			nworkers = i;
			goto out;
		}
	}

	if (sock != NULL) {
		if ((st = listen_unix(sock, &lfd)) != 0) {
			log_err("%s", hsm_err_msg(st));
			goto out;
		}
		ev.data.ptr = &lfd;
		epoll_ctl(kh.epfd, EPOLL_CTL_ADD, lfd, &ev);
		log_info("serving token '%s' on %s", p11_token_label(kh.tok), sock);
	} else {
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		conn_add(fd);
		if (kh.nconns == 0)
			goto out;
	}

	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(kh.epfd, evs, 64, -1);

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
			} else if (p == &kh.done_efd) {
				drain_done();
			} else if (p == &lfd) {
				int cfd;

				while ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
					conn_add(cfd);
			} else {
				struct conn *c = p;

				c->refs++;	/* survive a close inside the handlers */
				if (evs[i].events & EPOLLOUT)
					conn_flush(c);
				if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
					conn_read(c);
				conn_unref(c);
			}
		}
		/* A keyholder started for one parent lives as long as that parent's socket. */
		if (sock == NULL && kh.nconns == 0) {
			rc = 0;
			break;
		}
	}
out:
	pthread_mutex_lock(&kh.todo.mu);
	kh.stopping = 1;
	pthread_cond_broadcast(&kh.todo.cv);
	pthread_mutex_unlock(&kh.todo.mu);
	for (int i = 0; i < nworkers; i++)
		pthread_join(workers[i], NULL);
	/* Finished jobs still hold their peers: release both. */
	if (kh.done_efd > 0)
		drain_done();
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
