/* fuzz_khproto.c - the keyholder's parser of peer bytes: frames, then requests. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "khproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	/* Same loop as the keyholder: split frames until incomplete or bad. */
	while (off < size) {
		struct kh_frame f;
		struct kh_request r;
		int n = kh_frame_parse(data + off, size - off, &f);

		if (n <= 0)
			break;
		if (kh_request_decode(&f, &r) == 0) {
			if (r.type == KH_T_FIND || r.type == KH_T_GENERATE)
				(void)strlen(r.label);
			/* a request naming a key: its id was copied whole */
			if ((r.type == KH_T_ATTRS || r.type == KH_T_PUBKEY || r.type == KH_T_DESTROY) &&
			    (f.bodylen != HSM_KEYID_LEN || memcmp(r.keyid, f.body, HSM_KEYID_LEN) != 0))
				__builtin_trap();
		}
		off += (size_t)n;
	}
	/* The client's parser of a LIST reply: whatever it accepts re-encodes to the same bytes. */
	{
		struct kh_list_entry e[KH_LIST_MAX];
		uint8_t after[HSM_KEYID_LEN] = { 0 }, back[KH_MAX_FRAME];
		size_t n;
		int len;

		if (kh_list_parse(data, size, after, "hsmesh-", e, &n) == 0) {
			len = kh_list_encode(e, n, back, sizeof(back));
			if (len < 0 || (size_t)len != size || memcmp(back, data, size) != 0)
				__builtin_trap();
		}
	}
	/* The client's parser of a POOL reply: the same, field by field. */
	{
		struct kh_pool p;
		uint8_t back[KH_POOL_LEN];

		if (kh_pool_parse(data, size, &p) == 0) {
			kh_pool_encode(&p, back);
			if (size != KH_POOL_LEN || memcmp(back, data, size) != 0)
				__builtin_trap();
		}
	}
	return 0;
}
