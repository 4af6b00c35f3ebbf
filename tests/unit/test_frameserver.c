/*
 * test_frameserver.c - the server side of the framed protocols
 * (frameserver.h) over socketpairs and a Unix listener: frames split
 * across partial reads and packed together, bounds and the early check,
 * a refusing frame callback, peer credentials and refusals, output kept
 * while the peer does not read and flushed when it does, a peer dropped
 * for not reading, requests in flight and their limit, replies written
 * from another thread while the peer goes and the server is freed,
 * several threads reading one epoll; the limits: peers per uid (root not
 * counted) and in all, refused before the owner sees them and logged at
 * most log_per_sec lines a second; half a frame then silence closed
 * (stalled), a silent peer closed unless kept or busy (idle); a frame far
 * longer than the first input buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "frameserver.h"
#include "util.h"

#define MAXF 64				/* max_frame of the test servers */
#define MAXOUT (64 * 1024)

/* What the callbacks saw. */
struct rec {
	pthread_mutex_t mu;
	int accepts, refuse, nframes, closes, refuse_marker;
	enum fsrv_why why;
	struct fsrv_peer peer;
	int have_peer;
	uint8_t last[MAXF];
	size_t lastlen;
	struct fsrv_conn *conn;		/* the last accepted */
	atomic_int frames_by_conn[8];	/* multi-reader test: frames per udata slot */
	int order_bad;
	int closes_by_why[8];		/* closed callbacks per enum fsrv_why */
	struct fsrv_conn *closed_conn;	/* the last one closed */
};

static struct rec R;
static int ep = -1;
static struct fsrv *S;
static char tag_watch, tag_listen;

static int
t_check(const uint8_t *buf, size_t len)
{
	/* The test protocol: the byte after the length is a version, 1. */
	return len >= 5 && buf[4] != 1 ? -1 : 0;
}

static int
t_accept(void *ctx, struct fsrv_conn *c, const struct fsrv_peer *p)
{
	pthread_mutex_lock(&R.mu);
	R.accepts++;
	if (p != NULL) {
		R.peer = *p;
		R.have_peer = 1;
	}
	R.conn = c;
	pthread_mutex_unlock(&R.mu);
	return R.refuse ? HSM_EPERM : 0;
}

static int
t_frame(void *ctx, struct fsrv_conn *c, void *turn, const uint8_t *buf, size_t len)
{
	int r = 0;

	pthread_mutex_lock(&R.mu);
	R.nframes++;
	memcpy(R.last, buf, len < MAXF ? len : MAXF);	/* longer ones: long_frame_grows_the_buffer */
	R.lastlen = len;
	if (len > 5 && buf[5] == 0xEE && R.refuse_marker)
		r = -1;
	pthread_mutex_unlock(&R.mu);
	return r;
}

static void
t_closed(void *ctx, struct fsrv_conn *c, enum fsrv_why why)
{
	pthread_mutex_lock(&R.mu);
	R.closes++;
	R.why = why;
	if ((unsigned)why < 8)
		R.closes_by_why[why]++;
	R.closed_conn = c;
	pthread_mutex_unlock(&R.mu);
}

static struct fsrv_ops ops = {
	.min_frame = 6,
	.max_frame = MAXF,
	.max_out = MAXOUT,
	.read_batch = 4,
	.check = t_check,
	.accept = t_accept,
	.frame = t_frame,
	.closed = t_closed,
};

static int
setup(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_watch };

	memset(&R, 0, sizeof(R));
	pthread_mutex_init(&R.mu, NULL);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || fsrv_new(&ops, NULL, ep, &S) != 0)
		return -1;
	return epoll_ctl(ep, EPOLL_CTL_ADD, fsrv_watch_fd(S), &ev);
}

static int
teardown(void **state)
{
	fsrv_free(S);
	S = NULL;
	close(ep);
	pthread_mutex_destroy(&R.mu);
	return 0;
}

