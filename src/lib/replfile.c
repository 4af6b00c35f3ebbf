/*
 * replfile.c - the files of `hsmesh ca replicate` (see replfile.h): PEM
 * blocks through OpenSSL's PEM reader and writer, their bodies checked
 * field by field against what is left.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "err.h"
#include "evtype.h"
#include "replfile.h"
#include "util.h"

#define PEM_UNWRAPPING "HSMESH UNWRAPPING KEY"
#define PEM_QUOTE "HSMESH SGX QUOTE"
#define PEM_WRAPPED "HSMESH WRAPPED KEY"
#define WRAPPED_VERSION 1

/* One block's name and body as the walk hands them over. */
typedef int (*block_fn)(const char *name, const uint8_t *data, size_t len, void *arg);

/* buf[i..len) from i on, past spaces, tabs and line ends. */
static size_t
skip_space(const uint8_t *buf, size_t len, size_t i)
{
	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
		i++;
	return i;
}

/*
 * Call fn for every PEM block of buf. Between, before and after blocks
 * only whitespace (OpenSSL's reader would skip other lines: they are
 * refused here); at least one block. 0, fn's failure, or HSM_EPROTO.
 */
static int
each_block(const char *what, const uint8_t *buf, size_t len, block_fn fn, void *arg)
{
	static const char begin[] = "-----BEGIN ";
	BIO *b = NULL;
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long dlen = 0;
	size_t pos;
	int r = 0, n = 0;

	if (len == 0 || len > REPL_FILE_MAX)
		return hsm_err(HSM_EPROTO, "%s: empty or larger than %d bytes", what, REPL_FILE_MAX);
	if ((b = BIO_new_mem_buf(buf, (int)len)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	for (;;) {
		/* Where the reader stands: only whitespace may come before the next block. */
		pos = skip_space(buf, len, len - (size_t)BIO_pending(b));
		if (pos == len)
			break;
		if (len - pos < sizeof(begin) - 1 || memcmp(buf + pos, begin, sizeof(begin) - 1) != 0) {
			r = hsm_err(HSM_EPROTO, "%s: text outside a PEM block", what);
			break;
		}
		ERR_set_mark();
		if (PEM_read_bio(b, &name, &header, &data, &dlen) != 1) {
			ERR_pop_to_mark();
			r = hsm_err(HSM_EPROTO, "%s: a malformed PEM block", what);
			break;
		}
		ERR_clear_last_mark();
		n++;
		if (header != NULL && header[0] != '\0')
			r = hsm_err(HSM_EPROTO, "%s: a PEM block with headers", what);
		else if (dlen <= 0)
			r = hsm_err(HSM_EPROTO, "%s: an empty PEM block", what);
		else
			r = fn(name, data, (size_t)dlen, arg);
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_clear_free(data, dlen > 0 ? (size_t)dlen : 0);
		name = header = NULL;
		data = NULL;
		if (r != 0)
			break;
	}
	if (r == 0 && n == 0)
		r = hsm_err(HSM_EPROTO, "%s: no PEM block", what);
	BIO_free(b);
	return r;
}

/* ---- the request ---- */

static int
request_block(const char *name, const uint8_t *data, size_t len, void *arg)
{
	struct repl_request *r = arg;

	if (strcmp(name, PEM_UNWRAPPING) == 0) {
		if (r->spkilen != 0)
			return hsm_err(HSM_EPROTO, "replication request: two unwrapping keys");
		if (len > HSM_MAX_SPKI)
			return hsm_err(HSM_EPROTO, "replication request: the unwrapping key is larger "
			    "than %d bytes", HSM_MAX_SPKI);
		memcpy(r->spki, data, len);
		r->spkilen = len;
		return 0;
	}
	if (strcmp(name, PEM_QUOTE) == 0) {
		if (r->quote != NULL)
			return hsm_err(HSM_EPROTO, "replication request: two quotes");
		if (len > ATTEST_QUOTE_MAX)
			return hsm_err(HSM_EPROTO, "replication request: the quote is larger than %d "
			    "bytes", ATTEST_QUOTE_MAX);
		if ((r->quote = malloc(len)) == NULL)
			return hsm_err(HSM_ENOMEM, "out of memory");
		memcpy(r->quote, data, len);
		r->quotelen = len;
		return 0;
	}
	return hsm_err(HSM_EPROTO, "replication request: unexpected PEM block '%.40s'", name);
}

int
repl_request_parse(const uint8_t *buf, size_t len, struct repl_request *out)
{
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = each_block("replication request", buf, len, request_block, out)) == 0 &&
	    out->spkilen == 0)
		r = hsm_err(HSM_EPROTO, "replication request: no unwrapping key");
	if (r != 0)
		repl_request_clear(out);
	return r;
}

void
repl_request_clear(struct repl_request *r)
{
	if (r == NULL)
		return;
	free(r->quote);
	memset(r, 0, sizeof(*r));
}

/* Append one PEM block to b. */
static int
put_block(BIO *b, const char *name, const uint8_t *data, size_t len)
{
	return len <= 0x7fffffff &&
	    PEM_write_bio(b, name, "", data, (long)len) > 0 ? 0 :
	    hsm_err_ossl(HSM_ECRYPTO, "writing a PEM block");
}

