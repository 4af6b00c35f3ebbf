/*
 * p11.c - the one door to PKCS#11 (see p11.h). Every C_* call of the
 * project is in this file.
 *
 * Layout: a process-wide registry of loaded modules (a module is
 * C_Initialize'd once however many tokens use it, and finalised when the
 * last one closes), a list of open tokens (so fork handlers can reach
 * their locks), a table of PINs a token has rejected, and per token a
 * pool of sessions plus a small cache of key id -> object handle.
 *
 * Locking: reg_mu (registry, token list, fork resets) is taken before
 * any tok->mu; tok->mu guards only the pool and the cache and is never
 * held across a C_* call. badpin_mu is a leaf.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <p11-kit/pkcs11.h>

#include "err.h"
#include "keytypes.h"
#include "log.h"
#include "p11.h"
#include "p11uri.h"
#include "util.h"

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
	char *pin_file, *pin_env;	/* where the PIN is re-read for a re-login */
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

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *modules;
static struct p11_token *tokens;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/*
 * PINs a token rejected, as SHA-256(module, serial, label, PIN). A PIN
 * that failed once is never offered again by this process: a restart loop
 * with a stale PIN file must not walk the token into a lock-out.
 */
static pthread_mutex_t badpin_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t badpins[BADPIN_SLOTS][32];
static unsigned nbadpins;

static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const uint8_t oid_p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };

/* ---- error translation ---- */

static const char *
ckr_name(CK_RV rv)
{
	static _Thread_local char buf[32];
	static const struct { CK_RV rv; const char *name; } tab[] = {
#define N(x) { x, #x }
		N(CKR_OK), N(CKR_CANCEL), N(CKR_HOST_MEMORY), N(CKR_SLOT_ID_INVALID),
		N(CKR_GENERAL_ERROR), N(CKR_FUNCTION_FAILED), N(CKR_ARGUMENTS_BAD),
		N(CKR_NO_EVENT), N(CKR_NEED_TO_CREATE_THREADS), N(CKR_CANT_LOCK),
		N(CKR_ATTRIBUTE_READ_ONLY), N(CKR_ATTRIBUTE_SENSITIVE),
		N(CKR_ATTRIBUTE_TYPE_INVALID), N(CKR_ATTRIBUTE_VALUE_INVALID),
		N(CKR_DATA_INVALID), N(CKR_DATA_LEN_RANGE), N(CKR_DEVICE_ERROR),
		N(CKR_DEVICE_MEMORY), N(CKR_DEVICE_REMOVED), N(CKR_FUNCTION_CANCELED),
		N(CKR_FUNCTION_NOT_PARALLEL), N(CKR_FUNCTION_NOT_SUPPORTED),
		N(CKR_KEY_HANDLE_INVALID), N(CKR_KEY_SIZE_RANGE), N(CKR_KEY_TYPE_INCONSISTENT),
		N(CKR_KEY_FUNCTION_NOT_PERMITTED), N(CKR_MECHANISM_INVALID),
		N(CKR_MECHANISM_PARAM_INVALID), N(CKR_OBJECT_HANDLE_INVALID),
		N(CKR_OPERATION_ACTIVE), N(CKR_OPERATION_NOT_INITIALIZED),
		N(CKR_PIN_INCORRECT), N(CKR_PIN_INVALID), N(CKR_PIN_LEN_RANGE),
		N(CKR_PIN_EXPIRED), N(CKR_PIN_LOCKED), N(CKR_SESSION_CLOSED),
		N(CKR_SESSION_COUNT), N(CKR_SESSION_HANDLE_INVALID),
		N(CKR_SESSION_PARALLEL_NOT_SUPPORTED), N(CKR_SESSION_READ_ONLY),
		N(CKR_SESSION_EXISTS), N(CKR_SESSION_READ_ONLY_EXISTS),
		N(CKR_SESSION_READ_WRITE_SO_EXISTS), N(CKR_SIGNATURE_INVALID),
		N(CKR_SIGNATURE_LEN_RANGE), N(CKR_TEMPLATE_INCOMPLETE),
		N(CKR_TEMPLATE_INCONSISTENT), N(CKR_TOKEN_NOT_PRESENT),
		N(CKR_TOKEN_NOT_RECOGNIZED), N(CKR_TOKEN_WRITE_PROTECTED),
		N(CKR_USER_ALREADY_LOGGED_IN), N(CKR_USER_NOT_LOGGED_IN),
		N(CKR_USER_PIN_NOT_INITIALIZED), N(CKR_USER_TYPE_INVALID),
		N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN), N(CKR_USER_TOO_MANY_TYPES),
		N(CKR_DOMAIN_PARAMS_INVALID), N(CKR_CURVE_NOT_SUPPORTED),
		N(CKR_BUFFER_TOO_SMALL), N(CKR_RANDOM_NO_RNG),
		N(CKR_CRYPTOKI_NOT_INITIALIZED), N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
		N(CKR_FUNCTION_REJECTED), N(CKR_KEY_UNEXTRACTABLE), N(CKR_KEY_NOT_WRAPPABLE),
		N(CKR_WRAPPED_KEY_INVALID), N(CKR_WRAPPED_KEY_LEN_RANGE),
		N(CKR_WRAPPING_KEY_HANDLE_INVALID), N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
		N(CKR_UNWRAPPING_KEY_HANDLE_INVALID), N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
#undef N
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (tab[i].rv == rv)
			return tab[i].name;
	snprintf(buf, sizeof(buf), "CKR_0x%08lx", (unsigned long)rv);
	return buf;
}

/* CK_RV of function fn -> project code, with "fn: CKR_NAME" as detail. */
static int
ckerr(CK_RV rv, const char *fn)
{
	int code;

	switch (rv) {
	case CKR_OK:
		return 0;
	case CKR_PIN_INCORRECT:
		code = HSM_EPIN;
		break;
	case CKR_PIN_LOCKED:
		code = HSM_EPINLOCKED;
		break;
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_DEVICE_REMOVED:
		code = HSM_ETOKEN;
		break;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
		code = HSM_EUNSUPPORTED;
		break;
	case CKR_HOST_MEMORY:
		code = HSM_ENOMEM;
		break;
	default:
		code = HSM_EP11;
		break;
	}
	return hsm_err(code, "%s: %s", fn, ckr_name(rv));
}

/* As ckerr, and note a session the module no longer knows. */
static int
ck(struct call *c, CK_RV rv, const char *fn)
{
	if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	    rv == CKR_DEVICE_REMOVED || rv == CKR_USER_NOT_LOGGED_IN)
		c->dead = true;
	return ckerr(rv, fn);
}

/* ---- fork handling ---- */

/*
 * Hold every lock across fork() so the child inherits consistent pool
 * and registry state; the child then re-initialises the module lazily
 * (PKCS#11 forbids using the parent's sessions).
 */
static void
atfork_prepare(void)
{
	struct p11_token *t;

	pthread_mutex_lock(&reg_mu);
	pthread_mutex_lock(&badpin_mu);
	for (t = tokens; t != NULL; t = t->next)
		pthread_mutex_lock(&t->mu);
}

static void
atfork_release(void)
{
	struct p11_token *t;

	for (t = tokens; t != NULL; t = t->next)
		pthread_mutex_unlock(&t->mu);
	pthread_mutex_unlock(&badpin_mu);
	pthread_mutex_unlock(&reg_mu);
}

static void
atfork_register(void)
{
	(void)pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

/* ---- module registry (reg_mu held) ---- */

static int
module_init_locked(struct p11_module *m)
{
	CK_C_INITIALIZE_ARGS args;
	CK_INFO info;
	CK_RV rv;

	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = m->f->C_Initialize(&args);
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED && m->initialized && m->init_pid != getpid()) {
		/* A module that does not notice fork(): start it over in the child. */
		(void)m->f->C_Finalize(NULL);
		rv = m->f->C_Initialize(&args);
	}
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* Someone else in this process initialised it: not ours to finalise. */
		m->ours = false;
	} else if (rv != CKR_OK) {
		return hsm_err(rv == CKR_HOST_MEMORY ? HSM_ENOMEM : HSM_EMODULE,
		    "PKCS#11 module %s: C_Initialize: %s", m->path, ckr_name(rv));
	} else
		m->ours = true;
	m->initialized = true;
	m->init_pid = getpid();
	m->tpm2 = m->f->C_GetInfo(&info) == CKR_OK &&
	    memcmp(info.manufacturerID, "tpm2-software", 13) == 0;
	return 0;
}

