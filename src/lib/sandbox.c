/*
 * sandbox.c - seccomp allow list for network-facing daemons (libseccomp).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <seccomp.h>

#include "err.h"
#include "sandbox.h"

/* System calls the proxy makes after start-up (glibc, OpenSSL, ASan included). */
static const char *const allowed[] = {
	/* I/O on descriptors */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "lseek", "fcntl",
	"ioctl", "dup", "dup2", "dup3", "pipe2",
	/* event loops */
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll",
	"ppoll", "select", "pselect6", "eventfd2",
	/* sockets */
	"socket", "connect", "accept", "accept4", "bind", "listen", "shutdown", "getsockopt",
	"setsockopt", "getsockname", "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg",
	"sendmmsg", "recvmmsg",
	/* files: configuration reloads, access log reopening, /proc and /sys reads by libc */
	"openat", "open", "stat", "fstat", "lstat", "newfstatat", "statx", "access", "faccessat",
	"faccessat2", "readlink", "readlinkat", "getdents64", "fsync", "fdatasync", "rename",
	"renameat", "renameat2", "unlink", "unlinkat", "fchmod", "umask", "ftruncate",
	/* memory (PROT_EXEC refused below) */
	"brk", "madvise", "munmap", "mremap", "mlock", "munlock",
	/* threads and time */
	"clone", "clone3", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
	"futex", "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep",
	"clock_gettime", "clock_getres", "gettimeofday", "time",
	/* signals and process */
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "signalfd4", "tgkill",
	"tkill", "kill", "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid",
	"getrlimit", "prlimit64", "getrusage", "uname", "sysinfo", "getrandom", "prctl",
	"exit", "exit_group", "restart_syscall", "membarrier", "getcwd",
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer stops the world with ptrace at exit (sanitizer builds only) */
	"ptrace", "wait4", "waitid", "getdents",
#endif
	NULL,
};

int
sandbox_enter(void)
{
	scmp_filter_ctx f;
	int rc = 0, i;

	if ((f = seccomp_init(SCMP_ACT_ERRNO(EPERM))) == NULL)
		return hsm_err(HSM_EIO, "seccomp_init failed");
	for (i = 0; allowed[i] != NULL && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);

		if (nr == __NR_SCMP_ERROR)
			continue;	/* not on this architecture */
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0);
	}
	/* mmap/mprotect only without PROT_EXEC: no new code in this process. */
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
		    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
		    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = seccomp_load(f);
	seccomp_release(f);
	if (rc != 0)
		return hsm_err(HSM_EIO, "cannot install the seccomp filter: %s", strerror(-rc));
	return 0;
}
