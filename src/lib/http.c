/* http.c - strict HTTP/1.1 request parser and response writer (see http.h). */
#include <sys/socket.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "http.h"
#include "httptok.h"
#include "util.h"

/* Parser state that is not part of the result. */
struct hstate {
	int seen_host;
	int seen_ctype;
	int keep_alive;
	uint64_t length;
};

static int
fail(struct http_req *out, int status, const char *why)
{
	out->status = status;
	return hsm_err(HSM_EPROTO, "http: %d %s: %s", status, http_reason(status), why);
}

/* Copy n bytes to a NUL-terminated buffer of size bytes. -1 if too long. */
static int
copy_str(char *dst, size_t size, const uint8_t *p, size_t n)
{
	if (n >= size)
		return -1;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

/*
 * request-line = method SP request-target SP HTTP-version, one SP each.
 * The target keeps its path only: origin-form as is, absolute-form
 * ("http://host/path", which RFC 9112 3.2.2 says servers accept) with
 * the scheme and authority removed; the query is cut off.
 */
static int
parse_request_line(const uint8_t *p, size_t n, struct http_req *rq, struct http_req *out)
{
	size_t i = 0, m, t, tlen;
	const uint8_t *tp, *path, *end;
	int v;

	while (i < n && http_tchar(p[i]))
		i++;
	if (i == 0 || i >= n || p[i] != ' ')
		return fail(out, 400, "malformed request line");
	if (i > HTTP_MAX_METHOD)
		return fail(out, 501, "method too long");
	memcpy(rq->method, p, i);
	rq->method[i] = '\0';
	m = ++i;
	while (i < n && p[i] > 0x20 && p[i] < 0x7f)
		i++;
	tp = p + m;
	tlen = i - m;
	if (tlen > HTTP_MAX_TARGET)
		return fail(out, 414, "request target too long");
	if (tlen == 0 || i >= n || p[i] != ' ')
		return fail(out, 400, "malformed request line");
	i++;
	/* HTTP-version = "HTTP/" DIGIT "." DIGIT, and nothing after it. */
	if ((v = http_version(p + i, n - i, &rq->minor)) == -1)
		return fail(out, 400, "malformed HTTP version");
	if (v == -2)
		return fail(out, 505, "only HTTP/1.0 and HTTP/1.1 are supported");

	end = tp + tlen;
	if (memchr(tp, '#', tlen) != NULL)
		return fail(out, 400, "fragment in request target");
	if (tp[0] == '/') {
		path = tp;
	} else {
		if (tlen > 7 && http_ieq(tp, 7, "http://"))
			t = 7;
		else if (tlen > 8 && http_ieq(tp, 8, "https://"))
			t = 8;
		else
			return fail(out, 400, "request target is not a path or an http URI");
		for (path = tp + t; path < end && *path != '/' && *path != '?'; path++)
			;
		if (path == tp + t)
			return fail(out, 400, "request target has no authority");
	}
	/* The path ends at the query; an absolute URI may have an empty one. */
	for (t = 0; path + t < end && path[t] != '?'; t++)
		;
	if (t == 0) {
		rq->target[0] = '/';
		rq->target[1] = '\0';
	} else if (copy_str(rq->target, sizeof(rq->target), path, t) != 0) {
		return fail(out, 414, "request target too long");
	}
	return 0;
}

/* Scan a Connection value's comma-separated tokens. */
static void
parse_connection(const uint8_t *v, size_t n, struct http_req *rq, struct hstate *st)
{
	const uint8_t *t;
	size_t pos = 0, tn;

	while (http_list_next(v, n, &pos, &t, &tn)) {
		if (http_ieq(t, tn, "close"))
			rq->conn_close = 1;
		else if (http_ieq(t, tn, "keep-alive"))
			st->keep_alive = 1;
	}
}

/* field-line = field-name ":" OWS field-value OWS */
static int
parse_header(const uint8_t *p, size_t n, struct http_req *rq, struct hstate *st,
    struct http_req *out)
{
	const uint8_t *v;
	size_t i, vn;
	uint64_t len;
	int r;

	if ((r = http_field_split(p, n, &i, &v, &vn)) == -1)
		return fail(out, 400, "obsolete line folding");
	if (r != 0)
		return fail(out, 400, "malformed header field");

	if (http_ieq(p, i, "content-length")) {
		if (http_digits(v, vn, &len) != 0)
			return fail(out, 400, "bad Content-Length");
		if (rq->has_length && len != st->length)
			return fail(out, 400, "conflicting Content-Length");
		rq->has_length = 1;
		st->length = len;
	} else if (http_ieq(p, i, "transfer-encoding")) {
		return fail(out, 501, "Transfer-Encoding is not supported, use Content-Length");
	} else if (http_ieq(p, i, "content-type")) {
		if (st->seen_ctype++)
			return fail(out, 400, "repeated Content-Type");
		if (copy_str(rq->content_type, sizeof(rq->content_type), v, vn) != 0)
			return fail(out, 400, "Content-Type too long");
	} else if (http_ieq(p, i, "host")) {
		if (st->seen_host++)
			return fail(out, 400, "repeated Host");
		if (copy_str(rq->host, sizeof(rq->host), v, vn) != 0)
			return fail(out, 400, "Host too long");
		if (memchr(rq->host, ' ', vn) != NULL || memchr(rq->host, '\t', vn) != NULL)
			return fail(out, 400, "bad Host");
	} else if (http_ieq(p, i, "connection")) {
		parse_connection(v, vn, rq, st);
	}
	return 0;
}

int
http_parse(const uint8_t *buf, size_t len, size_t max_body, struct http_req *out)
{
	struct http_req rq;
	struct hstate st;
	size_t pos = 0, i, head = 0, need;
	int nlines = 0, r;

	memset(out, 0, sizeof(*out));
	memset(&rq, 0, sizeof(rq));
	memset(&st, 0, sizeof(st));
	if (buf == NULL || len == 0)
		return 0;
	if (max_body > (size_t)INT_MAX - HTTP_MAX_HEAD)
		max_body = (size_t)INT_MAX - HTTP_MAX_HEAD;

	/* One line at a time, judging each as soon as it is complete. */
	while (head == 0) {
		switch (http_line_end(buf, len, pos, HTTP_MAX_HEAD, &i)) {
		case HTTP_LINE_OK:
			break;
		case HTTP_LINE_MORE:
			return 0;
		case HTTP_LINE_BIG:
			return nlines == 0 ? fail(out, 414, "request line too long") :
			    fail(out, 431, "request header too large");
		case HTTP_LINE_BARE_LF:
			return fail(out, 400, "bare LF (lines must end in CRLF)");
		case HTTP_LINE_CTL:
			return fail(out, 400, "control character in request head");
		default:
			return fail(out, 400, "CR not followed by LF");
		}

		if (nlines == 0) {
			if ((r = parse_request_line(buf + pos, i - pos, &rq, out)) != 0)
				return r;
		} else if (i == pos) {
			head = i + 2;
		} else {
			if (nlines > HTTP_MAX_HEADERS)
				return fail(out, 431, "too many header fields");
			if ((r = parse_header(buf + pos, i - pos, &rq, &st, out)) != 0)
				return r;
		}
		nlines++;
		pos = i + 2;
	}

	if (rq.minor == 1 && !st.seen_host)
		return fail(out, 400, "HTTP/1.1 request without Host");
	if (!rq.has_length && (strcmp(rq.method, "POST") == 0 || strcmp(rq.method, "PUT") == 0 ||
	    strcmp(rq.method, "PATCH") == 0))
		return fail(out, 411, "Content-Length required");
	if (st.length > max_body)
		return fail(out, 413, "request body too large");
	need = head + (size_t)st.length;
	if (len < need)
		return 0;
	if (rq.minor == 0 && !st.keep_alive)
		rq.conn_close = 1;
	rq.body = st.length > 0 ? buf + head : NULL;
	rq.body_len = (size_t)st.length;
	*out = rq;
	return (int)need;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return NULL;
	}
}