static int
module_get_locked(const char *path, struct p11_module **out)
{
	char real[PATH_MAX];
	struct p11_module *m = NULL;
	struct stat sb;
	CK_RV (*getfl)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST *f = NULL;
	const char *e;
	void *dl = NULL;
	CK_RV rv;
	int r;

	*out = NULL;
	if (realpath(path, real) == NULL)
		return hsm_err(HSM_EMODULE, "cannot load PKCS#11 module %s: %s", path,
		    strerror(errno));
	if (stat(real, &sb) == -1)
		return hsm_err(HSM_EMODULE, "cannot load PKCS#11 module %s: %s", real,
		    strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return hsm_err(HSM_EMODULE, "cannot load PKCS#11 module %s: not a regular file",
		    real);
	for (m = modules; m != NULL; m = m->next)
		if (strcmp(m->path, real) == 0)
			break;
	if (m == NULL) {
		dlerror();
		if ((dl = dlopen(real, RTLD_NOW | RTLD_LOCAL)) == NULL) {
			e = dlerror();
			return hsm_err(HSM_EMODULE, "cannot load PKCS#11 module %s: %s", real,
			    e ? e : "dlopen failed");
		}
		*(void **)&getfl = dlsym(dl, "C_GetFunctionList");
		if (getfl == NULL) {
			r = hsm_err(HSM_EMODULE,
			    "cannot load PKCS#11 module %s: no C_GetFunctionList (not a PKCS#11 module)",
			    real);
			goto fail;
		}
		if ((rv = getfl(&f)) != CKR_OK || f == NULL) {
			r = hsm_err(HSM_EMODULE, "cannot load PKCS#11 module %s: C_GetFunctionList: %s",
			    real, ckr_name(rv));
			goto fail;
		}
		if (f->version.major != 2) {
			r = hsm_err(HSM_EMODULE,
			    "cannot load PKCS#11 module %s: unsupported PKCS#11 version %u.%u",
			    real, f->version.major, f->version.minor);
			goto fail;
		}
		if ((m = calloc(1, sizeof(*m))) == NULL || (m->path = strdup(real)) == NULL) {
			free(m);
			m = NULL;
			r = hsm_err(HSM_ENOMEM, "out of memory");
			goto fail;
		}
		m->dl = dl;
		m->f = f;
		m->next = modules;
		modules = m;
		dl = NULL;
	}
	if (!m->initialized || m->init_pid != getpid()) {
		if ((r = module_init_locked(m)) != 0)
			return r;
	}
	m->refs++;
	*out = m;
	return 0;
 fail:
	if (dl != NULL)
		dlclose(dl);
	return r;
}

/*
 * Drop a reference. The module stays mapped (never dlclose'd): modules
 * with C++ static state or their own threads do not survive unloading,
 * and a later open reuses the mapping.
 */
static void
module_put_locked(struct p11_module *m)
{
	if (m == NULL || --m->refs > 0)
		return;
	if (m->initialized && m->ours && m->init_pid == getpid())
		(void)m->f->C_Finalize(NULL);
	m->initialized = false;
}

/* ---- token selection and login ---- */

static void
trim_field(const unsigned char *field, size_t len, char *out)
{
	while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0'))
		len--;
	memcpy(out, field, len);
	out[len] = '\0';
}

/* Find the one initialised token matching tok->u; fills slot, label, serial. */
static int
select_token(struct p11_token *tok, int *nmatch_out)
{
	CK_FUNCTION_LIST *f = tok->f;
	CK_SLOT_ID *slots = NULL, found = 0;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO ti, fti;
	const struct p11_uri *u = &tok->u;
	int nmatch = 0, r;
	CK_RV rv;

	*nmatch_out = -1;
	memset(&fti, 0, sizeof(fti));
	if ((rv = f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK)
		return ckerr(rv, "C_GetSlotList");
	if (n > 0) {
		if ((slots = calloc(n, sizeof(*slots))) == NULL)
			return hsm_err(HSM_ENOMEM, "out of memory");
		if ((rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
			r = ckerr(rv, "C_GetSlotList");
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (u->has_slot_id && slots[i] != u->slot_id)
			continue;
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		/* SoftHSM always offers an uninitialised spare token: never a match. */
		if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0)
			continue;
		if ((u->has_token && !p11_uri_field_eq(ti.label, sizeof(ti.label), u->token)) ||
		    (u->has_manufacturer && !p11_uri_field_eq(ti.manufacturerID,
		    sizeof(ti.manufacturerID), u->manufacturer)) ||
		    (u->has_serial && !p11_uri_field_eq(ti.serialNumber,
		    sizeof(ti.serialNumber), u->serial)) ||
		    (u->has_model && !p11_uri_field_eq(ti.model, sizeof(ti.model), u->model)))
			continue;
		if (nmatch++ == 0) {
			found = slots[i];
			fti = ti;
		}
	}
	*nmatch_out = nmatch;
	if (nmatch == 0) {
		r = hsm_err(HSM_ETOKEN, "no token matches %s", tok->uri);
		goto out;
	}
	if (nmatch > 1) {
		r = hsm_err(HSM_ETOKEN, "%d tokens match %s: name one with token=, serial= or slot-id=",
		    nmatch, tok->uri);
		goto out;
	}
	tok->slot = found;
	trim_field(fti.label, sizeof(fti.label), tok->label);
	trim_field(fti.serialNumber, sizeof(fti.serialNumber), tok->serial);
	r = 0;
 out:
	free(slots);
	return r;
}

static int
pin_hash(const struct p11_token *tok, const char *role, const char *pin, size_t len,
    uint8_t md[32])
{
	static const char tag[] = "hsmesh bad PIN";
	EVP_MD_CTX *ctx;
	int ok;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	/* NUL-separated so field boundaries cannot shift. */
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(ctx, tag, sizeof(tag)) &&
	    EVP_DigestUpdate(ctx, role, strlen(role) + 1) &&
	    EVP_DigestUpdate(ctx, tok->mod->path, strlen(tok->mod->path) + 1) &&
	    EVP_DigestUpdate(ctx, tok->serial, strlen(tok->serial) + 1) &&
	    EVP_DigestUpdate(ctx, tok->label, strlen(tok->label) + 1) &&
	    EVP_DigestUpdate(ctx, pin, len) &&
	    EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : hsm_err_ossl(HSM_ECRYPTO, "SHA-256");
}

static bool
pin_known_bad(const uint8_t md[32])
{
	bool bad = false;

	pthread_mutex_lock(&badpin_mu);
	for (unsigned i = 0; i < BADPIN_SLOTS && i < nbadpins; i++)
		if (CRYPTO_memcmp(badpins[i], md, 32) == 0)
			bad = true;
	pthread_mutex_unlock(&badpin_mu);
	return bad;
}

static void
pin_remember_bad(const uint8_t md[32])
{
	pthread_mutex_lock(&badpin_mu);
	memcpy(badpins[nbadpins % BADPIN_SLOTS], md, 32);
	nbadpins++;
	pthread_mutex_unlock(&badpin_mu);
}

/*
 * Log in as who (CKU_USER or CKU_SO) on session s, reading the PIN from
 * pin_file or pin_env now and wiping it after. A PIN the token rejected
 * is never offered again, and the attempt that would lock the PIN is
 * never made.
 */
static int
login_as(struct p11_token *tok, CK_SESSION_HANDLE s, CK_USER_TYPE who, const char *pin_file,
    const char *pin_env)
{
	int so = who == CKU_SO;
	const char *whose = so ? "SO PIN" : "user PIN";
	char *pin = NULL;
	size_t len = 0;
	uint8_t md[32];
	CK_TOKEN_INFO ti;
	CK_RV rv;
	int r;

	if (pin_file != NULL)
		r = hsm_secret_read_file(pin_file, &pin, &len);
	else
		r = hsm_secret_read_env(pin_env, &pin, &len);
	if (r != 0)
		goto out;
	if ((r = pin_hash(tok, so ? "so" : "user", pin, len, md)) != 0)
		goto out;
	if (pin_known_bad(md)) {
		r = hsm_err(HSM_EPIN, "token '%s': this %s was already rejected; not trying it again",
		    tok->label, so ? "SO PIN" : "PIN");
		goto out;
	}
	/* Never make the attempt that locks the token. */
	if ((rv = tok->f->C_GetTokenInfo(tok->slot, &ti)) != CKR_OK) {
		r = ckerr(rv, "C_GetTokenInfo");
		goto out;
	}
	if (ti.flags & (so ? CKF_SO_PIN_LOCKED : CKF_USER_PIN_LOCKED)) {
		r = hsm_err(HSM_EPINLOCKED, "token '%s': %s is locked", tok->label, whose);
		goto out;
	}
	if (ti.flags & (so ? CKF_SO_PIN_FINAL_TRY : CKF_USER_PIN_FINAL_TRY)) {
		r = hsm_err(HSM_EPINLOCKED,
		    "token '%s': refusing to try: one more wrong %s would lock the token",
		    tok->label, so ? "SO PIN" : "PIN");
		goto out;
	}
	if (ti.flags & (so ? CKF_SO_PIN_COUNT_LOW : CKF_USER_PIN_COUNT_LOW))
		log_warn("token '%s': a wrong %s was entered recently", tok->label, whose);
	rv = tok->f->C_Login(s, who, (unsigned char *)pin, (CK_ULONG)len);
	if (rv == CKR_PIN_INCORRECT)
		pin_remember_bad(md);
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	r = rv == CKR_OK ? 0 : ckerr(rv, so ? "C_Login(SO)" : "C_Login");
 out:
	OPENSSL_cleanse(md, sizeof(md));
	hsm_secret_free(pin, len);
	return r;
}

/* Log in as user on session s, reading the PIN from its source now. */
static int
login(struct p11_token *tok, CK_SESSION_HANDLE s)
{
	return login_as(tok, s, CKU_USER, tok->pin_file, tok->pin_env);
}

/* Open a session; log in when the token is not logged in (first or lost login). */
static int
session_open(struct p11_token *tok, CK_SESSION_HANDLE *out)
{
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_SESSION_INFO si;
	CK_RV rv;
	int r;

	*out = CK_INVALID_HANDLE;
	rv = tok->f->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK)
		return ckerr(rv, "C_OpenSession");
	if ((rv = tok->f->C_GetSessionInfo(s, &si)) != CKR_OK) {
		r = ckerr(rv, "C_GetSessionInfo");
		goto fail;
	}
	if (si.state != CKS_RW_USER_FUNCTIONS && si.state != CKS_RO_USER_FUNCTIONS &&
	    (r = login(tok, s)) != 0)
		goto fail;
	*out = s;
	return 0;
 fail:
	(void)tok->f->C_CloseSession(s);
	return r;
}

/* ---- session pool ---- */

static int
check_fork(struct p11_token *tok)
{
	if (__atomic_load_n(&tok->pid, __ATOMIC_ACQUIRE) != getpid())
		return p11_token_reset_after_fork(tok);
	return 0;
}

static int
sess_get(struct p11_token *tok, struct call *c, unsigned *gen)
{
	CK_SESSION_HANDLE s;
	unsigned g;
	int r;

	memset(c, 0, sizeof(*c));
	c->tok = tok;
	c->f = tok->f;
	if ((r = check_fork(tok)) != 0)
		return r;
	pthread_mutex_lock(&tok->mu);
	for (;;) {
		if (tok->nidle > 0) {
			c->s = tok->idle[--tok->nidle];
			*gen = tok->gen;
			pthread_mutex_unlock(&tok->mu);
			return 0;
		}
		if (tok->nopen < tok->max)
			break;
		pthread_cond_wait(&tok->cv, &tok->mu);
	}
	/* Reserve the slot, then open without holding the lock. */
	tok->nopen++;
	g = tok->gen;
	pthread_mutex_unlock(&tok->mu);
	if ((r = session_open(tok, &s)) != 0) {
		pthread_mutex_lock(&tok->mu);
		if (g == tok->gen)
			tok->nopen--;
		pthread_cond_signal(&tok->cv);
		pthread_mutex_unlock(&tok->mu);
		return r;
	}
	c->s = s;
	*gen = g;
	return 0;
}

static void
sess_put(struct call *c, unsigned gen)
{
	struct p11_token *tok = c->tok;
	bool closeit = false;

	pthread_mutex_lock(&tok->mu);
	if (gen != tok->gen) {
		/* Opened before a fork reset: belongs to a dead incarnation. */
	} else if (c->dead || tok->nopen > tok->max) {
		/* Lost, or above a size lowered while it was in use. */
		tok->nopen--;
		closeit = true;
	} else
		tok->idle[tok->nidle++] = c->s;
	pthread_cond_signal(&tok->cv);
	pthread_mutex_unlock(&tok->mu);
	if (closeit)
		(void)c->f->C_CloseSession(c->s);
}

/*
 * Run fn on a pooled session. A session the module lost (closed, invalid,
 * device removed, login gone) is dropped and the operation retried once
 * on a fresh one, which logs in again if needed.
 */
static int
with_session(struct p11_token *tok, int (*fn)(struct call *, void *), void *arg)
{
	struct call c;
	unsigned gen;
	int r = HSM_EP11;

	for (int attempt = 0; attempt < 2; attempt++) {
		if ((r = sess_get(tok, &c, &gen)) != 0)
			return r;
		r = fn(&c, arg);
		sess_put(&c, gen);
		if (!c.dead)
			break;
		log_debug("token '%s': session lost, retrying on a new one", tok->label);
	}
	return r;
}

int
p11_token_set_sessions(struct p11_token *tok, int n)
{
	CK_SESSION_HANDLE closing[MAX_SESSIONS];
	int nc = 0;

	if (n < 1 || n > tok->nslots)
		return hsm_err(HSM_EINVAL, "number of sessions must be 1..%d", tok->nslots);
	pthread_mutex_lock(&tok->mu);
	tok->max = n;
	/* Idle ones above n close now; those in use close when they come back (sess_put). */
	while (tok->nopen > n && tok->nidle > 0) {
		closing[nc++] = tok->idle[--tok->nidle];
		tok->nopen--;
	}
	pthread_cond_broadcast(&tok->cv);
	pthread_mutex_unlock(&tok->mu);
	/* Never after a fork: those sessions are the parent's. */
	if (__atomic_load_n(&tok->pid, __ATOMIC_ACQUIRE) == getpid())
		for (int i = 0; i < nc; i++)
			(void)tok->f->C_CloseSession(closing[i]);
	return 0;
}

bool
p11_token_is_tpm(const struct p11_token *tok)
{
	return tok->mod->tpm2;
}

int
p11_token_sessions(struct p11_token *tok, int *max)
{
	int n;

	pthread_mutex_lock(&tok->mu);
	n = tok->nopen;
	if (max != NULL)
		*max = tok->max;
	pthread_mutex_unlock(&tok->mu);
	return n;
}

/* ---- key cache ---- */

static bool
cache_get(struct p11_token *tok, const uint8_t *keyid, struct keyent *out)
{
	bool hit = false;

	pthread_mutex_lock(&tok->mu);
	for (int i = 0; i < KEYCACHE; i++) {
		if (tok->cache[i].used && memcmp(tok->cache[i].id, keyid, HSM_KEYID_LEN) == 0) {
			*out = tok->cache[i];
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&tok->mu);
	return hit;
}

static void
cache_put(struct p11_token *tok, const struct keyent *ke)
{
	pthread_mutex_lock(&tok->mu);
	for (int i = 0; i < KEYCACHE; i++) {
		if (tok->cache[i].used && memcmp(tok->cache[i].id, ke->id, HSM_KEYID_LEN) == 0) {
			tok->cache[i] = *ke;
			goto out;
		}
	}
	tok->cache[tok->cache_next++ % KEYCACHE] = *ke;
 out:
	pthread_mutex_unlock(&tok->mu);
}

static void
cache_drop(struct p11_token *tok, const uint8_t *keyid)
{
	pthread_mutex_lock(&tok->mu);
	for (int i = 0; i < KEYCACHE; i++)
		if (tok->cache[i].used && memcmp(tok->cache[i].id, keyid, HSM_KEYID_LEN) == 0)
			memset(&tok->cache[i], 0, sizeof(tok->cache[i]));
	pthread_mutex_unlock(&tok->mu);
}

/* ---- object helpers ---- */

static int
find_objects(struct call *c, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *hs,
    CK_ULONG max, CK_ULONG *found)
{
	CK_RV rv;
	int r;

	*found = 0;
	if ((rv = c->f->C_FindObjectsInit(c->s, tmpl, n)) != CKR_OK)
		return ck(c, rv, "C_FindObjectsInit");
	rv = c->f->C_FindObjects(c->s, hs, max, found);
	r = ck(c, rv, "C_FindObjects");
	rv = c->f->C_FindObjectsFinal(c->s);
	if (r == 0)
		r = ck(c, rv, "C_FindObjectsFinal");
	if (r != 0)
		*found = 0;
	return r;
}

static int
find_by_id(struct call *c, CK_OBJECT_CLASS cls, const uint8_t *keyid,
    CK_OBJECT_HANDLE *hs, CK_ULONG max, CK_ULONG *found)
{
	uint8_t id[HSM_KEYID_LEN];
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, id, sizeof(id) },
	};

	memcpy(id, keyid, sizeof(id));
	return find_objects(c, t, 2, hs, max, found);
}

/* Read one variable-length attribute into a malloc'd buffer. */
static int
get_attr(struct call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, uint8_t **val, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	uint8_t *buf = NULL;
	CK_RV rv;
	int r;

	*val = NULL;
	*len = 0;
	if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK)
		return ck(c, rv, "C_GetAttributeValue");
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > MAX_ATTR)
		return hsm_err(HSM_EP11, "C_GetAttributeValue: attribute 0x%lx unavailable",
		    (unsigned long)type);
	if ((buf = malloc(a.ulValueLen + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	a.pValue = buf;
	if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK) {
		r = ck(c, rv, "C_GetAttributeValue");
		free(buf);
		return r;
	}
	*val = buf;
	*len = a.ulValueLen;
	return 0;
}

static int
get_ulong(struct call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { type, v, sizeof(*v) };
	CK_RV rv;

	*v = 0;
	if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK)
		return ck(c, rv, "C_GetAttributeValue");
	return 0;
}

