/*
 * bench/vgshim.c - LD_PRELOAD shim for running hsmesh daemons under
 * valgrind (bench/run.sh's callgrind part only; never in production).
 *
 * 1. The agent starts its keyholder with execv("/proc/self/exe", ...).
 *    Under valgrind /proc/self/exe is valgrind's tool, which cannot be
 *    loaded as a client ("mmap(0x58000000) failed in UME"): the shim turns
 *    that path into $HSMESH_EXE (the same hsmesh binary), so
 *    `valgrind --trace-children=yes` follows the keyholder too.
 * 2. Valgrind 3.19 does not implement the seccomp system call, so the
 *    sandbox_enter() of the proxy, the agent or a keyholder would fail and
 *    the process refuse to start. With HSMESH_VG_NO_SECCOMP=1, libseccomp's
 *    seccomp_attr_set() and seccomp_load() succeed without loading the
 *    filter. The agent's keyholders inherit the shim and the variable (its
 *    spawner execs them with the agent's environment). Only whoever starts
 *    the process can set either: nothing a peer sends reaches them. The filter runs in the kernel: it costs no
 *    user-space instruction that callgrind would count.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void *scmp_filter_ctx;
int seccomp_load(const scmp_filter_ctx ctx);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);

static int
no_seccomp(void)
{
	const char *off = getenv("HSMESH_VG_NO_SECCOMP");

	return off != NULL && strcmp(off, "1") == 0;
}

int
execv(const char *path, char *const argv[])
{
	int (*real)(const char *, char *const[]) = (int (*)(const char *, char *const[]))dlsym(RTLD_NEXT, "execv");
	const char *exe = getenv("HSMESH_EXE");

	if (strcmp(path, "/proc/self/exe") == 0 && exe != NULL && *exe != '\0')
		path = exe;
	return real(path, argv);
}

int
seccomp_load(const scmp_filter_ctx ctx)
{
	int (*real)(const scmp_filter_ctx) = (int (*)(const scmp_filter_ctx))dlsym(RTLD_NEXT, "seccomp_load");

	if (no_seccomp())
		return 0;
	return real != NULL ? real(ctx) : -38;	/* -ENOSYS, as libseccomp reports errors */
}

/* Setting filter attributes (TSYNC) probes the seccomp(2) call valgrind lacks. */
int
seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value)
{
	int (*real)(scmp_filter_ctx, int, uint32_t) =
	    (int (*)(scmp_filter_ctx, int, uint32_t))dlsym(RTLD_NEXT, "seccomp_attr_set");

	if (no_seccomp())
		return 0;
	return real != NULL ? real(ctx, attr, value) : -38;
}
