/*
 * hmsg.h - the protocol-neutral HTTP message of the sidecar: what an
 * HTTP/1.1 head (h1.h) and an HTTP/2 HEADERS block (h2.h) both map to,
 * so that any pair of them can be translated through one model.
 *
 *   request:  method, scheme, authority, path (with its query), fields
 *   response: status, fields
 *
 * Field names are stored in lower case (HTTP/1.1 names are
 * case-insensitive, HTTP/2 names must be lower case). The control data
 * lives apart from the fields: Host is the authority (RFC 9113 8.3.1)
 * and Content-Length is content_length, never kept as fields, so a
 * writer emits each exactly once. Connection-specific fields (RFC 9110
 * 7.6.1, RFC 9113 8.2.2) are removed with hmsg_strip_hop() before a
 * message crosses from one connection to another.
 *
 * The body is not part of the message: each codec streams it.
 */
#ifndef HSM_HMSG_H
#define HSM_HMSG_H

#include <stddef.h>
#include <stdint.h>

/* RFC 7541 4.1: a field's size is its name's and value's lengths plus 32. */
#define HMSG_FIELD_OVERHEAD 32

struct hfield {
	char *name;		/* lower case, NUL-terminated; shares the allocation of value */
	char *value;		/* NUL-terminated */
	uint32_t nlen, vlen;
};

struct hmsg {
	uint8_t request;	/* 1: a request, 0: a response */
	int status;		/* response: 100..599 */
	char *method, *scheme, *authority, *path;	/* request: malloc'd, NULL when absent */
	int64_t content_length;	/* -1 when the message gave none */
	struct hfield *f;
	size_t nf, capf;
	size_t size;		/* sum of the RFC 7541 sizes of the fields and control data */
};

/* Start an empty message (request or response). Allocates nothing. */
void hmsg_init(struct hmsg *m, int request);

/* Free everything m holds and leave it empty (as hmsg_init). Accepts NULL. */
void hmsg_clear(struct hmsg *m);

/* Move src into *dst (which is cleared first); src is left empty. */
void hmsg_move(struct hmsg *dst, struct hmsg *src);

/*
 * Append a field, copying name (lower-cased) and value. The bytes are
 * not validated here: parsers validate before adding. 0 or HSM_ENOMEM.
 */
int hmsg_add(struct hmsg *m, const char *name, size_t nlen, const char *value, size_t vlen);

/* Which piece of control data hmsg_set sets. */
enum hmsg_ctl { HMSG_METHOD, HMSG_SCHEME, HMSG_AUTHORITY, HMSG_PATH };

/* Set (replace) a piece of control data to a copy of the len bytes at v. 0 or HSM_ENOMEM. */
int hmsg_set(struct hmsg *m, enum hmsg_ctl which, const char *v, size_t len);

/* The first field named name (lower case), or NULL. */
const struct hfield *hmsg_get(const struct hmsg *m, const char *name);

/* Its value, or NULL. */
const char *hmsg_value(const struct hmsg *m, const char *name);

/*
 * Remove every field whose name equals name ignoring ASCII case and
 * treating '_' and '-' as the same character (a backend that maps
 * names to CGI-style variables reads "X_Foo" as "X-Foo": a forged
 * spelling must go too). Returns how many were removed.
 */
size_t hmsg_del(struct hmsg *m, const char *name);

/*
 * Remove the connection-specific fields: Connection and every field it
 * names, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, and
 * TE unless its value is exactly "trailers" (RFC 9113 8.2.2), as well as
 * any Host and Content-Length field left in the list. Returns how many
 * were removed.
 */
size_t hmsg_strip_hop(struct hmsg *m);

/* 1 when the request is one that may carry no body (GET, HEAD, DELETE, OPTIONS, TRACE). */
int hmsg_bodyless_method(const char *method);

/*
 * 1 when a response to a request with method (NULL: not known) and with
 * this status has no body whatever its fields say: 1xx, 204, 304, or a
 * response to HEAD (RFC 9110 6.4.1).
 */
int hmsg_response_bodyless(const char *req_method, int status);

#endif