/* Curve from DER EC parameters: OpenSSL group name and field size. */
static const char *
ec_curve(const uint8_t *p, size_t len, enum hsm_keytype *kt, size_t *fsz)
{
	*kt = 0;
	*fsz = 0;
	if (len == sizeof(oid_p256) && memcmp(p, oid_p256, len) == 0) {
		*kt = HSM_KEY_EC_P256;
		*fsz = 32;
		return "prime256v1";
	}
	if (len == sizeof(oid_p384) && memcmp(p, oid_p384, len) == 0) {
		*kt = HSM_KEY_EC_P384;
		*fsz = 48;
		return "secp384r1";
	}
	if (len == sizeof(oid_p521) && memcmp(p, oid_p521, len) == 0) {
		*fsz = 66;
		return "secp521r1";
	}
	return NULL;
}

/* Key kind, type and size of a key object (private or public). */
static int
key_kind(struct call *c, CK_OBJECT_HANDLE h, struct keyent *ke)
{
	CK_ULONG ktype;
	CK_ATTRIBUTE a = { CKA_MODULUS, NULL, 0 };
	uint8_t *params = NULL;
	size_t plen;
	CK_RV rv;
	int r;

	ke->kind = KIND_OTHER;
	ke->kt = 0;
	ke->fsz = 0;
	if ((r = get_ulong(c, h, CKA_KEY_TYPE, &ktype)) != 0)
		return r;
	if (ktype == CKK_EC) {
		if ((r = get_attr(c, h, CKA_EC_PARAMS, &params, &plen)) != 0)
			return r;
		if (ec_curve(params, plen, &ke->kt, &ke->fsz) != NULL)
			ke->kind = KIND_EC;
		free(params);
	} else if (ktype == CKK_RSA) {
		if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK)
			return ck(c, rv, "C_GetAttributeValue");
		if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > HSM_MAX_SIG)
			return 0;
		ke->kind = KIND_RSA;
		ke->fsz = a.ulValueLen;
		if (a.ulValueLen == 384)
			ke->kt = HSM_KEY_RSA_3072;
	}
	return 0;
}

/* The private key named keyid, from the cache or the token. HSM_ENOENT if none. */
static int
find_key(struct call *c, const uint8_t *keyid, struct keyent *out)
{
	struct keyent ke;
	CK_OBJECT_HANDLE h;
	CK_ULONG n;
	char hex[17];
	int r;

	memset(out, 0, sizeof(*out));
	if (cache_get(c->tok, keyid, out))
		return 0;
	if ((r = find_by_id(c, CKO_PRIVATE_KEY, keyid, &h, 1, &n)) != 0)
		return r;
	if (n == 0)
		return hsm_err(HSM_ENOENT, "no private key with id %s... in token '%s'",
		    hsm_hex(keyid, 8, hex), c->tok->label);
	memset(&ke, 0, sizeof(ke));
	if ((r = key_kind(c, h, &ke)) != 0)
		return r;
	ke.used = true;
	ke.h = h;
	memcpy(ke.id, keyid, HSM_KEYID_LEN);
	cache_put(c->tok, &ke);
	*out = ke;
	return 0;
}

/* ---- SubjectPublicKeyInfo ---- */

static int
spki_from_params(const char *alg, OSSL_PARAM_BLD *bld, uint8_t **out, size_t *outlen)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	unsigned char *der = NULL;
	int n, r;

	*out = NULL;
	*outlen = 0;
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "token public key rejected by OpenSSL");
		goto out;
	}
	if ((n = i2d_PUBKEY(pkey, &der)) <= 0 || n > HSM_MAX_SPKI) {
		r = hsm_err_ossl(HSM_ECRYPTO, "encoding SubjectPublicKeyInfo");
		goto out;
	}
	*out = der;
	*outlen = (size_t)n;
	der = NULL;
	r = 0;
 out:
	OPENSSL_free(der);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return r;
}

/*
 * CKA_EC_POINT should be a DER OCTET STRING around the point (SoftHSM,
 * the standard) but some modules return the raw point. The raw
 * uncompressed point is 1 + 2*fsz bytes; anything else must be the
 * wrapped form with exactly that inside.
 */
static int
ec_point_unwrap(const uint8_t *p, size_t len, size_t fsz, const uint8_t **pt, size_t *ptlen)
{
	size_t want = 1 + 2 * fsz, hl;

	if (len == want && p[0] == 0x04) {
		*pt = p;
		*ptlen = len;
		return 0;
	}
	if (len >= 2 && p[0] == 0x04) {
		if (p[1] < 0x80)
			hl = 2;
		else if (p[1] == 0x81 && len >= 3)
			hl = 3;
		else
			hl = 0;
		if (hl != 0 && len - hl == want && (hl == 2 ? p[1] : p[2]) == want &&
		    p[hl] == 0x04) {
			*pt = p + hl;
			*ptlen = want;
			return 0;
		}
	}
	return hsm_err(HSM_EP11, "CKA_EC_POINT: unexpected encoding (%zu bytes)", len);
}

/* DER SPKI of the key object h (public key, or RSA private key). */
static int
spki_of_object(struct call *c, CK_OBJECT_HANDLE h, uint8_t **spki, size_t *spkilen)
{
	struct keyent ke;
	OSSL_PARAM_BLD *bld = NULL;
	uint8_t *a = NULL, *b = NULL;
	const uint8_t *pt = NULL;
	size_t alen, blen, ptlen = 0;
	BIGNUM *n = NULL, *e = NULL;
	const char *group;
	enum hsm_keytype kt;
	int r;

	*spki = NULL;
	*spkilen = 0;
	memset(&ke, 0, sizeof(ke));
	if ((r = key_kind(c, h, &ke)) != 0)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if (ke.kind == KIND_EC) {
		if ((r = get_attr(c, h, CKA_EC_PARAMS, &a, &alen)) != 0 ||
		    (r = get_attr(c, h, CKA_EC_POINT, &b, &blen)) != 0)
			goto out;
		group = ec_curve(a, alen, &kt, &ke.fsz);
		if ((r = ec_point_unwrap(b, blen, ke.fsz, &pt, &ptlen)) != 0)
			goto out;
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen)) {
			r = hsm_err_ossl(HSM_ECRYPTO, "OSSL_PARAM_BLD");
			goto out;
		}
		r = spki_from_params("EC", bld, spki, spkilen);
	} else if (ke.kind == KIND_RSA) {
		if ((r = get_attr(c, h, CKA_MODULUS, &a, &alen)) != 0 ||
		    (r = get_attr(c, h, CKA_PUBLIC_EXPONENT, &b, &blen)) != 0)
			goto out;
		if ((n = BN_bin2bn(a, (int)alen, NULL)) == NULL ||
		    (e = BN_bin2bn(b, (int)blen, NULL)) == NULL ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
			r = hsm_err_ossl(HSM_ECRYPTO, "OSSL_PARAM_BLD");
			goto out;
		}
		r = spki_from_params("RSA", bld, spki, spkilen);
	} else
		r = hsm_err(HSM_EUNSUPPORTED, "key type not supported (EC P-256/384/521 or RSA)");
 out:
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_BLD_free(bld);
	free(a);
	free(b);
	return r;
}

