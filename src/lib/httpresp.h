/*
 * httpresp.h - the client side of HTTP/1.1: a response parser for
 * `hsmesh app get`. The head is parsed from a caller's buffer; the body
 * is then decoded incrementally (Content-Length, chunked, or up to the
 * end of the connection), so a body of any size streams through a fixed
 * buffer. Pure functions over caller memory: no I/O, no allocation. The
 * bytes come from the network, so tests/fuzz/fuzz_httpresp.c feeds it
 * anything.
 *
 * As strict as http.h, for the same reason (one way to frame a message):
 *   - lines end in CRLF; no control character in the head other than HT
 *     in a value; no obsolete line folding
 *   - status line "HTTP/1.x SP 3DIGIT [SP reason]", status 100 to 599
 *   - Content-Length: 1 to 18 digits, repeated only with the same value
 *   - Transfer-Encoding: exactly "chunked", once, never together with a
 *     Content-Length (a response that could be framed two ways is refused)
 *   - chunk sizes of at most 15 hex digits; chunk-size lines (with their
 *     extensions, which are skipped) of at most HTTPRESP_MAX_LINE bytes;
 *     trailers of at most HTTPRESP_MAX_HEAD bytes, skipped
 */
#ifndef HSM_HTTPRESP_H
#define HSM_HTTPRESP_H

#include <stddef.h>
#include <stdint.h>

#define HTTPRESP_MAX_HEAD 16384	/* status line + header fields + CRLFs */
#define HTTPRESP_MAX_HEADERS 100
#define HTTPRESP_MAX_LINE 1024	/* a chunk-size line */

/* How the body ends. */
enum {
	HTTPRESP_NOBODY = 1,	/* 1xx, 204, 304, or the answer to HEAD */
	HTTPRESP_LENGTH,	/* after Content-Length bytes */
	HTTPRESP_CHUNKED,	/* after the last chunk and the trailer */
	HTTPRESP_UNTIL_CLOSE	/* when the server closes the connection */
};

struct httpresp {
	int status;		/* 100..599 */
	int minor;		/* 0 for HTTP/1.0, 1 for HTTP/1.1 */
	int framing;		/* HTTPRESP_* above */
	int conn_close;		/* the server closes the connection after this response */
	uint64_t length;	/* HTTPRESP_LENGTH: the Content-Length */
	uint64_t received;	/* body bytes decoded so far */

	/* Decoder state: set by httpresp_head, for httpresp_body only. */
	int st;
	int digits;		/* hex digits of the chunk size so far */
	uint64_t left;		/* bytes left in the body or the current chunk */
	size_t line;		/* bytes of the current chunk-size line */
	size_t trailer;		/* bytes of trailer so far */
};

/*
 * Parse a response head from the len bytes at buf. head_request: the
 * request was HEAD (the response has no body whatever it says). Returns:
 *   > 0  the head is complete: the number of bytes it used (the body
 *        starts after them); *out is ready for httpresp_body
 *   0    the bytes so far are a valid prefix: read more and call again
 *        with the whole buffer
 *   HSM_EPROTO, with a one-line detail (hsm_err), on a malformed head or
 *        one larger than HTTPRESP_MAX_HEAD bytes
 * Errors are reported as soon as the bytes show them. *out is cleared on
 * entry and filled only on success.
 */
int httpresp_head(const uint8_t *buf, size_t len, int head_request, struct httpresp *out);

/*
 * Decode body bytes: consume from the len bytes at buf the framing and at
 * most one run of body data, which is then (*data, *dlen), pointing into
 * buf (*dlen is 0 when there is none). *used is the number of bytes
 * consumed; call again with the rest while the return is 0 and *used is
 * less than len. Returns 1 when the body is complete (the bytes after
 * *used belong to the next response), 0 when more is needed, HSM_EPROTO
 * on bad chunked framing (and from then on).
 */
int httpresp_body(struct httpresp *r, const uint8_t *buf, size_t len, size_t *used,
    const uint8_t **data, size_t *dlen);

/* 1 when the body is complete (it may be without a byte of body: 204, Content-Length: 0). */
int httpresp_complete(const struct httpresp *r);

/*
 * The connection ended. 1 when that completes the body (HTTPRESP_UNTIL_CLOSE,
 * or a body already complete); HSM_EPROTO "... truncated" otherwise.
 */
int httpresp_eof(struct httpresp *r);

#endif
