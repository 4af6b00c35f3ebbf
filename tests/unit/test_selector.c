/*
 * test_selector.c - workload selectors (selector.h): parsing and its
 * refusals, and real child processes inspected through a Unix socket as
 * the agent inspects its clients: uid, gid, executable path (also through
 * a symbolic link, and deleted), its SHA-256, cgroup, a process that is
 * gone, and a pidfd that names another process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "err.h"
#include "selector.h"
#include "util.h"

/* ---- parsing ---- */

static void
parse_good(void **state)
{
	static const struct { const char *in, *canon; } ok[] = {
		{ "uid:0", "uid:0" },
		{ "uid:4294967294", "uid:4294967294" },
		{ "gid:100", "gid:100" },
		{ "path:/usr/bin/web", "path:/usr/bin/web" },
		{ "path:/a b/c", "path:/a b/c" },
		{ "cgroup:/", "cgroup:/" },
		{ "cgroup:/system.slice/web.service", "cgroup:/system.slice/web.service" },
		{ "sha256:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
		  "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" },
	};
	struct selector s;
	char buf[SEL_TEXT_MAX + 1];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (sel_parse(ok[i].in, &s) != 0)
			fail_msg("%s: %s", ok[i].in, hsm_err_msg(HSM_EINVAL));
		assert_int_equal(sel_text(&s, buf, sizeof(buf)), 0);
		assert_string_equal(buf, ok[i].canon);
		sel_clear(&s);
	}
}

static void
parse_bad(void **state)
{
	static const struct { const char *in, *why; } bad[] = {
		{ "", "KIND:VALUE" },
		{ "uid", "KIND:VALUE" },
		{ "user:root", "unknown kind" },
		{ "UID:1", "unknown kind" },
		{ "uid:", "uid must be a number" },
		{ "uid:x", "uid must be a number" },
		{ "uid:-1", "uid must be a number" },
		{ "uid:+1", "uid must be a number" },
		{ "uid:01", "uid must be a number" },
		{ "uid:4294967295", "uid must be a number" },
		{ "uid:99999999999", "uid must be a number" },
		{ "gid:1 ", "gid must be a number" },
		{ "path:", "absolute path" },
		{ "path:usr/bin/web", "absolute path" },
		{ "path:/", "not '/'" },
		{ "path:/usr//bin", "canonical" },
		{ "path:/usr/./bin", "canonical" },
		{ "path:/usr/../bin", "canonical" },
		{ "path:/usr/bin/", "end with '/'" },
		{ "path:/usr/\tbin", "control characters" },
		{ "cgroup:system.slice", "absolute path" },
		{ "cgroup:/a/", "end with '/'" },
		{ "sha256:", "64 hex digits" },
		{ "sha256:0011", "64 hex digits" },
		{ "sha256:g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "64 hex" },
		{ "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00", "64 hex" },
	};
	struct selector s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sel_parse(bad[i].in, &s) != HSM_EINVAL)
			fail_msg("'%s' was accepted", bad[i].in);
		if (strstr(hsm_err_msg(HSM_EINVAL), bad[i].why) == NULL)
			fail_msg("'%s': '%s' does not say '%s'", bad[i].in, hsm_err_msg(HSM_EINVAL),
			    bad[i].why);
	}
	/* The detail quotes what it was given, escaped. */
	assert_int_equal(sel_parse("path:\x1b[31mred", &s), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "\\x1b[31mred"));
}

static void
sets(void **state)
{
	struct sel_set a = { 0 }, b = { 0 }, c = { 0 };
	char text[256], sel[32];

	assert_int_equal(sel_set_add(&a, "uid:1"), 0);
	assert_int_equal(sel_set_add(&a, "path:/x"), 0);
	assert_int_equal(sel_set_add(&a, "uid:1"), 0);		/* a duplicate is ignored */
	assert_int_equal(a.n, 2);
	assert_int_equal(sel_set_add(&b, "path:/x"), 0);
	assert_int_equal(sel_set_add(&b, "uid:1"), 0);
	assert_true(sel_set_equal(&a, &b));
	assert_int_equal(sel_set_copy(&c, &a), 0);
	assert_true(sel_set_equal(&a, &c));
	assert_int_equal(sel_set_add(&c, "gid:1"), 0);
	assert_false(sel_set_equal(&a, &c));
	sel_set_text(&a, ", ", text, sizeof(text));
	assert_string_equal(text, "uid:1, path:/x");
	assert_int_equal(sel_set_add(&a, "bad"), HSM_EINVAL);
	assert_int_equal(a.n, 2);
	for (int i = a.n; i < SEL_SET_MAX; i++) {
		snprintf(sel, sizeof(sel), "gid:%d", i);
		assert_int_equal(sel_set_add(&a, sel), 0);
	}
	assert_int_equal(sel_set_add(&a, "gid:999"), HSM_EINVAL);
	sel_set_clear(&a);
	sel_set_clear(&b);
	sel_set_clear(&c);
}

