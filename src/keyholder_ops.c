/*
 * keyholder_ops.c - one request of the keyholder against the token
 * (keyholder.h): generate, find, public key, sign, destroy, attributes,
 * list, wrap and unwrap; and --describe.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "err.h"
#include "keyholder.h"
#include "khproto.h"
#include "log.h"
#include "p11.h"
#include "util.h"

int
kh_make_reply(uint8_t *out, size_t cap, const struct kh_request *r, int st,
    const uint8_t *b1, size_t l1, const uint8_t *b2, size_t l2)
{
	const char *msg;
	size_t n;

	if (st == 0)
		return kh_frame_encode(out, cap, r->type | KH_T_REPLY, r->id, 0, b1, l1, b2, l2);
	msg = hsm_err_msg(st);
	n = strlen(msg);
	if (n > KH_MAX_ERRTEXT)
		n = KH_MAX_ERRTEXT;
	return kh_frame_encode(out, cap, r->type | KH_T_REPLY, r->id, (uint32_t)-st,
	    (const uint8_t *)msg, n, NULL, 0);
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * WRAP (as the security officer, then the user: p11_wrap) and UNWRAP
 * (p11_unwrap), on a worker thread. The keyholder of `hsmesh ca
 * replicate` is its own: nothing else uses the token meanwhile.
 */
static void
perform_replication(const struct kh_token_ops *o, const struct kh_request *r, uint8_t *reply,
    size_t cap, int *replylen)
{
	struct p11_pin_source so = { .file = o->so_pin_file, .env = o->so_pin_env };
	uint8_t keyid[HSM_KEYID_LEN], head[3];
	struct hsm_wrapped *w;
	int st;

	if (r->type == KH_T_UNWRAP) {
		st = p11_unwrap(o->tok, r->keyid, &r->wrapped, r->spki, r->spkilen,
		    r->label[0] ? r->label : NULL, keyid);
		if (st == 0)
			log_info("unwrapped key %.16s... label '%s' (sensitive, not extractable)",
			    hsm_hex(keyid, 8, (char[17]){0}), r->label);
		*replylen = kh_make_reply(reply, cap, r, st, keyid, HSM_KEYID_LEN,
		    NULL, 0);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		*replylen = kh_make_reply(reply, cap, r, HSM_ENOMEM, NULL, 0, NULL, 0);
		return;
	}
	st = p11_wrap(o->tok, (so.file != NULL || so.env != NULL) ? &so : NULL, r->keyid, r->spki,
	    r->spkilen, w);
	if (st == 0) {
		log_info("wrapped key %.16s... for a trusted key (RSA-OAEP %s + AES key wrap)",
		    hsm_hex(r->keyid, 8, (char[17]){0}), w->oaep == HSM_OAEP_SHA256 ? "SHA-256" : "SHA-1");
		head[0] = w->oaep;
		hsm_put16(head + 1, (uint16_t)w->tlen);
		*replylen = kh_frame_encode3(reply, cap, r->type | KH_T_REPLY, r->id,
		    head, 3, w->transport, w->tlen, w->key, w->klen);
	} else {
		*replylen = kh_make_reply(reply, cap, r, st, NULL, 0, NULL, 0);
	}
	OPENSSL_cleanse(w, sizeof(*w));
	free(w);
}