/* Serve ep's events for up to ms (one round after the first events). */
static void
pump(int ms)
{
	struct epoll_event evs[16];
	int n = epoll_wait(ep, evs, 16, ms);

	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == &tag_watch)
			fsrv_flush_ready(S);
		else if (evs[i].data.ptr == &tag_listen)
			fsrv_accept(S);
		else
			fsrv_readable(evs[i].data.ptr, NULL);
	}
}

/* A frame: u32 length, version 1, type, then body bytes of value fill. */
static size_t
mkframe(uint8_t *out, size_t total, uint8_t type, uint8_t fill)
{
	hsm_put32(out, (uint32_t)(total - 4));
	out[4] = 1;
	out[5] = type;
	memset(out + 6, fill, total - 6);
	return total;
}

/* A served socketpair: returns the client end. */
static int
served_pair(void)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fsrv_adopt(S, sv[1]), 0);
	return sv[0];
}

/* The peer's end reads EOF (after draining what is there) within ms. */
static int
reads_eof(int fd, int ms)
{
	uint8_t buf[4096];

	for (uint64_t end = hsm_now_ms() + (uint64_t)ms; hsm_now_ms() < end; ) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		pump(0);
		if (poll(&p, 1, 10) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
	}
	return 0;
}

static void
frames_across_partial_reads(void **state)
{
	uint8_t f[3 * MAXF];
	struct fsrv_times t;
	size_t n = mkframe(f, 40, 7, 0xAB);
	int fd = served_pair();

	/* One byte at a time: nothing until the last byte, then exactly the frame. */
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(write(fd, f + i, 1), 1);
		pump(20);
		if (i + 1 < n)
			assert_int_equal(R.nframes, 0);
		if (i == 10) {
			fsrv_conn_times(R.conn, &t);
			assert_true(t.partial_since != 0);
			assert_int_equal(t.last_frame, 0);
		}
	}
	assert_int_equal(R.nframes, 1);
	assert_int_equal(R.lastlen, 40);
	assert_memory_equal(R.last, f, 40);
	fsrv_conn_times(R.conn, &t);
	assert_int_equal(t.partial_since, 0);
	assert_true(t.last_frame >= t.accepted && t.accepted != 0);

	/* Three frames and the start of a fourth in one write. */
	n = mkframe(f, 6, 1, 0) + mkframe(f + 6, MAXF, 2, 0x11);
	n += mkframe(f + n, 20, 3, 0x22);
	f[n++] = 0;
	assert_int_equal(write(fd, f, n), (ssize_t)n);
	pump(50);
	assert_int_equal(R.nframes, 4);
	assert_int_equal(R.lastlen, 20);
	assert_int_equal(R.last[5], 3);
	fsrv_conn_times(R.conn, &t);
	assert_true(t.partial_since != 0);
	assert_int_equal(fsrv_count(S), 1);
	close(fd);
	pump(50);
	assert_int_equal(R.closes, 1);
	assert_int_equal(R.why, FSRV_EOF);
	assert_int_equal(fsrv_count(S), 0);
}

static void
bad_lengths_close_that_peer_only(void **state)
{
	uint8_t f[MAXF + 8], big[4] = { 0, 0, 0, MAXF - 3 }, small[4] = { 0, 0, 0, 1 };
	int good = served_pair(), bad = served_pair();

	/* Longer than max_frame: closed as soon as the length is read. */
	assert_int_equal(write(bad, big, 4), 4);
	assert_true(reads_eof(bad, 2000));
	assert_int_equal(R.closes, 1);
	assert_int_equal(R.why, FSRV_MALFORMED);
	close(bad);

	/* Shorter than min_frame. */
	bad = served_pair();
	assert_int_equal(write(bad, small, 4), 4);
	assert_true(reads_eof(bad, 2000));
	assert_int_equal(R.why, FSRV_MALFORMED);
	close(bad);

	/* The owner's check refuses the first bytes of an incomplete frame. */
	bad = served_pair();
	mkframe(f, 30, 1, 0);
	f[4] = 9;
	assert_int_equal(write(bad, f, 8), 8);
	assert_true(reads_eof(bad, 2000));
	assert_int_equal(R.why, FSRV_MALFORMED);
	assert_int_equal(R.nframes, 0);
	close(bad);

	/* The other peer is still served. */
	assert_int_equal(write(good, f, mkframe(f, 10, 4, 0)), 10);
	pump(50);
	assert_int_equal(R.nframes, 1);
	assert_int_equal(fsrv_count(S), 1);
	close(good);
}

