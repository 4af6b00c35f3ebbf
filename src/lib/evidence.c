/*
 * evidence.c - attestation evidence producers (see evidence.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "evidence.h"
#include "evtype.h"
#include "spawner.h"
#include "util.h"

extern char **environ;

const char *
evidence_kind_name(enum evidence_kind k)
{
	switch (k) {
	case EVIDENCE_GRAMINE:
		return "gramine";
	case EVIDENCE_COMMAND:
		return "command";
	case EVIDENCE_FILE:
		return "file";
	default:
		return "none";
	}
}

void
evidence_conf_clear(struct evidence_conf *e)
{
	if (e == NULL)
		return;
	free(e->path);
	if (e->argv != NULL)
		for (size_t i = 0; e->argv[i] != NULL; i++)
			free(e->argv[i]);
	free(e->argv);
	spawner_free(e->sp);
	memset(e, 0, sizeof(*e));
}

int
evidence_spawner(struct evidence_conf *e)
{
	struct spawn_prog p;

	if (e->kind != EVIDENCE_COMMAND || e->sp != NULL)
		return 0;
	memset(&p, 0, sizeof(p));
	p.path = e->argv[0];
	p.argv = e->argv;
	return spawner_start(&p, 1, &e->sp);
}

int
evidence_conf_load(const struct cfg_doc *d, const char *section, struct evidence_conf *e)
{
	const struct cfg_node *sect = cfg_find(d, section), *seq = NULL, *it;
	char key[96], *kind = NULL;
	const char *v;
	int64_t timeout;
	size_t n = 0;
	int r;

	memset(e, 0, sizeof(*e));
	if (sect == NULL)
		return 0;
#define K(s) (snprintf(key, sizeof(key), "%s.%s", section, s), key)
	if (sect->type != CFG_MAP) {
		r = cfg_err(d, section, "'%s' must be a mapping", section);
		goto out;
	}
	if ((r = cfg_require(d, K("producer"))) != 0 ||
	    (r = cfg_get_str(d, K("producer"), NULL, &kind)) != 0 ||
	    (r = cfg_get_duration(d, K("timeout"), "30s", &timeout)) != 0)
		goto out;
	if (timeout <= 0 || timeout > 600) {
		r = cfg_err(d, K("timeout"), "'%s' must be from 1s to 10m", key);
		goto out;
	}
	e->timeout_ms = (unsigned)timeout * 1000;
	if (strcmp(kind, "gramine") == 0) {
		e->kind = EVIDENCE_GRAMINE;
		r = cfg_get_path(d, K("path"), "/dev/attestation", &e->path);
	} else if (strcmp(kind, "file") == 0) {
		e->kind = EVIDENCE_FILE;
		if ((r = cfg_require(d, K("path"))) == 0)
			r = cfg_get_path(d, K("path"), NULL, &e->path);
	} else if (strcmp(kind, "command") == 0) {
		e->kind = EVIDENCE_COMMAND;
		if ((r = cfg_node_list(d, sect, section, "command", &seq)) != 0)
			goto out;
		for (it = seq != NULL ? seq->child : NULL; it != NULL; it = it->next)
			n++;
		if (n == 0) {
			r = cfg_err(d, section, "'%s' with producer command needs 'command': "
			    "[program, args...]", section);
			goto out;
		}
		if ((e->argv = calloc(n + 1, sizeof(*e->argv))) == NULL) {
			r = HSM_ENOMEM;
			goto out;
		}
		n = 0;
		for (it = seq->child; it != NULL; it = it->next) {
			if ((r = cfg_node_value(d, it, K("command"), &v)) != 0)
				goto out;
			/* A relative program path is the config file's neighbour. */
			if (n == 0 && strchr(v, '/') != NULL)
				r = cfg_resolve_path(d->dir, v, &e->argv[n]);
			else if ((e->argv[n] = strdup(v)) == NULL)
				r = HSM_ENOMEM;
			if (r != 0)
				goto out;
			n++;
		}
	} else {
		r = cfg_err(d, K("producer"), "'%s' must be gramine, command or file, not '%.40s'",
		    key, kind);
		goto out;
	}
#undef K
 out:
	free(kind);
	if (r != 0) {
		evidence_conf_clear(e);
		return r == HSM_ENOMEM ? r : HSM_ECONFIG;
	}
	return 0;
}

/* Gramine: write user_report_data, then read quote (both in e->path). */
static int
quote_gramine(const struct evidence_conf *e, const uint8_t rd[64], uint8_t **quote, size_t *len)
{
	char path[4096];
	ssize_t w;
	int fd, r;

	snprintf(path, sizeof(path), "%s/user_report_data", e->path);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return hsm_err(HSM_EIO, "evidence: cannot open %s: %s (not inside a Gramine SGX "
		    "enclave with remote attestation?)", path, strerror(errno));
	w = write(fd, rd, 64);
	r = errno;
	close(fd);
	if (w != 64)
		return hsm_err(HSM_EIO, "evidence: writing %s: %s", path,
		    w < 0 ? strerror(r) : "short write");
	snprintf(path, sizeof(path), "%s/quote", e->path);
	if ((r = hsm_read_file(path, ATTEST_QUOTE_MAX, quote, len)) != 0)
		return hsm_err(r, "evidence: reading %s: %s", path, hsm_err_msg(r));
	return 0;
}