int
http_response(uint8_t *out, size_t cap, int status, const char *content_type,
    const uint8_t *body, size_t len, size_t *outlen)
{
	return http_response_allow(out, cap, status, content_type, body, len, "POST", outlen);
}

int
http_response_allow(uint8_t *out, size_t cap, int status, const char *content_type,
    const uint8_t *body, size_t len, const char *allow, size_t *outlen)
{
	char head[HTTP_RESPONSE_OVERHEAD];
	const char *reason;
	size_t i, ctlen = 0;
	int n;

	*outlen = 0;
	if ((reason = http_reason(status)) == NULL)
		return hsm_err(HSM_EINVAL, "http: no reason phrase for status %d", status);
	if (content_type != NULL) {
		if ((ctlen = strnlen(content_type, HTTP_MAX_CTYPE + 1)) > HTTP_MAX_CTYPE)
			return hsm_err(HSM_EINVAL, "http: content type too long");
		/* No header injection: printable ASCII only. */
		for (i = 0; i < ctlen; i++)
			if (content_type[i] < 0x20 || content_type[i] > 0x7e)
				return hsm_err(HSM_EINVAL, "http: bad character in content type");
	}
	if (body == NULL && len > 0)
		return hsm_err(HSM_EINVAL, "http: missing body");
	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n%s%s%s"
	    "Connection: close\r\nCache-Control: no-cache\r\n\r\n", status, reason,
	    content_type ? "Content-Type: " : "", content_type ? content_type : "",
	    content_type ? "\r\n" : "", len, status == 405 ? "Allow: " : "",
	    status == 405 ? allow : "", status == 405 ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return hsm_err(HSM_EINVAL, "http: response head too long");
	if (out == NULL || cap < (size_t)n || len > cap - (size_t)n)
		return hsm_err(HSM_EINVAL, "http: response of %zu bytes does not fit in %zu",
		    (size_t)n + len, cap);
	memcpy(out, head, (size_t)n);
	if (len > 0)
		memcpy(out + n, body, len);
	*outlen = (size_t)n + len;
	return 0;
}

int
http_write_all(int fd, const uint8_t *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = timeout_ms >= 0 ? hsm_now_ms() + (uint64_t)timeout_ms : 0;
	int is_sock = 1;
	ssize_t w;

	while (len > 0) {
		if (is_sock) {
			w = send(fd, buf, len, MSG_NOSIGNAL);
			if (w < 0 && errno == ENOTSOCK) {
				is_sock = 0;
				continue;
			}
		} else {
			w = write(fd, buf, len);
		}
		if (w > 0) {
			buf += w;
			len -= (size_t)w;
			continue;
		}
		if (w == 0)
			return hsm_err(HSM_EIO, "http: write wrote nothing");
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			return hsm_err(HSM_ECLOSED, "http: peer closed the connection");
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int ms = -1, pr;

			if (timeout_ms >= 0) {
				uint64_t now = hsm_now_ms();

				if (now >= deadline)
					return hsm_err(HSM_ETIMEDOUT, "http: write timed out");
				ms = deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
			}
			if ((pr = poll(&pfd, 1, ms)) < 0 && errno != EINTR)
				return hsm_err(HSM_EIO, "http: poll: %s", strerror(errno));
			if (pr == 0)
				return hsm_err(HSM_ETIMEDOUT, "http: write timed out");
			continue;
		}
		return hsm_err(HSM_EIO, "http: write: %s", strerror(errno));
	}
	return 0;
}
