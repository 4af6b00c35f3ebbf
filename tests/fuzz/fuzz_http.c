/* fuzz_http.c - the HTTP request parser: any bytes, never a crash, an overrun or a lie. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http.h"

#define MAX_BODY 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_req rq;
	static uint8_t resp[MAX_BODY + HTTP_RESPONSE_OVERHEAD];
	size_t n;
	int r;

	r = http_parse(data, size, MAX_BODY, &rq);
	if (r < 0) {
		if (r != HSM_EPROTO)
			abort();
		switch (rq.status) {
		case 400: case 411: case 413: case 414: case 431: case 501: case 505:
			break;
		default:
			abort();
		}
		return 0;
	}
	if (rq.status != 0)
		abort();
	if (r == 0)
		return 0;
	/* A complete request: everything it reports lies within what it used. */
	if ((size_t)r > size || (size_t)r > HTTP_MAX_HEAD + MAX_BODY || rq.body_len > MAX_BODY)
		abort();
	if (rq.body_len > 0 && (rq.body == NULL || rq.body < data ||
	    rq.body + rq.body_len != data + r))
		abort();
	if (rq.method[0] == '\0' || strlen(rq.method) > HTTP_MAX_METHOD ||
	    rq.target[0] != '/' || strlen(rq.target) > HTTP_MAX_TARGET ||
	    strlen(rq.content_type) > HTTP_MAX_CTYPE || strlen(rq.host) > HTTP_MAX_HOST ||
	    (rq.minor != 0 && rq.minor != 1))
		abort();
	/* Every proper prefix of a complete request is "need more". */
	if (http_parse(data, (size_t)r - 1, MAX_BODY, &rq) != 0 || rq.status != 0)
		abort();
	(void)http_parse(data, (size_t)r, MAX_BODY, &rq);
	/* And the body can be echoed in a response. */
	if (http_response(resp, sizeof(resp), 200, HTTP_CT_PKIXCMP, rq.body, rq.body_len,
	    &n) != 0 || n < rq.body_len)
		abort();
	return 0;
}
