/*
 * h1.h - HTTP/1.1 message framing for a proxy (RFC 9112): an incremental
 * parser of requests and responses over caller buffers, and the writers
 * of heads and chunks. Pure functions: no I/O, and a body is never
 * buffered here (it is handed out as slices of the caller's buffer), so
 * a body streams through with the caller's buffer as the only copy.
 *
 * The parser is strict where leniency lets two parsers disagree about
 * where a message ends (request smuggling, RFC 9112 11.2), and refuses
 * with a status:
 *   - lines end in CRLF: a bare LF, or a CR not followed by LF, is 400
 *   - no control character but HT in a head; no obs-fold (a line
 *     starting with SP/HT), no whitespace between a name and its colon
 *   - Content-Length is digits only; repeated only with the same value
 *   - Transfer-Encoding must be exactly "chunked" (501 otherwise); with
 *     Content-Length too it is 400; in an HTTP/1.0 message it is 400
 *   - chunk sizes are hex without sign or prefix (at most 15 digits);
 *     each chunk's data ends in CRLF; chunk extensions are skipped
 *   - HTTP/1.1 requests carry exactly one Host; CONNECT is 501
 *   - a head over lim.max_head bytes is 431 (414 while still in the
 *     request line); more than lim.max_fields fields is 431
 * Errors in a response (from the application or a peer) carry 502: the
 * proxy answers its client 502 and closes the upstream connection.
 *
 * Field names are lower-cased into the message (hmsg.h); Host becomes
 * the authority and Content-Length content_length. Connection,
 * Transfer-Encoding and the other connection-specific fields stay in the
 * field list for the caller to see; hmsg_strip_hop() removes them before
 * the message is forwarded.
 */
#ifndef HSM_H1_H
#define HSM_H1_H

#include <stddef.h>
#include <stdint.h>

#include "hmsg.h"

#define H1_MAX_METHOD 32	/* longer methods are 501 */
#define H1_MAX_CHUNK_LINE 1024	/* chunk-size line with its extensions */
#define H1_MAX_EMPTY_LINES 4	/* CRLFs tolerated before a request line (RFC 9112 2.2) */

enum h1_kind { H1_REQUEST = 0, H1_RESPONSE = 1 };

struct h1_limits {
	size_t max_head;	/* start line, fields and CRLFs (and the trailer section), bytes */
	size_t max_fields;	/* fields in a head (and in a trailer section) */
};

/* How a message's body is delimited (RFC 9112 6.3). */
enum h1_body {
	H1_BODY_NONE = 0,	/* no body */
	H1_BODY_LENGTH,		/* content_length bytes */
	H1_BODY_CHUNKED,	/* chunked transfer coding */
	H1_BODY_CLOSE,		/* response only: until the connection ends */
};

/* What one h1_parse call found. */
enum h1_ev {
	H1_NEED = 0,		/* nothing complete: call again with more bytes */
	H1_HEAD,		/* p->msg holds a head; p->body says how its body comes */
	H1_DATA,		/* data/len: body bytes, a slice of the caller's buffer */
	H1_END,			/* the message ended (p->trailers: trailer fields, if any) */
};

struct h1_event {
	enum h1_ev type;
	const uint8_t *data;
	size_t len;
};

struct h1_parser {
	enum h1_kind kind;
	struct h1_limits lim;
	int state;		/* internal */
	size_t scan;		/* bytes of the current section already checked */
	size_t nlines, nempty;
	enum h1_body body;	/* after H1_HEAD */
	uint64_t remain;	/* body bytes left: of the length, or of the current chunk */
	uint64_t body_bytes;	/* body bytes handed out for the current message */
	int minor;		/* HTTP/1.<minor> of the current message */
	int keep_alive;		/* after H1_END: the connection may carry another message */
	int status;		/* after HSM_EPROTO: the status to answer (a response: 502) */
	int conn_close, conn_keep, nhost, te, te_other, abs_auth;	/* internal, per head */
	int64_t cl;		/* internal */
	char req_method[H1_MAX_METHOD + 1];	/* response parser: the method it answers */
	struct hmsg msg;	/* after H1_HEAD: the head (the caller may hmsg_move it away) */
	struct hmsg trailers;	/* after H1_END of a chunked body: its trailer fields */
};

