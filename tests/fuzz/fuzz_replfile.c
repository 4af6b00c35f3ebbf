/*
 * fuzz_replfile.c - the parsers of the files `hsmesh ca replicate` reads
 * from another CA host (replfile.h): a replication request and a wrapped
 * key. What parses must write back to a file that parses to the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct repl_request rq, rq2;
	struct repl_wrapped *w = malloc(sizeof(*w)), *w2 = malloc(sizeof(*w2));
	char *pem = NULL;
	size_t len = 0;

	if (w == NULL || w2 == NULL)
		goto out;
	if (repl_request_parse(data, size, &rq) == 0) {
		if (repl_request_write(&rq, &pem, &len) != 0 ||
		    repl_request_parse((const uint8_t *)pem, len, &rq2) != 0 ||
		    rq2.spkilen != rq.spkilen || memcmp(rq2.spki, rq.spki, rq.spkilen) != 0 ||
		    rq2.quotelen != rq.quotelen ||
		    (rq.quote != NULL && memcmp(rq2.quote, rq.quote, rq.quotelen) != 0))
			__builtin_trap();
		repl_request_clear(&rq2);
		repl_request_clear(&rq);
		free(pem);
		pem = NULL;
	}
	if (repl_wrapped_parse(data, size, w) == 0) {
		if (repl_wrapped_write(w, &pem, &len) != 0 ||
		    repl_wrapped_parse((const uint8_t *)pem, len, w2) != 0 ||
		    memcmp(w2->wrapkey, w->wrapkey, sizeof(w->wrapkey)) != 0 ||
		    w2->spkilen != w->spkilen || w2->w.tlen != w->w.tlen || w2->w.klen != w->w.klen ||
		    memcmp(w2->w.key, w->w.key, w->w.klen) != 0)
			__builtin_trap();
		free(pem);
	}
 out:
	free(w);
	free(w2);
	return 0;
}
