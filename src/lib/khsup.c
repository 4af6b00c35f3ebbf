/*
 * khsup.c - a keyholder restarted when it dies (see khsup.h). One thread
 * per supervised keyholder waits on a pidfd of the child (or polls it
 * where pidfds are missing) and on a stop pipe; it alone reaps and
 * restarts the child, so no other code of the process may reap it.
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "khsup.h"
#include "log.h"
#include "spawner.h"
#include "util.h"

#define POLL_MS 200		/* without a pidfd: how often the child is looked at */
#define EXIT_WAIT_MS 5000	/* at stop: how long it may take to exit */

struct khsup {
	struct kh_spawn_opts o;
	char *module, *uri, *pin_file, *pin_env, *exe, *user, *seccomp, *seccomp_allow;
	struct spawner *sp;
	char who[32];
	struct kh_client *kh;
	pthread_t th;
	int stop[2];			/* the supervisor stops when stop[1] closes */
	atomic_int up;
	atomic_int pid;
	atomic_uint restarts;
	void (*state_cb)(void *arg, int up);
	void *arg;
};

static char *
dup_or_null(const char *s, int *bad)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*bad = 1;
	return d;
}

static int
pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Sleep ms, or less when stopped: 1 if stopped. */
static int
stopped_within(struct khsup *s, unsigned ms)
{
	struct pollfd p = { .fd = s->stop[0], .events = POLLIN };

	while (poll(&p, 1, (int)ms) < 0 && errno == EINTR)
		;
	return p.revents != 0;
}

/* Wait until the child pid exits (1, *status set) or a stop (0). */
static int
await_death(struct khsup *s, pid_t pid, int *status)
{
	int pfd = pidfd_of(pid);

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = s->stop[0], .events = POLLIN },
			{ .fd = pfd, .events = POLLIN },
		};
		int n = poll(p, pfd >= 0 ? 2 : 1, pfd >= 0 ? -1 : POLL_MS);

		if (n < 0 && errno == EINTR)
			continue;
		if (p[0].revents != 0) {
			if (pfd >= 0)
				close(pfd);
			return 0;
		}
		if (waitpid(pid, status, WNOHANG) == pid) {
			if (pfd >= 0)
				close(pfd);
			return 1;
		}
	}
}

static void
set_up(struct khsup *s, int up)
{
	atomic_store(&s->up, up);
	if (s->state_cb != NULL)
		s->state_cb(s->arg, up);
}

static void *
sup_main(void *arg)
{
	struct khsup *s = arg;
	unsigned backoff = KHSUP_BACKOFF_MIN_MS;
	uint64_t started = hsm_now_ms();
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		pid_t pid = (pid_t)atomic_load(&s->pid), np;
		int status = 0, st;

		if (!await_death(s, pid, &status))
			break;
		atomic_store(&s->pid, -1);
		kh_client_set_gone(s->kh, "restarting");
		set_up(s, 0);
		/* A keyholder that ran a while starts over from the shortest wait. */
		if (hsm_now_ms() - started >= KHSUP_STABLE_MS)
			backoff = KHSUP_BACKOFF_MIN_MS;
		log_err("%s keyholder (pid %ld) exited (%s %d): restarting in %u.%u s", s->who,
		    (long)pid, WIFSIGNALED(status) ? "signal" : "status",
		    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), backoff / 1000,
		    backoff % 1000 / 100);
		for (;;) {
			if (stopped_within(s, backoff))
				return NULL;
			if (backoff < KHSUP_BACKOFF_MAX_MS)
				backoff = backoff * 2 > KHSUP_BACKOFF_MAX_MS ? KHSUP_BACKOFF_MAX_MS :
				    backoff * 2;
			if ((st = kh_respawn(s->kh, &s->o, &np)) == 0)
				break;
			kh_client_set_gone(s->kh, "restarting");
			log_err("%s keyholder restart failed: %s; retrying in %u.%u s", s->who,
			    hsm_err_msg(st), backoff / 1000, backoff % 1000 / 100);
		}
		started = hsm_now_ms();
		atomic_store(&s->pid, np);
		atomic_fetch_add(&s->restarts, 1);
		set_up(s, 1);
		log_info("%s keyholder restarted (pid %ld; restart %u)", s->who, (long)np,
		    atomic_load(&s->restarts));
	}
	return NULL;
}

static void
free_strings(struct khsup *s)
{
	free(s->module);
	free(s->uri);
	free(s->pin_file);
	free(s->pin_env);
	free(s->exe);
	free(s->user);
	free(s->seccomp);
	free(s->seccomp_allow);
}

