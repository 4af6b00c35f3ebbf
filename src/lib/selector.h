/*
 * selector.h - workload selectors: what a local process must be to use a
 * workload identity through the agent's local API (docs/AGENT.md,
 * "Workload selectors"), and the inspection of the process at the other
 * end of a Unix socket.
 *
 * A selector is KIND:VALUE:
 *
 *   uid:N            the process's uid (SO_PEERCRED: the effective uid when it connected)
 *   gid:N            its primary gid (SO_PEERCRED: the effective gid; supplementary groups do not count)
 *   path:/abs/exe    the executable it runs IS the file at that path as the agent
 *                    sees it: /proc/PID/exe reads exactly that path, the path names the
 *                    same file (device and inode), and the file is not deleted
 *   sha256:HEX       SHA-256 of the executable it runs (64 hex digits, any case)
 *   cgroup:/prefix   its cgroup v2 path (the "0::" line of /proc/PID/cgroup) is the
 *                    prefix or lies below it ("/a/b" selects "/a/b" and "/a/b/c", not "/a/bc")
 *
 * A set of selectors matches a process when every one of them does (SPIRE's
 * unix workload attestor has the same uid, gid, path and sha256 selectors;
 * cgroups tell containers apart). Values are checked strictly: paths are
 * absolute and canonical (no "//", ".", ".." segments, no trailing '/'), no
 * control characters, so that one selector has one spelling.
 *
 * The process is inspected once, when it connects (sel_proc_from_socket),
 * without a PID-reuse race: the socket's SO_PEERPIDFD names the very
 * process that connected; /proc/PID is opened, and only if that process
 * is still alive afterwards is the directory known to be its own (a PID
 * is reused only after its process died). Everything else is read through
 * that directory, which keeps referring to that process even if the PID
 * is reused later. A kernel without SO_PEERPIDFD (before 6.5) gets a pidfd
 * from pidfd_open(PID) instead, which leaves the window between connect
 * and accept open (logged once by the caller).
 *
 * What the selectors cannot say: which code runs inside the executable
 * (LD_PRELOAD, ptrace by the same uid, an interpreter's script), nor that
 * the process did not exec that executable after it connected while
 * another process kept the socket. uid and cgroup are the boundary; path
 * and sha256 narrow it down within that boundary.
 */
#ifndef HSM_SELECTOR_H
#define HSM_SELECTOR_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SEL_TEXT_MAX 1024	/* a selector as text, bytes (KIND:VALUE) */
#define SEL_SET_MAX 16		/* selectors in one set */
#define SEL_HASH_MAX ((off_t)512 << 20)	/* largest executable hashed for sha256 (bytes) */

enum sel_kind { SEL_UID = 1, SEL_GID, SEL_PATH, SEL_SHA256, SEL_CGROUP };

struct selector {
	enum sel_kind kind;
	uint32_t num;		/* SEL_UID, SEL_GID */
	char *str;		/* SEL_PATH, SEL_CGROUP (malloc'd) */
	uint8_t hash[32];	/* SEL_SHA256 */
};

/* All of these must match. */
struct sel_set {
	struct selector *v;
	size_t n;
};

/*
 * Parse one selector from text (NUL-terminated, may come from anywhere:
 * the detail quotes it with control characters escaped). 0, or
 * HSM_EINVAL with a one-line detail ("selector 'uid:x': uid must be a
 * number from 0 to 4294967294"); HSM_ENOMEM. Free out with sel_clear.
 */
int sel_parse(const char *text, struct selector *out);
/* Free what s holds and clear it. Accepts NULL. */
void sel_clear(struct selector *s);
/* The canonical text of s ("sha256:" in lower case) into buf. 0 or HSM_EINVAL (too small). */
int sel_text(const struct selector *s, char *buf, size_t cap);

/*
 * Parse text and add it to set: a duplicate is ignored, more than
 * SEL_SET_MAX is HSM_EINVAL. 0, HSM_EINVAL, HSM_ENOMEM.
 */
int sel_set_add(struct sel_set *set, const char *text);
/* A deep copy of src into *dst (cleared first). 0 or HSM_ENOMEM. */
int sel_set_copy(struct sel_set *dst, const struct sel_set *src);
/* Free the selectors of set and clear it. Accepts NULL. */
void sel_set_clear(struct sel_set *set);
/* 1 when a and b hold the same selectors (in any order), else 0. */
int sel_set_equal(const struct sel_set *a, const struct sel_set *b);
/* The set as text, selectors separated by sep (e.g. ", "), into buf (cut when too small). */
void sel_set_text(const struct sel_set *set, const char *sep, char *buf, size_t cap);

/* A local process as inspected when it connected. */
struct sel_proc {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int have_exe;			/* exe, exe_dev/ino/deleted read */
	char exe[PATH_MAX];		/* readlink of /proc/PID/exe */
	dev_t exe_dev;
	ino_t exe_ino;
	int exe_deleted;		/* no link left to the file it runs */
	int exe_fd;			/* the file it runs (hashed on demand), or -1 */
	int hash_state;			/* 0 not yet, 1 hash set, -1 failed */
	uint8_t hash[32];
	int have_cgroup;
	char cgroup[PATH_MAX];		/* the cgroup v2 path */
	char why_exe[160];		/* why have_exe or the hash is missing */
	char why_cgroup[160];
};

/*
 * Inspect the process at the other end of the connected Unix socket fd
 * (see above). *p is filled (exe_fd owned: release with sel_proc_clear).
 * Attributes that cannot be read (no permission, a kernel thread, no cgroup
 * v2) are marked missing with the reason; selectors on them then do not
 * match. 0; HSM_EPERM when the process is gone or cannot be tied to the
 * socket without a race (detail says why); HSM_EIO. *weak (may be NULL) is
 * set when the kernel has no SO_PEERPIDFD and pidfd_open was used.
 */
int sel_proc_from_socket(int fd, struct sel_proc *p, int *weak);

/*
 * The same for pid with pidfd referring to it (a test may pass a pidfd of
 * another process: refused), uid and gid as the socket reported them.
 */
int sel_proc_inspect(pid_t pid, int pidfd, uid_t uid, gid_t gid, struct sel_proc *p);

/* Release what p holds (the executable's descriptor). Accepts NULL. */
void sel_proc_clear(struct sel_proc *p);

/*
 * Does p match every selector of set? 1 yes, 0 no with *why (may be NULL)
 * pointing at a static or p-owned reason for the first that did not
 * ("path: the process runs /usr/bin/x"). An empty set matches. A sha256
 * selector hashes the executable once per process (and once per file for
 * all processes: a small cache keyed by device, inode, size and times).
 * Main thread or any one thread at a time per p.
 */
int sel_match(const struct sel_set *set, struct sel_proc *p, const char **why);

#endif
