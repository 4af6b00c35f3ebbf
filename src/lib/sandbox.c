/*
 * sandbox.c - the seccomp allow lists of the daemons (libseccomp); see
 * sandbox.h. Each entry names the processes that may make the call once
 * started; the lists were measured with strace and the filter's log mode
 * over the test suites (SoftHSM2 and tpm2-pkcs11 for the keyholder).
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <seccomp.h>

#include "err.h"
#include "sandbox.h"

#define P (1u << SANDBOX_PROXY)
#define C (1u << SANDBOX_CA_FRONT)
#define A (1u << SANDBOX_AGENT)
#define K (1u << SANDBOX_KEYHOLDER)
#define ALL (P | C | A | K)
#if defined(__SANITIZE_ADDRESS__)
#define WAITERS ALL		/* LeakSanitizer's stop-the-world waits for its tracer */
#else
#define WAITERS (C | A)		/* a keyholder or an evidence command */
#endif

struct entry {
	const char *name;
	unsigned who;
};

/* Allowed without conditions. */
static const struct entry allowed[] = {
	/* descriptors */
	{ "read", ALL }, { "write", ALL }, { "readv", ALL }, { "writev", ALL },
	{ "pread64", ALL }, { "pwrite64", ALL }, { "close", ALL }, { "lseek", ALL },
	{ "fcntl", ALL }, { "dup", ALL }, { "dup2", ALL }, { "dup3", ALL }, { "pipe2", ALL },
	/* event loops */
	{ "epoll_create1", ALL }, { "epoll_ctl", ALL }, { "epoll_wait", ALL },
	{ "epoll_pwait", ALL }, { "epoll_pwait2", ALL }, { "poll", ALL }, { "ppoll", ALL },
	{ "select", ALL }, { "pselect6", ALL }, { "eventfd2", ALL },
	{ "timerfd_create", ALL }, { "timerfd_settime", ALL }, { "timerfd_gettime", ALL },
	/* sockets (socket() itself is conditional, below) */
	{ "connect", ALL }, { "accept", ALL }, { "accept4", ALL }, { "shutdown", ALL },
	{ "getsockopt", ALL }, { "setsockopt", ALL }, { "getsockname", ALL },
	{ "getpeername", ALL }, { "sendto", ALL }, { "recvfrom", ALL }, { "sendmsg", ALL },
	{ "recvmsg", ALL },
	{ "sendmmsg", P | C | A }, { "recvmmsg", P | C | A },	/* the resolver */
	{ "bind", ALL },			/* listeners (proxy reload, keyholder --socket);
						 * getaddrinfo's netlink socket (AI_ADDRCONFIG) */
	{ "listen", P | K },			/* the proxy's listeners; a keyholder's --socket */
	{ "socketpair", C | A },		/* a keyholder restarted (khclient) */
	/* files: logs, ledger, state, token stores, /proc and /sys reads by libc */
	{ "openat", ALL }, { "open", ALL }, { "stat", ALL }, { "fstat", ALL }, { "lstat", ALL },
	{ "newfstatat", ALL }, { "statx", ALL }, { "access", ALL }, { "faccessat", ALL },
	{ "faccessat2", ALL }, { "readlink", ALL }, { "readlinkat", ALL },
	{ "getdents64", ALL }, { "fsync", ALL }, { "fdatasync", ALL }, { "rename", ALL },
	{ "renameat", ALL }, { "renameat2", ALL }, { "unlink", ALL }, { "unlinkat", ALL },
	{ "fchmod", ALL }, { "umask", ALL }, { "ftruncate", ALL }, { "flock", ALL },
	{ "mkdir", A | K }, { "mkdirat", A | K },	/* a new identity's state; token objects */
	{ "fchown", K }, { "rmdir", A | K },	/* token stores; a workload state dir removed */
	{ "chmod", K }, { "fchmodat", K },		/* a keyholder's --socket */
	/* memory (mmap and mprotect without PROT_EXEC, below) */
	{ "brk", ALL }, { "madvise", ALL }, { "munmap", ALL }, { "mremap", ALL },
	{ "mlock", ALL }, { "munlock", ALL },
	/* threads and time (clone for threads only, below) */
	{ "set_robust_list", ALL }, { "get_robust_list", ALL }, { "rseq", ALL },
	{ "set_tid_address", ALL }, { "futex", ALL }, { "sched_yield", ALL },
	{ "sched_getaffinity", ALL }, { "nanosleep", ALL }, { "clock_nanosleep", ALL },
	{ "clock_gettime", ALL }, { "clock_getres", ALL }, { "gettimeofday", ALL },
	{ "time", ALL },
	/* signals and the process */
	{ "rt_sigaction", ALL }, { "rt_sigprocmask", ALL }, { "rt_sigreturn", ALL },
	{ "sigaltstack", ALL }, { "signalfd4", ALL }, { "tgkill", ALL }, { "tkill", ALL },
	{ "getpid", ALL }, { "gettid", ALL }, { "getppid", ALL }, { "getuid", ALL },
	{ "geteuid", ALL }, { "getgid", ALL }, { "getegid", ALL }, { "getresuid", ALL },
	{ "getresgid", ALL }, { "getgroups", ALL }, { "getrlimit", ALL }, { "getrusage", ALL },
	{ "uname", ALL }, { "sysinfo", ALL }, { "getrandom", ALL }, { "getcwd", ALL },
	{ "exit", ALL }, { "exit_group", ALL }, { "restart_syscall", ALL },
	{ "membarrier", ALL }, { "ioctl", ALL },
	/* children: a keyholder supervised (khsup), an evidence command */
	{ "kill", P | C | A }, { "wait4", WAITERS }, { "waitid", WAITERS },
	{ "pidfd_open", C | A },
	{ "pidfd_send_signal", A },	/* selectors: the client behind its pidfd */
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer stops the world with ptrace from a clone at exit (sanitizer builds) */
	{ "ptrace", ALL }, { "getdents", ALL },
#endif
	{ NULL, 0 },
};