/* ---- real processes ---- */

static char dir[64];
static char sock[128];

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hsmesh-test-selector-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	/* the other uid of a test reaches the socket */
	chmod(dir, 0711);
	snprintf(sock, sizeof(sock), "%s/s", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
listener(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	unlink(sock);
	memcpy(sun.sun_path, sock, strlen(sock) + 1);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	chmod(sock, 0666);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/*
 * A child that connects to the socket (as uid/gid when not -1), then runs
 * exe (sleep 30) with the connection open, or with exe NULL exits at once.
 * Its pid; the accepted connection in *conn once it runs exe.
 */
static pid_t
child(int lfd, const char *exe, long uid, long gid, int *conn)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char want[PATH_MAX], got[PATH_MAX], link[64];
	ssize_t n;
	pid_t p;

	memcpy(sun.sun_path, sock, strlen(sock) + 1);
	if ((p = fork()) == 0) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);	/* kept across exec */

		if ((gid >= 0 && setgid((gid_t)gid) != 0) || (uid >= 0 && setuid((uid_t)uid) != 0))
			_exit(126);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
			_exit(125);
		if (exe == NULL)
			_exit(0);
		execl(exe, "sleep", "30", (char *)NULL);
		_exit(127);
	}
	assert_true(p > 0);
	*conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*conn >= 0);
	if (exe == NULL)
		return p;
	/* Until the exec happened: its exe link names the file exe resolves to. */
	assert_non_null(realpath(exe, want));
	snprintf(link, sizeof(link), "/proc/%ld/exe", (long)p);
	for (int i = 0; i < 200; i++) {
		if ((n = readlink(link, got, sizeof(got) - 1)) > 0) {
			got[n] = '\0';
			if (strncmp(got, want, strlen(want)) == 0)
				return p;
		}
		usleep(10000);
	}
	fail_msg("child %ld did not run %s", (long)p, exe);
	return p;
}

static void
reap(pid_t p)
{
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
}

/* Does the one selector text match p? */
static int
matches(struct sel_proc *p, const char *text, const char **why)
{
	struct sel_set s = { 0 };
	int m;

	assert_int_equal(sel_set_add(&s, text), 0);
	m = sel_match(&s, p, why);
	sel_set_clear(&s);
	return m;
}

/* cgroup: a prefix by whole path segments (on a process as inspect fills it). */
static void
cgroup_prefix(void **state)
{
	struct sel_proc p;

	memset(&p, 0, sizeof(p));
	p.exe_fd = -1;
	assert_false(matches(&p, "cgroup:/", NULL));	/* no cgroup v2 path read */
	p.have_cgroup = 1;
	snprintf(p.cgroup, sizeof(p.cgroup), "/kubepods/pod1/ctr-a");
	assert_true(matches(&p, "cgroup:/", NULL));
	assert_true(matches(&p, "cgroup:/kubepods", NULL));
	assert_true(matches(&p, "cgroup:/kubepods/pod1", NULL));
	assert_true(matches(&p, "cgroup:/kubepods/pod1/ctr-a", NULL));
	assert_false(matches(&p, "cgroup:/kubepods/pod", NULL));
	assert_false(matches(&p, "cgroup:/kubepods/pod1/ctr-a/b", NULL));
	assert_false(matches(&p, "cgroup:/kube", NULL));
	assert_false(matches(&p, "path:/bin/sh", NULL));	/* no executable read */
}

static void
file_sha256(const char *path, char hex[65])
{
	uint8_t *buf = NULL, md[32];
	size_t len = 0;
	unsigned mdlen = 0;

	assert_int_equal(hsm_read_file(path, 64 << 20, &buf, &len), 0);
	assert_int_equal(EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL), 1);
	hsm_hex(md, 32, hex);
	free(buf);
}