/* Start a parser of requests or responses. Allocates nothing until a head arrives. */
void h1_init(struct h1_parser *p, enum h1_kind kind, const struct h1_limits *lim);

/* Free what the parser holds (msg, trailers). Accepts NULL. */
void h1_free(struct h1_parser *p);

/*
 * Response parser: the next response answers a request with method
 * (a response to HEAD has no body). Call before parsing each response.
 */
void h1_expect(struct h1_parser *p, const char *method);

/*
 * Parse from the len bytes at buf, which start where the previous call's
 * *used ended: on H1_NEED keep the unused bytes at the start of the next
 * call's buffer and append to them (the parser remembers how far it
 * checked). One event per call: H1_HEAD (used: the whole head), H1_DATA
 * (at most max_data bytes: the caller says how much it can take now),
 * H1_END (which may use no byte; call again for the next message), or
 * H1_NEED. A 1xx response other than 101 comes as H1_HEAD with
 * msg.status < 200 and no H1_END: the final response follows. After an
 * H1_END with keep_alive 0 nothing more is parsed (H1_NEED): close.
 * 0, HSM_EPROTO with p->status and a one-line detail (the parser stays
 * failed), or HSM_ENOMEM.
 */
int h1_parse(struct h1_parser *p, const uint8_t *buf, size_t len, size_t max_data, size_t *used,
    struct h1_event *ev);

/*
 * The connection's stream ended with pending bytes still unparsed.
 * 0 with ev H1_END (it completed a body delimited by the close), 0 with
 * H1_NEED (a clean end between messages), or HSM_EPROTO with p->status
 * (a message was cut short: 400, or 502 for a response).
 */
int h1_eof(struct h1_parser *p, size_t pending, struct h1_event *ev);

/* How a message goes to an HTTP/1.1 peer. */
enum h1_framing {
	H1_FRAME_NONE = 0,	/* no body */
	H1_FRAME_LENGTH,	/* Content-Length: m->content_length */
	H1_FRAME_CHUNKED,	/* Transfer-Encoding: chunked */
	H1_FRAME_CLOSE,		/* response: until we close (an HTTP/1.0 client) */
};

/*
 * The framing for m towards an HTTP/1.1 peer: NONE when bodyless (the
 * source said no body follows, or hmsg_response_bodyless), LENGTH when
 * m->content_length is known, else CHUNKED, or CLOSE for a response to
 * an HTTP/1.0 client (peer_minor 0).
 */
enum h1_framing h1_framing_for(const struct hmsg *m, int bodyless, int peer_minor);

/*
 * Write m's head for an HTTP/1.1 peer into out (cap bytes): the request
 * line ("METHOD path HTTP/1.1", then Host: authority) or the status line,
 * the fields in order except the ones the writer owns (Host,
 * Content-Length, Transfer-Encoding, Connection, TE), request Cookie fields
 * joined into one (RFC 9113 8.2.3), then the framing fields fr asks for,
 * "Connection: close" when conn_close, and the empty line. Content-Length
 * is also written for H1_FRAME_NONE when m gives one (a response to HEAD,
 * a 304) or, as "0", for a request whose method expects a body.
 * 0 with *len; HSM_EPROTO when a name, value or control datum could
 * break the framing (CR, LF, NUL; a name that is not a token); HSM_EINVAL
 * when it does not fit in cap.
 */
int h1_write_head(const struct hmsg *m, enum h1_framing fr, int conn_close, uint8_t *out,
    size_t cap, size_t *len);

/* The line before a chunk of n > 0 bytes ("<hex>\r\n"); the chunk is followed by CRLF. */
#define H1_CHUNK_HEAD_MAX 20
size_t h1_chunk_head(uint8_t out[H1_CHUNK_HEAD_MAX], size_t n);

/*
 * The end of a chunked body: "0\r\n", the trailer fields of t (NULL:
 * none; the framing and routing fields are left out), "\r\n". 0 with
 * *len, HSM_EPROTO or HSM_EINVAL as h1_write_head.
 */
int h1_write_last_chunk(const struct hmsg *t, uint8_t *out, size_t cap, size_t *len);

#endif