int
kh_perform(const struct kh_token_ops *o, const struct kh_request *r, uint64_t deadline,
    uint8_t *reply, size_t cap, int *replylen)
{
	uint8_t keyid[HSM_KEYID_LEN], sig[HSM_MAX_SIG], *spki = NULL;
	size_t spkilen = 0, siglen = 0;
	int st;

	hsm_err_clear();
	if (hsm_now_ms() >= deadline) {
		st = hsm_err(HSM_ETIMEDOUT, "deadline passed before the token was free");
		*replylen = kh_make_reply(reply, cap, r, st, NULL, 0, NULL, 0);
		return 0;
	}
	switch (r->type) {
	case KH_T_GENERATE:
		st = p11_generate_flags(o->tok, r->keytype, r->label[0] ? r->label : NULL, r->genflags,
		    keyid, &spki, &spkilen);
		if (st == 0)
			log_info("generated %s%s key %.16s... label '%s'", hsm_keytype_name(r->keytype),
			    (r->genflags & HSM_GEN_REPLICABLE) ? " replicable" : "",
			    hsm_hex(keyid, 8, (char[17]){0}), r->label);
		*replylen = kh_make_reply(reply, cap, r, st, keyid, HSM_KEYID_LEN, spki, spkilen);
		break;
	case KH_T_UNWRAPPING_KEY:
		st = p11_generate_unwrapping(o->tok, r->label, keyid, &spki, &spkilen);
		if (st == 0)
			log_info("generated unwrapping key %.16s... label '%s'",
			    hsm_hex(keyid, 8, (char[17]){0}), r->label);
		*replylen = kh_make_reply(reply, cap, r, st, keyid, HSM_KEYID_LEN, spki, spkilen);
		break;
	case KH_T_WRAP:
	case KH_T_UNWRAP:
		perform_replication(o, r, reply, cap, replylen);
		break;
	case KH_T_FIND:
		st = p11_find_label(o->tok, r->label, keyid, &spki, &spkilen);
		*replylen = kh_make_reply(reply, cap, r, st, keyid, HSM_KEYID_LEN, spki, spkilen);
		break;
	case KH_T_PUBKEY:
		st = p11_pubkey(o->tok, r->keyid, &spki, &spkilen);
		*replylen = kh_make_reply(reply, cap, r, st, spki, spkilen, NULL, 0);
		break;
	case KH_T_DESTROY:
		st = p11_destroy(o->tok, r->keyid);
		*replylen = kh_make_reply(reply, cap, r, st, NULL, 0, NULL, 0);
		break;
	case KH_T_ATTRS: {
		struct p11_key_info ki;
		uint8_t fl = 0;

		if ((st = p11_key_info(o->tok, r->keyid, &ki)) == 0)
			fl = (uint8_t)((ki.sensitive ? KH_ATTR_SENSITIVE : 0) |
			    (ki.always_sensitive ? KH_ATTR_ALWAYS_SENSITIVE : 0) |
			    (ki.extractable ? KH_ATTR_EXTRACTABLE : 0) |
			    (ki.never_extractable ? KH_ATTR_NEVER_EXTRACTABLE : 0) |
			    (ki.token ? KH_ATTR_TOKEN : 0) | (ki.private_ ? KH_ATTR_PRIVATE : 0) |
			    (ki.wrap_with_trusted ? KH_ATTR_WRAP_WITH_TRUSTED : 0));
		*replylen = kh_make_reply(reply, cap, r, st, &fl, 1, NULL, 0);
		break;
	}
	case KH_T_LIST: {
		struct p11_key_entry pe[KH_LIST_MAX];
		struct kh_list_entry le[KH_LIST_MAX];
		uint8_t body[KH_MAX_FRAME];
		size_t n = 0;
		int bl = 0;
		static const uint8_t zero[HSM_KEYID_LEN];
		int from_start = memcmp(r->keyid, zero, HSM_KEYID_LEN) == 0;

		st = p11_list_prefix(o->tok, r->label, from_start ? NULL : r->keyid, pe, KH_LIST_MAX, &n);
		for (size_t i = 0; st == 0 && i < n; i++) {
			memcpy(le[i].keyid, pe[i].id, HSM_KEYID_LEN);
			memcpy(le[i].label, pe[i].label, sizeof(le[i].label));
		}
		if (st == 0 && (bl = kh_list_encode(le, n, body, sizeof(body) - KH_HDR_LEN)) < 0)
			st = hsm_err(HSM_EPROTO, "key list does not fit a frame");
		*replylen = kh_make_reply(reply, cap, r, st, body, st == 0 ? (size_t)bl : 0,
		    NULL, 0);
		break;
	}
	case KH_T_SIGN:
		/* Test setting: model a slow token (a TPM takes ~6-10 ms). */
		if (o->sign_delay_ms > 0)
			sleep_ms(o->sign_delay_ms);
		st = p11_sign(o->tok, r->keyid, r->alg, r->digest, r->dlen, sig, &siglen);
		*replylen = kh_make_reply(reply, cap, r, st, sig, siglen, NULL, 0);
		free(spki);
		return st == 0;
	default:
		st = hsm_err(HSM_EPROTO, "unknown request");
		*replylen = kh_make_reply(reply, cap, r, st, NULL, 0, NULL, 0);
		break;
	}
	free(spki);
	return 0;
}

/* Operator view of one key: what the token itself says about its protection. */
int
kh_describe_key(const char *module, const char *uri, const struct p11_pin_source *pin, const char *hex)
{
	struct p11_token *tok = NULL;
	struct p11_key_info ki;
	uint8_t id[HSM_KEYID_LEN];
	int st;

	if (strlen(hex) != 2 * HSM_KEYID_LEN) {
		fprintf(stderr, "hsmesh keyholder: --describe wants a %d-hex-digit key id\n", 2 * HSM_KEYID_LEN);
		return 2;
	}
	/* sscanf("%2x") would take " 1" or "+1": decode strictly. */
	if (hsm_unhex(hex, 2 * HSM_KEYID_LEN, id) != 0) {
		fprintf(stderr, "hsmesh keyholder: --describe: not a hex key id\n");
		return 2;
	}
	if ((st = p11_token_open(module, uri, pin, 1, &tok)) != 0 ||
	    (st = p11_key_info(tok, id, &ki)) != 0) {
		fprintf(stderr, "hsmesh keyholder: %s\n", hsm_err_msg(st));
		p11_token_close(tok);
		return 1;
	}
	printf("key %s in token '%s'\n", hex, p11_token_label(tok));
	printf("  type              %s\n", hsm_keytype_name(ki.type));
	printf("  label             %s\n", ki.label);
	printf("  token object      %s\n", ki.token ? "yes" : "no");
	printf("  private (login)   %s\n", ki.private_ ? "yes" : "no");
	printf("  sensitive         %s\n", ki.sensitive ? "yes" : "NO");
	printf("  always sensitive  %s\n", ki.always_sensitive ? "yes" : "NO");
	printf("  extractable       %s\n", ki.extractable ? "YES" : "no");
	printf("  never extractable %s\n", ki.never_extractable ? "yes" : "NO");
	printf("  wrap with trusted %s\n", ki.wrap_with_trusted ? "yes" : "no");
	p11_token_close(tok);
	return 0;
}
