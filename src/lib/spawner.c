/*
 * spawner.c - the helper that starts a confined daemon's programs (see
 * spawner.h).
 *
 * Control protocol on a SOCK_SEQPACKET socketpair, one request at a time
 * (a mutex in the daemon): the request is a struct req with the program's
 * index and the target numbers, plus the descriptors in SCM_RIGHTS; the
 * answer a struct rep (the pid, or an errno). The program's process is
 * made with clone(CLONE_PARENT): the daemon's child, not the spawner's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "spawner.h"

struct req {
	unsigned prog;
	unsigned nfds;
	int targets[SPAWNER_MAX_FDS];
};

struct rep {
	int err;		/* 0, or an errno */
	pid_t pid;
};

struct spawner {
	int fd;			/* our end of the control socket */
	pid_t pid;
	pthread_mutex_t mu;
};

/* Receive one request and its descriptors (-1 on end of file or error). */
static int
recv_req(int fd, struct req *rq, int *fds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * SPAWNER_MAX_FDS)];
	struct iovec iov = { .iov_base = rq, .iov_len = sizeof(*rq) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
	    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	ssize_t n;
	unsigned got = 0;

	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			got = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (got > SPAWNER_MAX_FDS)
				got = SPAWNER_MAX_FDS;
			memcpy(fds, CMSG_DATA(cm), got * sizeof(int));
		}
	if ((size_t)n != sizeof(*rq) || (mh.msg_flags & MSG_CTRUNC) || rq->nfds != got) {
		for (unsigned i = 0; i < got; i++)
			close(fds[i]);
		rq->nfds = 0;
		rq->prog = (unsigned)-1;	/* answered EINVAL */
	}
	return 0;
}

/*
 * In the program's process: the descriptors moved to their numbers (via
 * numbers above every target first, so no move clobbers another), the
 * secret's pipe, default signals, exec. Never returns.
 */
static void
child_exec(const struct spawn_prog *p, const struct req *rq, int *fds, int secret_rd)
{
	sigset_t none;
	int tmp[SPAWNER_MAX_FDS + 1];
	unsigned n = rq->nfds;

	for (unsigned i = 0; i < n; i++)
		if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64)) < 0)
			_exit(127);
	if (secret_rd >= 0 && (tmp[n] = fcntl(secret_rd, F_DUPFD_CLOEXEC, 64)) < 0)
		_exit(127);
	for (unsigned i = 0; i < n; i++)
		if (dup2(tmp[i], rq->targets[i]) < 0)
			_exit(127);
	if (secret_rd >= 0 && dup2(tmp[n], p->secret_fd) < 0)
		_exit(127);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* A bare name is looked for in PATH (an evidence command), as posix_spawnp does. */
	if (strchr(p->path, '/') != NULL)
		execv(p->path, p->argv);
	else
		execvp(p->path, p->argv);
	_exit(127);
}

/* Start program rq->prog: the pid, or -errno. */
static pid_t
run(const struct spawn_prog *progs, size_t n, const struct req *rq, int *fds)
{
	const struct spawn_prog *p;
	int pp[2] = { -1, -1 };
	long pid;

	if (rq->prog >= n)
		return -EINVAL;
	p = &progs[rq->prog];
	for (unsigned i = 0; i < rq->nfds; i++)
		if (rq->targets[i] < 0 || rq->targets[i] > 63)
			return -EINVAL;
	if (p->secret != NULL) {
		/* At most 4 KiB: the pipe holds it all, the write never blocks. */
		if (pipe2(pp, O_CLOEXEC) != 0)
			return -errno;
		if (write(pp[1], p->secret, p->secret_len) != (ssize_t)p->secret_len) {
			close(pp[0]);
			close(pp[1]);
			return -EIO;
		}
		close(pp[1]);
	}
	pid = syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), 0UL, NULL, NULL, 0UL);
	if (pid == 0)
		child_exec(p, rq, fds, pp[0]);
	if (pp[0] >= 0)
		close(pp[0]);
	return pid < 0 ? -errno : (pid_t)pid;
}

