/*
 * fuzz_h1.c - the sidecar's HTTP/1.1 framing (h1.c): any bytes as a
 * stream of requests or responses (chunked included), arriving whole and
 * in pieces, taken by a consumer of any size. Never a crash or an
 * overrun; data slices lie inside what was used; a body never exceeds its
 * Content-Length; every way of cutting the stream gives the same events
 * and body; a head that parsed can be written back (h1_write_head) and
 * parses again to the same control data.
 *
 * Input: byte 0 picks the kind (bit 0: response), the request method a
 * response answers (bit 1: HEAD), whether the stream then ends (bit 2);
 * byte 1 the piece size (0: whole); byte 2 the consumer size; the rest is
 * the stream.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "h1.h"
#include "hmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct h1_limits lim = { .max_head = 2048, .max_fields = 32 };

struct result {
	int r, status;
	uint64_t nbody, sum;
};

static void
check_head(const struct h1_parser *p)
{
	struct h1_parser q;
	struct h1_event ev;
	struct hmsg m;
	uint8_t out[4096];
	size_t n, used, i;
	int r;

	hmsg_init(&m, p->msg.request);
	m.status = p->msg.status;
	m.content_length = p->msg.content_length;
	if ((p->msg.method && hmsg_set(&m, HMSG_METHOD, p->msg.method, strlen(p->msg.method))) ||
	    (p->msg.path && hmsg_set(&m, HMSG_PATH, p->msg.path, strlen(p->msg.path))) ||
	    (p->msg.authority && hmsg_set(&m, HMSG_AUTHORITY, p->msg.authority,
	    strlen(p->msg.authority))))
		abort();
	for (i = 0; i < p->msg.nf; i++) {
		const struct hfield *f = &p->msg.f[i];

		/* names are lower case and tokens; values have no CR, LF or NUL */
		if (f->nlen == 0 || strlen(f->name) != f->nlen || strlen(f->value) != f->vlen ||
		    strpbrk(f->value, "\r\n") != NULL)
			abort();
		for (size_t k = 0; k < f->nlen; k++)
			if (f->name[k] >= 'A' && f->name[k] <= 'Z')
				abort();
		if (hmsg_add(&m, f->name, f->nlen, f->value, f->vlen) != 0)
			abort();
	}
	hmsg_strip_hop(&m);
	r = h1_write_head(&m, h1_framing_for(&m, 0, 1), 0, out, sizeof(out), &n);
	if (r == HSM_EINVAL) {
		/* too big for the test buffer */
		hmsg_clear(&m);
		return;
	}
	/* what the parser took, the writer can write */
	if (r != 0)
		abort();
	h1_init(&q, m.request ? H1_REQUEST : H1_RESPONSE, &(struct h1_limits){ 8192, 100 });
	if (!m.request)
		h1_expect(&q, "GET");
	r = h1_parse(&q, out, n, 0, &used, &ev);
	if (r != 0 || ev.type != H1_HEAD || used != n || q.msg.status != m.status ||
	    (m.request && (strcmp(q.msg.method, m.method) != 0 || strcmp(q.msg.path, m.path) != 0)))
		abort();
	h1_free(&q);
	hmsg_clear(&m);
}

static void
run(enum h1_kind kind, int head, int eof, const uint8_t *in, size_t len, size_t step,
    size_t take, int check, struct result *o)
{
	struct h1_parser p;
	struct h1_event ev;
	uint8_t *buf = malloc(len + 1);
	size_t fed = 0, have = 0, used, k;
	int r = 0;

	memset(o, 0, sizeof(*o));
	if (buf == NULL)
		abort();
	h1_init(&p, kind, &lim);
	h1_expect(&p, head ? "HEAD" : "GET");
	for (;;) {
		if ((r = h1_parse(&p, buf, have, take, &used, &ev)) != 0)
			break;
		if (used > have)
			abort();
		if (ev.type == H1_DATA) {
			if (ev.len == 0 || ev.len > take || ev.data < buf || ev.data + ev.len > buf + used)
				abort();
			for (k = 0; k < ev.len; k++)
				o->sum = o->sum * 31 + ev.data[k];
			o->nbody += ev.len;
			if (p.body == H1_BODY_LENGTH && p.body_bytes > (uint64_t)p.msg.content_length)
				abort();
		}
		if (ev.type == H1_HEAD && check)
			check_head(&p);
		if (ev.type == H1_HEAD && kind == H1_RESPONSE && p.msg.status >= 200)
			h1_expect(&p, head ? "HEAD" : "GET");
		memmove(buf, buf + used, have - used);
		have -= used;
		if (ev.type != H1_NEED)
			continue;
		if (fed == len) {
			if (eof)
				r = h1_eof(&p, have, &ev);
			break;
		}
		k = step == 0 || len - fed < step ? len - fed : step;
		memcpy(buf + have, in + fed, k);
		have += k;
		fed += k;
	}
	if (r != 0 && r != HSM_EPROTO && r != HSM_ENOMEM)
		abort();
	if (r == HSM_EPROTO && (p.status < 400 || p.status > 505 ||
	    (kind == H1_RESPONSE && p.status != 502)))
		abort();
	o->r = r;
	o->status = p.status;
	h1_free(&p);
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result whole, cut;
	enum h1_kind kind;
	size_t step, take;

	if (size < 3)
		return 0;
	kind = data[0] & 1 ? H1_RESPONSE : H1_REQUEST;
	step = data[1];
	take = data[2] == 0 ? SIZE_MAX : data[2];
	run(kind, data[0] & 2, data[0] & 4, data + 3, size - 3, 0, SIZE_MAX, 1, &whole);
	run(kind, data[0] & 2, data[0] & 4, data + 3, size - 3, step, take, 0, &cut);
	/* the same stream gives the same messages however it arrives */
	if (whole.r != cut.r || whole.status != cut.status || whole.nbody != cut.nbody ||
	    whole.sum != cut.sum)
		abort();
	return 0;
}
