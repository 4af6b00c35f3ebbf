/*
 * p11.c - the one door to PKCS#11 (see p11.h). Every C_* call of the
 * project is in this file and its siblings p11obj.c, p11key.c and
 * p11wrap.c (their shared parts: p11_int.h).
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
#include "p11_int.h"

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

/* ---- error translation ---- */

const char *
p11i_ckr_name(CK_RV rv)
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
	return hsm_err(code, "%s: %s", fn, p11i_ckr_name(rv));
}

/* As ckerr, and note a session the module no longer knows. */
int
p11i_ck(struct call *c, CK_RV rv, const char *fn)
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
		    "PKCS#11 module %s: C_Initialize: %s", m->path, p11i_ckr_name(rv));
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
			    real, p11i_ckr_name(rv));
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

/* ---- token selection and p11i_login ---- */

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
 * Log in as who (CKU_USER or CKU_SO) on session s, with the PIN read from
 * pin_file now, or copied from pin_mem (pin_memlen bytes), or read from
 * pin_env, and wiped after. A PIN the token rejected
 * is never offered again, and the attempt that would lock the PIN is
 * never made.
 */
int
p11i_login_as(struct p11_token *tok, CK_SESSION_HANDLE s, CK_USER_TYPE who, const char *pin_file,
    const char *pin_env, const char *pin_mem, size_t pin_memlen)
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
	else if (pin_mem != NULL)
		r = hsm_secret_dup(pin_mem, pin_memlen, &pin, &len);
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
int
p11i_login(struct p11_token *tok, CK_SESSION_HANDLE s)
{
	return p11i_login_as(tok, s, CKU_USER, tok->pin_file, NULL, tok->pin_mem, tok->pin_len);
}

/* Open a session; log in when the token is not logged in (first or lost p11i_login). */
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
	    (r = p11i_login(tok, s)) != 0)
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
 * device removed, p11i_login gone) is dropped and the operation retried once
 * on a fresh one, which logs in again if needed.
 */
int
p11i_with_session(struct p11_token *tok, int (*fn)(struct call *, void *), void *arg)
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

bool
p11i_cache_get(struct p11_token *tok, const uint8_t *keyid, struct keyent *out)
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

void
p11i_cache_put(struct p11_token *tok, const struct keyent *ke)
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

void
p11i_cache_drop(struct p11_token *tok, const uint8_t *keyid)
{
	pthread_mutex_lock(&tok->mu);
	for (int i = 0; i < KEYCACHE; i++)
		if (tok->cache[i].used && memcmp(tok->cache[i].id, keyid, HSM_KEYID_LEN) == 0)
			memset(&tok->cache[i], 0, sizeof(tok->cache[i]));
	pthread_mutex_unlock(&tok->mu);
}

/* ---- open / close / reset ---- */

/*
 * Serialise token opening (slot scan and p11i_login) across hsmesh processes of
 * this user. SoftHSM2 rewrites its token file in place on every C_Login
 * (truncate, then write): a second process scanning slots at that moment
 * sees no token, CKR_GENERAL_ERROR or an uninitialised PIN. The lock file
 * lives in the user's private directory (hsm_lock_dir_path: created 0700,
 * checked) and is opened without following a link or blocking, and kept
 * only when it is a regular file of ours: a FIFO or a link planted there
 * cannot hang or redirect us. The lock is advisory and bounded: after 2 s,
 * or when the directory is not safe, we go on without it, so a lock held
 * by someone else can delay, never block, a keyholder. Returns an fd to
 * close, or -1.
 */
static int
open_lock(void)
{
	char dir[256];
	int dfd = -1, fd = -1, st;

	if ((st = hsm_lock_dir_path(dir, sizeof(dir))) != 0 ||
	    (st = hsm_private_dir_open(dir, &dfd)) != 0 ||
	    (st = hsm_lockfile_open(dfd, "p11-open.lock", &fd)) != 0) {
		log_warn("token opening not serialised with other processes: %s", hsm_err_msg(st));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	close(dfd);
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
	if ((pin->file != NULL) + (pin->env != NULL) + (pin->value != NULL) != 1)
		return hsm_err(HSM_EINVAL, "PIN source: give exactly one of a file, an environment "
		    "variable or a value");
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
	    (pin->file != NULL && (tok->pin_file = strdup(pin->file)) == NULL)) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto fail;
	}
	/* Taken once: the variable leaves our environment (and /proc/PID/environ) now. */
	if ((pin->env != NULL &&
	    (r = hsm_secret_take_env(pin->env, &tok->pin_mem, &tok->pin_len)) != 0) ||
	    (pin->value != NULL &&
	    (r = hsm_secret_dup(pin->value, pin->value_len, &tok->pin_mem, &tok->pin_len)) != 0))
		goto fail;

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
	/* Linked before p11i_login so a concurrent fork sees our lock. */
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
	hsm_secret_free(tok->pin_mem, tok->pin_len);
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
	hsm_secret_free(tok->pin_mem, tok->pin_len);
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
