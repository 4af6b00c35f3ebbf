/*
 * test_confine.c - the pieces of confinement that need no daemon: the
 * environment scrub, the private lock directory and lock file, the seccomp
 * lists' shape and names, the spawner (a real child, a real pipe).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "sandbox.h"
#include "spawner.h"
#include "util.h"

/* Removed from the array, and its bytes zeroed where they lie in the block. */
static void
env_scrub(void **state)
{
	char block[] = "A=1\0PIN=secret\0B=2\0PIN=again\0";
	char outside[] = "PIN=heap";
	char *envp[] = { block, block + 4, block + 15, block + 19, outside, NULL };
	char *hi = block + sizeof(block);

	assert_int_equal(hsm_env_scrub(envp, "PIN", block, hi), 3);
	assert_string_equal(envp[0], "A=1");
	assert_string_equal(envp[1], "B=2");
	assert_null(envp[2]);
	for (size_t i = 4; i < 14; i++)
		assert_int_equal(block[i], 0);
	for (size_t i = 19; i < 28; i++)
		assert_int_equal(block[i], 0);
	assert_string_equal(outside, "PIN=heap");	/* not ours to wipe */
	assert_string_equal(block + 15, "B=2");
	/* A prefix is not the name. */
	{
		char b2[] = "PINX=1\0";
		char *e2[] = { b2, NULL };

		assert_int_equal(hsm_env_scrub(e2, "PIN", b2, b2 + sizeof(b2)), 0);
		assert_string_equal(e2[0], "PINX=1");
	}
}