/* Address families socket() may open, per process. */
static const struct {
	int family;
	unsigned who;
} families[] = {
	{ AF_UNIX, ALL },
	{ AF_INET, P | C | A },
	{ AF_INET6, P | C | A },
	{ AF_NETLINK, P | C | A },	/* getaddrinfo(AI_ADDRCONFIG) asks the kernel's routes */
};

#if !defined(__SANITIZE_ADDRESS__)
/* prctl() options allowed (names for threads, dumpability asked). */
static const unsigned long prctl_ok[] = {
	PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE,
};
#endif

/* Calls allowed only with conditions (sandbox_allows says 2). */
static const char *const conditional[] = {
	"mmap", "mprotect", "clone", "clone3", "socket", "prctl", "prlimit64", NULL,
};

int
sandbox_mode_parse(const char *s, enum sandbox_mode *out)
{
	static const char *const names[] = { "enforce", "log", "kill", "off" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum sandbox_mode)i;
			return 0;
		}
	}
	return hsm_err(HSM_EINVAL, "seccomp mode '%s' is not enforce, log, kill or off", s);
}

const char *
sandbox_mode_name(enum sandbox_mode m)
{
	switch (m) {
	case SANDBOX_ENFORCE: return "enforce";
	case SANDBOX_LOG: return "log";
	case SANDBOX_KILL: return "kill";
	case SANDBOX_OFF: return "off";
	}
	return "?";
}

int
sandbox_check_name(const char *name)
{
	char q[80];
	size_t i;

	for (i = 0; name[i] != '\0'; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		    name[i] == '_'))
			break;
	if (i == 0 || name[i] != '\0' || i > 64 ||
	    seccomp_syscall_resolve_name(name) == __NR_SCMP_ERROR) {
		snprintf(q, sizeof(q), "%.60s%s", name, strlen(name) > 60 ? "..." : "");
		for (char *p = q; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
				*p = '?';
		return hsm_err(HSM_EINVAL, "'%s' is not a system call on this architecture", q);
	}
	return 0;
}

void
sandbox_names_free(char **names, size_t n)
{
	if (names == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int
sandbox_names_parse(const char *list, char ***names, size_t *n)
{
	char **v = NULL, **nv;
	size_t cnt = 0;
	const char *p = list;
	int st = 0;

	*names = NULL;
	*n = 0;
	while (p != NULL && *p != '\0') {
		size_t l;
		char *name;

		p += strspn(p, ", \t");
		if ((l = strcspn(p, ", \t")) == 0)
			break;
		if ((name = strndup(p, l)) == NULL) {
			st = HSM_ENOMEM;
			goto fail;
		}
		if ((st = sandbox_check_name(name)) != 0) {
			free(name);
			goto fail;
		}
		if ((nv = realloc(v, (cnt + 1) * sizeof(*v))) == NULL) {
			free(name);
			st = HSM_ENOMEM;
			goto fail;
		}
		v = nv;
		v[cnt++] = name;
		p += l;
	}
	*names = v;
	*n = cnt;
	return 0;
 fail:
	sandbox_names_free(v, cnt);
	return st;
}

int
sandbox_names_join(char *const *names, size_t n, char **out)
{
	size_t len = 1, off = 0;
	char *s;

	*out = NULL;
	for (size_t i = 0; i < n; i++)
		len += strlen(names[i]) + 1;
	if ((s = malloc(len)) == NULL)
		return HSM_ENOMEM;
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, len - off, "%s%s", i > 0 ? "," : "", names[i]);
	*out = s;
	return 0;
}

static int
is_conditional(const char *name)
{
	for (size_t i = 0; conditional[i] != NULL; i++)
		if (strcmp(conditional[i], name) == 0)
			return 1;
	return 0;
}

int
sandbox_allows(enum sandbox_proc p, const char *name)
{
	for (size_t i = 0; allowed[i].name != NULL; i++)
		if (strcmp(allowed[i].name, name) == 0)
			return (allowed[i].who & (1u << p)) != 0;
	return is_conditional(name) ? 2 : 0;
}

static int
in_extras(const struct sandbox_conf *c, const char *name)
{
	for (size_t i = 0; c != NULL && i < c->nallow; i++)
		if (strcmp(c->allow[i], name) == 0)
			return 1;
	return 0;
}

/* The calls allowed with conditions, unless an extra name allows one outright. */
static int
add_conditional(scmp_filter_ctx f, enum sandbox_proc p, const struct sandbox_conf *c)
{
	unsigned bit = 1u << p;
	int rc = 0;

	/* No new code in the process: nothing mapped or re-protected executable. */
	if (!in_extras(c, "mmap"))
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
		    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0 && !in_extras(c, "mprotect"))
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
		    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer's stop-the-world clone has no CLONE_THREAD. */
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0);
#else
	/* Threads, not processes: clone only with CLONE_THREAD. */
	if (rc == 0 && !in_extras(c, "clone"))
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
		    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