static void
refused_frame_closes_after_earlier_ones(void **state)
{
	uint8_t f[3 * MAXF];
	size_t n;
	int fd = served_pair();

	R.refuse_marker = 1;
	n = mkframe(f, 10, 1, 0);
	n += mkframe(f + n, 10, 0xEE, 0);
	n += mkframe(f + n, 10, 2, 0);
	assert_int_equal(write(fd, f, n), (ssize_t)n);
	assert_true(reads_eof(fd, 2000));
	/* The first frame, then the refused one; never the third. */
	assert_int_equal(R.nframes, 2);
	assert_int_equal(R.why, FSRV_REFUSED);
	assert_int_equal(fsrv_count(S), 0);
	close(fd);
}

static void
peer_credentials_and_refusal(void **state)
{
	char dir[] = "/tmp/hsm-fsrv-XXXXXX", path[128];
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_listen };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat sb;
	int fd, sv[2], status;
	pid_t child;

	/* A socketpair: this very process. */
	fd = served_pair();
	assert_true(R.have_peer);
	assert_int_equal(R.peer.uid, getuid());
	assert_int_equal(R.peer.gid, getgid());
	assert_int_equal(R.peer.pid, getpid());
	assert_int_equal(fsrv_count_uid(S, getuid()), 1);
	assert_int_equal(fsrv_count_uid(S, getuid() + 1), 0);
	close(fd);

	/* A listener: a child process connects; the server sees the child's pid. */
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	assert_int_equal(fsrv_listen(S, path, 0600), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fsrv_listen_fd(S), &ev), 0);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	R.have_peer = 0;
	if ((child = fork()) == 0) {
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		char b;

		if (c < 0 || connect(c, (struct sockaddr *)&sun, sizeof(sun)) != 0)
			_exit(1);
		_exit(read(c, &b, 1) == 0 ? 0 : 2);	/* EOF: the test closes us */
	}
	for (int i = 0; i < 200 && !R.have_peer; i++)
		pump(10);
	assert_true(R.have_peer);
	assert_int_equal(R.peer.pid, child);
	/* Refused: the peer reads EOF and nothing is counted. */
	R.refuse = 1;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fsrv_adopt(S, sv[1]), HSM_EPERM);
	assert_true(reads_eof(sv[0], 1000));
	close(sv[0]);
	assert_int_equal(fsrv_count(S), 1);	/* the child */
	fsrv_free(S);				/* closes the child's peer and the listener */
	S = NULL;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(R.why, FSRV_SHUTDOWN);
	assert_int_equal(access(path, F_OK), -1);	/* the socket path is gone */

	/* A non-socket at the path is never replaced. */
	assert_int_equal(fsrv_new(&ops, NULL, ep, &S), 0);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(fsrv_listen(S, path, 0600), HSM_EEXIST);
	unlink(path);
	rmdir(dir);
}