static int
sha256(const uint8_t *p, size_t len, uint8_t md[HSM_KEYID_LEN])
{
	if (EVP_Digest(p, len, md, NULL, EVP_sha256(), NULL) != 1)
		return hsm_err_ossl(HSM_ECRYPTO, "SHA-256");
	return 0;
}

/* SPKI of key keyid, read from its public object (or the RSA private key) and checked against the id. */
static int
spki_of_id(struct call *c, const uint8_t *keyid, CK_OBJECT_HANDLE priv,
    uint8_t **spki, size_t *spkilen)
{
	CK_OBJECT_HANDLE h;
	CK_ULONG n;
	uint8_t *der = NULL, md[HSM_KEYID_LEN];
	size_t len = 0;
	int r;

	*spki = NULL;
	*spkilen = 0;
	if ((r = find_by_id(c, CKO_PUBLIC_KEY, keyid, &h, 1, &n)) != 0)
		return r;
	/* An RSA private key carries its public half; an EC one does not. */
	if ((r = spki_of_object(c, n == 1 ? h : priv, &der, &len)) != 0) {
		if (n == 0 && !c->dead)
			r = hsm_err(HSM_ENOENT, "token '%s': no public key object for this key",
			    c->tok->label);
		goto out;
	}
	if ((r = sha256(der, len, md)) != 0)
		goto out;
	/* Keys are named by their SPKI hash: a mismatch means a foreign or corrupt object. */
	if (memcmp(md, keyid, HSM_KEYID_LEN) != 0) {
		r = hsm_err(HSM_EP11, "token '%s': public key does not match its CKA_ID",
		    c->tok->label);
		goto out;
	}
	*spki = der;
	*spkilen = len;
	der = NULL;
	r = 0;
 out:
	OPENSSL_free(der);
	return r;
}

/* ---- open / close / reset ---- */

/*
 * Serialise token opening (slot scan and login) across hsmesh processes on
 * this machine. SoftHSM2 rewrites its token file in place on every
 * C_Login (truncate, then write): a second process scanning slots at that
 * moment sees no token, CKR_GENERAL_ERROR or an uninitialised PIN. The
 * lock is advisory and bounded: after 2 s we go on without it, so a lock
 * held by someone else can delay, never block, a keyholder. Returns an fd
 * to close, or -1.
 */
static int
open_lock(void)
{
	int fd = open("/tmp/.hsmesh-p11-open.lock", O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);

	if (fd < 0)
		return -1;
	for (int i = 0; i < 200; i++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		if (errno != EWOULDBLOCK && errno != EINTR)
			break;
		usleep(10000);
	}
	close(fd);
	return -1;
}

int
p11_token_open(const char *module_path, const char *token_uri,
    const struct p11_pin_source *pin, int nsessions, struct p11_token **out)
{
	struct p11_token *tok = NULL;
	CK_SESSION_HANDLE s;
	bool linked = false;
	int lockfd = -1;
	int r;

	*out = NULL;
	if (module_path == NULL || token_uri == NULL || pin == NULL)
		return hsm_err(HSM_EINVAL, "p11_token_open: missing argument");
	if ((pin->file == NULL) == (pin->env == NULL))
		return hsm_err(HSM_EINVAL, "PIN source: give exactly one of a file or an environment variable");
	if (nsessions < 1 || nsessions > MAX_SESSIONS)
		return hsm_err(HSM_EINVAL, "number of sessions must be 1..%d", MAX_SESSIONS);
	pthread_once(&atfork_once, atfork_register);

	if ((tok = calloc(1, sizeof(*tok))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	pthread_mutex_init(&tok->mu, NULL);
	pthread_cond_init(&tok->cv, NULL);
	tok->max = tok->nslots = nsessions;
	if ((r = p11_uri_parse(token_uri, &tok->u)) != 0)
		goto fail;
	if ((tok->uri = strdup(token_uri)) == NULL ||
	    (tok->idle = calloc((size_t)nsessions, sizeof(*tok->idle))) == NULL ||
	    (pin->file != NULL && (tok->pin_file = strdup(pin->file)) == NULL) ||
	    (pin->env != NULL && (tok->pin_env = strdup(pin->env)) == NULL)) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto fail;
	}

	lockfd = open_lock();
	pthread_mutex_lock(&reg_mu);
	for (int attempt = 0;; attempt++) {
		int nmatch;

		if ((r = module_get_locked(module_path, &tok->mod)) != 0) {
			pthread_mutex_unlock(&reg_mu);
			goto fail;
		}
		tok->f = tok->mod->f;
		tok->pid = getpid();
		if ((r = select_token(tok, &nmatch)) == 0)
			break;
		/*
		 * SoftHSM2's file store, caught mid-update by another process,
		 * can show no token at all: when we are the module's only
		 * user, start it over and look again, a few times.
		 */
		if (nmatch != 0 || attempt >= 5 || tok->mod->refs > 1 || !tok->mod->ours) {
			pthread_mutex_unlock(&reg_mu);
			goto fail;
		}
		module_put_locked(tok->mod);
		tok->mod = NULL;
		pthread_mutex_unlock(&reg_mu);
		usleep(20000u * (unsigned)(attempt + 1));
		pthread_mutex_lock(&reg_mu);
	}
	/* Linked before login so a concurrent fork sees our lock. */
	tok->next = tokens;
	tokens = tok;
	linked = true;
	pthread_mutex_unlock(&reg_mu);

	/* The first session logs in; the rest open lazily. */
	if ((r = session_open(tok, &s)) != 0)
		goto fail;
	if (lockfd >= 0)
		close(lockfd);
	lockfd = -1;
	pthread_mutex_lock(&tok->mu);
	tok->idle[tok->nidle++] = s;
	tok->nopen = 1;
	pthread_mutex_unlock(&tok->mu);
	log_debug("token '%s' (serial %s) open, up to %d sessions", tok->label, tok->serial,
	    nsessions);
	*out = tok;
	return 0;
 fail:
	if (lockfd >= 0)
		close(lockfd);
	if (linked) {
		p11_token_close(tok);
		return r;
	}
	if (tok->mod != NULL) {
		pthread_mutex_lock(&reg_mu);
		module_put_locked(tok->mod);
		pthread_mutex_unlock(&reg_mu);
	}
	free(tok->uri);
	free(tok->idle);
	free(tok->pin_file);
	free(tok->pin_env);
	pthread_mutex_destroy(&tok->mu);
	pthread_cond_destroy(&tok->cv);
	free(tok);
	return r;
}

void
p11_token_close(struct p11_token *tok)
{
	struct p11_token **pp, *t;
	bool shared = false, mine;

	if (tok == NULL)
		return;
	pthread_mutex_lock(&reg_mu);
	for (pp = &tokens; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == tok) {
			*pp = tok->next;
			break;
		}
	}
	for (t = tokens; t != NULL; t = t->next)
		if (t->mod == tok->mod && t->slot == tok->slot)
			shared = true;
	/*
	 * Sessions inherited over fork belong to the parent: touching them
	 * from the child could end the parent's sessions on a shared device.
	 */
	mine = tok->pid == getpid() && tok->mod->init_pid == getpid() && tok->mod->initialized;
	if (mine) {
		/* Login state is per token and process: keep it for another user of this slot. */
		if (!shared && tok->nidle > 0)
			(void)tok->f->C_Logout(tok->idle[0]);
		for (int i = 0; i < tok->nidle; i++)
			(void)tok->f->C_CloseSession(tok->idle[i]);
	}
	module_put_locked(tok->mod);
	pthread_mutex_unlock(&reg_mu);

	free(tok->uri);
	free(tok->idle);
	free(tok->pin_file);
	free(tok->pin_env);
	pthread_mutex_destroy(&tok->mu);
	pthread_cond_destroy(&tok->cv);
	OPENSSL_cleanse(tok, sizeof(*tok));
	free(tok);
}

int
p11_token_reset_after_fork(struct p11_token *tok)
{
	CK_SESSION_HANDLE s;
	char label[sizeof(tok->label)], serial[sizeof(tok->serial)];
	int r, nmatch;

	if (tok == NULL)
		return hsm_err(HSM_EINVAL, "no token");
	pthread_mutex_lock(&reg_mu);
	if (tok->pid == getpid()) {
		/* Nothing to do, or another thread of this child already did it. */
		pthread_mutex_unlock(&reg_mu);
		return 0;
	}
	if (!tok->mod->initialized || tok->mod->init_pid != getpid()) {
		if ((r = module_init_locked(tok->mod)) != 0)
			goto out;
	}
	/* Forget the parent's sessions and handles without closing them. */
	pthread_mutex_lock(&tok->mu);
	tok->gen++;
	tok->nidle = 0;
	tok->nopen = 0;
	memset(tok->cache, 0, sizeof(tok->cache));
	pthread_mutex_unlock(&tok->mu);

	/* Slot ids may change across C_Initialize: select again, same token required. */
	memcpy(label, tok->label, sizeof(label));
	memcpy(serial, tok->serial, sizeof(serial));
	if ((r = select_token(tok, &nmatch)) != 0)
		goto out;
	if (strcmp(serial, tok->serial) != 0 || strcmp(label, tok->label) != 0) {
		r = hsm_err(HSM_ETOKEN, "after fork, %s names a different token", tok->uri);
		goto out;
	}
	if ((r = session_open(tok, &s)) != 0)
		goto out;
	pthread_mutex_lock(&tok->mu);
	tok->idle[tok->nidle++] = s;
	tok->nopen = 1;
	pthread_mutex_unlock(&tok->mu);
	__atomic_store_n(&tok->pid, getpid(), __ATOMIC_RELEASE);
	r = 0;
 out:
	pthread_mutex_unlock(&reg_mu);
	return r;
}

const char *
p11_token_label(const struct p11_token *tok)
{
	return tok != NULL ? tok->label : "";
}

/* ---- generate ---- */

struct gen_arg {
	enum hsm_keytype kt;
	const char *label;
	unsigned flags;			/* HSM_GEN_* */
	bool unwrapping;		/* p11_generate_unwrapping: unwrap only */
	uint8_t keyid[HSM_KEYID_LEN];
	uint8_t *spki;
	size_t spkilen;
};

