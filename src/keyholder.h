/*
 * keyholder.h - what the files of the key-holder process share
 * (keyholder.c: threads, queue, peers, sizing; keyholder_ops.c: one
 * request against the token; keyholder_relay.c: the modules' stderr).
 */
#ifndef HSMESH_KEYHOLDER_H
#define HSMESH_KEYHOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "khproto.h"
#include "p11.h"

/* What a request needs of the keyholder: its token and settings. */
struct kh_token_ops {
	struct p11_token *tok;
	const char *so_pin_file;	/* the SO PIN's source, for WRAP (or NULL) */
	const char *so_pin_env;
	unsigned sign_delay_ms;		/* test setting: a slow token */
};

/*
 * The reply frame for request r with status st: the body b1, b2 when st
 * is 0, else the error's text. Its length, or a negative code.
 */
int kh_make_reply(uint8_t *out, size_t cap, const struct kh_request *r, int st,
    const uint8_t *b1, size_t l1, const uint8_t *b2, size_t l2);

/*
 * Runs on a worker thread: the token operation of request r, its reply
 * frame into reply (cap bytes), its length in *replylen; a request whose
 * deadline (hsm_now_ms) passed is answered HSM_ETIMEDOUT without the
 * token. Returns 1 for a signature the token made (what the sizing
 * measures), else 0.
 */
int kh_perform(const struct kh_token_ops *o, const struct kh_request *r, uint64_t deadline,
    uint8_t *reply, size_t cap, int *replylen);

/*
 * `hsmesh keyholder --describe KEYID`: the token's security attributes of
 * one key on stdout. The exit status (0, 1 token error, 2 bad id).
 */
int kh_describe_key(const char *module, const char *uri, const struct p11_pin_source *pin,
    const char *hex);

/*
 * fd 2 becomes a pipe read by a relay thread that drops the modules'
 * chatter unless verbose (keyholder_relay.c); best effort, undone at exit.
 */
void kh_relay_start(bool verbose);

#endif
