/*
 * fuzz_agentproto.c - the agent's parser of local clients' bytes (frames,
 * then requests) and the client's parser of the agent's replies.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	/* Same loop as the agent: split frames until incomplete or bad. */
	while (off < size) {
		struct ag_frame f;
		struct ag_request r;
		struct ag_reply rp;
		uint8_t *out;
		size_t len;
		int n = ag_frame_parse(data + off, size - off, &f);

		if (n <= 0)
			break;
		if (ag_request_decode(&f, &r) == 0) {
			(void)strlen(r.spiffe_id);
			/*
			 * What decodes must re-encode to the same bytes, with
			 * the optional key id exactly when one was sent.
			 */
			if (r.type == AG_T_SIGN) {
				if (ag_encode_sign(r.id, r.spiffe_id, r.has_keyid ? r.keyid : NULL,
				    r.alg, r.digest, r.dlen, &out, &len) != 0)
					abort();
				if (len != (size_t)n || memcmp(out, data + off, len) != 0)
					abort();
				free(out);
			}
			if (r.type == AG_T_SIGN_TBS) {
				/* The data lies within this frame, exactly at its end. */
				if (r.tbslen > AG_MAX_TBS || (r.tbslen > 0 &&
				    r.tbs + r.tbslen != data + off + (size_t)n))
					abort();
				if (ag_encode_sign_tbs(r.id, r.spiffe_id, r.has_keyid ? r.keyid : NULL,
				    r.alg, r.hash, r.tbs, r.tbslen, &out, &len) != 0)
					abort();
				if (len != (size_t)n || memcmp(out, data + off, len) != 0)
					abort();
				free(out);
			}
		}
		if (ag_reply_decode(&f, &rp) == 0 && rp.status == 0 && rp.svid.chainlen > 0) {
			if (ag_encode_svid(rp.type, rp.id, &rp.svid, &out, &len) != 0 ||
			    len != (size_t)n || memcmp(out, data + off, len) != 0)
				abort();
			free(out);
		}
		off += (size_t)n;
	}
	return 0;
}