/* The spawner's life: requests until the daemon closes the socket. */
static void
serve(int fd, const struct spawn_prog *progs, size_t n)
{
	struct req rq;
	int fds[SPAWNER_MAX_FDS];

	for (;;) {
		struct rep rp = { 0, -1 };
		pid_t pid;

		if (recv_req(fd, &rq, fds) != 0)
			return;
		pid = rq.prog == (unsigned)-1 ? -EINVAL : run(progs, n, &rq, fds);
		for (unsigned i = 0; i < rq.nfds; i++)
			close(fds[i]);
		if (pid < 0)
			rp.err = -pid;
		else
			rp.pid = pid;
		if (send(fd, &rp, sizeof(rp), MSG_NOSIGNAL) != (ssize_t)sizeof(rp))
			return;
	}
}

/* Close every descriptor but 0, 1, 2 and keep (> 2). */
static void
close_others(int keep)
{
	if (keep > 3)
		(void)syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U);
	(void)syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U);
}

int
spawner_start(const struct spawn_prog *progs, size_t n, struct spawner **out)
{
	struct spawner *sp;
	sigset_t all, old;
	int sv[2];
	pid_t pid;

	*out = NULL;
	if (n == 0 || n > SPAWNER_MAX_PROGS)
		return hsm_err(HSM_EINVAL, "a spawner runs 1..%d programs", SPAWNER_MAX_PROGS);
	for (size_t i = 0; i < n; i++)
		if (progs[i].path == NULL || progs[i].argv == NULL ||
		    (progs[i].secret != NULL && (progs[i].secret_len > 4096 ||
		    progs[i].secret_fd < 3 || progs[i].secret_fd > 63)))
			return hsm_err(HSM_EINVAL, "spawner program %zu: bad description", i);
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return HSM_ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		free(sp);
		return hsm_err(HSM_EIO, "socketpair: %s", strerror(errno));
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0) {
		/* The spawner: single-threaded from here on; it exits with the daemon. */
		prctl(PR_SET_DUMPABLE, 0);
		prctl(PR_SET_NAME, "hsmesh-spawner");
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		if (getppid() == 1)
			_exit(0);
		close_others(sv[1]);
		serve(sv[1], progs, n);
		/* Its copies of the secrets (non-dumpable memory) go with it. */
		_exit(0);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		free(sp);
		return hsm_err(HSM_EIO, "fork: %s", strerror(errno));
	}
	sp->fd = sv[0];
	sp->pid = pid;
	pthread_mutex_init(&sp->mu, NULL);
	*out = sp;
	return 0;
}

int
spawner_spawn(struct spawner *sp, unsigned prog, const int *fds, const int *targets,
    size_t nfds, pid_t *pid)
{
	char cbuf[CMSG_SPACE(sizeof(int) * SPAWNER_MAX_FDS)];
	struct req rq;
	struct rep rp;
	struct iovec iov = { .iov_base = &rq, .iov_len = sizeof(rq) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct pollfd pf;
	ssize_t r;
	int st = 0;

	*pid = -1;
	if (nfds > SPAWNER_MAX_FDS)
		return hsm_err(HSM_EINVAL, "at most %d descriptors", SPAWNER_MAX_FDS);
	memset(&rq, 0, sizeof(rq));
	rq.prog = prog;
	rq.nfds = (unsigned)nfds;
	for (size_t i = 0; i < nfds; i++)
		rq.targets[i] = targets[i];
	if (nfds > 0) {
		struct cmsghdr *cm;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	pthread_mutex_lock(&sp->mu);
	do
		r = sendmsg(sp->fd, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(rq)) {
		st = hsm_err(HSM_EIO, "the spawner is gone");
		goto out;
	}
	pf.fd = sp->fd;
	pf.events = POLLIN;
	do
		r = poll(&pf, 1, SPAWNER_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		st = hsm_err(HSM_ETIMEDOUT, "the spawner did not answer");
		goto out;
	}
	do
		r = recv(sp->fd, &rp, sizeof(rp), 0);
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(rp)) {
		st = hsm_err(HSM_EIO, "the spawner is gone");
		goto out;
	}
	if (rp.err != 0) {
		st = hsm_err(rp.err == EINVAL ? HSM_EINVAL : HSM_EIO, "cannot start program %u: %s",
		    prog, strerror(rp.err));
		goto out;
	}
	*pid = rp.pid;
 out:
	pthread_mutex_unlock(&sp->mu);
	return st;
}

pid_t
spawner_pid(const struct spawner *sp)
{
	return sp->pid;
}

void
spawner_free(struct spawner *sp)
{
	if (sp == NULL)
		return;
	close(sp->fd);
	while (waitpid(sp->pid, NULL, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_destroy(&sp->mu);
	free(sp);
}
