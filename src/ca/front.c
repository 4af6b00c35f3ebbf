/*
 * front.c - the HTTP front of the CMP server (RFC 6712; see cmp.h): a
 * listener, a fixed set of connection handlers, and for each connection:
 * read one request (bounded by max_body, an I/O timeout per recv), parse
 * it (http.h), hand a POST to /.well-known/cmp to cmp_handle, answer and
 * close (no keep-alive: it avoided a Nagle/delayed-ACK stall on certConf,
 * docs/OPENSSL.md).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attest.h"
#include "audit.h"
#include "cmp.h"
#include "err.h"
#include "evtype.h"
#include "http.h"
#include "log.h"
#include "netaddr.h"
#include "util.h"

#define CMP_PATH "/.well-known/cmp"
#define IO_TIMEOUT_S 10


static void
send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void
respond(int fd, int status, const char *ctype, const uint8_t *body, size_t len)
{
	size_t cap = len + 512, n = 0;
	uint8_t *out = malloc(cap);

	if (out == NULL)
		return;
	if (http_response(out, cap, status, ctype, body, len, &n) == 0)
		send_all(fd, out, n);
	free(out);
}

static void
serve_conn(struct server *s, int fd, const char *peer)
{
	size_t cap = s->cfg->max_body + 16384, have = 0;
	uint8_t *buf = malloc(cap);
	struct http_req hr;
	struct cmp_answer a;
	const char *err;
	int n = 0;

	if (buf == NULL)
		return;
	for (;;) {
		ssize_t got = recv(fd, buf + have, cap - have, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			goto out;	/* closed, or the I/O timeout: nothing to answer */
		have += (size_t)got;
		if ((n = http_parse(buf, have, s->cfg->max_body, &hr)) != 0)
			break;
		if (have == cap) {
			n = HSM_EPROTO;
			hr.status = 413;
			break;
		}
	}
	if (n < 0) {
		char msg[64];

		snprintf(msg, sizeof(msg), "bad HTTP request (%d)\n", hr.status);
		respond(fd, hr.status ? hr.status : 400, "text/plain", (const uint8_t *)msg, strlen(msg));
		log_info("refused %s: HTTP %d", peer, hr.status);
		goto out;
	}
	if (strcmp(hr.target, CMP_PATH) != 0) {
		respond(fd, 404, "text/plain", (const uint8_t *)"no such path (use " CMP_PATH ")\n",
		    sizeof("no such path (use " CMP_PATH ")\n") - 1);
		goto out;
	}
	if (strcmp(hr.method, "POST") != 0) {
		respond(fd, 405, "text/plain", (const uint8_t *)"use POST\n", 9);
		goto out;
	}
	cmp_handle(s, hr.body, hr.body_len, peer, &a);
	if (a.body != NULL) {
		respond(fd, 200, "application/pkixcmp", a.body, a.len);
	} else {
		err = a.errtext != NULL ? a.errtext : "error\n";
		respond(fd, a.status == 200 ? 500 : a.status, "text/plain", (const uint8_t *)err,
		    strlen(err));
	}
	free(a.body);
out:
	free(buf);
}

static void *
worker_main(void *arg)
{
	struct server *s = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (!s->stop) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char peer[96];
		struct timeval tv = { IO_TIMEOUT_S, 0 };
		int one = 1, fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
				if (errno == EMFILE || errno == ENFILE)
					usleep(10000);
				continue;
			}
			break;	/* listener shut down */
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		serve_conn(s, fd, net_addr_str(&ss, sl, peer, sizeof(peer)));
		close(fd);
	}
	return NULL;
}

/* Listen on spec ("host:port"); bound receives the address actually bound (port 0 resolved). */
static int
listen_tcp(const char *spec, int *out, char *bound, size_t boundcap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char why[400];
	int fd, st;

	*out = -1;
	if ((st = net_parse_addr(spec, 1, &ss, &sl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
		return hsm_err(HSM_ECONFIG, "listen %s", why);
	}
	if ((st = net_listen(&ss, sl, 0, 0, 256, &fd)) != 0)
		return st;
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		st = hsm_err(HSM_EIO, "cannot listen on %s: %s", spec, strerror(errno));
		close(fd);
		return st;
	}
	net_addr_str(&ss, sl, bound, boundcap);
	*out = fd;
	return 0;
}

int
cmp_serve(const struct cmp_server_cfg *cfg)
{
	struct server s;
	pthread_t th[64];
	int nth = cfg->threads > 0 && cfg->threads <= 64 ? cfg->threads : 8, st, sig;
	char bound[96], line[300];
	sigset_t sigs;

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	ev_nonce_key(cfg->token_key, s.nonce_key);
	if ((st = listen_tcp(cfg->listen, &s.lfd, bound, sizeof(bound))) != 0)
		return st;
	if (cfg->port_file != NULL) {
		const char *port = strrchr(bound, ':') + 1;

		if ((st = hsm_write_file_atomic(cfg->port_file, port, strlen(port), 0644)) != 0) {
			close(s.lfd);
			return st;
		}
	}
	pthread_mutex_init(&s.mu, NULL);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < nth; i++) {
		if (pthread_create(&th[i], NULL, worker_main, &s) != 0) {
			nth = i;
			break;
		}
	}
	log_info("serving CMP at http://%s%s with %d handlers", bound, CMP_PATH, nth);
	for (size_t i = 0; attest_describe(cfg->attest, i, line, sizeof(line)); i++)
		log_info("attestation: %s", line);
	audit_event(cfg->audit, "start", "listen", bound, NULL);
	while (sigwait(&sigs, &sig) != 0)
		;
	log_info("stopping on signal %d", sig);
	s.stop = 1;
	shutdown(s.lfd, SHUT_RDWR);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	close(s.lfd);
	txn_free_all(&s);
	pthread_mutex_destroy(&s.mu);
	audit_event(cfg->audit, "stop", NULL);
	return 0;
}