/* b's contents as a malloc'd string. */
static int
take_text(BIO *b, char **pem, size_t *len)
{
	BUF_MEM *bm;

	BIO_get_mem_ptr(b, &bm);
	if ((*pem = malloc(bm->length + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	memcpy(*pem, bm->data, bm->length);
	(*pem)[bm->length] = '\0';
	*len = bm->length;
	return 0;
}

int
repl_request_write(const struct repl_request *r, char **pem, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	int st;

	*pem = NULL;
	*len = 0;
	if (b == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if ((st = put_block(b, PEM_UNWRAPPING, r->spki, r->spkilen)) == 0 &&
	    (r->quote == NULL || (st = put_block(b, PEM_QUOTE, r->quote, r->quotelen)) == 0))
		st = take_text(b, pem, len);
	BIO_free(b);
	return st;
}

/* ---- the wrapped key ---- */

static int
wrapped_block(const char *name, const uint8_t *data, size_t len, void *arg)
{
	struct repl_wrapped *w = arg;
	const uint8_t *p = data, *end = data + len;
	size_t n;

	if (strcmp(name, PEM_WRAPPED) != 0)
		return hsm_err(HSM_EPROTO, "wrapped key: unexpected PEM block '%.40s'", name);
	if (w->spkilen != 0)
		return hsm_err(HSM_EPROTO, "wrapped key: two wrapped keys");
	if (len < 1 + HSM_KEYID_LEN + 1 + 2)
		return hsm_err(HSM_EPROTO, "wrapped key: truncated");
	if (*p++ != WRAPPED_VERSION)
		return hsm_err(HSM_EPROTO, "wrapped key: version %u is not 1", data[0]);
	memcpy(w->wrapkey, p, HSM_KEYID_LEN);
	p += HSM_KEYID_LEN;
	w->w.oaep = *p++;
	if (w->w.oaep != HSM_OAEP_SHA1 && w->w.oaep != HSM_OAEP_SHA256)
		return hsm_err(HSM_EPROTO, "wrapped key: unknown OAEP hash %u", w->w.oaep);
	n = hsm_get16(p);
	p += 2;
	if (n == 0 || n > HSM_TRANSPORT_MAX || (size_t)(end - p) < n + 2)
		return hsm_err(HSM_EPROTO, "wrapped key: bad transport key length %zu", n);
	memcpy(w->w.transport, p, n);
	w->w.tlen = n;
	p += n;
	n = hsm_get16(p);
	p += 2;
	if (n == 0 || n > HSM_MAX_SPKI || (size_t)(end - p) < n)
		return hsm_err(HSM_EPROTO, "wrapped key: bad public key length %zu", n);
	memcpy(w->spki, p, n);
	w->spkilen = n;
	p += n;
	n = (size_t)(end - p);
	if (n < 16 || n > HSM_WRAPPED_MAX)
		return hsm_err(HSM_EPROTO, "wrapped key: bad key length %zu", n);
	memcpy(w->w.key, p, n);
	w->w.klen = n;
	return 0;
}

int
repl_wrapped_parse(const uint8_t *buf, size_t len, struct repl_wrapped *out)
{
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = each_block("wrapped key", buf, len, wrapped_block, out)) == 0 && out->spkilen == 0)
		r = hsm_err(HSM_EPROTO, "wrapped key: no wrapped key");
	if (r != 0)
		OPENSSL_cleanse(out, sizeof(*out));
	return r;
}

int
repl_wrapped_write(const struct repl_wrapped *w, char **pem, size_t *len)
{
	uint8_t *buf, *p;
	size_t n = 1 + HSM_KEYID_LEN + 1 + 2 + w->w.tlen + 2 + w->spkilen + w->w.klen;
	BIO *b = NULL;
	int st;

	*pem = NULL;
	*len = 0;
	if (w->w.tlen == 0 || w->w.tlen > HSM_TRANSPORT_MAX || w->spkilen == 0 ||
	    w->spkilen > HSM_MAX_SPKI || w->w.klen < 16 || w->w.klen > HSM_WRAPPED_MAX)
		return hsm_err(HSM_EINVAL, "wrapped key: a length out of range");
	if ((buf = malloc(n)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	p = buf;
	*p++ = WRAPPED_VERSION;
	memcpy(p, w->wrapkey, HSM_KEYID_LEN);
	p += HSM_KEYID_LEN;
	*p++ = w->w.oaep;
	hsm_put16(p, (uint16_t)w->w.tlen);
	memcpy(p + 2, w->w.transport, w->w.tlen);
	p += 2 + w->w.tlen;
	hsm_put16(p, (uint16_t)w->spkilen);
	memcpy(p + 2, w->spki, w->spkilen);
	p += 2 + w->spkilen;
	memcpy(p, w->w.key, w->w.klen);
	if ((b = BIO_new(BIO_s_mem())) == NULL)
		st = hsm_err(HSM_ENOMEM, "out of memory");
	else if ((st = put_block(b, PEM_WRAPPED, buf, n)) == 0)
		st = take_text(b, pem, len);
	BIO_free(b);
	OPENSSL_clear_free(buf, n);
	return st;
}