/* Read everything the peer has for us within ms; total bytes. */
static size_t
drain(int fd, uint8_t *seen, size_t cap, int ms)
{
	size_t got = 0;

	for (uint64_t end = hsm_now_ms() + (uint64_t)ms; hsm_now_ms() < end; ) {
		ssize_t n;

		pump(0);
		n = recv(fd, seen + got, cap - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			break;
		else
			usleep(1000);
	}
	return got;
}

static void
output_kept_then_flushed_in_order(void **state)
{
	uint8_t f[MAXF], *seen;
	int fd = served_pair(), sndbuf = 4096, nsent = 0;
	size_t got, want;

	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
	/* The peer does not read: replies pile up beyond the socket buffers, in the output. */
	for (int i = 0; i < 1000; i++) {
		mkframe(f, MAXF, (uint8_t)i, (uint8_t)(i * 7));
		assert_int_equal(fsrv_send(R.conn, f, MAXF), 0);
		nsent++;
	}
	want = (size_t)nsent * MAXF;
	assert_non_null(seen = malloc(want + 1));
	/* Now it reads: the watch flushes the rest, frames whole and in order. */
	got = drain(fd, seen, want + 1, 3000);
	assert_int_equal(got, want);
	for (int i = 0; i < nsent; i++) {
		assert_int_equal(hsm_get32(seen + (size_t)i * MAXF), MAXF - 4);
		assert_int_equal(seen[(size_t)i * MAXF + 5], (uint8_t)i);
		assert_int_equal(seen[(size_t)i * MAXF + MAXF - 1], (uint8_t)(i * 7));
	}
	free(seen);
	assert_int_equal(fsrv_count(S), 1);
	close(fd);
}

static void
peer_that_does_not_read_is_dropped(void **state)
{
	uint8_t f[MAXF];
	int fd = served_pair(), r = 0, i;

	mkframe(f, MAXF, 1, 0x5A);
	for (i = 0; i < 100000 && (r = fsrv_send(R.conn, f, MAXF)) == 0; i++)
		;
	assert_int_equal(r, HSM_EBUSY);
	assert_string_equal(hsm_err_msg(r), "peer does not read its replies");
	/* Dropped: later replies go nowhere, and the peer reads the end. */
	assert_int_equal(fsrv_send(R.conn, f, MAXF), HSM_ECLOSED);
	assert_true(reads_eof(fd, 3000));
	pump(20);
	assert_int_equal(R.closes, 1);
	assert_int_equal(R.why, FSRV_EOF);
	assert_int_equal(fsrv_count(S), 0);
	close(fd);
}

static void
inflight_limit(void **state)
{
	int fd = served_pair();
	struct fsrv_conn *c = R.conn;

	for (int i = 0; i < 3; i++)
		assert_int_equal(fsrv_begin(c, 3), 0);
	assert_int_equal(fsrv_begin(c, 3), HSM_EBUSY);
	assert_int_equal(fsrv_inflight(c), 3);
	assert_int_equal(fsrv_inflight_total(S), 3);
	/* The peer goes: the requests keep c alive until they end. */
	close(fd);
	pump(50);
	assert_int_equal(R.closes, 1);
	assert_int_equal(fsrv_count(S), 0);
	assert_int_equal(fsrv_inflight_total(S), 0);	/* open peers only */
	assert_int_equal(fsrv_send(c, (const uint8_t *)"x", 1), HSM_ECLOSED);
	for (int i = 0; i < 3; i++)
		fsrv_end(c);
}

/* A thread answering requests in flight, slowly, whatever happens to the peer. */
struct replier {
	struct fsrv_conn *c;
	int n, sent, closed;
};

static void *
replier_main(void *arg)
{
	struct replier *rp = arg;
	uint8_t f[MAXF];

	mkframe(f, 16, 9, 0);
	for (int i = 0; i < rp->n; i++) {
		int r = fsrv_send(rp->c, f, 16);

		if (r == 0)
			rp->sent++;
		else if (r == HSM_ECLOSED)
			rp->closed++;
		fsrv_end(rp->c);
		usleep(2000);
	}
	return NULL;
}

static void
replies_from_a_thread_while_the_peer_and_server_go(void **state)
{
	struct replier rp = { .n = 50 };
	pthread_t th;
	int fd = served_pair();

	rp.c = R.conn;
	for (int i = 0; i < rp.n; i++)
		assert_int_equal(fsrv_begin(rp.c, 100), 0);
	assert_int_equal(pthread_create(&th, NULL, replier_main, &rp), 0);
	usleep(20000);
	/* The owner drops the peer, then frees the whole server, replies still coming. */
	fsrv_kill(rp.c);
	pump(20);
	fsrv_free(S);
	S = NULL;
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(rp.sent > 0);
	assert_true(rp.closed > 0);
	assert_int_equal(rp.sent + rp.closed, rp.n);
	close(fd);
	/* The last fsrv_end freed the connection and the server (ASan: no leak, no use after free). */
}

/* Several threads take reads from one epoll (EPOLLONESHOT): every frame exactly once, in order. */
struct reader_arg {
	atomic_int stop;
};

static int
mt_frame(void *ctx, struct fsrv_conn *c, void *turn, const uint8_t *buf, size_t len)
{
	int slot = (int)(intptr_t)fsrv_udata(c), want = atomic_load(&R.frames_by_conn[slot]);

	/* The body carries the sender's sequence number. */
	if ((int)hsm_get32(buf + 6) != want)
		R.order_bad = 1;
	atomic_store(&R.frames_by_conn[slot], want + 1);
	usleep(50);
	return 0;
}

static int mt_next_slot;

static int
mt_accept(void *ctx, struct fsrv_conn *c, const struct fsrv_peer *p)
{
	fsrv_set_udata(c, (void *)(intptr_t)mt_next_slot++);
	return 0;
}

static void *
reader_main(void *arg)
{
	struct reader_arg *ra = arg;

	while (!atomic_load(&ra->stop)) {
		struct epoll_event ev;

		if (epoll_wait(ep, &ev, 1, 10) == 1 && ev.data.ptr != &tag_watch)
			fsrv_readable(ev.data.ptr, NULL);
	}
	return NULL;
}

static void
several_reader_threads(void **state)
{
	struct fsrv_ops mt = ops;
	struct reader_arg ra = { 0 };
	pthread_t th[3];
	int fds[4], total = 0;

	fsrv_free(S);
	mt.frame = mt_frame;
	mt.accept = mt_accept;
	mt.read_batch = 1;
	mt_next_slot = 0;
	assert_int_equal(fsrv_new(&mt, NULL, ep, &S), 0);
	for (int i = 0; i < 4; i++)
		fds[i] = served_pair();
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, &ra), 0);
	for (int seq = 0; seq < 200; seq++) {
		for (int i = 0; i < 4; i++) {
			uint8_t f[16];

			mkframe(f, 10, 1, 0);
			hsm_put32(f + 6, (uint32_t)seq);
			assert_int_equal(write(fds[i], f, 10), 10);
		}
	}
	for (int i = 0; i < 500 && total < 800; i++) {
		total = 0;
		for (int k = 0; k < 4; k++)
			total += atomic_load(&R.frames_by_conn[k]);
		usleep(10000);
	}
	atomic_store(&ra.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(total, 800);
	assert_int_equal(R.order_bad, 0);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
}

