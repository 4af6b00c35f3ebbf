/*
 * spawner.h - a helper process, forked at start-up before the daemon
 * confines itself, that starts the daemon's fixed programs for it later
 * (a keyholder after a restart, the agent's evidence command).
 *
 * Why: once started, the CA front and the agent run under a seccomp filter
 * that forbids fork, execve and executable mappings (sandbox.h), and a
 * child would inherit that filter (a keyholder's module needs more). So the
 * daemon forks the spawner first; the spawner asks nothing of the daemon
 * but a program's index and the descriptors to give it, and runs only the
 * programs it was given at its start (a compromised daemon cannot have it
 * run anything else, nor change their arguments). The program's process is
 * made a child of the daemon (clone with CLONE_PARENT), so the daemon
 * waits for it, signals it and watches it through a pidfd as its own.
 *
 * The spawner is single-threaded, non-dumpable, has NoNewPrivs, keeps no
 * descriptor of the daemon but its control socket (0, 1 and 2 are kept),
 * blocks every signal and exits when the daemon closes that socket (the
 * daemon exiting, or dying: the socket is close-on-exec, so no program
 * started keeps it). It runs as the daemon's user (it is forked
 * after the `user:` switch). It installs no filter of its own: its
 * programs would inherit it. Its programs get: an empty signal mask and
 * default dispositions, the environment of the daemon at the fork, the
 * descriptors asked for, and optionally a secret (the token PIN) written to
 * one descriptor through a pipe -- the one secret the spawner holds, in
 * memory that is locked and kept out of core dumps.
 *
 * The code between fork and exec calls only async-signal-safe functions:
 * the daemon may already run threads when it starts the spawner.
 */
#ifndef HSM_SPAWNER_H
#define HSM_SPAWNER_H

#include <stddef.h>
#include <sys/types.h>

#define SPAWNER_MAX_PROGS 4
#define SPAWNER_MAX_FDS 4
#define SPAWNER_TIMEOUT_MS 10000	/* a spawn request answered within this */

struct spawn_prog {
	const char *path;		/* executable (a name without '/': looked up in PATH) */
	char *const *argv;		/* NULL-terminated; argv[0] included */
	const char *secret;		/* NULL, or secret_len bytes written to secret_fd */
	size_t secret_len;		/* at most 4096 */
	int secret_fd;			/* the program's descriptor for the secret (3..63) */
};

struct spawner;

/*
 * Fork the spawner with the n programs (at most SPAWNER_MAX_PROGS); their
 * strings and secrets are copied by the fork, so the caller may free and
 * wipe its own at once. 0 with *out, or HSM_EINVAL / HSM_EIO / HSM_ENOMEM.
 */
int spawner_start(const struct spawn_prog *progs, size_t n, struct spawner **out);

/*
 * Run program prog with nfds descriptors: fds[i] becomes descriptor
 * targets[i] (0..63) in the program (the caller keeps its own fds[i]). The
 * program's process is a child of the caller: *pid is set once it was
 * started, and the caller reaps it (an exec that failed shows as exit
 * status 127). Thread-safe. 0, or HSM_EIO ("cannot start program N: ...";
 * "the spawner is gone") / HSM_ETIMEDOUT / HSM_EINVAL.
 */
int spawner_spawn(struct spawner *sp, unsigned prog, const int *fds, const int *targets,
    size_t nfds, pid_t *pid);

/* The spawner's own pid. */
pid_t spawner_pid(const struct spawner *sp);

/* Close the control socket (the spawner exits) and reap it. Accepts NULL. */
void spawner_free(struct spawner *sp);

#endif