/*
 * The spawner that starts the keyholder now and after each death, forked
 * before the caller confines itself (spawner.h). A PIN named by pin_env
 * is taken out of our environment here (its bytes in /proc/PID/environ
 * overwritten) and handed to each keyholder through a pipe (--pin-fd 4):
 * only the spawner keeps a copy, and the keyholders' environments never
 * hold it.
 */
static int
start_spawner(struct khsup *s)
{
	struct kh_argv a;
	struct spawn_prog prog;
	char *pin = NULL;
	size_t pinlen = 0;
	int st;

	if (s->o.pin_env != NULL &&
	    (st = hsm_secret_take_env(s->o.pin_env, &pin, &pinlen)) != 0)
		return st;
	if ((st = kh_argv(&s->o, pin != NULL ? KHSUP_PIN_FD : -1, &a)) != 0)
		goto out;
	memset(&prog, 0, sizeof(prog));
	prog.path = s->o.exe != NULL ? s->o.exe : "/proc/self/exe";
	prog.argv = (char *const *)a.v;
	prog.secret = pin;
	prog.secret_len = pinlen;
	prog.secret_fd = KHSUP_PIN_FD;
	if ((st = spawner_start(&prog, 1, &s->sp)) != 0)
		goto out;
	s->o.spawner = s->sp;
	s->o.spawn_prog = 0;
 out:
	hsm_secret_free(pin, pinlen);
	return st;
}

int
khsup_start(const struct kh_spawn_opts *o, const char *who,
    void (*state_cb)(void *arg, int up), void *arg, struct khsup **out)
{
	struct khsup *s;
	pid_t pid;
	int bad = 0, st;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return HSM_ENOMEM;
	s->o = *o;
	s->o.module = s->module = dup_or_null(o->module, &bad);
	s->o.token_uri = s->uri = dup_or_null(o->token_uri, &bad);
	s->o.pin_file = s->pin_file = dup_or_null(o->pin_file, &bad);
	s->o.pin_env = s->pin_env = dup_or_null(o->pin_env, &bad);
	s->o.exe = s->exe = dup_or_null(o->exe, &bad);
	s->o.user = s->user = dup_or_null(o->user, &bad);
	s->o.seccomp = s->seccomp = dup_or_null(o->seccomp, &bad);
	s->o.seccomp_allow = s->seccomp_allow = dup_or_null(o->seccomp_allow, &bad);
	snprintf(s->who, sizeof(s->who), "%s", who != NULL ? who : "the");
	s->state_cb = state_cb;
	s->arg = arg;
	s->stop[0] = s->stop[1] = -1;
	if (bad) {
		st = HSM_ENOMEM;
		goto fail;
	}
	if (pipe2(s->stop, O_CLOEXEC) != 0) {
		st = hsm_err(HSM_EIO, "pipe: %s", strerror(errno));
		goto fail;
	}
	if ((s->o.spawner == NULL && (st = start_spawner(s)) != 0) ||
	    (st = kh_spawn(&s->o, &s->kh, &pid)) != 0)
		goto fail;
	atomic_store(&s->pid, pid);
	atomic_store(&s->up, 1);
	if (pthread_create(&s->th, NULL, sup_main, s) != 0) {
		st = hsm_err(HSM_EIO, "cannot start the keyholder supervisor thread");
		kh_client_free(s->kh);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->stop[0] >= 0) {
		close(s->stop[0]);
		close(s->stop[1]);
	}
	spawner_free(s->sp);
	free_strings(s);
	free(s);
	return st;
}

struct kh_client *
khsup_client(struct khsup *s)
{
	return s->kh;
}

int
khsup_up(struct khsup *s)
{
	return atomic_load(&s->up);
}

pid_t
khsup_pid(struct khsup *s)
{
	return (pid_t)atomic_load(&s->pid);
}

unsigned
khsup_restarts(struct khsup *s)
{
	return atomic_load(&s->restarts);
}

void
khsup_stop(struct khsup *s)
{
	pid_t pid;
	int waited = 0;

	if (s == NULL)
		return;
	close(s->stop[1]);
	pthread_join(s->th, NULL);
	close(s->stop[0]);
	/* Hanging up makes it exit; a stuck token must not hang us forever. */
	kh_client_free(s->kh);
	if ((pid = (pid_t)atomic_load(&s->pid)) > 0) {
		pid_t r;

		while ((r = waitpid(pid, NULL, WNOHANG)) == 0 && waited < EXIT_WAIT_MS) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };

			nanosleep(&ts, NULL);
			waited += 10;
		}
		if (r == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
	}
	spawner_free(s->sp);
	free_strings(s);
	free(s);
}