/* ---- limits ---- */

/* A server with ops and these limits in place of the setup's. */
static void
limited_server(int max_conns, int max_uid, unsigned frame_ms, unsigned idle_ms)
{
	struct fsrv_ops o = ops;

	fsrv_free(S);
	o.max_conns = max_conns;
	o.max_conns_uid = max_uid;
	o.frame_ms = frame_ms;
	o.idle_ms = idle_ms;
	o.log_per_sec = 2;
	o.what = "test peer";
	assert_int_equal(fsrv_new(&o, NULL, ep, &S), 0);
	/* Its output epoll, with its timer, as the owner's loop polls it. */
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fsrv_watch_fd(S),
	    &(struct epoll_event){ .events = EPOLLIN, .data.ptr = &tag_watch }), 0);
}

/*
 * A socketpair made by a process of uid (its SO_PEERCRED), both ends here:
 * the peer's end in *peer; the other end adopted by the server, and its
 * fsrv_adopt result returned. Another uid than ours needs root.
 */
static int
adopt_as(uid_t uid, int *peer)
{
	int ctl[2], sv[2], st, r;
	char cbuf[CMSG_SPACE(2 * sizeof(int))], b = 0;
	struct iovec iov = { &b, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
	    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	pid_t child;

	if (uid == getuid()) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		*peer = sv[0];
		return fsrv_adopt(S, sv[1]);
	}
	assert_int_equal(getuid(), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl), 0);
	if ((child = fork()) == 0) {
		if (setgid(uid) != 0 || setuid(uid) != 0 ||
		    socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
			_exit(1);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
		memcpy(CMSG_DATA(cm), sv, 2 * sizeof(int));
		_exit(sendmsg(ctl[1], &mh, 0) == 1 ? 0 : 2);
	}
	close(ctl[1]);
	r = (int)recvmsg(ctl[0], &mh, 0);
	close(ctl[0]);
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(r == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cm = CMSG_FIRSTHDR(&mh);
	assert_non_null(cm);
	memcpy(sv, CMSG_DATA(cm), 2 * sizeof(int));
	*peer = sv[0];
	return fsrv_adopt(S, sv[1]);
}

/* Run fn with stderr going to a file; returns the lines that contain needle. */
static int
stderr_lines(void (*fn)(void *), void *arg, const char *needle)
{
	char path[] = "/tmp/hsm-fsrv-log-XXXXXX", line[512];
	int fd = mkstemp(path), saved = dup(2), n = 0;
	FILE *f;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	assert_non_null(f = fopen(path, "r"));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, needle) != NULL)
			n++;
		fprintf(stderr, "# %s", line);
	}
	fclose(f);
	unlink(path);
	return n;
}

