/*
 * httptok.h - the character classes and small field-value parsers that
 * every HTTP/1.1 parser here shares (the CMP server's http.c and the
 * sidecar's h1.c): RFC 9110 5.6 tokens and lists, RFC 9112 digits.
 * Pure functions over caller bytes; nothing here allocates.
 */
#ifndef HSM_HTTPTOK_H
#define HSM_HTTPTOK_H

#include <stddef.h>
#include <stdint.h>

/* 1 when c is an RFC 9110 tchar (a character of a token: names, methods). */
int http_tchar(uint8_t c);

/* c with A-Z folded to a-z. */
uint8_t http_lower(uint8_t c);

/* 1 when the n bytes at p equal the lower-case string s, ignoring ASCII case. */
int http_ieq(const uint8_t *p, size_t n, const char *s);

/*
 * 1*DIGIT (no sign, space or other character) into *out without
 * overflow. 0, or -1 (*out is then 0).
 */
int http_digits(const uint8_t *v, size_t n, uint64_t *out);

/*
 * The next element of a comma-separated list value (RFC 9110 5.6.1)
 * from *pos: empty elements are skipped and optional whitespace (SP,
 * HT) around an element is trimmed. 1 with *tok, *tlen set and *pos
 * advanced; 0 when no element is left. Start with *pos = 0.
 */
int http_list_next(const uint8_t *v, size_t n, size_t *pos, const uint8_t **tok,
    size_t *tlen);

/*
 * Split a field line (RFC 9112 5: field-name ":" OWS field-value OWS) of
 * n bytes at l: the name is l[0..*nlen), the value (*v, *vn) with its
 * optional whitespace trimmed. 0; -1 when the line starts with
 * whitespace (obsolete line folding); -2 when the name is not a token
 * right before a ':'.
 */
int http_field_split(const uint8_t *l, size_t n, size_t *nlen, const uint8_t **v, size_t *vn);

/*
 * The HTTP-version of exactly n bytes at v ("HTTP/" DIGIT "." DIGIT):
 * 0 with *minor for HTTP/1.0 and HTTP/1.1; -1 malformed; -2 another
 * version.
 */
int http_version(const uint8_t *v, size_t n, int *minor);

/* What http_line_end found. */
enum http_line {
	HTTP_LINE_OK = 0,	/* a line: *eol is its CR */
	HTTP_LINE_MORE,		/* no CRLF yet within the limit: read more */
	HTTP_LINE_BIG,		/* no CRLF within limit bytes */
	HTTP_LINE_BARE_LF,	/* an LF without its CR */
	HTTP_LINE_CTL,		/* a control character other than HT */
	HTTP_LINE_LONE_CR,	/* a CR not followed by LF */
};

/*
 * The end of the line that starts at from in the len bytes at buf, whose
 * section may take at most limit bytes from buf: lines end in CRLF, and
 * no control character but HT may come before it. The checks run in
 * the order of enum http_line, so garbage is judged as soon as it shows.
 */
enum http_line http_line_end(const uint8_t *buf, size_t len, size_t from, size_t limit,
    size_t *eol);

#endif
