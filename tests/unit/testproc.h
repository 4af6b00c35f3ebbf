/*
 * testproc.h - child processes for the unit tests that run real daemons
 * (the hsmesh binary named by $HSMESH_EXE, OpenSSL's mock CMP server):
 * start, wait, stop (always reaped), files they read and write, and a real
 * CA (`hsmesh ca init` + `ca serve` on a free port, `ca token`).
 */
#ifndef HSM_TEST_TESTPROC_H
#define HSM_TEST_TESTPROC_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "token_backend.h"

/*
 * Run exe (NULL: argv[0] found on PATH) with stdout to out (NULL:
 * /dev/null) and stderr appended to err; the pid.
 */
static inline pid_t
tp_run(const char *exe, const char *out, const char *err, const char *const argv[])
{
	pid_t p = fork();

	if (p == 0) {
		int o = open(out != NULL ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(127);
		if (exe != NULL)
			execv(exe, (char *const *)argv);
		else
			execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return p;
}

/* tp_run and wait: 0 when it exited 0, else -1. */
static inline int
tp_run_wait(const char *exe, const char *out, const char *err, const char *const argv[])
{
	int status;
	pid_t p = tp_run(exe, out, err, argv);

	if (p < 0 || waitpid(p, &status, 0) != p)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* SIGCONT + SIGTERM, then SIGKILL after 5 s; always reaped; *pid = -1. */
static inline void
tp_stop(pid_t *pid)
{
	int status;

	if (*pid <= 0)
		return;
	kill(*pid, SIGCONT);
	kill(*pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(*pid, &status, WNOHANG) == *pid) {
			*pid = -1;
			return;
		}
		usleep(10000);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, &status, 0);
	*pid = -1;
}

static inline int
tp_write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -1;
}

/* dir/name on stderr as TAP comments (a daemon's log after a failure). */
static inline void
tp_dump(const char *dir, const char *name)
{
	char path[256], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		fprintf(stderr, "# %s: %s", name, line);
	fclose(f);
}

/*
 * Wait up to 10 s for a line starting with prefix in the file at path (a
 * port file, a server's banner): the rest of it, without the newline, in
 * out; "" when none came.
 */
static inline void
tp_wait_line(const char *path, const char *prefix, char *out, size_t len)
{
	char line[256];
	FILE *f;

	out[0] = '\0';
	for (int i = 0; i < 200 && out[0] == '\0'; i++) {
		if ((f = fopen(path, "r")) != NULL) {
			while (fgets(line, sizeof(line), f) != NULL) {
				size_t n;

				if (strncmp(line, prefix, strlen(prefix)) == 0 && len > 0) {
					n = strlen(line) - strlen(prefix);
					if (n >= len)
						n = len - 1;
					memcpy(out, line + strlen(prefix), n);
					out[n] = '\0';
					break;
				}
			}
			fclose(f);
		}
		if (out[0] == '\0')
			usleep(50000);
	}
	out[strcspn(out, "\r\n")] = '\0';
}

/*
 * A test's binary and directory: exe (PATH_MAX bytes) = the real path of
 * $HSMESH_EXE (default build/hsmesh); dir = mkdtemp(tmpl) holding a
 * SoftHSM2 store (token_backend.h), the PIN file dir/pin (1234) and a token
 * for each label of the NULL-terminated list. 0 or -1.
 */
static inline int
tp_setup(char *exe, char *dir, size_t dirlen, const char *tmpl, const char *const labels[])
{
	const char *b = getenv("HSMESH_EXE");
	char path[PATH_MAX];

	if (realpath(b != NULL ? b : "build/hsmesh", exe) == NULL) {
		fprintf(stderr, "HSMESH_EXE %s: %s\n", b != NULL ? b : "build/hsmesh",
		    strerror(errno));
		return -1;
	}
	snprintf(dir, dirlen, "%s", tmpl);
	if (mkdtemp(dir) == NULL || tb_setup(dir) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/pin", dir);
	if (tp_write_text(path, "1234\n") != 0)
		return -1;
	for (size_t i = 0; labels[i] != NULL; i++)
		if (tb_new_token(labels[i]) != 0)
			return -1;
	return 0;
}

/*
 * A real CA for trust domain example.org: dir/ca.yaml (its key in the
 * SoftHSM2 token "ca", PIN in dir/pin, both made by the caller), `ca init`,
 * then `ca serve` on a free loopback port (in port), logging to dir/ca.log;
 * its root in dir/ca/root.pem. 0, or -1 with the log dumped.
 */
static inline int
tp_ca_start(const char *exe, const char *dir, const char *svid_ttl, pid_t *pid, char *port,
    size_t len)
{
	char yaml[1024], cayaml[256], caerr[256], portfile[256];

	snprintf(cayaml, sizeof(cayaml), "%s/ca.yaml", dir);
	snprintf(caerr, sizeof(caerr), "%s/ca.log", dir);
	snprintf(portfile, sizeof(portfile), "%s/ca.port", dir);
	snprintf(yaml, sizeof(yaml),
	    "trust_domain: example.org\n"
	    "token:\n  module: /usr/lib/softhsm/libsofthsm2.so\n  uri: \"pkcs11:token=ca\"\n"
	    "  pin_file: %s/pin\n"
	    "key:\n  type: ec-p256\n"
	    "state_dir: %s/ca\nlisten: 127.0.0.1:0\nsvid_ttl: %s\nmax_ttl: 24h\n"
	    "database: %s/ca/ledger.db\n", dir, dir, svid_ttl, dir);
	if (tp_write_text(cayaml, yaml) != 0 ||
	    tp_run_wait(exe, NULL, caerr, (const char *[]){ "hsmesh", "ca", "init", "-c", cayaml,
	    NULL }) != 0) {
		tp_dump(dir, "ca.log");
		return -1;
	}
	*pid = tp_run(exe, NULL, caerr, (const char *[]){ "hsmesh", "ca", "serve", "-c", cayaml,
	    "--port-file", portfile, NULL });
	tp_wait_line(portfile, "", port, len);
	if (port[0] == '\0') {
		tp_dump(dir, "ca.log");
		return -1;
	}
	return 0;
}

/* `hsmesh ca token --id id` of tp_ca_start's CA, its REF:SECRET line into the file out. */
static inline int
tp_ca_token(const char *exe, const char *dir, const char *id, const char *out)
{
	char cayaml[256], caerr[256];

	snprintf(cayaml, sizeof(cayaml), "%s/ca.yaml", dir);
	snprintf(caerr, sizeof(caerr), "%s/ca.log", dir);
	if (tp_run_wait(exe, out, caerr, (const char *[]){ "hsmesh", "ca", "token", "-c", cayaml,
	    "--id", id, NULL }) != 0) {
		tp_dump(dir, "ca.log");
		return -1;
	}
	return 0;
}

#endif
