/*
 * idleconns.c - what an idle connection costs a server: open N connections
 * to HOST:PORT, plain TCP (nothing sent) or TLS (handshaken with a client
 * certificate, then quiet), and print how much the resident and private
 * memory of process PID grew per connection (/proc/PID/smaps_rollup,
 * before and after, SETTLE_MS after the last connection so that the
 * server's quiet-connection sweep has run).
 *
 *   idleconns -p PID -n N [-c CERT -k KEY] [-s SETTLE_MS] [-H HOLD_S] HOST:PORT
 *
 * TLS connections after the first resume its session (the server's
 * memory per connection is the same; the node's token is spared N
 * signatures and the proxy's per-source admission limit is not met).
 * Output, one line: "idle tcp|tls N [(resumed)|(full)]: rss +K KiB (P KiB/conn), private +K
 * KiB (P KiB/conn)". Used by bench/idlemem.sh; never by a timed test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct mem {
	long rss, priv;		/* KiB */
};

static int
mem_of(long pid, struct mem *m)
{
	char path[64], line[256];
	long v, clean = 0, dirty = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	m->rss = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "Rss: %ld kB", &v) == 1)
			m->rss = v;
		else if (sscanf(line, "Private_Clean: %ld kB", &v) == 1)
			clean = v;
		else if (sscanf(line, "Private_Dirty: %ld kB", &v) == 1)
			dirty = v;
	}
	fclose(f);
	m->priv = clean + dirty;
	return 0;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int
dial(const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static long
num(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "idleconns: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	long pid = 0, n = 0, settle = 1000, hold = 0, i, resumed = 0;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	struct mem before, after;
	struct rlimit rl;
	SSL_CTX *ctx = NULL;
	SSL_SESSION *sess = NULL;
	SSL **ssl;
	int *fds, ch;
	char *host, *port;

	while ((ch = getopt(argc, argv, "p:n:c:k:s:H:")) != -1) {
		switch (ch) {
		case 'p': pid = num(optarg, "pid"); break;
		case 'n': n = num(optarg, "count"); break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 's': settle = num(optarg, "settle time"); break;
		case 'H': hold = num(optarg, "hold time"); break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || pid <= 0 || n <= 0 || (cert == NULL) != (key == NULL))
		goto usage;
	host = argv[optind];
	if ((port = strrchr(host, ':')) == NULL)
		goto usage;
	*port++ = '\0';
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		fprintf(stderr, "idleconns: cannot resolve %s\n", host);
		return 1;
	}
	/* n sockets and a few more */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (cert != NULL) {
		if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
		    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	}
	fds = calloc((size_t)n, sizeof(*fds));
	ssl = calloc((size_t)n, sizeof(*ssl));
	if (fds == NULL || ssl == NULL || mem_of(pid, &before) != 0) {
		fprintf(stderr, "idleconns: cannot read the memory of %ld\n", pid);
		return 1;
	}
	for (i = 0; i < n; i++) {
		if ((fds[i] = dial(ai)) < 0) {
			fprintf(stderr, "idleconns: connection %ld: %s\n", i + 1, strerror(errno));
			return 1;
		}
		if (ctx == NULL)
			continue;
		if ((ssl[i] = SSL_new(ctx)) == NULL || SSL_set_fd(ssl[i], fds[i]) != 1 ||
		    (sess != NULL && SSL_set_session(ssl[i], sess) != 1) || SSL_connect(ssl[i]) != 1) {
			fprintf(stderr, "idleconns: TLS connection %ld failed\n", i + 1);
			ERR_print_errors_fp(stderr);
			return 1;
		}
		resumed += SSL_session_reused(ssl[i]);
		/* a TLS 1.3 ticket comes after the handshake: read it with the first connection */
		if (sess == NULL) {
			char b;

			/* non-blocking: a read that finds nothing is no error (a timeout would end the session) */
			fcntl(fds[i], F_SETFL, O_NONBLOCK);
			for (int t = 0; t < 30 && SSL_peek(ssl[i], &b, 1) <= 0; t++)
				sleep_ms(10);
			ERR_clear_error();
			sess = SSL_get1_session(ssl[i]);
		}
	}
	sleep_ms(settle);
	if (mem_of(pid, &after) != 0) {
		fprintf(stderr, "idleconns: cannot read the memory of %ld\n", pid);
		return 1;
	}
	printf("idle %s %ld%s: rss +%ld KiB (%.1f KiB/conn), private +%ld KiB (%.1f KiB/conn)\n",
	    ctx != NULL ? "tls" : "tcp", n, ctx != NULL ? (resumed == n - 1 ? " (resumed)" : " (full)") : "",
	    after.rss - before.rss,
	    (double)(after.rss - before.rss) / (double)n, after.priv - before.priv,
	    (double)(after.priv - before.priv) / (double)n);
	fflush(stdout);
	if (hold > 0)
		sleep_ms(hold * 1000);
	for (i = 0; i < n; i++) {
		SSL_free(ssl[i]);
		close(fds[i]);
	}
	SSL_SESSION_free(sess);
	SSL_CTX_free(ctx);
	freeaddrinfo(ai);
	free(fds);
	free(ssl);
	return 0;
 usage:
	fprintf(stderr, "usage: idleconns -p PID -n N [-c CERT -k KEY] [-s SETTLE_MS] [-H HOLD_S] "
	    "HOST:PORT\n");
	return 2;
}
