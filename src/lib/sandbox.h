/*
 * sandbox.h - the seccomp filter a process that parses network input
 * installs once it has started (the proxy).
 *
 * An allow list of the system calls an event-loop daemon needs (sockets,
 * epoll, eventfd, threads, memory, files for reloads and logs); anything
 * else fails with EPERM instead of running. Mapping or re-protecting
 * memory as executable is refused too, so a compromised process can
 * neither exec a program nor load a shared object such as a PKCS#11
 * module. Applies to every thread of the process (TSYNC) and to threads
 * started later; it cannot be undone.
 */
#ifndef HSM_SANDBOX_H
#define HSM_SANDBOX_H

/* Install the filter. 0, or HSM_EIO with a one-line detail. */
int sandbox_enter(void);

#endif
