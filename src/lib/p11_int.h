/*
 * p11_int.h - what the files of the token layer share: p11.c (modules,
 * tokens, login, the session pool, the key cache), p11obj.c (objects,
 * attributes, public keys), p11key.c (generate, find, list, sign,
 * destroy, describe keys) and p11wrap.c (the CA key wrapped from token to
 * token). Nothing outside these files includes it; the API is p11.h.
 */
#ifndef HSMESH_P11_INT_H
#define HSMESH_P11_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include <p11-kit/pkcs11.h>

#include "keytypes.h"
#include "p11.h"
#include "p11uri.h"

#define MAX_SESSIONS	256
#define KEYCACHE	64
#define MAX_ATTR	16384	/* no attribute we read is larger */
#define BADPIN_SLOTS	32

enum keykind { KIND_OTHER = 0, KIND_EC, KIND_RSA };

struct p11_module {
	struct p11_module *next;
	char *path;			/* canonical (realpath) */
	void *dl;
	CK_FUNCTION_LIST *f;
	int refs;			/* open tokens using it */
	bool initialized;		/* C_Initialize done in init_pid */
	bool ours;			/* we initialised it, so we finalise it */
	bool tpm2;			/* tpm2-pkcs11: RSA PKCS#1 v1.5 is a raw RSA decrypt */
	pid_t init_pid;
};

struct keyent {
	bool used;
	uint8_t id[HSM_KEYID_LEN];
	CK_OBJECT_HANDLE h;
	enum keykind kind;
	enum hsm_keytype kt;		/* 0 when not one of ours */
	size_t fsz;			/* EC field size or RSA modulus bytes */
};

struct p11_token {
	struct p11_token *next;		/* in tokens, under reg_mu */
	struct p11_module *mod;
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slot;
	char label[33];
	char serial[17];
	char *uri;			/* as given, for messages (never holds a PIN) */
	struct p11_uri u;
	char *pin_file;			/* where the PIN is re-read for a re-login, or */
	char *pin_mem;			/* the PIN itself (secret memory), pin_len bytes */
	size_t pin_len;
	pid_t pid;			/* process that owns the sessions */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	CK_SESSION_HANDLE *idle;	/* nslots entries */
	int nidle, nopen, max, nslots;	/* max: sessions to use now (p11_token_set_sessions) */
	unsigned gen;			/* bumped on fork reset: stale sessions are forgotten */
	struct keyent cache[KEYCACHE];
	unsigned cache_next;
};

/* One use of one pooled session by one operation. */
struct call {
	struct p11_token *tok;
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE s;
	bool dead;			/* session unusable: drop it, retry on a new one */
};

/* DER of the EC curves' OIDs (CKA_EC_PARAMS), defined in p11obj.c */
extern const uint8_t p11i_oid_p256[10];
extern const uint8_t p11i_oid_p384[7];
extern const uint8_t p11i_oid_p521[7];

/* p11.c: errors, login, the session pool, the key cache */
const char *p11i_ckr_name(CK_RV rv);
int p11i_ck(struct call *c, CK_RV rv, const char *fn);
int p11i_login_as(struct p11_token *tok, CK_SESSION_HANDLE s, CK_USER_TYPE who,
    const char *pin_file, const char *pin_env, const char *pin_mem, size_t pin_memlen);
int p11i_login(struct p11_token *tok, CK_SESSION_HANDLE s);
int p11i_with_session(struct p11_token *tok, int (*fn)(struct call *, void *), void *arg);
bool p11i_cache_get(struct p11_token *tok, const uint8_t *keyid, struct keyent *out);
void p11i_cache_put(struct p11_token *tok, const struct keyent *ke);
void p11i_cache_drop(struct p11_token *tok, const uint8_t *keyid);

/* p11obj.c: objects, attributes and public keys */
int p11i_find_objects(struct call *c, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *hs,
    CK_ULONG max, CK_ULONG *found);
int p11i_find_by_id(struct call *c, CK_OBJECT_CLASS cls, const uint8_t *keyid,
    CK_OBJECT_HANDLE *hs, CK_ULONG max, CK_ULONG *found);
int p11i_get_attr(struct call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
    uint8_t **val, size_t *len);
int p11i_find_key(struct call *c, const uint8_t *keyid, struct keyent *out);
int p11i_spki_of_object(struct call *c, CK_OBJECT_HANDLE h, uint8_t **spki, size_t *spkilen);
int p11i_sha256(const uint8_t *p, size_t len, uint8_t md[HSM_KEYID_LEN]);
int p11i_spki_of_id(struct call *c, const uint8_t *keyid, CK_OBJECT_HANDLE priv,
    uint8_t **spki, size_t *spkilen);

#endif
