/* httpresp.c - HTTP/1.1 response head parser and body decoder (see httpresp.h). */
#include <ctype.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "httpresp.h"
#include "util.h"

/* Decoder states (httpresp.st); 0 is "no head parsed". */
enum {
	ST_DONE = 1,
	ST_ERROR,
	ST_DATA,	/* Content-Length body */
	ST_CLOSE,	/* body until the connection closes */
	ST_SIZE,	/* chunk size digits */
	ST_EXT,		/* chunk extensions, skipped */
	ST_SIZE_LF,
	ST_CDATA,	/* chunk data */
	ST_CDATA_CR,
	ST_CDATA_LF,
	ST_TSTART,	/* start of a trailer line, or the final CRLF */
	ST_TLINE,
	ST_TLINE_LF,
	ST_TEND_LF
};

/* What the header fields said, beyond the result. */
struct fields {
	int has_length;
	int chunked;
	int keep_alive;
};

static int
bad(const char *why)
{
	return hsm_err(HSM_EPROTO, "http response: %s", why);
}

/* A byte the head and the chunk framing never carry: controls but HT, and DEL. */
static int
ctl(uint8_t c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* RFC 9110 5.6.2 tchar. */
static int
tchar(uint8_t c)
{
	return c != '\0' && c < 0x80 && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The n bytes at p are s, in any case. */
static int
same(const uint8_t *p, size_t n, const char *s)
{
	return n == strlen(s) && strncasecmp((const char *)p, s, n) == 0;
}

/* Drop optional white space around the n bytes at *p. */
static void
trim(const uint8_t **p, size_t *n)
{
	while (*n > 0 && ((*p)[0] == ' ' || (*p)[0] == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

/* Whether the comma-separated list v (n bytes) names tok, in any case. */
static int
has_token(const uint8_t *v, size_t n, const char *tok)
{
	const uint8_t *t, *comma;
	size_t tn;

	while (n > 0) {
		comma = memchr(v, ',', n);
		t = v;
		tn = comma != NULL ? (size_t)(comma - v) : n;
		v += tn;
		n -= tn;
		if (comma != NULL) {
			v++;
			n--;
		}
		trim(&t, &tn);
		if (same(t, tn, tok))
			return 1;
	}
	return 0;
}

/* 1 to 18 decimal digits: below 2^63, so no overflow to check. */
static int
decimal(const uint8_t *p, size_t n, uint64_t *v)
{
	*v = 0;
	if (n == 0 || n > 18)
		return -1;
	for (; n > 0; n--, p++) {
		if (*p < '0' || *p > '9')
			return -1;
		*v = *v * 10 + (uint64_t)(*p - '0');
	}
	return 0;
}

/* status-line = "HTTP/1." DIGIT SP 3DIGIT [ SP reason-phrase ] */
static int
status_line(const uint8_t *p, size_t n, struct httpresp *r)
{
	if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ' || !isdigit(p[9]) || !isdigit(p[10]) || !isdigit(p[11]) ||
	    (n > 12 && p[12] != ' '))
		return bad("status line is not 'HTTP/1.x NNN reason'");
	r->minor = p[7] - '0';
	r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (r->status < 100 || r->status > 599)
		return bad("status code out of range");
	return 0;
}

/* field-line = field-name ":" OWS field-value OWS */
static int
field(const uint8_t *p, size_t n, struct httpresp *r, struct fields *f)
{
	const uint8_t *v;
	size_t i = 0, vn;
	uint64_t len;

	if (p[0] == ' ' || p[0] == '\t')
		return bad("obsolete line folding");
	while (i < n && tchar(p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ':')
		return bad("malformed header field");
	v = p + i + 1;
	vn = n - i - 1;
	trim(&v, &vn);
	if (same(p, i, "content-length")) {
		if (decimal(v, vn, &len) != 0)
			return bad("bad Content-Length");
		if (f->has_length && len != r->length)
			return bad("conflicting Content-Length");
		f->has_length = 1;
		r->length = len;
	} else if (same(p, i, "transfer-encoding")) {
		if (f->chunked)
			return bad("repeated Transfer-Encoding");
		if (!same(v, vn, "chunked"))
			return bad("unsupported Transfer-Encoding (only chunked)");
		f->chunked = 1;
	} else if (same(p, i, "connection")) {
		if (has_token(v, vn, "close"))
			r->conn_close = 1;
		if (has_token(v, vn, "keep-alive"))
			f->keep_alive = 1;
	}
	return 0;
}

int
httpresp_head(const uint8_t *buf, size_t len, int head_request, struct httpresp *out)
{
	struct httpresp r;
	struct fields f;
	size_t pos = 0, eol, lim, head = 0;
	int nlines = 0, rc;

	memset(out, 0, sizeof(*out));
	memset(&r, 0, sizeof(r));
	memset(&f, 0, sizeof(f));
	if (buf == NULL || len == 0)
		return 0;
	/* Garbage is refused at once, not after 16 KiB of it. */
	if (memcmp(buf, "HTTP/1.", len < 7 ? len : 7) != 0)
		return bad("not an HTTP/1.x response");
	lim = len < HTTPRESP_MAX_HEAD ? len : HTTPRESP_MAX_HEAD;
	while (head == 0) {
		for (eol = pos; eol < lim && !ctl(buf[eol]); eol++)
			;
		if (eol == lim) {
			if (len < HTTPRESP_MAX_HEAD)
				return 0;
			return hsm_err(HSM_EPROTO, "http response: head larger than %d bytes",
			    HTTPRESP_MAX_HEAD);
		}
		if (buf[eol] == '\n')
			return bad("bare LF (lines must end in CRLF)");
		if (buf[eol] != '\r')
			return bad("control character in the head");
		if (eol + 1 >= HTTPRESP_MAX_HEAD)
			return hsm_err(HSM_EPROTO, "http response: head larger than %d bytes",
			    HTTPRESP_MAX_HEAD);
		if (eol + 1 >= len)
			return 0;
		if (buf[eol + 1] != '\n')
			return bad("CR not followed by LF");
		rc = 0;
		if (nlines == 0)
			rc = status_line(buf, eol, &r);
		else if (eol == pos)
			head = eol + 2;
		else if (nlines > HTTPRESP_MAX_HEADERS)
			rc = bad("too many header fields");
		else
			rc = field(buf + pos, eol - pos, &r, &f);
		if (rc != 0)
			return rc;
		nlines++;
		pos = eol + 2;
	}

	if (f.chunked && f.has_length)
		return bad("both Content-Length and Transfer-Encoding");
	if (r.minor == 0 && !f.keep_alive)
		r.conn_close = 1;
	if (r.status < 200 || r.status == 204 || r.status == 304 || head_request) {
		r.framing = HTTPRESP_NOBODY;
		r.length = 0;
		r.st = ST_DONE;
	} else if (f.chunked) {
		r.framing = HTTPRESP_CHUNKED;
		r.st = ST_SIZE;
	} else if (f.has_length) {
		r.framing = HTTPRESP_LENGTH;
		r.left = r.length;
		r.st = r.length > 0 ? ST_DATA : ST_DONE;
	} else {
		r.framing = HTTPRESP_UNTIL_CLOSE;
		r.conn_close = 1;
		r.st = ST_CLOSE;
	}
	*out = r;
	return (int)head;
}

static int
body_bad(struct httpresp *r, const char *why)
{
	r->st = ST_ERROR;
	return bad(why);
}

/* One byte of chunked framing (not data). 0 or HSM_EPROTO. */
static int
framing_byte(struct httpresp *r, uint8_t c)
{
	int d;

	switch (r->st) {
	case ST_SIZE:
		if ((d = hsm_hexval(c)) >= 0) {
			if (r->digits == 15)
				return body_bad(r, "chunk size too large");
			r->left = r->left << 4 | (uint64_t)d;
			r->digits++;
		} else if (r->digits == 0) {
			return body_bad(r, "malformed chunk size");
		} else if (c == '\r') {
			r->st = ST_SIZE_LF;
		} else if (c == ';' || c == ' ' || c == '\t') {
			r->st = ST_EXT;
		} else {
			return body_bad(r, "malformed chunk size");
		}
		break;
	case ST_EXT:
		if (c == '\r')
			r->st = ST_SIZE_LF;
		else if (ctl(c))
			return body_bad(r, "control character in a chunk extension");
		break;
	case ST_SIZE_LF:
		if (c != '\n')
			return body_bad(r, "chunk size line does not end in CRLF");
		r->st = r->left > 0 ? ST_CDATA : ST_TSTART;
		r->line = 0;
		return 0;
	case ST_CDATA_CR:
	case ST_CDATA_LF:
		if (c != (r->st == ST_CDATA_CR ? '\r' : '\n'))
			return body_bad(r, "chunk data not followed by CRLF");
		if (r->st == ST_CDATA_CR) {
			r->st = ST_CDATA_LF;
		} else {
			r->st = ST_SIZE;
			r->digits = 0;
		}
		return 0;
	case ST_TSTART:
	case ST_TLINE:
		if (++r->trailer > HTTPRESP_MAX_HEAD)
			return body_bad(r, "trailer too large");
		if (c == '\r')
			r->st = r->st == ST_TSTART ? ST_TEND_LF : ST_TLINE_LF;
		else if (ctl(c))
			return body_bad(r, "control character in the trailer");
		else
			r->st = ST_TLINE;
		return 0;
	case ST_TLINE_LF:
	case ST_TEND_LF:
		if (c != '\n')
			return body_bad(r, "trailer line does not end in CRLF");
		r->st = r->st == ST_TLINE_LF ? ST_TSTART : ST_DONE;
		return 0;
	default:
		return body_bad(r, "no response head");
	}
	/* Still on the chunk-size line. */
	if (++r->line > HTTPRESP_MAX_LINE)
		return body_bad(r, "chunk size line too long");
	return 0;
}

int
httpresp_body(struct httpresp *r, const uint8_t *buf, size_t len, size_t *used,
    const uint8_t **data, size_t *dlen)
{
	size_t i = 0, n;
	int rc;

	*used = 0;
	*data = NULL;
	*dlen = 0;
	if (r->st == ST_ERROR)
		return HSM_EPROTO;
	while (i < len && r->st != ST_DONE) {
		if (r->st == ST_DATA || r->st == ST_CDATA || r->st == ST_CLOSE) {
			n = len - i;
			if (r->st != ST_CLOSE && n > r->left)
				n = (size_t)r->left;
			*data = buf + i;
			*dlen = n;
			i += n;
			r->received += n;
			if (r->st != ST_CLOSE && (r->left -= n) == 0)
				r->st = r->st == ST_DATA ? ST_DONE : ST_CDATA_CR;
			break;
		}
		if ((rc = framing_byte(r, buf[i])) != 0)
			return rc;
		i++;
	}
	*used = i;
	return r->st == ST_DONE;
}

int
httpresp_complete(const struct httpresp *r)
{
	return r->st == ST_DONE;
}

int
httpresp_eof(struct httpresp *r)
{
	if (r->st == ST_CLOSE || r->st == ST_DONE) {
		r->st = ST_DONE;
		return 1;
	}
	if (r->st == ST_ERROR)
		return HSM_EPROTO;
	r->st = ST_ERROR;
	return hsm_err(HSM_EPROTO, "http response: connection closed after %" PRIu64
	    " bytes of an unfinished body", r->received);
}