struct flood {
	uid_t uid;
	int n, accepted, refused;
	int peers[16];
};

static void
flood(void *arg)
{
	struct flood *fl = arg;

	for (int i = 0; i < fl->n; i++) {
		int peer, r = adopt_as(fl->uid, &peer);

		if (r == 0) {
			fl->peers[fl->accepted++] = peer;
		} else {
			assert_int_equal(r, HSM_EBUSY);
			fl->refused++;
			assert_true(reads_eof(peer, 1000));
			close(peer);
		}
	}
}

static void
quotas_per_uid_and_in_all(void **state)
{
	struct flood a = { 12345, 5, 0, 0, { 0 } }, b = { 12346, 3, 0, 0, { 0 } };
	struct flood root = { 0, 3, 0, 0, { 0 } };
	struct fsrv_stats st;
	int peer;

	if (getuid() != 0)
		skip();		/* peers of several uids need root */
	limited_server(8, 3, 0, 0);
	/* uid 12345 gets 3; two more are refused, and the server logs 2 lines a second. */
	assert_int_equal(stderr_lines(flood, &a, "refused test peer uid 12345"), 2);
	assert_int_equal(a.accepted, 3);
	assert_int_equal(a.refused, 2);
	assert_int_equal(R.accepts, 3);		/* the owner never saw the refused ones */
	assert_int_equal(fsrv_count_uid(S, 12345), 3);
	/* Another uid is not held up by it. */
	flood(&b);
	assert_int_equal(b.accepted, 3);
	/* Root is not counted per uid, only in all: 2 fit the 8, the third is refused. */
	flood(&root);
	assert_int_equal(root.accepted, 2);
	assert_int_equal(fsrv_count(S), 8);
	fsrv_stats(S, &st);
	assert_int_equal(st.refused_limit, 3);
	assert_int_equal(st.refused_owner, 0);
	assert_true(st.log_suppressed >= 1);
	/* A peer of 12345 goes: another of 12345 fits again (not one of the full total). */
	close(a.peers[0]);
	close(root.peers[0]);
	for (int i = 0; i < 100 && fsrv_count(S) > 6; i++)
		pump(10);
	assert_int_equal(fsrv_count(S), 6);
	assert_int_equal(adopt_as(12345, &peer), 0);
	close(peer);
	/* The owner's refusals are logged (throttled) with the reason it recorded. */
	R.refuse = 1;
	assert_int_equal(adopt_as(12347, &peer), HSM_EPERM);
	close(peer);
	fsrv_stats(S, &st);
	assert_int_equal(st.refused_owner, 1);
	for (int i = 1; i < a.accepted; i++)
		close(a.peers[i]);
	for (int i = 0; i < b.accepted; i++)
		close(b.peers[i]);
	close(root.peers[1]);
}