static int
op_generate(struct call *c, void *v)
{
	struct gen_arg *g = v;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, rawrsa;
	CK_ULONG bits = 3072;
	uint8_t exp[3] = { 0x01, 0x00, 0x01 };
	uint8_t params[16];
	size_t plen = 0;
	char label[HSM_MAX_LABEL + 1];
	CK_ULONG llen = 0;
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	CK_ATTRIBUTE pubt[8], privt[12], idt[1];
	CK_ULONG npub = 0, npriv = 0;
	uint8_t md[HSM_KEYID_LEN];
	struct keyent ke;
	CK_RV rv;
	int r;

	if (g->label != NULL) {
		llen = strlen(g->label);
		memcpy(label, g->label, llen);
	}
	switch (g->kt) {
	case HSM_KEY_EC_P256:
		memcpy(params, oid_p256, sizeof(oid_p256));
		plen = sizeof(oid_p256);
		break;
	case HSM_KEY_EC_P384:
		memcpy(params, oid_p384, sizeof(oid_p384));
		plen = sizeof(oid_p384);
		break;
	case HSM_KEY_RSA_3072:
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		break;
	}

#define A(t, n, typ, p, l) do { t[n].type = (typ); t[n].pValue = (p); t[n].ulValueLen = (l); n++; } while (0)
	/*
	 * No CKA_VERIFY or CKA_ENCRYPT: a TPM key has one flag for sign and
	 * encrypt and one for decrypt and verify, so tpm2-pkcs11 derives
	 * them from the private half and refuses a template that differs.
	 */
	A(pubt, npub, CKA_TOKEN, &yes, sizeof(yes));
	A(pubt, npub, CKA_WRAP, &no, sizeof(no));
	if (llen > 0)
		A(pubt, npub, CKA_LABEL, label, llen);
	if (mech.mechanism == CKM_EC_KEY_PAIR_GEN)
		A(pubt, npub, CKA_EC_PARAMS, params, plen);
	else {
		A(pubt, npub, CKA_MODULUS_BITS, &bits, sizeof(bits));
		A(pubt, npub, CKA_PUBLIC_EXPONENT, exp, sizeof(exp));
	}
	/*
	 * Sign-only, and the key never leaves the token in any form; a
	 * replicable one leaves it only wrapped by a trusted key; an
	 * unwrapping key only unwraps.
	 */
	A(privt, npriv, CKA_TOKEN, &yes, sizeof(yes));
	A(privt, npriv, CKA_PRIVATE, &yes, sizeof(yes));
	A(privt, npriv, CKA_SENSITIVE, &yes, sizeof(yes));
	if (g->flags & HSM_GEN_REPLICABLE) {
		A(privt, npriv, CKA_EXTRACTABLE, &yes, sizeof(yes));
		A(privt, npriv, CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes));
	} else {
		A(privt, npriv, CKA_EXTRACTABLE, &no, sizeof(no));
	}
	A(privt, npriv, CKA_SIGN, g->unwrapping ? &no : &yes, sizeof(yes));
	/*
	 * tpm2-pkcs11 pads CKM_RSA_PKCS itself and signs with the TPM's raw
	 * RSA operation, which the TPM grants only to keys that may decrypt.
	 */
	rawrsa = c->tok->mod->tpm2 && g->kt == HSM_KEY_RSA_3072 && !g->unwrapping ?
	    CK_TRUE : CK_FALSE;
	A(privt, npriv, CKA_DECRYPT, &rawrsa, sizeof(rawrsa));
	A(privt, npriv, CKA_UNWRAP, g->unwrapping ? &yes : &no, sizeof(no));
	A(privt, npriv, CKA_DERIVE, &no, sizeof(no));
	if (llen > 0)
		A(privt, npriv, CKA_LABEL, label, llen);
#undef A

	rv = c->f->C_GenerateKeyPair(c->s, &mech, pubt, npub, privt, npriv, &pub, &priv);
	if (rv != CKR_OK)
		return ck(c, rv, "C_GenerateKeyPair");
	if ((r = spki_of_object(c, pub, &g->spki, &g->spkilen)) != 0 ||
	    (r = sha256(g->spki, g->spkilen, md)) != 0)
		goto fail;
	idt[0].type = CKA_ID;
	idt[0].pValue = md;
	idt[0].ulValueLen = sizeof(md);
	if ((rv = c->f->C_SetAttributeValue(c->s, priv, idt, 1)) != CKR_OK ||
	    (rv = c->f->C_SetAttributeValue(c->s, pub, idt, 1)) != CKR_OK) {
		r = ck(c, rv, "C_SetAttributeValue(CKA_ID)");
		goto fail;
	}
	memcpy(g->keyid, md, sizeof(md));
	memset(&ke, 0, sizeof(ke));
	ke.used = true;
	memcpy(ke.id, md, sizeof(md));
	ke.h = priv;
	ke.kt = g->kt;
	ke.kind = g->kt == HSM_KEY_RSA_3072 ? KIND_RSA : KIND_EC;
	ke.fsz = g->kt == HSM_KEY_EC_P256 ? 32 : g->kt == HSM_KEY_EC_P384 ? 48 : 384;
	cache_put(c->tok, &ke);
	return 0;
 fail:
	/* No half-made key stays behind: an unnamed key is an unusable key. */
	(void)c->f->C_DestroyObject(c->s, priv);
	(void)c->f->C_DestroyObject(c->s, pub);
	OPENSSL_free(g->spki);
	g->spki = NULL;
	g->spkilen = 0;
	return r;
}

/* Generate as g says (p11_generate_flags, p11_generate_unwrapping). */
static int
generate(struct p11_token *tok, struct gen_arg *g, uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen)
{
	int r;

	memset(keyid, 0, HSM_KEYID_LEN);
	*spki = NULL;
	*spkilen = 0;
	if (tok == NULL)
		return hsm_err(HSM_EINVAL, "no token");
	if (g->kt != HSM_KEY_EC_P256 && g->kt != HSM_KEY_EC_P384 && g->kt != HSM_KEY_RSA_3072)
		return hsm_err(HSM_EUNSUPPORTED, "key type %d not supported", (int)g->kt);
	if ((g->flags & ~HSM_GEN_ALL) != 0)
		return hsm_err(HSM_EINVAL, "unknown key generation flags 0x%x", g->flags);
	if (g->label != NULL && strlen(g->label) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label longer than %d bytes", HSM_MAX_LABEL);
	if ((r = with_session(tok, op_generate, g)) != 0)
		return r;
	/* Hand over as malloc'd memory, as p11.h promises. */
	if ((*spki = malloc(g->spkilen)) == NULL) {
		OPENSSL_free(g->spki);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	memcpy(*spki, g->spki, g->spkilen);
	*spkilen = g->spkilen;
	OPENSSL_free(g->spki);
	memcpy(keyid, g->keyid, HSM_KEYID_LEN);
	return 0;
}

int
p11_generate_flags(struct p11_token *tok, enum hsm_keytype kt, const char *label,
    unsigned flags, uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	struct gen_arg g;

	memset(&g, 0, sizeof(g));
	g.kt = kt;
	g.label = label;
	g.flags = flags;
	return generate(tok, &g, keyid, spki, spkilen);
}

int
p11_generate(struct p11_token *tok, enum hsm_keytype kt, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	return p11_generate_flags(tok, kt, label, 0, keyid, spki, spkilen);
}

int
p11_generate_unwrapping(struct p11_token *tok, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	struct gen_arg g;

	memset(&g, 0, sizeof(g));
	g.kt = HSM_KEY_RSA_3072;
	g.label = label;
	g.unwrapping = true;
	return generate(tok, &g, keyid, spki, spkilen);
}

/* ---- public key, find by label ---- */

struct pub_arg {
	uint8_t keyid[HSM_KEYID_LEN];
	const char *label;
	uint8_t *spki;
	size_t spkilen;
};

static int
op_pubkey(struct call *c, void *v)
{
	struct pub_arg *a = v;
	struct keyent ke;
	int r;

	if ((r = find_key(c, a->keyid, &ke)) != 0)
		return r;
	return spki_of_id(c, a->keyid, ke.h, &a->spki, &a->spkilen);
}

static int
op_find_label(struct call *c, void *v)
{
	struct pub_arg *a = v;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	char label[HSM_MAX_LABEL + 1];
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, label, strlen(a->label) },
	};
	CK_OBJECT_HANDLE hs[16];
	CK_ULONG n, i;
	uint8_t *id;
	size_t idlen;
	int r;

	memcpy(label, a->label, strlen(a->label));
	if ((r = find_objects(c, t, 2, hs, 16, &n)) != 0)
		return r;
	/* The first that carries one of our ids (SHA-256 of its SPKI). */
	for (i = 0; i < n; i++) {
		if ((r = get_attr(c, hs[i], CKA_ID, &id, &idlen)) != 0)
			return r;
		if (idlen == HSM_KEYID_LEN) {
			memcpy(a->keyid, id, HSM_KEYID_LEN);
			free(id);
			return op_pubkey(c, a);
		}
		free(id);
	}
	return hsm_err(HSM_ENOENT, "no private key labelled '%s' in token '%s'", a->label,
	    c->tok->label);
}

