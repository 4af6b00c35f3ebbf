/*
 * get.c - `hsmesh app get`: a client that sends N GETs on ONE keep-alive
 * connection and prints a line per response (app.h), so the demo can show
 * one connection carrying traffic across certificate rotations in the
 * sidecars. It bounds what one response may make it hold.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "app.h"
#include "err.h"
#include "http.h"
#include "httpresp.h"
#include "netaddr.h"
#include "util.h"

#define GET_SHOW	200	/* bodies up to this size are shown, larger ones counted */
#define GET_MAX_COUNT	1000000

struct url {
	char host[256];		/* the Host field: the authority as written */
	char addr[256 + 4];	/* HOST:PORT for net_parse_addr */
	char path[HTTP_MAX_TARGET + 1];
};

/* http://HOST[:PORT][/PATH][?QUERY]; the port defaults to 80, the path to "/". */
static int
parse_url(const char *s, struct url *u)
{
	const char *auth, *p, *rb;
	size_t alen, plen;
	int has_port;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "https://", 8) == 0)
		return hsm_err(HSM_EINVAL, "'%s': only http:// (the outbound sidecar provides TLS)", s);
	if (strncasecmp(s, "http://", 7) != 0)
		return hsm_err(HSM_EINVAL, "'%s' is not an http:// URL", s);
	auth = s + 7;
	alen = strcspn(auth, "/?#");
	if (alen == 0 || alen >= sizeof(u->host))
		return hsm_err(HSM_EINVAL, "'%s': bad host", s);
	if (memchr(auth, '@', alen) != NULL)
		return hsm_err(HSM_EINVAL, "'%s': user information is not supported", s);
	memcpy(u->host, auth, alen);
	if (u->host[0] == '[')
		has_port = (rb = strchr(u->host, ']')) != NULL && rb[1] == ':';
	else
		has_port = strchr(u->host, ':') != NULL;
	snprintf(u->addr, sizeof(u->addr), "%s%s", u->host, has_port ? "" : ":80");

	p = auth + alen;
	plen = strcspn(p, "#");
	if (plen == 0 || p[0] == '?')
		u->path[0] = '/';
	if (plen + 1 >= sizeof(u->path))
		return hsm_err(HSM_EINVAL, "'%s': path too long", s);
	memcpy(u->path + strlen(u->path), p, plen);
	for (p = u->path; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return hsm_err(HSM_EINVAL, "'%s': bad character in the path", s);
	for (p = u->host; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return hsm_err(HSM_EINVAL, "'%s': bad character in the host", s);
	return 0;
}

/* A TCP connection to ss within timeout_ms; 0 with *fd set, or HSM_EIO/HSM_ETIMEDOUT. */
static int
dial(const struct sockaddr_storage *ss, socklen_t sl, int timeout_ms, int *fd)
{
	struct pollfd pfd = { .events = POLLOUT };
	socklen_t el = sizeof(int);
	char addr[128];
	int s, err = 0, one = 1, r;

	*fd = -1;
	net_addr_str(ss, sl, addr, sizeof(addr));
	if ((s = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return hsm_err(HSM_EIO, "socket: %s", strerror(errno));
	if (connect(s, (const struct sockaddr *)ss, sl) != 0) {
		if (errno != EINPROGRESS) {
			err = errno;
			goto fail;
		}
		pfd.fd = s;
		while ((r = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
			;
		if (r == 0) {
			close(s);
			return hsm_err(HSM_ETIMEDOUT, "connect %s: timed out", addr);
		}
		if (r < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
			err = errno;
		if (err != 0)
			goto fail;
	}
	(void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*fd = s;
	return 0;
fail:
	close(s);
	return hsm_err(HSM_EIO, "connect %s: %s", addr, strerror(err));
}

/* The client's connection and what it has received but not parsed. */
struct getter {
	int fd;
	size_t off, len;
	uint8_t buf[64 * 1024];	/* at least HTTPRESP_MAX_HEAD */
};

/*
 * Wait until deadline for bytes at the end of the buffer (which has room):
 * 1 got some, 0 the peer closed, HSM_ETIMEDOUT, HSM_EIO.
 */
static int
get_fill(struct getter *g, uint64_t deadline)
{
	struct pollfd pfd = { .fd = g->fd, .events = POLLIN };
	uint64_t now;
	ssize_t r;
	int pr;

	for (;;) {
		r = recv(g->fd, g->buf + g->len, sizeof(g->buf) - g->len, 0);
		if (r > 0) {
			g->len += (size_t)r;
			return 1;
		}
		if (r == 0 || errno == ECONNRESET)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return hsm_err(HSM_EIO, "recv: %s", strerror(errno));
		if ((now = hsm_now_ms()) >= deadline)
			return HSM_ETIMEDOUT;
		pr = poll(&pfd, 1, deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now));
		if (pr < 0 && errno != EINTR)
			return hsm_err(HSM_EIO, "poll: %s", strerror(errno));
	}
}

/* What a response showed: its status, its body's size and first bytes. */
struct shown {
	int status;
	int closes;		/* the server closes the connection after it */
	uint64_t bytes;
	size_t have;
	uint8_t first[GET_SHOW + 1];
};

/*
 * Read one response to a GET (skipping interim 1xx ones) before deadline.
 * 0; HSM_ECLOSED when the connection ended before its first byte; else
 * HSM_ETIMEDOUT, HSM_EIO or HSM_EPROTO with a detail.
 */
static int
get_response(struct getter *g, uint64_t deadline, struct shown *sh)
{
	struct httpresp rsp;
	const uint8_t *data;
	size_t used, dlen, n;
	int r, started = 0;

	memset(sh, 0, sizeof(*sh));
	do {
		while ((r = httpresp_head(g->buf + g->off, g->len - g->off, 0, &rsp)) == 0) {
			started |= g->len > g->off;
			memmove(g->buf, g->buf + g->off, g->len - g->off);
			g->len -= g->off;
			g->off = 0;
			if ((r = get_fill(g, deadline)) == 0)
				return started ? hsm_err(HSM_EPROTO, "connection closed in a response head") :
				    HSM_ECLOSED;
			if (r < 0)
				return r;
		}
		if (r < 0)
			return r;
		g->off += (size_t)r;
		started = 1;
		if (rsp.status == 101)
			return hsm_err(HSM_EPROTO, "unexpected 101 Switching Protocols");
	} while (rsp.status < 200);

	while (!httpresp_complete(&rsp)) {
		if (g->off == g->len) {
			g->off = g->len = 0;
			if ((r = get_fill(g, deadline)) < 0)
				return r;
			if (r == 0) {
				rsp.conn_close = 1;
				if ((r = httpresp_eof(&rsp)) < 0)
					return r;
				break;
			}
		}
		if ((r = httpresp_body(&rsp, g->buf + g->off, g->len - g->off, &used, &data, &dlen)) < 0)
			return r;
		g->off += used;
		n = dlen < sizeof(sh->first) - sh->have ? dlen : sizeof(sh->first) - sh->have;
		if (n > 0)
			memcpy(sh->first + sh->have, data, n);
		sh->have += n;
	}
	sh->status = rsp.status;
	sh->closes = rsp.conn_close;
	sh->bytes = rsp.received;
	return 0;
}

/*
 * One line per response: "STATUS FIRST-LINE" for a body of 1 to GET_SHOW
 * bytes (its first line, each byte outside printable ASCII shown as '?'),
 * else "STATUS <N bytes>".
 */
static void
show(const struct shown *sh)
{
	char line[GET_SHOW + 1];
	size_t i;

	if (sh->bytes == 0 || sh->bytes > GET_SHOW) {
		printf("%d <%" PRIu64 " bytes>\n", sh->status, sh->bytes);
	} else {
		for (i = 0; i < sh->have && sh->first[i] != '\n'; i++)
			line[i] = sh->first[i] < 0x20 || sh->first[i] > 0x7e ? '?' : (char)sh->first[i];
		if (i > 0 && i < sh->have && sh->first[i - 1] == '\r')
			i--;
		line[i] = '\0';
		printf("%d %s\n", sh->status, line);
	}
	fflush(stdout);
}

/*
 * Wait ms between two requests, watching the connection: HSM_ECLOSED when
 * the server closes it meanwhile, HSM_EPROTO when it sends unasked bytes.
 */
static int
get_pause(struct getter *g, long ms)
{
	uint64_t end = hsm_now_ms() + (uint64_t)ms, now;
	struct pollfd pfd = { .fd = g->fd, .events = POLLIN };
	int r;

	while ((now = hsm_now_ms()) < end) {
		if ((r = poll(&pfd, 1, (int)(end - now))) < 0 && errno != EINTR)
			return hsm_err(HSM_EIO, "poll: %s", strerror(errno));
		if (r <= 0)
			continue;
		if ((r = get_fill(g, now)) == 0)
			return HSM_ECLOSED;
		if (r > 0)
			return hsm_err(HSM_EPROTO, "the server sent bytes nobody asked for");
		if (r != HSM_ETIMEDOUT)
			return r;
	}
	return 0;
}

static void
get_usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh app get URL [--count N] [--interval MS] [--timeout MS]\n"
	    "                          [--expect-status CODE]\n"
	    "\n"
	    "Send N GET requests for URL (http://HOST:PORT/PATH, no TLS: point it at an\n"
	    "outbound sidecar) one at a time on ONE keep-alive connection, and print a line\n"
	    "per response: 'STATUS FIRST-LINE-OF-BODY' for a body of 1 to 200 bytes (bytes\n"
	    "outside printable ASCII shown as '?'), else 'STATUS <N bytes>'.\n"
	    "Exit 0 when every response had the expected status and the connection stayed\n"
	    "open for all N; else 1 with one line on stderr.\n"
	    "  --count N            requests (default 1)\n"
	    "  --interval MS        pause between requests (default 0)\n"
	    "  --timeout MS         bound on connecting and on each response (default 10000)\n"
	    "  --expect-status CODE the status every response must have (default 200)\n");
}

int
app_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "count", required_argument, NULL, 'c' },
		{ "interval", required_argument, NULL, 'i' },
		{ "timeout", required_argument, NULL, 't' },
		{ "expect-status", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long count = 1, interval = 0, timeout = 10000, expect = 200, i, wrong = 0, first_wrong = 0;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct getter *g = NULL;
	struct shown sh;
	struct url u;
	char req[HTTP_MAX_TARGET + 512];
	int ch, r, n, status = 1;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': r = app_num_arg("get", "--count", optarg, 1, GET_MAX_COUNT, &count); break;
		case 'i': r = app_num_arg("get", "--interval", optarg, 0, APP_MAX_MS, &interval); break;
		case 't': r = app_num_arg("get", "--timeout", optarg, 1, APP_MAX_MS, &timeout); break;
		case 'e': r = app_num_arg("get", "--expect-status", optarg, 100, 599, &expect); break;
		case 'h':
			get_usage(stdout);
			return 0;
		default:
			return app_bad_option("get", ch, argv);
		}
		if (r != 0)
			return r;
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "hsmesh app get: want one URL (try 'hsmesh app get --help')\n");
		return 2;
	}
	if ((r = parse_url(argv[optind], &u)) != 0 ||
	    (r = net_parse_addr(u.addr, 0, &ss, &sl)) != 0) {
		fprintf(stderr, "hsmesh app get: %s\n", hsm_err_msg(r));
		return 2;
	}
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hsmesh-app\r\n"
	    "Accept: */*\r\n\r\n", u.path, u.host);
	if (n < 0 || (size_t)n >= sizeof(req) || (g = calloc(1, sizeof(*g))) == NULL) {
		fprintf(stderr, "hsmesh app get: out of memory\n");
		return 1;
	}
	g->fd = -1;
	signal(SIGPIPE, SIG_IGN);
	if ((r = dial(&ss, sl, (int)timeout, &g->fd)) != 0) {
		fprintf(stderr, "hsmesh app get: %s\n", hsm_err_msg(r));
		goto out;
	}
	for (i = 1; i <= count; i++) {
		if (i > 1 && interval > 0 && (r = get_pause(g, interval)) != 0)
			goto failed;
		if ((r = http_write_all(g->fd, (const uint8_t *)req, (size_t)n, (int)timeout)) != 0 ||
		    (r = get_response(g, hsm_now_ms() + (uint64_t)timeout, &sh)) != 0)
			goto failed;
		show(&sh);
		if (sh.status != expect && wrong++ == 0)
			first_wrong = i;
		/* One request at a time: whatever follows a response was not asked for. */
		if (g->off < g->len) {
			i++;
			r = hsm_err(HSM_EPROTO, "the server sent bytes nobody asked for");
			goto failed;
		}
		g->off = g->len = 0;
		if (sh.closes && i < count) {
			i++;
			r = HSM_ECLOSED;
			goto failed;
		}
	}
	if (wrong > 0)
		fprintf(stderr, "hsmesh app get: %ld of %ld responses did not have status %ld "
		    "(the first: response %ld)\n", wrong, count, expect, first_wrong);
	else
		status = 0;
	goto out;
failed:
	/* i is the request that could not be made or answered. */
	if (r == HSM_ECLOSED)
		fprintf(stderr, "hsmesh app get: connection closed by peer after %ld of %ld "
		    "requests\n", i - 1, count);
	else if (r == HSM_ETIMEDOUT)
		fprintf(stderr, "hsmesh app get: timeout waiting for response %ld\n", i);
	else
		fprintf(stderr, "hsmesh app get: response %ld: %s\n", i, hsm_err_msg(r));
out:
	if (g->fd >= 0)
		close(g->fd);
	free(g);
	return status;
}