/* Whether peer has read EOF (non-blocking). */
static int
at_eof(int peer)
{
	uint8_t b[64];
	ssize_t n = recv(peer, b, sizeof(b), MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void
stalled_and_idle_peers_closed(void **state)
{
	uint8_t f[MAXF];
	struct fsrv_conn *busy;
	struct fsrv_stats st;
	int half, idle, keep, inflight, active;
	long t_half = -1, t_idle = -1, t_inflight = -1;
	uint64_t t0;

	limited_server(0, 0, 300, 600);
	t0 = hsm_now_ms();
	half = served_pair();
	idle = served_pair();
	keep = served_pair();
	fsrv_keep(R.conn, 1);
	inflight = served_pair();
	busy = R.conn;
	assert_int_equal(fsrv_begin(busy, 4), 0);
	active = served_pair();
	assert_int_equal(write(half, "\0\0\0", 3), 3);	/* half a frame, then silence */

	/* 2.5 s: a frame from active every 100 ms; the request ends at 800 ms. */
	for (int tick = 0; tick < 25; tick++) {
		long now;

		assert_int_equal(write(active, f, mkframe(f, 10, 1, 0)), 10);
		for (uint64_t end = hsm_now_ms() + 100; hsm_now_ms() < end;)
			pump(10);
		now = (long)(hsm_now_ms() - t0);
		if (t_half < 0 && at_eof(half))
			t_half = now;
		if (t_idle < 0 && at_eof(idle))
			t_idle = now;
		if (t_inflight < 0 && at_eof(inflight))
			t_inflight = now;
		if (tick == 7)
			fsrv_end(busy);
	}
	pump(50);
	print_message("# half a frame closed at %ld ms, silent at %ld ms, silent after its "
	    "request ended (800 ms) at %ld ms\n", t_half, t_idle, t_inflight);
	/* After frame_ms (300), idle_ms (600), and idle_ms after the request's end. */
	assert_true(t_half >= 300);
	assert_true(t_idle >= 600 && t_idle > t_half);
	assert_true(t_inflight >= 1400);
	/* The kept one and the active one stay. */
	assert_false(at_eof(keep));
	assert_false(at_eof(active));
	assert_int_equal(fsrv_count(S), 2);
	assert_int_equal(R.closes_by_why[FSRV_STALLED], 1);
	assert_int_equal(R.closes_by_why[FSRV_IDLE], 2);
	fsrv_stats(S, &st);
	assert_int_equal(st.closed_stalled, 1);
	assert_int_equal(st.closed_idle, 2);
	close(half);
	close(idle);
	close(keep);
	close(inflight);
	close(active);
}

static void
long_frame_grows_the_buffer(void **state)
{
	struct fsrv_ops o = ops;
	size_t big = 70000;
	uint8_t *f = malloc(big);
	int fd;

	fsrv_free(S);
	o.max_frame = 100000;
	assert_int_equal(fsrv_new(&o, NULL, ep, &S), 0);
	fd = served_pair();
	hsm_put32(f, (uint32_t)(big - 4));
	f[4] = 1;
	f[5] = 3;
	for (size_t i = 6; i < big; i++)
		f[i] = (uint8_t)i;
	/* In pieces: the buffer grows as the frame comes; two frames back to back. */
	for (int k = 0; k < 2; k++)
		for (size_t off = 0; off < big; off += 7000) {
			size_t n = big - off < 7000 ? big - off : 7000;

			assert_int_equal(write(fd, f + off, n), (ssize_t)n);
			pump(20);
		}
	for (int i = 0; i < 50 && R.nframes < 2; i++)
		pump(20);
	assert_int_equal(R.nframes, 2);
	assert_int_equal(fsrv_count(S), 1);
	close(fd);
	free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(frames_across_partial_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_lengths_close_that_peer_only, setup, teardown),
		cmocka_unit_test_setup_teardown(refused_frame_closes_after_earlier_ones, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(peer_credentials_and_refusal, setup, teardown),
		cmocka_unit_test_setup_teardown(output_kept_then_flushed_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(peer_that_does_not_read_is_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(inflight_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(replies_from_a_thread_while_the_peer_and_server_go,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(several_reader_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(quotas_per_uid_and_in_all, setup, teardown),
		cmocka_unit_test_setup_teardown(stalled_and_idle_peers_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(long_frame_grows_the_buffer, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