#endif
	/* clone3's flags are behind a pointer: ENOSYS makes the C library use clone. */
	if (rc == 0 && !in_extras(c, "clone3"))
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	for (size_t i = 0; rc == 0 && !in_extras(c, "socket") &&
	    i < sizeof(families) / sizeof(families[0]); i++)
		if (families[i].who & bit)
			rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
			    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i].family));
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer's tracer sets its parent-death signal and the ptracer. */
	if (rc == 0 && !in_extras(c, "prctl"))
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 0);
#else
	for (size_t i = 0; rc == 0 && !in_extras(c, "prctl") &&
	    i < sizeof(prctl_ok) / sizeof(prctl_ok[0]); i++)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
		    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctl_ok[i]));
#endif
	/* Limits may be read, not changed. */
	if (rc == 0 && !in_extras(c, "prlimit64"))
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
		    SCMP_A2(SCMP_CMP_EQ, 0));
	return rc;
}

int
sandbox_no_new_privs(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return hsm_err(HSM_EIO, "cannot set NoNewPrivs: %s", strerror(errno));
	return 0;
}

int
sandbox_enter(enum sandbox_proc p, const struct sandbox_conf *c)
{
	enum sandbox_mode mode = c != NULL ? c->mode : SANDBOX_ENFORCE;
	scmp_filter_ctx f;
	uint32_t def;
	int rc = 0;

	if (p >= SANDBOX_NPROC)
		return hsm_err(HSM_EINVAL, "no seccomp list for process %d", (int)p);
	if (mode == SANDBOX_OFF)
		return sandbox_no_new_privs();
	def = mode == SANDBOX_LOG ? SCMP_ACT_LOG : mode == SANDBOX_KILL ? SCMP_ACT_KILL_PROCESS :
	    SCMP_ACT_ERRNO(EPERM);
	if ((f = seccomp_init(def)) == NULL)
		return hsm_err(HSM_EIO, "seccomp_init failed");
	for (size_t i = 0; allowed[i].name != NULL && rc == 0; i++) {
		int nr;

		if (!(allowed[i].who & (1u << p)))
			continue;
		if ((nr = seccomp_syscall_resolve_name(allowed[i].name)) == __NR_SCMP_ERROR)
			continue;	/* not on this architecture */
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0);
	}
	for (size_t i = 0; c != NULL && i < c->nallow && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(c->allow[i]);

		if (nr == __NR_SCMP_ERROR) {
			seccomp_release(f);
			return sandbox_check_name(c->allow[i]);
		}
		if (sandbox_allows(p, c->allow[i]) == 1)
			continue;
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0);
		if (rc == -EEXIST)
			rc = 0;
	}
	if (rc == 0)
		rc = add_conditional(f, p, c);
	/* Every thread, and each refusal in the kernel log (audit type 1326). */
	if (rc == 0)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0 && mode != SANDBOX_LOG)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_LOG, 1);
	if (rc == 0)
		rc = seccomp_load(f);
	seccomp_release(f);
	if (rc != 0)
		return hsm_err(HSM_EIO, "cannot install the seccomp filter: %s", strerror(-rc));
	return 0;
}

int
sandbox_enter_named(enum sandbox_proc p, const char *mode, const char *allow)
{
	struct sandbox_conf c = { SANDBOX_ENFORCE, NULL, 0 };
	int st;

	if ((mode != NULL && (st = sandbox_mode_parse(mode, &c.mode)) != 0) ||
	    (allow != NULL && (st = sandbox_names_parse(allow, &c.allow, &c.nallow)) != 0))
		return st;
	st = sandbox_enter(p, &c);
	sandbox_names_free(c.allow, c.nallow);
	return st;
}
