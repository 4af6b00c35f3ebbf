/* hmsg.c - the protocol-neutral HTTP message (see hmsg.h). */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hmsg.h"
#include "scache.h"
#include "httptok.h"

void
hmsg_init(struct hmsg *m, int request)
{
	memset(m, 0, sizeof(*m));
	m->request = request != 0;
	m->content_length = -1;
}

void
hmsg_clear(struct hmsg *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nf; i++)
		sc_free(m->f[i].name);
	sc_free(m->f);
	sc_free(m->method);
	sc_free(m->scheme);
	sc_free(m->authority);
	sc_free(m->path);
	hmsg_init(m, m->request);
}

void
hmsg_move(struct hmsg *dst, struct hmsg *src)
{
	hmsg_clear(dst);
	*dst = *src;
	memset(src, 0, sizeof(*src));
	src->request = dst->request;
	src->content_length = -1;
}

int
hmsg_add(struct hmsg *m, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct hfield *f;
	size_t i, cap;
	char *p;

	if (nlen > UINT32_MAX / 2 || vlen > UINT32_MAX / 2)
		return hsm_err(HSM_EINVAL, "http: field too long");
	if (m->nf == m->capf) {
		cap = m->capf == 0 ? 8 : m->capf * 2;
		if ((f = sc_realloc(m->f, cap * sizeof(*f))) == NULL)
			return hsm_err(HSM_ENOMEM, "out of memory");
		m->f = f;
		m->capf = cap;
	}
	/* One allocation: "name\0value\0". */
	if ((p = sc_malloc(nlen + vlen + 2)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	for (i = 0; i < nlen; i++)
		p[i] = (char)http_lower((uint8_t)name[i]);
	p[nlen] = '\0';
	if (vlen > 0)
		memcpy(p + nlen + 1, value, vlen);
	p[nlen + 1 + vlen] = '\0';
	f = &m->f[m->nf++];
	f->name = p;
	f->value = p + nlen + 1;
	f->nlen = (uint32_t)nlen;
	f->vlen = (uint32_t)vlen;
	m->size += nlen + vlen + HMSG_FIELD_OVERHEAD;
	return 0;
}

int
hmsg_set(struct hmsg *m, enum hmsg_ctl which, const char *v, size_t len)
{
	char **slot, *p;

	switch (which) {
	case HMSG_METHOD: slot = &m->method; break;
	case HMSG_SCHEME: slot = &m->scheme; break;
	case HMSG_AUTHORITY: slot = &m->authority; break;
	default: slot = &m->path; break;
	}
	if ((p = sc_malloc(len + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if (len > 0)
		memcpy(p, v, len);
	p[len] = '\0';
	if (*slot != NULL)
		m->size -= strlen(*slot) + HMSG_FIELD_OVERHEAD;
	sc_free(*slot);
	*slot = p;
	m->size += len + HMSG_FIELD_OVERHEAD;
	return 0;
}

const struct hfield *
hmsg_get(const struct hmsg *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nf; i++)
		if (strcmp(m->f[i].name, name) == 0)
			return &m->f[i];
	return NULL;
}

const char *
hmsg_value(const struct hmsg *m, const char *name)
{
	const struct hfield *f = hmsg_get(m, name);

	return f != NULL ? f->value : NULL;
}

/* Names equal ignoring case, with '_' read as '-'. */
static int
name_like(const char *a, size_t an, const char *b)
{
	size_t i;
	uint8_t x, y;

	if (strlen(b) != an)
		return 0;
	for (i = 0; i < an; i++) {
		x = http_lower((uint8_t)a[i]);
		y = http_lower((uint8_t)b[i]);
		if (x == '_')
			x = '-';
		if (y == '_')
			y = '-';
		if (x != y)
			return 0;
	}
	return 1;
}

/* Remove field i, keeping the order of the others. */
static void
del_at(struct hmsg *m, size_t i)
{
	m->size -= m->f[i].nlen + m->f[i].vlen + HMSG_FIELD_OVERHEAD;
	sc_free(m->f[i].name);
	memmove(&m->f[i], &m->f[i + 1], (m->nf - i - 1) * sizeof(m->f[0]));
	m->nf--;
}

/* Remove the fields for which drop() says 1, keeping the order of the others. */
static size_t
del_where(struct hmsg *m, int (*drop)(const struct hmsg *, const struct hfield *, const char *),
    const char *arg)
{
	size_t i = 0, n = 0;

	while (i < m->nf) {
		if (drop(m, &m->f[i], arg)) {
			del_at(m, i);
			n++;
		} else {
			i++;
		}
	}
	return n;
}

static int
named(const struct hmsg *m, const struct hfield *f, const char *name)
{
	return name_like(f->name, f->nlen, name);
}

size_t
hmsg_del(struct hmsg *m, const char *name)
{
	return del_where(m, named, name);
}

/* 1 when field f is named by a token of any Connection field of m. */
static int
named_by_connection(const struct hmsg *m, const struct hfield *f)
{
	const uint8_t *t;
	size_t i, pos, tn;

	for (i = 0; i < m->nf; i++) {
		if (m->f[i].nlen != 10 || memcmp(m->f[i].name, "connection", 10) != 0)
			continue;
		pos = 0;
		while (http_list_next((const uint8_t *)m->f[i].value, m->f[i].vlen, &pos, &t, &tn))
			if (http_ieq(t, tn, f->name))
				return 1;
	}
	return 0;
}

static int
is_hop(const struct hmsg *m, const struct hfield *f)
{
	/* by length first: this runs for every field of every message forwarded */
	switch (f->nlen) {
	case 2:
		if (memcmp(f->name, "te", 2) == 0)
			return !http_ieq((const uint8_t *)f->value, f->vlen, "trailers");
		break;
	case 4:
		if (memcmp(f->name, "host", 4) == 0)
			return 1;
		break;
	case 7:
		if (memcmp(f->name, "upgrade", 7) == 0)
			return 1;
		break;
	case 10:
		if (memcmp(f->name, "connection", 10) == 0 || memcmp(f->name, "keep-alive", 10) == 0)
			return 1;
		break;
	case 14:
		if (memcmp(f->name, "content-length", 14) == 0)
			return 1;
		break;
	case 16:
		if (memcmp(f->name, "proxy-connection", 16) == 0)
			return 1;
		break;
	case 17:
		if (memcmp(f->name, "transfer-encoding", 17) == 0)
			return 1;
		break;
	default:
		break;
	}
	return named_by_connection(m, f);
}

static int
hop_not_connection(const struct hmsg *m, const struct hfield *f, const char *unused)
{
	return !(f->nlen == 10 && memcmp(f->name, "connection", 10) == 0) && is_hop(m, f);
}

size_t
hmsg_strip_hop(struct hmsg *m)
{
	/* Connection goes last: until then it names the fields that go with it. */
	size_t n = del_where(m, hop_not_connection, NULL);

	return n + hmsg_del(m, "connection");
}

int
hmsg_bodyless_method(const char *method)
{
	static const char *const none[] = { "GET", "HEAD", "DELETE", "OPTIONS", "TRACE", NULL };
	size_t k;

	for (k = 0; method != NULL && none[k] != NULL; k++)
		if (strcmp(method, none[k]) == 0)
			return 1;
	return 0;
}

int
hmsg_response_bodyless(const char *req_method, int status)
{
	if ((status >= 100 && status < 200) || status == 204 || status == 304)
		return 1;
	return req_method != NULL && strcmp(req_method, "HEAD") == 0;
}