static int
finish_pub(struct pub_arg *a, uint8_t *keyid, uint8_t **spki, size_t *spkilen)
{
	if ((*spki = malloc(a->spkilen)) == NULL) {
		OPENSSL_free(a->spki);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	memcpy(*spki, a->spki, a->spkilen);
	*spkilen = a->spkilen;
	OPENSSL_free(a->spki);
	if (keyid != NULL)
		memcpy(keyid, a->keyid, HSM_KEYID_LEN);
	return 0;
}

int
p11_pubkey(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen)
{
	struct pub_arg a;
	int r;

	*spki = NULL;
	*spkilen = 0;
	if (tok == NULL || keyid == NULL)
		return hsm_err(HSM_EINVAL, "p11_pubkey: missing argument");
	memset(&a, 0, sizeof(a));
	memcpy(a.keyid, keyid, HSM_KEYID_LEN);
	if ((r = with_session(tok, op_pubkey, &a)) != 0)
		return r;
	return finish_pub(&a, NULL, spki, spkilen);
}

int
p11_find_label(struct p11_token *tok, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	struct pub_arg a;
	int r;

	memset(keyid, 0, HSM_KEYID_LEN);
	*spki = NULL;
	*spkilen = 0;
	if (tok == NULL || label == NULL)
		return hsm_err(HSM_EINVAL, "p11_find_label: missing argument");
	if (label[0] == '\0' || strlen(label) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label must be 1..%d bytes", HSM_MAX_LABEL);
	memset(&a, 0, sizeof(a));
	a.label = label;
	if ((r = with_session(tok, op_find_label, &a)) != 0)
		return r;
	return finish_pub(&a, keyid, spki, spkilen);
}

/* ---- list by label prefix ---- */

static int
printable_label(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return 0;
	return 1;
}

struct list_arg {
	const char *prefix;
	const uint8_t *after;
	struct p11_key_entry *out;
	size_t max, n;
};

#define LIST_OBJECTS_MAX 65536	/* private keys looked at, at most */

static int
op_list(struct call *c, void *v)
{
	struct list_arg *a = v;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };
	CK_OBJECT_HANDLE *hs = NULL, *nh;
	CK_ULONG n = 0, got;
	size_t cap = 0, plen = strlen(a->prefix);
	CK_RV rv;
	int r;

	if ((rv = c->f->C_FindObjectsInit(c->s, t, 1)) != CKR_OK)
		return ck(c, rv, "C_FindObjectsInit");
	for (r = 0; r == 0;) {
		if (n == cap) {
			if (cap >= LIST_OBJECTS_MAX)
				break;
			cap = cap == 0 ? 256 : cap * 2;
			if ((nh = realloc(hs, cap * sizeof(*hs))) == NULL) {
				r = hsm_err(HSM_ENOMEM, "out of memory");
				break;
			}
			hs = nh;
		}
		rv = c->f->C_FindObjects(c->s, hs + n, (CK_ULONG)cap - n, &got);
		if ((r = ck(c, rv, "C_FindObjects")) != 0 || got == 0)
			break;
		n += got;
	}
	rv = c->f->C_FindObjectsFinal(c->s);
	if (r == 0)
		r = ck(c, rv, "C_FindObjectsFinal");
	for (CK_ULONG i = 0; r == 0 && i < n; i++) {
		uint8_t *id = NULL, *label = NULL;
		size_t idlen = 0, ll = 0, at;

		/*
		 * A key without a label (or an id) is no key of a prefix: skip
		 * it, and one whose label the keyholder protocol could not carry
		 * (not printable ASCII without spaces).
		 */
		if (get_attr(c, hs[i], CKA_LABEL, &label, &ll) != 0 || ll < plen || ll > HSM_MAX_LABEL ||
		    memcmp(label, a->prefix, plen) != 0 || !printable_label(label, ll) ||
		    get_attr(c, hs[i], CKA_ID, &id, &idlen) != 0 || idlen != HSM_KEYID_LEN ||
		    (a->after != NULL && memcmp(id, a->after, HSM_KEYID_LEN) <= 0)) {
			free(id);
			free(label);
			continue;
		}
		/* Keep the max smallest ids, sorted: insertion into a short array. */
		for (at = a->n; at > 0 && memcmp(a->out[at - 1].id, id, HSM_KEYID_LEN) > 0; at--)
			;
		if (at < a->max && !(at > 0 && memcmp(a->out[at - 1].id, id, HSM_KEYID_LEN) == 0)) {
			size_t last = a->n < a->max ? a->n : a->max - 1;

			memmove(&a->out[at + 1], &a->out[at], (last - at) * sizeof(a->out[0]));
			memcpy(a->out[at].id, id, HSM_KEYID_LEN);
			memcpy(a->out[at].label, label, ll);
			a->out[at].label[ll] = '\0';
			if (a->n < a->max)
				a->n++;
		}
		free(id);
		free(label);
	}
	free(hs);
	return r;
}

int
p11_list_prefix(struct p11_token *tok, const char *prefix, const uint8_t *after,
    struct p11_key_entry *out, size_t max, size_t *n)
{
	struct list_arg a;
	int r;

	*n = 0;
	if (tok == NULL || prefix == NULL || out == NULL || max == 0)
		return hsm_err(HSM_EINVAL, "p11_list_prefix: missing argument");
	if (prefix[0] == '\0' || strlen(prefix) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label prefix must be 1..%d bytes", HSM_MAX_LABEL);
	memset(&a, 0, sizeof(a));
	a.prefix = prefix;
	a.after = after;
	a.out = out;
	a.max = max;
	if ((r = with_session(tok, op_list, &a)) == 0)
		*n = a.n;
	return r;
}

/* ---- sign ---- */

struct sign_arg {
	const uint8_t *keyid;
	int alg;
	const uint8_t *digest;
	size_t dlen;
	uint8_t *sig;
	size_t siglen;
};

static const uint8_t di_sha256[] = {
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
	0x05, 0x00, 0x04, 0x20 };
static const uint8_t di_sha384[] = {
	0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
	0x05, 0x00, 0x04, 0x30 };
static const uint8_t di_sha512[] = {
	0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
	0x05, 0x00, 0x04, 0x40 };

/* Raw r||s from CKM_ECDSA -> DER ECDSA-Sig-Value, as X.509 and TLS expect. */
static int
ecdsa_to_der(const uint8_t *raw, size_t len, uint8_t *out, size_t *outlen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *p = out;
	int n, st;

	if (len == 0 || len % 2 != 0)
		return hsm_err(HSM_EP11, "C_Sign: ECDSA signature of odd length %zu", len);
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(raw, (int)(len / 2), NULL)) == NULL ||
	    (s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL)) == NULL ||
	    ECDSA_SIG_set0(es, r, s) != 1) {
		st = hsm_err_ossl(HSM_ECRYPTO, "ECDSA_SIG");
		goto out;
	}
	r = s = NULL;	/* owned by es */
	if ((n = i2d_ECDSA_SIG(es, NULL)) <= 0 || n > HSM_MAX_SIG) {
		st = hsm_err_ossl(HSM_ECRYPTO, "i2d_ECDSA_SIG");
		goto out;
	}
	if (i2d_ECDSA_SIG(es, &p) != n) {
		st = hsm_err_ossl(HSM_ECRYPTO, "i2d_ECDSA_SIG");
		goto out;
	}
	*outlen = (size_t)n;
	st = 0;
 out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return st;
}

static int
op_sign(struct call *c, void *v)
{
	struct sign_arg *a = v;
	struct keyent ke;
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	CK_RSA_PKCS_PSS_PARAMS pss;
	uint8_t data[19 + 64], out[HSM_MAX_SIG];
	const uint8_t *prefix = NULL;
	size_t plen = 0, dl;
	CK_ULONG olen = sizeof(out);
	CK_RV rv;
	int r;

	for (int attempt = 0; attempt < 2; attempt++) {
		if ((r = find_key(c, a->keyid, &ke)) != 0)
			return r;
		if (ke.kind == KIND_OTHER)
			return hsm_err(HSM_EUNSUPPORTED, "key type not supported for signing");
		if ((a->alg == HSM_SIG_ECDSA) != (ke.kind == KIND_EC))
			return hsm_err(HSM_EUNSUPPORTED, "signature algorithm %d does not fit %s key",
			    a->alg, ke.kind == KIND_EC ? "an EC" : "an RSA");
		memset(&pss, 0, sizeof(pss));
		switch (a->alg) {
		case HSM_SIG_ECDSA:
			break;
		case HSM_SIG_RSA_PKCS1_SHA256:
			prefix = di_sha256;
			plen = sizeof(di_sha256);
			break;
		case HSM_SIG_RSA_PKCS1_SHA384:
			prefix = di_sha384;
			plen = sizeof(di_sha384);
			break;
		case HSM_SIG_RSA_PKCS1_SHA512:
			prefix = di_sha512;
			plen = sizeof(di_sha512);
			break;
		case HSM_SIG_RSA_PSS_SHA256:
			pss.hashAlg = CKM_SHA256;
			pss.mgf = CKG_MGF1_SHA256;
			break;
		case HSM_SIG_RSA_PSS_SHA384:
			pss.hashAlg = CKM_SHA384;
			pss.mgf = CKG_MGF1_SHA384;
			break;
		case HSM_SIG_RSA_PSS_SHA512:
			pss.hashAlg = CKM_SHA512;
			pss.mgf = CKG_MGF1_SHA512;
			break;
		}
		if (prefix != NULL)
			mech.mechanism = CKM_RSA_PKCS;
		else if (pss.hashAlg != 0) {
			mech.mechanism = CKM_RSA_PKCS_PSS;
			pss.sLen = a->dlen;
			mech.pParameter = &pss;
			mech.ulParameterLen = sizeof(pss);
		}
		/* PKCS#1 v1.5: the token pads what we give it, so give it the DigestInfo. */
		if (plen > 0)
			memcpy(data, prefix, plen);
		memcpy(data + plen, a->digest, a->dlen);
		dl = plen + a->dlen;

		rv = c->f->C_SignInit(c->s, &mech, ke.h);
		if ((rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) && attempt == 0) {
			/* Destroyed behind our back or re-created: look it up again. */
			cache_drop(c->tok, a->keyid);
			continue;
		}
		if (rv != CKR_OK)
			return ck(c, rv, "C_SignInit");
		olen = sizeof(out);
		if ((rv = c->f->C_Sign(c->s, data, dl, out, &olen)) != CKR_OK) {
			r = ck(c, rv, "C_Sign");
			/* BUFFER_TOO_SMALL leaves the operation active; end it. */
			if (rv == CKR_BUFFER_TOO_SMALL)
				c->dead = true;
			return r;
		}
		if (olen > sizeof(out))
			return hsm_err(HSM_EP11, "C_Sign: signature length out of range");
		if (a->alg == HSM_SIG_ECDSA)
			return ecdsa_to_der(out, olen, a->sig, &a->siglen);
		memcpy(a->sig, out, olen);
		a->siglen = olen;
		return 0;
	}
	return hsm_err(HSM_ENOENT, "key vanished while signing");
}

int
p11_sign(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *digest, size_t dlen, uint8_t *sig, size_t *siglen)
{
	struct sign_arg a;
	int want, r;

	*siglen = 0;
	if (tok == NULL || keyid == NULL || digest == NULL || sig == NULL)
		return hsm_err(HSM_EINVAL, "p11_sign: missing argument");
	if ((want = hsm_sigalg_digest_len(alg)) < 0)
		return hsm_err(HSM_EUNSUPPORTED, "unknown signature algorithm %d", alg);
	if ((want == 0 && (dlen < 20 || dlen > 64)) || (want > 0 && dlen != (size_t)want))
		return hsm_err(HSM_EINVAL, "digest of %zu bytes does not fit signature algorithm %d",
		    dlen, alg);
	memset(&a, 0, sizeof(a));
	a.keyid = keyid;
	a.alg = alg;
	a.digest = digest;
	a.dlen = dlen;
	a.sig = sig;
	if ((r = with_session(tok, op_sign, &a)) != 0)
		return r;
	*siglen = a.siglen;
	return 0;
}

/* ---- destroy ---- */

static int
op_destroy(struct call *c, void *v)
{
	const uint8_t *keyid = v;
	CK_OBJECT_HANDLE priv[8], pub[8];
	CK_ULONG npriv, npub, i;
	CK_RV rv;
	char hex[17];
	int r;

	cache_drop(c->tok, keyid);
	if ((r = find_by_id(c, CKO_PRIVATE_KEY, keyid, priv, 8, &npriv)) != 0 ||
	    (r = find_by_id(c, CKO_PUBLIC_KEY, keyid, pub, 8, &npub)) != 0)
		return r;
	if (npriv == 0 && npub == 0)
		return hsm_err(HSM_ENOENT, "no key with id %s... in token '%s'",
		    hsm_hex(keyid, 8, hex), c->tok->label);
	for (i = 0; i < npriv; i++)
		if ((rv = c->f->C_DestroyObject(c->s, priv[i])) != CKR_OK)
			return ck(c, rv, "C_DestroyObject");
	for (i = 0; i < npub; i++)
		if ((rv = c->f->C_DestroyObject(c->s, pub[i])) != CKR_OK)
			return ck(c, rv, "C_DestroyObject");
	return 0;
}

