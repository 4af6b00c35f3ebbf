/*
 * fuzz_httpresp.c - the HTTP response parser of `hsmesh app get`: any bytes
 * as a response head and body, fed whole and in small pieces. Never a
 * crash or an overrun; body data always points inside the input; the
 * decoder never claims more body than it was given.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "httpresp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Decode the body in pieces of step bytes: the body bytes seen (count and a
 * checksum) and the final state (1 complete, 0 more needed, or an error).
 */
static int
decode(struct httpresp r, const uint8_t *buf, size_t len, size_t step, uint64_t *seen,
    uint64_t *sum)
{
	size_t off = 0;
	int st = httpresp_complete(&r);

	*seen = *sum = 0;
	while (off < len && st == 0) {
		size_t avail = len - off < step ? len - off : step, used = 0;
		const uint8_t *d = NULL;
		size_t dlen = 0;

		st = httpresp_body(&r, buf + off, avail, &used, &d, &dlen);
		if (used > avail || (dlen > 0 && (d < buf + off || d + dlen > buf + off + used)))
			abort();
		if (st < 0 && st != HSM_EPROTO)
			abort();
		/* Short of the end only to hand out a run of data. */
		if (st == 0 && used < avail && dlen == 0)
			abort();
		for (size_t i = 0; i < dlen; i++)
			*sum = *sum * 31 + d[i];
		*seen += dlen;
		off += used;
	}
	if (r.received != *seen || (r.framing == HTTPRESP_LENGTH && *seen > r.length))
		abort();
	if (st == 1 && (!httpresp_complete(&r) || httpresp_eof(&r) != 1))
		abort();
	return st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpresp r;
	int head_req = size % 5 == 0, h;

	h = httpresp_head(data, size, head_req, &r);
	if (h < 0) {
		if (h != HSM_EPROTO)
			abort();
		return 0;
	}
	if (h == 0)
		return 0;
	if ((size_t)h > size || (size_t)h > HTTPRESP_MAX_HEAD || r.status < 100 || r.status > 599)
		abort();
	/* Every proper prefix of a complete head is "need more". */
	if (httpresp_head(data, (size_t)h - 1, head_req, &r) != 0 ||
	    httpresp_head(data, (size_t)h / 2, head_req, &r) != 0)
		abort();
	if (httpresp_head(data, (size_t)h, head_req, &r) != h)
		abort();
	{
		uint64_t n1, s1, n2, s2;
		int st1 = decode(r, data + h, size - (size_t)h, size, &n1, &s1);
		int st2 = decode(r, data + h, size - (size_t)h, 1 + (data[0] % 7), &n2, &s2);

		/* However the bytes arrive, the same body and the same verdict. */
		if (st1 != st2 || n1 != n2 || s1 != s2)
			abort();
	}
	return 0;
}
