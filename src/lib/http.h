/*
 * http.h - a small, strict HTTP/1.1 server side for the CMP endpoint
 * (RFC 6712): a request parser and a response writer. Both are pure
 * functions over caller buffers (no I/O, no allocation), so the parser
 * can be fuzzed; http_write_all() is the one helper that touches an fd.
 *
 * Strictness, chosen because the only clients are CMP clients (OpenSSL
 * 3.0's sends "POST /path HTTP/1.0" with Host, Content-Type and
 * Content-Length):
 *   - lines end in CRLF; a bare LF or a CR not followed by LF is refused
 *   - no NUL or other control character (except HT in values), no
 *     obsolete line folding, no whitespace between a field name and ':'
 *   - request line is exactly "METHOD SP target SP HTTP/1.x"
 *   - Content-Length: digits only, and repeated only with the same value
 *   - any Transfer-Encoding is refused (501): the CMP profile uses
 *     Content-Length, and refusing it rules out request smuggling
 *   - HTTP/1.1 requests need exactly one Host (RFC 9112 3.2)
 */
#ifndef HSM_HTTP_H
#define HSM_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD 8192	/* request line + header fields + CRLFs */
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_METHOD 16	/* longer methods are answered 501 */
#define HTTP_MAX_TARGET 2048	/* longer request targets are answered 414 */
#define HTTP_MAX_CTYPE 128	/* Content-Type value */
#define HTTP_MAX_HOST 256
#define HTTP_CT_PKIXCMP "application/pkixcmp"

/*
 * Room http_response needs besides the body, when content_type is at
 * most HTTP_MAX_CTYPE bytes: size the output buffer len + this.
 */
#define HTTP_RESPONSE_OVERHEAD 512

struct http_req {
	int status;		/* on a parse error: the HTTP status to answer */
	int minor;		/* 0 for HTTP/1.0, 1 for HTTP/1.1 */
	char method[HTTP_MAX_METHOD + 1];
	char target[HTTP_MAX_TARGET + 1];	/* path only: no query, no scheme/authority */
	char content_type[HTTP_MAX_CTYPE + 1];	/* "" if absent; whitespace-trimmed */
	char host[HTTP_MAX_HOST + 1];	/* "" if absent */
	int has_length;		/* a Content-Length was given */
	int conn_close;		/* "Connection: close", or HTTP/1.0 without keep-alive */
	const uint8_t *body;	/* points into the parsed buffer; NULL if empty */
	size_t body_len;
};

/*
 * Parse one request from the len bytes at buf. Returns:
 *   > 0  a complete request (head and body) was parsed: the number of
 *        bytes it used; bytes after it (a pipelined request) are left
 *   0    the bytes so far are a valid prefix: read more and call again
 *        with the whole buffer
 *   HSM_EPROTO with out->status set to the status to answer and close
 *        on: 400 (malformed), 411 (POST/PUT/PATCH without
 *        Content-Length), 413 (body over max_body), 414 (request line
 *        or target too long), 431 (head over HTTP_MAX_HEAD or more than
 *        HTTP_MAX_HEADERS fields), 501 (method too long, or any
 *        Transfer-Encoding), 505 (HTTP version other than 1.0 or 1.1)
 * Errors are reported as soon as the bytes show them, so garbage is
 * refused without waiting for a full head. The method is any token
 * (answering 405 is the caller's call). *out is cleared on entry and,
 * except for status, filled only on success; out->body points into buf.
 * A request needs at most HTTP_MAX_HEAD + max_body bytes; max_body is
 * capped so that fits in an int.
 */
int http_parse(const uint8_t *buf, size_t len, size_t max_body, struct http_req *out);

/* The reason phrase of a status ("Bad Request"), or NULL if unknown. */
const char *http_reason(int status);

/*
 * Write a complete response into out (cap bytes):
 *   HTTP/1.1 <status> <reason>\r\n
 *   Content-Type: <content_type>\r\n      (omitted when content_type is NULL)
 *   Content-Length: <len>\r\n
 *   Allow: POST\r\n                       (405 only)
 *   Connection: close\r\n
 *   Cache-Control: no-cache\r\n
 *   \r\n
 *   <body>
 * 0 with *outlen set; HSM_EINVAL for a status without a reason phrase,
 * a content type containing control characters or over HTTP_MAX_CTYPE
 * bytes, or a response that does not fit in cap (*outlen is then 0).
 */
int http_response(uint8_t *out, size_t cap, int status, const char *content_type,
    const uint8_t *body, size_t len, size_t *outlen);

/* The same with the methods a 405 names in Allow (a fixed string such as "GET, HEAD"). */
int http_response_allow(uint8_t *out, size_t cap, int status, const char *content_type,
    const uint8_t *body, size_t len, const char *allow, size_t *outlen);

/*
 * Write len bytes to fd (a socket, pipe or file; blocking or not),
 * waiting with poll() when it would block, for at most timeout_ms in all
 * (negative = no limit). Never raises SIGPIPE on a socket. 0;
 * HSM_ETIMEDOUT; HSM_ECLOSED if the peer is gone; HSM_EIO.
 */
int http_write_all(int fd, const uint8_t *buf, size_t len, int timeout_ms);

#endif