int
p11_destroy(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN])
{
	uint8_t id[HSM_KEYID_LEN];
	int r;

	if (tok == NULL || keyid == NULL)
		return hsm_err(HSM_EINVAL, "p11_destroy: missing argument");
	memcpy(id, keyid, sizeof(id));
	r = with_session(tok, op_destroy, id);
	/* Also after a failure: a handle may now point at nothing. */
	cache_drop(tok, id);
	return r;
}

/* ---- key info ---- */

struct info_arg {
	uint8_t keyid[HSM_KEYID_LEN];
	struct p11_key_info ki;
};

static int
op_key_info(struct call *c, void *v)
{
	struct info_arg *a = v;
	struct keyent ke;
	CK_BBOOL b[7];
	char label[HSM_MAX_LABEL];
	CK_ATTRIBUTE t[] = {
		{ CKA_SENSITIVE, &b[0], sizeof(b[0]) },
		{ CKA_ALWAYS_SENSITIVE, &b[1], sizeof(b[1]) },
		{ CKA_EXTRACTABLE, &b[2], sizeof(b[2]) },
		{ CKA_NEVER_EXTRACTABLE, &b[3], sizeof(b[3]) },
		{ CKA_TOKEN, &b[4], sizeof(b[4]) },
		{ CKA_PRIVATE, &b[5], sizeof(b[5]) },
		{ CKA_WRAP_WITH_TRUSTED, &b[6], sizeof(b[6]) },
		{ CKA_LABEL, label, sizeof(label) },
	};
	CK_RV rv;
	int r;

	memset(b, 0, sizeof(b));
	if ((r = find_key(c, a->keyid, &ke)) != 0)
		return r;
	rv = c->f->C_GetAttributeValue(c->s, ke.h, t, sizeof(t) / sizeof(t[0]));
	/* Missing attributes come back as unavailable; read them as false/empty. */
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE &&
	    rv != CKR_BUFFER_TOO_SMALL)
		return ck(c, rv, "C_GetAttributeValue");
	for (int i = 0; i < 7; i++)
		if (t[i].ulValueLen != sizeof(CK_BBOOL))
			b[i] = CK_FALSE;
	a->ki.type = ke.kt;
	a->ki.sensitive = b[0] == CK_TRUE;
	a->ki.always_sensitive = b[1] == CK_TRUE;
	a->ki.extractable = b[2] == CK_TRUE;
	a->ki.never_extractable = b[3] == CK_TRUE;
	a->ki.token = b[4] == CK_TRUE;
	a->ki.private_ = b[5] == CK_TRUE;
	a->ki.wrap_with_trusted = b[6] == CK_TRUE;
	if (t[7].ulValueLen != CK_UNAVAILABLE_INFORMATION && t[7].ulValueLen <= HSM_MAX_LABEL) {
		memcpy(a->ki.label, label, t[7].ulValueLen);
		a->ki.label[t[7].ulValueLen] = '\0';
	}
	return 0;
}

int
p11_key_info(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN],
    struct p11_key_info *out)
{
	struct info_arg a;
	int r;

	memset(out, 0, sizeof(*out));
	if (tok == NULL || keyid == NULL)
		return hsm_err(HSM_EINVAL, "p11_key_info: missing argument");
	memset(&a, 0, sizeof(a));
	memcpy(a.keyid, keyid, HSM_KEYID_LEN);
	if ((r = with_session(tok, op_key_info, &a)) != 0)
		return r;
	*out = a.ki;
	return 0;
}

/* ---- replication: wrap for another token, unwrap from one ---- */

/* A cached handle is a private object's: all invalid after a logout. */
static void
cache_clear(struct p11_token *tok)
{
	pthread_mutex_lock(&tok->mu);
	memset(tok->cache, 0, sizeof(tok->cache));
	pthread_mutex_unlock(&tok->mu);
}

/* Log in as the security officer on c (no one logged in), with the PIN from so. */
static int
so_login(struct call *c, const struct p11_pin_source *so)
{
	if (so == NULL || (so->file == NULL) == (so->env == NULL))
		return hsm_err(HSM_EPERM, "wrapping a key for another token needs the security "
		    "officer's PIN (a file or an environment variable)");
	return login_as(c->tok, c->s, CKU_SO, so->file, so->env);
}

/* The modulus and exponent of an RSA SubjectPublicKeyInfo (caller frees both). */
static int
rsa_spki(const uint8_t *spki, size_t len, BIGNUM **n, BIGNUM **e)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = len <= HSM_MAX_SPKI ? d2i_PUBKEY(NULL, &p, (long)len) : NULL;
	int r = 0;

	*n = *e = NULL;
	if (pk == NULL || p != spki + len || !EVP_PKEY_is_a(pk, "RSA"))
		r = hsm_err(HSM_EINVAL, "the wrapping key is not an RSA public key");
	else if (EVP_PKEY_get_bits(pk) < 2048 || EVP_PKEY_get_bits(pk) > 4096)
		r = hsm_err(HSM_EINVAL, "the wrapping key has %d bits (2048 to 4096 wanted)",
		    EVP_PKEY_get_bits(pk));
	else if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, e))
		r = hsm_err_ossl(HSM_ECRYPTO, "reading the wrapping key");
	EVP_PKEY_free(pk);
	if (r != 0) {
		BN_free(*n);
		BN_free(*e);
		*n = *e = NULL;
	}
	return r;
}

/* A big-endian copy of bn into a malloc'd buffer. */
static uint8_t *
bn_bytes(const BIGNUM *bn, CK_ULONG *len)
{
	uint8_t *b = malloc((size_t)BN_num_bytes(bn) + 1);

	*len = b != NULL ? (CK_ULONG)BN_bn2bin(bn, b) : 0;
	return b;
}

struct wrap_arg {
	const struct p11_pin_source *so;
	uint8_t keyid[HSM_KEYID_LEN];
	const uint8_t *target;
	size_t target_len;
	struct hsm_wrapped *out;
};

/*
 * As the SO (logged in on c): the target's public key as a trusted session
 * object, a trusted AES-256 session key only trusted keys may wrap, and
 * that key wrapped under the target's (*aes stays, for the user's wrap).
 */
static int
so_transport(struct call *c, struct wrap_arg *a, CK_OBJECT_HANDLE *aes)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS pubcls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE rsa = CKK_RSA;
	CK_ULONG klen = 32, nlen = 0, elen = 0, tl;
	BIGNUM *n = NULL, *e = NULL;
	uint8_t *nb = NULL, *eb = NULL;
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
	CK_MECHANISM agen = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_RSA_PKCS_OAEP_PARAMS op;
	CK_MECHANISM oaep = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
	CK_RV rv;
	int r;

	*aes = CK_INVALID_HANDLE;
	if ((r = rsa_spki(a->target, a->target_len, &n, &e)) != 0)
		return r;
	if ((nb = bn_bytes(n, &nlen)) == NULL || (eb = bn_bytes(e, &elen)) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	{
		CK_ATTRIBUTE pt[] = {
			{ CKA_CLASS, &pubcls, sizeof(pubcls) }, { CKA_KEY_TYPE, &rsa, sizeof(rsa) },
			{ CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_WRAP, &yes, sizeof(yes) }, { CKA_ENCRYPT, &no, sizeof(no) },
			{ CKA_VERIFY, &no, sizeof(no) }, { CKA_TRUSTED, &yes, sizeof(yes) },
			{ CKA_MODULUS, nb, nlen }, { CKA_PUBLIC_EXPONENT, eb, elen },
		};
		CK_ATTRIBUTE at[] = {
			{ CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_VALUE_LEN, &klen, sizeof(klen) }, { CKA_SENSITIVE, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &yes, sizeof(yes) }, { CKA_WRAP, &yes, sizeof(yes) },
			{ CKA_UNWRAP, &no, sizeof(no) }, { CKA_ENCRYPT, &no, sizeof(no) },
			{ CKA_DECRYPT, &no, sizeof(no) }, { CKA_TRUSTED, &yes, sizeof(yes) },
			{ CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) },
		};

		if ((rv = c->f->C_CreateObject(c->s, pt, sizeof(pt) / sizeof(pt[0]), &pub)) != CKR_OK) {
			r = ck(c, rv, "C_CreateObject(trusted wrapping key)");
			goto out;
		}
		if ((rv = c->f->C_GenerateKey(c->s, &agen, at, sizeof(at) / sizeof(at[0]), aes)) !=
		    CKR_OK) {
			r = ck(c, rv, "C_GenerateKey(AES transport key)");
			goto out;
		}
	}
	/* RSA-OAEP with SHA-256; SoftHSM2 2.6 knows only SHA-1 for OAEP. */
	for (int h = HSM_OAEP_SHA256; h >= HSM_OAEP_SHA1; h--) {
		op.hashAlg = h == HSM_OAEP_SHA256 ? CKM_SHA256 : CKM_SHA_1;
		op.mgf = h == HSM_OAEP_SHA256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1;
		op.source = CKZ_DATA_SPECIFIED;
		op.pSourceData = NULL;
		op.ulSourceDataLen = 0;
		tl = sizeof(a->out->transport);
		rv = c->f->C_WrapKey(c->s, &oaep, pub, *aes, a->out->transport, &tl);
		a->out->oaep = (uint8_t)h;
		if (rv != CKR_ARGUMENTS_BAD && rv != CKR_MECHANISM_PARAM_INVALID)
			break;
	}
	if (rv != CKR_OK) {
		r = ck(c, rv, "C_WrapKey(RSA-OAEP)");
		goto out;
	}
	a->out->tlen = tl;
	r = 0;
 out:
	if (pub != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, pub);
	BN_free(n);
	BN_free(e);
	free(nb);
	free(eb);
	return r;
}

static int
op_wrap(struct call *c, void *v)
{
	struct wrap_arg *a = v;
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE aes = CK_INVALID_HANDLE;
	struct keyent ke;
	CK_ULONG kl;
	CK_RV rv;
	int r, r2;

	/* The key exists, before the login changes. */
	if ((r = find_key(c, a->keyid, &ke)) != 0)
		return r;
	if ((rv = c->f->C_Logout(c->s)) != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN)
		return ck(c, rv, "C_Logout");
	cache_clear(c->tok);
	if ((r = so_login(c, a->so)) == 0) {
		r = so_transport(c, a, &aes);
		(void)c->f->C_Logout(c->s);
	}
	/* The user again, whatever happened: the keyholder goes on serving. */
	if ((r2 = login(c->tok, c->s)) != 0 && r == 0)
		r = r2;
	if (r == 0 && (r = find_key(c, a->keyid, &ke)) == 0) {
		kl = sizeof(a->out->key);
		rv = c->f->C_WrapKey(c->s, &kwp, aes, ke.h, a->out->key, &kl);
		if (rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE)
			r = hsm_err(HSM_EPERM, "the token refuses to wrap this key (%s): it is not "
			    "extractable, or only to keys its security officer trusts", ckr_name(rv));
		else if (rv != CKR_OK)
			r = ck(c, rv, "C_WrapKey(AES key wrap with padding)");
		else
			a->out->klen = kl;
	}
	if (aes != CK_INVALID_HANDLE && (rv = c->f->C_DestroyObject(c->s, aes)) != CKR_OK) {
		/* Closing the session destroys it: never leave a trusted key behind. */
		c->dead = true;
		if (r == 0)
			r = ck(c, rv, "C_DestroyObject(AES transport key)");
	}
	return r;
}

