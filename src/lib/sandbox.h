/*
 * sandbox.h - the seccomp filter each daemon installs once its start-up is
 * done: the proxy, the CA front (`ca serve`), the agent and the keyholder.
 *
 * One allow list per process: a base every daemon needs (descriptors,
 * epoll, memory, threads, time, signals, files) and the additions of each
 * (see sandbox.c, where every entry says who needs it; docs/ARCHITECTURE.md
 * "Confinement" lists them). What is not on the list fails with EPERM and
 * is logged by the kernel (the filter is loaded with SECCOMP_FILTER_FLAG_LOG:
 * an audit record "type=1326 ... comm=... syscall=N" in the kernel log), so
 * a missing entry is diagnosable. In every filter: no execve, no fork (clone
 * without CLONE_THREAD; clone3 answers ENOSYS so threads fall back to
 * clone), no executable mapping (mmap/mprotect with PROT_EXEC), no ptrace,
 * socket() only for the address families the process uses. The filter also
 * sets NoNewPrivs, applies to every thread (TSYNC) and to threads started
 * later, and cannot be undone.
 *
 * Modes (seccomp.mode in each daemon's YAML, `--seccomp` of the keyholder):
 *   enforce  the default: a call outside the list fails with EPERM, logged
 *   log      allowed, but logged: learning what a new module needs
 *   kill     the process dies of SIGSYS (logged)
 *   off      no filter (NoNewPrivs is still set): for debugging only
 * Extra system calls by name (seccomp.allow, token.seccomp_allow) widen a
 * list for a module or a platform the built-in one does not cover; a name
 * given there is allowed without the argument conditions the built-in
 * entry may carry.
 */
#ifndef HSM_SANDBOX_H
#define HSM_SANDBOX_H

#include <stddef.h>

enum sandbox_proc {
	SANDBOX_PROXY,
	SANDBOX_CA_FRONT,
	SANDBOX_AGENT,
	SANDBOX_KEYHOLDER,
	SANDBOX_NPROC
};

enum sandbox_mode {
	SANDBOX_ENFORCE = 0,
	SANDBOX_LOG,
	SANDBOX_KILL,
	SANDBOX_OFF
};

struct sandbox_conf {
	enum sandbox_mode mode;
	char **allow;		/* extra system call names (checked), nallow of them */
	size_t nallow;
};

/* "enforce", "log", "kill" or "off" into *out. 0 or HSM_EINVAL with a detail. */
int sandbox_mode_parse(const char *s, enum sandbox_mode *out);
/* The name of a mode. */
const char *sandbox_mode_name(enum sandbox_mode m);

/*
 * Is name a system call of this architecture (as libseccomp spells it:
 * "openat", "pread64")? 0, or HSM_EINVAL "'NAME' is not a system call on
 * this architecture".
 */
int sandbox_check_name(const char *name);

/*
 * Split a list of system call names separated by commas and/or spaces
 * ("flock, mkdir fallocate") into *names (*n of them; malloc'd, free with
 * sandbox_names_free), checking each with sandbox_check_name. An empty
 * list gives *names NULL and *n 0. 0, HSM_EINVAL or HSM_ENOMEM.
 */
int sandbox_names_parse(const char *list, char ***names, size_t *n);
/* Free what sandbox_names_parse made. Accepts NULL. */
void sandbox_names_free(char **names, size_t n);
/* names joined by commas into *out (malloc'd; "" for none). 0 or HSM_ENOMEM. */
int sandbox_names_join(char *const *names, size_t n, char **out);

/*
 * Whether process p's built-in list allows the system call name without
 * conditions (1), with conditions on its arguments (2), or not (0). For
 * tests and documentation.
 */
int sandbox_allows(enum sandbox_proc p, const char *name);

/*
 * Install process p's filter in mode c->mode (c NULL: enforce, no
 * extras), plus c's extra names. Sets NoNewPrivs in every mode. 0, or
 * HSM_EIO / HSM_EINVAL with a one-line detail.
 */
int sandbox_enter(enum sandbox_proc p, const struct sandbox_conf *c);

/*
 * sandbox_enter with a mode by name (NULL: enforce) and extra system
 * calls as a list for sandbox_names_parse (NULL: none). 0, or HSM_EINVAL
 * / HSM_EIO with a one-line detail.
 */
int sandbox_enter_named(enum sandbox_proc p, const char *mode, const char *allow);

/* NoNewPrivs alone (a process that installs no filter). 0 or HSM_EIO. */
int sandbox_no_new_privs(void);

#endif