/* hsm_secret_take_env: read once, then gone from getenv. */
static void
take_env(void **state)
{
	char *s = NULL;
	size_t n = 0;

	setenv("HSMESH_TEST_TAKE", "1234", 1);
	assert_int_equal(hsm_secret_take_env("HSMESH_TEST_TAKE", &s, &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(s, "1234", 4);
	assert_null(getenv("HSMESH_TEST_TAKE"));
	hsm_secret_free(s, n);
}

static void
lock_files(void **state)
{
	char dir[] = "/tmp/hsmesh-confine.XXXXXX", sub[96], path[128];
	int dfd = -1, fd = -1;

	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/locks", dir);
	/* Created 0700, then accepted. */
	assert_int_equal(hsm_private_dir_open(sub, &dfd), 0);
	{
		struct stat sb;

		assert_int_equal(fstat(dfd, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0700);
	}
	assert_int_equal(hsm_lockfile_open(dfd, "a.lock", &fd), 0);
	assert_true(fd >= 0);
	assert_true((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	close(fd);
	/* A FIFO: opened without blocking, then refused. */
	snprintf(path, sizeof(path), "%s/fifo.lock", sub);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(hsm_lockfile_open(dfd, "fifo.lock", &fd), HSM_EPERM);
	assert_int_equal(fd, -1);
	/* A link: not followed. */
	snprintf(path, sizeof(path), "%s/link.lock", sub);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(hsm_lockfile_open(dfd, "link.lock", &fd), HSM_EIO);
	assert_non_null(strstr(hsm_err_msg(HSM_EIO), "a link"));
	close(dfd);
	/* A directory others may write to, or a link to one, is refused. */
	assert_int_equal(chmod(sub, 0777), 0);
	assert_int_equal(hsm_private_dir_open(sub, &dfd), HSM_EPERM);
	snprintf(path, sizeof(path), "%s/dirlink", dir);
	assert_int_equal(chmod(sub, 0700), 0);
	assert_int_equal(symlink(sub, path), 0);
	assert_int_equal(hsm_private_dir_open(path, &dfd), HSM_EIO);
	assert_int_equal(dfd, -1);
	{
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* The lists' shape: what no process may do, and what only some may. */
static void
lists(void **state)
{
	static const char *const never[] = { "execve", "execveat", "ptrace", "fork", "vfork",
	    "setuid", "setrlimit", "mount", "bpf", "process_vm_readv", NULL };

	for (int p = 0; p < SANDBOX_NPROC; p++) {
		for (size_t i = 0; never[i] != NULL; i++) {
#if defined(__SANITIZE_ADDRESS__)
			if (strcmp(never[i], "ptrace") == 0)
				continue;	/* LeakSanitizer's */
#endif
			if (sandbox_allows((enum sandbox_proc)p, never[i]) != 0)
				fail_msg("process %d may call %s", p, never[i]);
		}
		assert_int_equal(sandbox_allows((enum sandbox_proc)p, "mmap"), 2);
		assert_int_equal(sandbox_allows((enum sandbox_proc)p, "socket"), 2);
		assert_int_equal(sandbox_allows((enum sandbox_proc)p, "clone"), 2);
	}
	/* Selectors: the agent alone signals a client behind its pidfd. */
	assert_int_equal(sandbox_allows(SANDBOX_AGENT, "pidfd_send_signal"), 1);
	assert_int_equal(sandbox_allows(SANDBOX_AGENT, "pidfd_open"), 1);
	assert_int_equal(sandbox_allows(SANDBOX_CA_FRONT, "pidfd_send_signal"), 0);
	assert_int_equal(sandbox_allows(SANDBOX_KEYHOLDER, "pidfd_open"), 0);
	assert_int_equal(sandbox_allows(SANDBOX_KEYHOLDER, "sendmmsg"), 0);
}

static void
names(void **state)
{
	char **v = NULL, *j = NULL;
	size_t n = 0;
	enum sandbox_mode m;

	assert_int_equal(sandbox_names_parse(" flock, mkdir\tfallocate,", &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(sandbox_names_join(v, n, &j), 0);
	assert_string_equal(j, "flock,mkdir,fallocate");
	free(j);
	sandbox_names_free(v, n);
	assert_int_equal(sandbox_names_parse("flock, nosuchcall", &v, &n), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "'nosuchcall' is not a system call"));
	assert_null(v);
	assert_int_equal(sandbox_names_parse("open\x01", &v, &n), HSM_EINVAL);
	assert_null(strchr(hsm_err_msg(HSM_EINVAL), '\x01'));
	assert_int_equal(sandbox_mode_parse("kill", &m), 0);
	assert_int_equal(m, SANDBOX_KILL);
	assert_string_equal(sandbox_mode_name(m), "kill");
	assert_int_equal(sandbox_mode_parse("strict", &m), HSM_EINVAL);
}

/*
 * The spawner runs only its programs, with the descriptors asked for and
 * its secret on a pipe; the program is our child (CLONE_PARENT).
 */
static void
spawner(void **state)
{
	char *const argv[] = { "sh", "-c", "cat <&4; echo \" $#\"", "x", NULL };
	struct spawn_prog prog = { .path = "/bin/sh", .argv = argv, .secret = "s3cret",
	    .secret_len = 6, .secret_fd = 4 };
	struct spawner *sp = NULL;
	int out[2], st, targets[1] = { 1 };
	char buf[64];
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(spawner_start(&prog, 1, &sp), 0);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(pipe(out), 0);
		assert_int_equal(spawner_spawn(sp, 0, &out[1], targets, 1, &pid), 0);
		close(out[1]);
		got = 0;
		while ((n = read(out[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
			got += n;
		close(out[0]);
		buf[got] = '\0';
		assert_string_equal(buf, "s3cret 0\n");
		/* Ours to reap. */
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* No other program, no descriptor number out of range. */
	assert_int_equal(spawner_spawn(sp, 1, NULL, NULL, 0, &pid), HSM_EINVAL);
	targets[0] = 99;
	assert_int_equal(pipe(out), 0);
	assert_int_equal(spawner_spawn(sp, 0, &out[1], targets, 1, &pid), HSM_EINVAL);
	assert_int_equal(pid, -1);
	close(out[0]);
	close(out[1]);
	/* It exits when we hang up (spawner_free reaps it). */
	{
		pid_t spid = spawner_pid(sp);
		int sst;

		spawner_free(sp);
		assert_int_equal(waitpid(spid, &sst, WNOHANG), -1);	/* reaped already */
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(env_scrub),
		cmocka_unit_test(take_env),
		cmocka_unit_test(lock_files),
		cmocka_unit_test(lists),
		cmocka_unit_test(names),
		cmocka_unit_test(spawner),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