int
p11_wrap(struct p11_token *tok, const struct p11_pin_source *so,
    const uint8_t keyid[HSM_KEYID_LEN], const uint8_t *target_spki, size_t target_len,
    struct hsm_wrapped *out)
{
	struct wrap_arg a;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (tok == NULL || keyid == NULL || target_spki == NULL || out == NULL)
		return hsm_err(HSM_EINVAL, "p11_wrap: missing argument");
	memset(&a, 0, sizeof(a));
	a.so = so;
	memcpy(a.keyid, keyid, HSM_KEYID_LEN);
	a.target = target_spki;
	a.target_len = target_len;
	a.out = out;
	if ((r = with_session(tok, op_wrap, &a)) != 0)
		OPENSSL_cleanse(out, sizeof(*out));
	return r;
}

/* What an unwrapped key is: its kind and the public key object's attributes. */
struct pubparts {
	CK_KEY_TYPE type;
	uint8_t *a, *b;		/* EC: params, point (DER OCTET STRING); RSA: n, e */
	CK_ULONG alen, blen;
};

static void
pubparts_free(struct pubparts *pp)
{
	free(pp->a);
	free(pp->b);
}

/* The public key object's attributes of spki (EC P-256/P-384, RSA 2048..4096). */
static int
pubparts_of(const uint8_t *spki, size_t len, struct pubparts *pp)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = len <= HSM_MAX_SPKI ? d2i_PUBKEY(NULL, &p, (long)len) : NULL;
	unsigned char pt[1 + 2 * 66];
	char group[32];
	size_t gl, ptlen = 0;
	BIGNUM *n = NULL, *e = NULL;
	int r = 0;

	memset(pp, 0, sizeof(*pp));
	if (pk == NULL || p != spki + len) {
		r = hsm_err(HSM_EINVAL, "the key's public half is not a SubjectPublicKeyInfo");
	} else if (EVP_PKEY_is_a(pk, "EC")) {
		const uint8_t *oid = NULL;
		size_t oidlen = 0;

		if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
		    sizeof(group), &gl))
			group[0] = '\0';
		if (strcmp(group, "prime256v1") == 0) {
			oid = oid_p256;
			oidlen = sizeof(oid_p256);
		} else if (strcmp(group, "secp384r1") == 0) {
			oid = oid_p384;
			oidlen = sizeof(oid_p384);
		}
		if (oid == NULL ||
		    !EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
		    sizeof(pt), &ptlen) || ptlen < 65 || ptlen > 127) {
			r = hsm_err(HSM_EUNSUPPORTED, "only EC P-256 and P-384 or RSA keys unwrap here");
		} else if ((pp->a = malloc(oidlen)) == NULL || (pp->b = malloc(ptlen + 2)) == NULL) {
			r = hsm_err(HSM_ENOMEM, "out of memory");
		} else {
			pp->type = CKK_EC;
			memcpy(pp->a, oid, oidlen);
			pp->alen = oidlen;
			/* CKA_EC_POINT: the point in a DER OCTET STRING */
			pp->b[0] = 0x04;
			pp->b[1] = (uint8_t)ptlen;
			memcpy(pp->b + 2, pt, ptlen);
			pp->blen = ptlen + 2;
		}
	} else if (EVP_PKEY_is_a(pk, "RSA")) {
		if (EVP_PKEY_get_bits(pk) < 2048 || EVP_PKEY_get_bits(pk) > 4096 ||
		    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) ||
		    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e))
			r = hsm_err(HSM_EUNSUPPORTED, "an RSA key of 2048 to 4096 bits is wanted");
		else if ((pp->a = bn_bytes(n, &pp->alen)) == NULL ||
		    (pp->b = bn_bytes(e, &pp->blen)) == NULL)
			r = hsm_err(HSM_ENOMEM, "out of memory");
		else
			pp->type = CKK_RSA;
	} else {
		r = hsm_err(HSM_EUNSUPPORTED, "only EC P-256 and P-384 or RSA keys unwrap here");
	}
	BN_free(n);
	BN_free(e);
	EVP_PKEY_free(pk);
	if (r != 0)
		pubparts_free(pp);
	return r;
}

struct unwrap_arg {
	uint8_t wrapkey[HSM_KEYID_LEN];
	const struct hsm_wrapped *w;
	const uint8_t *spki;
	size_t spkilen;
	const char *label;
	uint8_t keyid[HSM_KEYID_LEN];
};

static int
op_unwrap(struct call *c, void *v)
{
	struct unwrap_arg *a = v;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS seccls = CKO_SECRET_KEY, privcls = CKO_PRIVATE_KEY, pubcls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE aestype = CKK_AES;
	CK_RSA_PKCS_OAEP_PARAMS op = {
		a->w->oaep == HSM_OAEP_SHA256 ? CKM_SHA256 : CKM_SHA_1,
		a->w->oaep == HSM_OAEP_SHA256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0,
	};
	CK_MECHANISM oaep = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE wk, aes = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, h;
	CK_ULONG n, llen = a->label != NULL ? strlen(a->label) : 0;
	char label[HSM_MAX_LABEL + 1];
	struct pubparts pp;
	CK_RV rv;
	int r;

	if ((r = pubparts_of(a->spki, a->spkilen, &pp)) != 0)
		return r;
	memcpy(label, a->label != NULL ? a->label : "", llen);
	if ((r = find_by_id(c, CKO_PRIVATE_KEY, a->keyid, &h, 1, &n)) != 0)
		goto out;
	if (n != 0) {
		r = hsm_err(HSM_EEXIST, "token '%s' holds this key already", c->tok->label);
		goto out;
	}
	if ((r = find_by_id(c, CKO_PRIVATE_KEY, a->wrapkey, &wk, 1, &n)) != 0)
		goto out;
	if (n == 0) {
		r = hsm_err(HSM_ENOENT, "token '%s' holds no unwrapping key for this blob "
		    "(was it made for another token?)", c->tok->label);
		goto out;
	}
	{
		CK_ATTRIBUTE at[] = {
			{ CKA_CLASS, &seccls, sizeof(seccls) }, { CKA_KEY_TYPE, &aestype, sizeof(aestype) },
			{ CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_UNWRAP, &yes, sizeof(yes) }, { CKA_WRAP, &no, sizeof(no) },
			{ CKA_ENCRYPT, &no, sizeof(no) }, { CKA_DECRYPT, &no, sizeof(no) },
		};
		CK_ATTRIBUTE kt[] = {
			{ CKA_CLASS, &privcls, sizeof(privcls) }, { CKA_KEY_TYPE, &pp.type, sizeof(pp.type) },
			{ CKA_TOKEN, &yes, sizeof(yes) }, { CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) }, { CKA_SIGN, &yes, sizeof(yes) },
			{ CKA_DECRYPT, &no, sizeof(no) }, { CKA_UNWRAP, &no, sizeof(no) },
			{ CKA_DERIVE, &no, sizeof(no) }, { CKA_ID, a->keyid, HSM_KEYID_LEN },
			{ CKA_LABEL, label, llen },
		};
		CK_ATTRIBUTE pt[] = {
			{ CKA_CLASS, &pubcls, sizeof(pubcls) }, { CKA_KEY_TYPE, &pp.type, sizeof(pp.type) },
			{ CKA_TOKEN, &yes, sizeof(yes) }, { CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_WRAP, &no, sizeof(no) }, { CKA_ID, a->keyid, HSM_KEYID_LEN },
			{ pp.type == CKK_EC ? CKA_EC_PARAMS : CKA_MODULUS, pp.a, pp.alen },
			{ pp.type == CKK_EC ? CKA_EC_POINT : CKA_PUBLIC_EXPONENT, pp.b, pp.blen },
			{ CKA_LABEL, label, llen },
		};

		rv = c->f->C_UnwrapKey(c->s, &oaep, wk, (CK_BYTE_PTR)a->w->transport, a->w->tlen, at,
		    sizeof(at) / sizeof(at[0]), &aes);
		if (rv != CKR_OK) {
			r = ck(c, rv, "C_UnwrapKey(RSA-OAEP transport key)");
			goto out;
		}
		rv = c->f->C_UnwrapKey(c->s, &kwp, aes, (CK_BYTE_PTR)a->w->key, a->w->klen, kt,
		    sizeof(kt) / sizeof(kt[0]) - (llen == 0), &priv);
		if (rv != CKR_OK) {
			r = ck(c, rv, "C_UnwrapKey(AES key wrap with padding)");
			goto out;
		}
		rv = c->f->C_CreateObject(c->s, pt, sizeof(pt) / sizeof(pt[0]) - (llen == 0), &pub);
		if (rv != CKR_OK) {
			r = ck(c, rv, "C_CreateObject(public key)");
			goto out;
		}
	}
	r = 0;
 out:
	if (aes != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, aes);
	if (r != 0 && priv != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, priv);
	if (r != 0 && pub != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, pub);
	pubparts_free(&pp);
	return r;
}

int
p11_unwrap(struct p11_token *tok, const uint8_t wrapkey_id[HSM_KEYID_LEN],
    const struct hsm_wrapped *w, const uint8_t *spki, size_t spkilen, const char *label,
    uint8_t keyid[HSM_KEYID_LEN])
{
	struct unwrap_arg a;
	int r;

	memset(keyid, 0, HSM_KEYID_LEN);
	if (tok == NULL || wrapkey_id == NULL || w == NULL || spki == NULL)
		return hsm_err(HSM_EINVAL, "p11_unwrap: missing argument");
	if (w->tlen == 0 || w->tlen > sizeof(w->transport) || w->klen < 16 ||
	    w->klen > sizeof(w->key) || (w->oaep != HSM_OAEP_SHA1 && w->oaep != HSM_OAEP_SHA256))
		return hsm_err(HSM_EINVAL, "p11_unwrap: malformed wrapped key");
	if (label != NULL && strlen(label) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label longer than %d bytes", HSM_MAX_LABEL);
	memset(&a, 0, sizeof(a));
	memcpy(a.wrapkey, wrapkey_id, HSM_KEYID_LEN);
	a.w = w;
	a.spki = spki;
	a.spkilen = spkilen;
	a.label = label;
	if ((r = sha256(spki, spkilen, a.keyid)) != 0 || (r = with_session(tok, op_unwrap, &a)) != 0)
		return r;
	memcpy(keyid, a.keyid, HSM_KEYID_LEN);
	return 0;
}