/* The cgroup v2 path of pid ("" when none). */
static void
cgroup_of(pid_t pid, char *out, size_t cap)
{
	char path[64], line[PATH_MAX];
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%ld/cgroup", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, cap, "%s", line + 3);
		}
	}
	fclose(f);
}

static void
inspect_a_child(void **state)
{
	char sleep_path[PATH_MAX], text[PATH_MAX + 16], hex[65], cg[PATH_MAX];
	struct sel_proc p;
	const char *why;
	int lfd = listener(), conn, weak = -1;
	pid_t pid;

	assert_non_null(realpath("/bin/sleep", sleep_path));
	pid = child(lfd, sleep_path, -1, -1, &conn);
	assert_int_equal(sel_proc_from_socket(conn, &p, &weak), 0);
	assert_int_equal(weak, 0);	/* this kernel has SO_PEERPIDFD */
	assert_int_equal(p.pid, pid);
	assert_int_equal(p.uid, getuid());
	assert_int_equal(p.gid, getgid());
	assert_true(p.have_exe);
	assert_string_equal(p.exe, sleep_path);
	assert_false(p.exe_deleted);

	snprintf(text, sizeof(text), "uid:%lu", (unsigned long)getuid());
	assert_true(matches(&p, text, NULL));
	snprintf(text, sizeof(text), "uid:%lu", (unsigned long)getuid() + 1);
	assert_false(matches(&p, text, &why));
	assert_string_equal(why, "uid: another uid");
	snprintf(text, sizeof(text), "gid:%lu", (unsigned long)getgid());
	assert_true(matches(&p, text, NULL));
	snprintf(text, sizeof(text), "path:%s", sleep_path);
	assert_true(matches(&p, text, NULL));
	assert_false(matches(&p, "path:/usr/bin/true", &why));
	assert_non_null(strstr(why, "another executable"));
	file_sha256(sleep_path, hex);
	snprintf(text, sizeof(text), "sha256:%s", hex);
	assert_true(matches(&p, text, NULL));
	assert_int_equal(p.hash_state, 1);
	assert_false(matches(&p, "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	    &why));
	assert_non_null(strstr(why, "another hash"));
	cgroup_of(pid, cg, sizeof(cg));
	if (cg[0] != '\0') {
		assert_true(p.have_cgroup);
		assert_string_equal(p.cgroup, cg);
		snprintf(text, sizeof(text), "cgroup:%s", cg);
		assert_true(matches(&p, text, NULL));
		assert_true(matches(&p, "cgroup:/", NULL));
		snprintf(text, sizeof(text), "cgroup:%sx", cg);
		assert_false(matches(&p, text, &why));
		assert_non_null(strstr(why, "another cgroup"));
		if (strcmp(cg, "/") != 0) {
			/* The parent of its cgroup selects it too: a prefix by whole segments. */
			char parent[PATH_MAX];

			snprintf(parent, sizeof(parent), "%s", cg);
			*strrchr(parent, '/') = '\0';
			snprintf(text, sizeof(text), "cgroup:%s", parent[0] != '\0' ? parent : "/");
			assert_true(matches(&p, text, NULL));
		}
	} else {
		assert_false(matches(&p, "cgroup:/", NULL));
	}
	/* A set: every selector must match. */
	{
		struct sel_set s = { 0 };

		snprintf(text, sizeof(text), "path:%s", sleep_path);
		assert_int_equal(sel_set_add(&s, text), 0);
		snprintf(text, sizeof(text), "uid:%lu", (unsigned long)getuid());
		assert_int_equal(sel_set_add(&s, text), 0);
		assert_true(sel_match(&s, &p, NULL));
		assert_int_equal(sel_set_add(&s, "gid:4294967294"), 0);
		assert_false(sel_match(&s, &p, &why));
		assert_string_equal(why, "gid: another gid");
		sel_set_clear(&s);
		assert_true(sel_match(&s, &p, NULL));	/* the empty set */
	}
	sel_proc_clear(&p);
	close(conn);
	reap(pid);
	close(lfd);
}

/* Started through a symbolic link, it runs the file the link names: path is that file's. */
static void
symlinked_executable(void **state)
{
	char sleep_path[PATH_MAX], link[128], text[PATH_MAX + 16];
	struct sel_proc p;
	const char *why;
	int lfd = listener(), conn;
	pid_t pid;

	assert_non_null(realpath("/bin/sleep", sleep_path));
	snprintf(link, sizeof(link), "%s/link-to-sleep", dir);
	assert_int_equal(symlink(sleep_path, link), 0);
	pid = child(lfd, link, -1, -1, &conn);
	assert_int_equal(sel_proc_from_socket(conn, &p, NULL), 0);
	assert_string_equal(p.exe, sleep_path);
	snprintf(text, sizeof(text), "path:%s", link);
	assert_false(matches(&p, text, &why));
	snprintf(text, sizeof(text), "path:%s", sleep_path);
	assert_true(matches(&p, text, NULL));
	sel_proc_clear(&p);
	close(conn);
	reap(pid);
	close(lfd);
}

/*
 * Its executable deleted while it runs: path no longer selects it (nor
 * would a new file at that path), its SHA-256 still names what it runs.
 */
static void
deleted_executable(void **state)
{
	char sleep_path[PATH_MAX], copy[128], text[PATH_MAX + 16], hex[65], cmd[PATH_MAX + 300];
	struct sel_proc p;
	const char *why;
	int lfd = listener(), conn;
	pid_t pid;

	assert_non_null(realpath("/bin/sleep", sleep_path));
	snprintf(copy, sizeof(copy), "%s/sleep-copy", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", sleep_path, copy);
	assert_int_equal(system(cmd), 0);
	file_sha256(copy, hex);
	pid = child(lfd, copy, -1, -1, &conn);
	assert_int_equal(unlink(copy), 0);
	/* And a new file at that path (what an attacker would put there). */
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", sleep_path, copy);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(sel_proc_from_socket(conn, &p, NULL), 0);
	assert_true(p.exe_deleted);
	snprintf(text, sizeof(text), "path:%s", copy);
	assert_false(matches(&p, text, &why));
	assert_non_null(strstr(why, "deleted"));
	snprintf(text, sizeof(text), "sha256:%s", hex);
	assert_true(matches(&p, text, NULL));
	sel_proc_clear(&p);
	close(conn);
	reap(pid);
	close(lfd);
}

/* A process that connected and is gone cannot be inspected (nor a PID now someone else's). */
static void
gone_process(void **state)
{
	struct sel_proc p;
	int lfd = listener(), conn;
	pid_t pid = child(lfd, NULL, -1, -1, &conn);

	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(sel_proc_from_socket(conn, &p, NULL), HSM_EPERM);
	close(conn);
	close(lfd);
}

/* A pidfd of another process than the PID: refused (what a reused PID would look like). */
static void
pidfd_of_another(void **state)
{
	char sleep_path[PATH_MAX];
	struct sel_proc p;
	int lfd = listener(), conn, self;
	pid_t pid;

	assert_non_null(realpath("/bin/sleep", sleep_path));
	pid = child(lfd, sleep_path, -1, -1, &conn);
	self = (int)syscall(SYS_pidfd_open, getpid(), 0);
	assert_true(self >= 0);
	assert_int_equal(sel_proc_inspect(pid, self, getuid(), getgid(), &p), HSM_EPERM);
	assert_non_null(strstr(hsm_err_msg(HSM_EPERM), "its pidfd names process"));
	assert_false(p.have_exe);
	close(self);
	sel_proc_clear(&p);
	close(conn);
	reap(pid);
	close(lfd);
}

/* Another uid and gid (as root: the child drops to 12345). */
static void
other_uid(void **state)
{
	char sleep_path[PATH_MAX];
	struct sel_proc p;
	int lfd, conn;
	pid_t pid;

	if (getuid() != 0) {
		skip();
		return;
	}
	lfd = listener();
	assert_non_null(realpath("/bin/sleep", sleep_path));
	pid = child(lfd, sleep_path, 12345, 23456, &conn);
	assert_int_equal(sel_proc_from_socket(conn, &p, NULL), 0);
	assert_int_equal(p.uid, 12345);
	assert_int_equal(p.gid, 23456);
	assert_true(matches(&p, "uid:12345", NULL));
	assert_true(matches(&p, "gid:23456", NULL));
	assert_false(matches(&p, "uid:0", NULL));
	sel_proc_clear(&p);
	close(conn);
	reap(pid);
	close(lfd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_good),
		cmocka_unit_test(parse_bad),
		cmocka_unit_test(sets),
		cmocka_unit_test(cgroup_prefix),
		cmocka_unit_test(inspect_a_child),
		cmocka_unit_test(symlinked_executable),
		cmocka_unit_test(deleted_executable),
		cmocka_unit_test(gone_process),
		cmocka_unit_test(pidfd_of_another),
		cmocka_unit_test(other_uid),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