/* Kill and reap a child. */
static void
reap(pid_t pid, int kill_it)
{
	int status;

	if (kill_it)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

static int
quote_command(const struct evidence_conf *e, const uint8_t rd[64], uint8_t **quote, size_t *len)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, dfl;
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, r, status;
	char line[130];
	uint8_t *buf = NULL;
	size_t n = 0;
	pid_t pid = -1;
	uint64_t deadline = hsm_now_ms() + e->timeout_ms;

	*quote = NULL;
	*len = 0;
	hsm_hex(rd, 64, line);
	line[128] = '\n';
	line[129] = '\0';
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
	    (buf = malloc(ATTEST_QUOTE_MAX + 1)) == NULL) {
		r = hsm_err(HSM_EIO, "evidence: %s", strerror(errno));
		goto out;
	}
	if (e->sp != NULL) {
		/* The spawner resets the signals and searches PATH as posix_spawnp does. */
		const int fds[2] = { in[0], out[1] }, targets[2] = { 0, 1 };

		if ((r = spawner_spawn(e->sp, 0, fds, targets, 2, &pid)) != 0) {
			char why[300];

			snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
			pid = -1;
			r = hsm_err(HSM_EIO, "evidence: cannot run %s: %s", e->argv[0], why);
			goto out;
		}
		goto started;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawnattr_init(&sa);
	/* The agent blocks and ignores signals for its own loop; the child must not. */
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &dfl);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	r = posix_spawnp(&pid, e->argv[0], &fa, &sa, e->argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&sa);
	if (r != 0) {
		pid = -1;
		r = hsm_err(HSM_EIO, "evidence: cannot run %s: %s", e->argv[0], strerror(r));
		goto out;
	}
 started:
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	/* 129 bytes fit in a pipe buffer: this write does not block. */
	if (write(in[1], line, 129) != 129) {
		r = hsm_err(HSM_EIO, "evidence: %s did not read its input", e->argv[0]);
		goto out;
	}
	close(in[1]);
	in[1] = -1;
	for (;;) {
		struct pollfd p = { .fd = out[0], .events = POLLIN };
		uint64_t now = hsm_now_ms();
		ssize_t got;

		if (now >= deadline) {
			r = hsm_err(HSM_ETIMEDOUT, "evidence: %s gave no quote within %us", e->argv[0],
			    e->timeout_ms / 1000);
			goto out;
		}
		if ((got = poll(&p, 1, (int)(deadline - now))) <= 0) {
			if (got == 0 || errno == EINTR)
				continue;	/* the deadline is checked above */
			r = hsm_err(HSM_EIO, "evidence: poll: %s", strerror(errno));
			goto out;
		}
		if ((got = read(out[0], buf + n, ATTEST_QUOTE_MAX + 1 - n)) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			r = hsm_err(HSM_EIO, "evidence: reading from %s: %s", e->argv[0], strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > ATTEST_QUOTE_MAX) {
			r = hsm_err(HSM_EPROTO, "evidence: %s wrote more than %d bytes", e->argv[0],
			    ATTEST_QUOTE_MAX);
			goto out;
		}
	}
	/* Its stdout is closed; it must also exit before the deadline. */
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			r = hsm_err(HSM_EIO, "evidence: waitpid: %s", strerror(errno));
			pid = -1;
			goto out;
		}
		if (hsm_now_ms() >= deadline) {
			r = hsm_err(HSM_ETIMEDOUT, "evidence: %s did not exit within %us", e->argv[0],
			    e->timeout_ms / 1000);
			goto out;
		}
		usleep(10000);
	}
	pid = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		r = hsm_err(HSM_EIO, "evidence: %s %s %d", e->argv[0],
		    WIFEXITED(status) ? "exited with status" : "was killed by signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		goto out;
	}
	if (n == 0) {
		r = hsm_err(HSM_EPROTO, "evidence: %s wrote no quote", e->argv[0]);
		goto out;
	}
	*quote = buf;
	*len = n;
	buf = NULL;
	r = 0;
 out:
	if (pid > 0)
		reap(pid, 1);
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	free(buf);
	return r;
}

int
evidence_quote(const struct evidence_conf *e, const uint8_t report_data[64],
    uint8_t **quote, size_t *len)
{
	int r;

	*quote = NULL;
	*len = 0;
	switch (e->kind) {
	case EVIDENCE_GRAMINE:
		return quote_gramine(e, report_data, quote, len);
	case EVIDENCE_COMMAND:
		return quote_command(e, report_data, quote, len);
	case EVIDENCE_FILE:
		if ((r = hsm_read_file(e->path, ATTEST_QUOTE_MAX, quote, len)) != 0)
			return hsm_err(r, "evidence: reading %s: %s", e->path, hsm_err_msg(r));
		return 0;
	default:
		return hsm_err(HSM_EINVAL, "no evidence producer configured");
	}
}
