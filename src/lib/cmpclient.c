/*
 * cmpclient.c - the agent's CMP client (see cmpclient.h).
 *
 * One OSSL_CMP_CTX per exchange and server. Our transfer callback connects
 * itself (so a refused connection is told apart from a timeout, and a
 * server that could not be reached lets the next one be tried) and hands
 * the connected BIO to OpenSSL's HTTP client, one connection per message
 * (no keep-alive).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cmpclient.h"
#include "cmpder.h"
#include "err.h"
#include "evtype.h"
#include "log.h"
#include "spiffe.h"
#include "svid.h"

_Static_assert(ATTEST_NONCE_LEN == 32, "cmpc_attest_nonce's buffer");

/* One exchange with one server: what the callbacks need and report. */
struct exch {
	const struct cmpc_ca *ca;
	const struct cmpc_server *srv;
	const ASN1_OCTET_STRING *tid;	/* the transactionID, the same with every server */
	/* transfer callback */
	char why[300];			/* its reason */
	int sysfail;			/* the CA answered with failInfo systemFailure */
	/* certConf callback */
	const char *id;
	const uint8_t *spki;
	size_t spkilen;
	int checked, rejected;
	char rejected_why[400];
	STACK_OF(X509) *chain;
};

void
cmpc_server_clear(struct cmpc_server *s)
{
	if (s == NULL)
		return;
	free(s->host);
	free(s->path);
	memset(s, 0, sizeof(*s));
}

static __thread char cmp_last_error[256];

static int
cmp_log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
	if (level <= OSSL_CMP_LOG_ERR)
		snprintf(cmp_last_error, sizeof(cmp_last_error), "%s", msg);
	log_debug("CMP: %s", msg);
	return 1;
}

/* The last OpenSSL error, with its data, as one line; clears the queue. */
static void
ossl_reason(char *out, size_t len)
{
	unsigned long e, last = 0;
	const char *data = NULL, *d;
	int flags;

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &d, &flags)) != 0) {
		log_debug("OpenSSL: %s%s%s", ERR_reason_error_string(e) != NULL ?
		    ERR_reason_error_string(e) : "?", (flags & ERR_TXT_STRING) != 0 ? ": " : "",
		    (flags & ERR_TXT_STRING) != 0 ? d : "");
		/* Keep the first error that says something about the transport. */
		if (last == 0 || ERR_GET_LIB(last) == ERR_LIB_CMP) {
			last = e;
			data = (flags & ERR_TXT_STRING) != 0 ? d : NULL;
		}
	}
	if (last == 0) {
		snprintf(out, len, "%s", cmp_last_error[0] != '\0' ? cmp_last_error : "no answer");
		return;
	}
	snprintf(out, len, "%s%s%s", ERR_reason_error_string(last) != NULL ?
	    ERR_reason_error_string(last) : "error", data != NULL && *data != '\0' ? ": " : "",
	    data != NULL ? data : "");
	ERR_clear_error();
}

/* Why the exchange got no valid answer; clears the error queue. */
static void
unreached_reason(struct exch *x, char *out, size_t len)
{
	if (x->why[0] != '\0') {
		ERR_clear_error();
		snprintf(out, len, "%s", x->why);
	} else {
		ossl_reason(out, len);
	}
}

/*
 * Why connecting failed, from the error queue (which is cleared): a name
 * that does not resolve ("cannot resolve H: <resolver's words>"), a
 * refused or unreachable address (errno), or a timeout.
 */
static void
connect_reason(const struct cmpc_server *s, int timed_out, char *out, size_t len)
{
	unsigned long e;
	int sys = 0, flags, dns = 0;
	const char *data, *what = NULL;
	char gai[128] = "";

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		/* BIO_lookup: the resolver's error text rides on a BIO "system lib" error. */
		if (ERR_GET_LIB(e) == ERR_LIB_BIO && !dns &&
		    (ERR_GET_REASON(e) == BIO_R_LOOKUP_RETURNED_NOTHING ||
		    (ERR_GET_REASON(e) == ERR_R_SYS_LIB && (flags & ERR_TXT_STRING) != 0 &&
		    data != NULL && strstr(data, "getaddrinfo") == NULL && *data != '\0'))) {
			dns = 1;
			snprintf(gai, sizeof(gai), "%s", ERR_GET_REASON(e) == BIO_R_LOOKUP_RETURNED_NOTHING ?
			    "no address" : data);
		} else if (ERR_GET_LIB(e) == ERR_LIB_SYS && sys == 0) {
			sys = ERR_GET_REASON(e);
		} else if (what == NULL && ERR_reason_error_string(e) != NULL) {
			what = ERR_reason_error_string(e);
		}
	}
	if (dns)
		snprintf(out, len, "cannot resolve %s: %s", s->host, gai);
	else if (timed_out)
		snprintf(out, len, "connect to %s:%d: timed out", s->host, s->port);
	else if (sys != 0)
		snprintf(out, len, "connect to %s:%d: %s", s->host, s->port, strerror(sys));
	else
		snprintf(out, len, "connect to %s:%d: %s", s->host, s->port,
		    what != NULL ? what : "failed");
}

/* host as BIO_new_connect takes it: an IPv6 address in brackets. */
static void
host_spec(const struct cmpc_server *s, char *out, size_t len)
{
	snprintf(out, len, strchr(s->host, ':') != NULL ? "[%s]" : "%s", s->host);
}

/* A connected (non-blocking) BIO to x->srv within timeout seconds, or NULL with x->why set. */
static BIO *
connect_srv(struct exch *x, int timeout)
{
	const struct cmpc_server *s = x->srv;
	time_t max_time = time(NULL) + timeout;
	char host[300], port[16];
	BIO *b;

	host_spec(s, host, sizeof(host));
	snprintf(port, sizeof(port), "%d", s->port);
	if ((b = BIO_new_connect(host)) == NULL || BIO_set_conn_port(b, port) <= 0) {
		BIO_free_all(b);
		snprintf(x->why, sizeof(x->why), "out of memory connecting to %s:%d", s->host,
		    s->port);
		return NULL;
	}
	BIO_set_nbio(b, 1);
	for (;;) {
		int rv = BIO_do_connect(b);

		if (rv > 0)
			return b;
		if (!BIO_should_retry(b))
			break;
		if ((rv = BIO_wait(b, max_time, 100)) <= 0) {
			connect_reason(s, rv == 0, x->why, sizeof(x->why));
			BIO_free_all(b);
			return NULL;
		}
	}
	connect_reason(s, 0, x->why, sizeof(x->why));
	BIO_free_all(b);
	return NULL;
}

/* OSSL_CMP_transfer_cb_t: one message over a new connection. */
static OSSL_CMP_MSG *
transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
	static const char ct[] = "application/pkixcmp";
	struct exch *x = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
	const ASN1_ITEM *it = ASN1_ITEM_rptr(OSSL_CMP_MSG);
	int timeout = OSSL_CMP_CTX_get_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT);
	STACK_OF(CONF_VALUE) *headers = NULL;
	BIO *cbio = NULL, *reqbio = NULL, *rsp = NULL;
	OSSL_CMP_MSG *res = NULL;
	char host[300], port[16];

	if (timeout <= 0)
		timeout = CMPC_MSG_TIMEOUT;
	if ((cbio = connect_srv(x, timeout)) == NULL)
		return NULL;
	host_spec(x->srv, host, sizeof(host));
	snprintf(port, sizeof(port), "%d", x->srv->port);
	if (X509V3_add_value("Pragma", "no-cache", &headers) != 1 ||
	    (reqbio = ASN1_item_i2d_mem_bio(it, (const ASN1_VALUE *)req)) == NULL)
		goto out;
	rsp = OSSL_HTTP_transfer(NULL, host, port, x->srv->path, 0, NULL, NULL, cbio, NULL, NULL,
	    NULL, 0, headers, ct, reqbio, ct, 1, CMPC_MAX_RESP, timeout, 0);
	if (rsp != NULL)
		res = (OSSL_CMP_MSG *)ASN1_item_d2i_bio(it, rsp, NULL);
 out:
	BIO_free(rsp);
	BIO_free(reqbio);
	BIO_free_all(cbio);
	sk_CONF_VALUE_pop_free(headers, X509V3_conf_free);
	return res;
}

/* The self-signed certificates of caps, to ca->learn. */
static void
learn_roots(const struct cmpc_ca *ca, STACK_OF(X509) *caps)
{
	STACK_OF(X509) *roots = sk_X509_new_null();

	for (int i = 0; roots != NULL && i < sk_X509_num(caps); i++) {
		X509 *c = sk_X509_value(caps, i);

		if (X509_self_signed(c, 1) == 1 && X509_check_ca(c) != 0 &&
		    !X509_add_cert(roots, c, X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_NO_DUP))
			break;
	}
	if (roots != NULL)
		ca->learn(ca->anchors_arg, roots);
	svid_certs_free(roots);
}

/* certConf callback: accept only a certificate that is a valid SVID for our key. */
static int
certconf_cb(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **txt)
{
	struct exch *x = OSSL_CMP_CTX_get_certConf_cb_arg(ctx);
	STACK_OF(X509) *untrusted = NULL, *caps = NULL, *chain = NULL, *more;
	int r;

	/*
	 * OpenSSL 3.0's only pre-decision (fail_info) is its own comparison of
	 * the certificate's key with ours, which cannot always compare a
	 * keyholder-backed key; svid_verify compares the SPKI bytes instead.
	 */
	(void)fail_info;
	untrusted = OSSL_CMP_CTX_get1_extraCertsIn(ctx);
	caps = OSSL_CMP_CTX_get1_caPubs(ctx);
	if (untrusted == NULL)
		untrusted = sk_X509_new_null();
	for (int i = 0; untrusted != NULL && caps != NULL && i < sk_X509_num(caps); i++) {
		X509 *c = sk_X509_value(caps, i);

		if (X509_up_ref(c) == 1 && !sk_X509_push(untrusted, c))
			X509_free(c);
	}
	more = x->ca->anchors != NULL ? x->ca->anchors(x->ca->anchors_arg) : NULL;
	r = svid_verify_anchors(x->ca->root, more, x->id, cert, untrusted, x->spki, x->spkilen,
	    &chain);
	svid_certs_free(more);
	svid_certs_free(untrusted);
	if (r == 0 && caps != NULL && sk_X509_num(caps) > 0 && x->ca->learn != NULL)
		learn_roots(x->ca, caps);
	svid_certs_free(caps);
	if (r != 0) {
		snprintf(x->rejected_why, sizeof(x->rejected_why), "issued certificate refused: %s",
		    hsm_err_msg(r));
		x->rejected = 1;
		*txt = "certificate is not a valid SVID for the requested identity and key";
		return 1 << OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
	}
	svid_certs_free(x->chain);
	x->chain = chain;
	x->checked = 1;
	return 0;
}

X509_NAME *
cmpc_subject(const char *id)
{
	X509_NAME *name;
	struct spiffe_id sid;

	if (id == NULL || spiffe_id_parse(id, &sid) != 0 || sid.path[0] == '\0' ||
	    (name = X509_NAME_new()) == NULL)
		return NULL;
	if (X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
	    (const unsigned char *)sid.trust_domain, (int)strnlen(sid.trust_domain, 64), -1, 0) != 1 ||
	    X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)sid.path + 1, (int)strnlen(sid.path + 1, 64), -1, 0) != 1) {
		X509_NAME_free(name);
		return NULL;
	}
	return name;
}

/* The anchors learned beside the root (a CA being rotated) into store. */
static int
add_anchors(const struct cmpc_ca *ca, X509_STORE *store)
{
	STACK_OF(X509) *more = ca->anchors != NULL ? ca->anchors(ca->anchors_arg) : NULL;
	int r = 0;

	for (int i = 0; more != NULL && i < sk_X509_num(more) && r == 0; i++)
		if (X509_STORE_add_cert(store, sk_X509_value(more, i)) != 1)
			r = -1;
	svid_certs_free(more);
	return r;
}

/* A CMP context for one exchange with x->srv, its answers checked against the root. */
static int
ctx_new(struct exch *x, OSSL_CMP_CTX **out)
{
	const struct cmpc_ca *ca = x->ca;
	OSSL_CMP_CTX *ctx;
	X509_STORE *store = NULL;

	*out = NULL;
	if ((ctx = OSSL_CMP_CTX_new(NULL, NULL)) == NULL || (store = X509_STORE_new()) == NULL)
		goto fail;
	if (X509_STORE_add_cert(store, ca->root) != 1 || add_anchors(ca, store) != 0 ||
	    OSSL_CMP_CTX_set_log_cb(ctx, cmp_log_cb) != 1 ||
	    OSSL_CMP_CTX_set_log_verbosity(ctx, ca->debug ? OSSL_CMP_LOG_DEBUG : OSSL_CMP_LOG_ERR) != 1 ||
	    OSSL_CMP_CTX_set1_server(ctx, x->srv->host) != 1 ||
	    OSSL_CMP_CTX_set_serverPort(ctx, x->srv->port) != 1 ||
	    OSSL_CMP_CTX_set1_serverPath(ctx, x->srv->path) != 1 ||
	    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer) != 1 ||
	    OSSL_CMP_CTX_set_transfer_cb_arg(ctx, x) != 1 ||
	    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT,
	    ca->msg_timeout > 0 ? ca->msg_timeout : CMPC_MSG_TIMEOUT) != 1 ||
	    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_TOTAL_TIMEOUT,
	    ca->total_timeout > 0 ? ca->total_timeout : CMPC_TOTAL_TIMEOUT) != 1 ||
	    /*
	     * The CA answers what it will not or cannot sign for (a request
	     * that proves nothing, its keyholder restarting) with an
	     * unprotected error: read its words. A negative answer is all an
	     * unprotected message can carry; nothing unprotected is accepted.
	     */
	    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_ERRORS, 1) != 1 ||
	    OSSL_CMP_CTX_set0_trustedStore(ctx, store) != 1 ||
	    (x->tid != NULL && OSSL_CMP_CTX_set1_transactionID(ctx, x->tid) != 1))
		goto fail;
	*out = ctx;
	return 0;
 fail:
	X509_STORE_free(store);
	OSSL_CMP_CTX_free(ctx);
	return hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
}

/* Protection (and, unprotected, the sender named by id's subject); recipient when set. */
static int
set_protection(OSSL_CMP_CTX *ctx, const struct cmpc_protect *p, const char *id,
    const X509_NAME *recipient)
{
	X509_NAME *name = NULL;
	int ok = 1;

	switch (p->kind) {
	case CMPC_UNPROTECTED:
		ok = (name = cmpc_subject(id)) != NULL &&
		    OSSL_CMP_CTX_set1_subjectName(ctx, name) == 1 &&
		    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 1) == 1;
		break;
	case CMPC_MAC:
		if (p->ref == NULL || p->reflen == 0 || p->secret == NULL || p->secretlen == 0 ||
		    p->reflen > INT32_MAX || p->secretlen > INT32_MAX)
			return hsm_err(HSM_EINVAL, "CMP set-up: an empty join token reference or secret");
		ok = OSSL_CMP_CTX_set1_referenceValue(ctx, p->ref, (int)p->reflen) == 1 &&
		    OSSL_CMP_CTX_set1_secretValue(ctx, p->secret, (int)p->secretlen) == 1;
		break;
	case CMPC_SIGNED:
		if (p->cert == NULL || p->key == NULL)
			return hsm_err(HSM_EINVAL, "CMP set-up: no signer certificate or key");
		ok = OSSL_CMP_CTX_set1_cert(ctx, p->cert) == 1 &&
		    OSSL_CMP_CTX_set1_pkey(ctx, p->key) == 1;
		break;
	default:
		return hsm_err(HSM_EINVAL, "CMP set-up: unknown protection %d", (int)p->kind);
	}
	X509_NAME_free(name);
	if (ok && recipient != NULL)
		ok = OSSL_CMP_CTX_set1_recipient(ctx, recipient) == 1;
	return ok ? 0 : hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
}

/*
 * The certificate request message: template (subject, the new key's SPKI,
 * the URI SAN, for kur the issuer and oldCertID) and a signature POPO by
 * the new key.
 */
static int
build_crm(const struct cmpc_certreq *rq, enum cmpc_outcome *how, OSSL_CRMF_MSG **out)
{
	OSSL_CRMF_MSG *crm = NULL;
	OSSL_CRMF_CERTID *cid = NULL;
	X509_EXTENSIONS *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *uri = NULL;
	EVP_PKEY *pub = NULL;
	const unsigned char *p = rq->spki;
	const EVP_MD *md;
	const X509_NAME *subject = NULL, *issuer = NULL;
	X509_NAME *name = NULL;
	const char *id = rq->spiffe_id;
	int r = HSM_ECRYPTO;

	*out = NULL;
	*how = CMPC_FAILED;
	if (rq->spkilen > LONG_MAX || (pub = d2i_PUBKEY(NULL, &p, (long)rq->spkilen)) == NULL ||
	    (crm = OSSL_CRMF_MSG_new()) == NULL || OSSL_CRMF_MSG_set_certReqId(crm, 0) != 1)
		goto fail;
	/* The POPO's hash: SHA-384 for an EC P-384 key, SHA-256 otherwise. */
	md = EVP_PKEY_is_a(pub, "EC") && EVP_PKEY_get_bits(pub) == 384 ? EVP_sha384() :
	    EVP_sha256();
	/*
	 * A signature POPO needs a subject (RFC 4211 4.1: else POPOSigningKeyInput,
	 * which OpenSSL does not verify). The SPIFFE ID itself is the URI SAN;
	 * the CA may well rewrite the subject.
	 */
	if ((name = cmpc_subject(id)) == NULL)
		goto fail;
	subject = name;
	if (rq->type == CMPC_KUR) {
		if (X509_NAME_entry_count(X509_get_subject_name(rq->oldcert)) > 0)
			subject = X509_get_subject_name(rq->oldcert);
		issuer = X509_get_issuer_name(rq->oldcert);
		if ((cid = OSSL_CRMF_CERTID_gen(issuer, X509_get0_serialNumber(rq->oldcert))) == NULL ||
		    OSSL_CRMF_MSG_set1_regCtrl_oldCertID(crm, cid) != 1)
			goto fail;
	}
	if (OSSL_CRMF_CERTTEMPLATE_fill(OSSL_CRMF_MSG_get0_tmpl(crm), pub, subject, issuer,
	    NULL) != 1)
		goto fail;
	if ((gens = sk_GENERAL_NAME_new_null()) == NULL || (uri = ASN1_IA5STRING_new()) == NULL ||
	    (gn = GENERAL_NAME_new()) == NULL || ASN1_STRING_set(uri, id, (int)strlen(id)) != 1)
		goto fail;
	GENERAL_NAME_set0_value(gn, GEN_URI, uri);
	uri = NULL;
	if (!sk_GENERAL_NAME_push(gens, gn))
		goto fail;
	gn = NULL;
	if (X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, subject == NULL,
	    X509V3_ADD_DEFAULT) != 1 || OSSL_CRMF_MSG_set0_extensions(crm, exts) != 1)
		goto fail;
	exts = NULL;
	if (OSSL_CRMF_MSG_create_popo(OSSL_CRMF_POPO_SIGNATURE, crm, rq->key, md, NULL,
	    NULL) != 1) {
		*how = CMPC_BADKEY;
		r = hsm_err_ossl(HSM_ECRYPTO, "signing the proof of possession through the keyholder");
		goto out;
	}
	*out = crm;
	crm = NULL;
	*how = CMPC_OK;
	r = 0;
	goto out;
 fail:
	r = hsm_err_ossl(HSM_ECRYPTO, "building the certificate request");
 out:
	OSSL_CRMF_MSG_free(crm);
	OSSL_CRMF_CERTID_free(cid);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	GENERAL_NAME_free(gn);
	ASN1_IA5STRING_free(uri);
	EVP_PKEY_free(pub);
	X509_NAME_free(name);
	return r;
}

/* One certificate request to one server. */
static int
certreq_once(struct exch *x, const struct cmpc_certreq *rq, const OSSL_CRMF_MSG *crm,
    enum cmpc_outcome *how, X509 **cert)
{
	OSSL_CMP_CTX *ctx = NULL;
	OSSL_CMP_ITAV *itav;
	X509 *got;
	char reason[400];
	int r, status;

	*how = CMPC_FAILED;
	cmp_last_error[0] = '\0';
	if ((r = ctx_new(x, &ctx)) != 0)
		return r;
	if (OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1) != 1 ||
	    OSSL_CMP_CTX_set_certConf_cb(ctx, certconf_cb) != 1 ||
	    OSSL_CMP_CTX_set_certConf_cb_arg(ctx, x) != 1 || EVP_PKEY_up_ref(rq->key) != 1)
		goto ossl_fail;
	if (OSSL_CMP_CTX_set0_newPkey(ctx, 1, rq->key) != 1) {
		EVP_PKEY_free(rq->key);
		goto ossl_fail;
	}
	/* A kur's recipient is its signer's issuer; the others name the root. */
	if ((r = set_protection(ctx, &rq->prot, rq->spiffe_id, rq->type == CMPC_KUR ? NULL :
	    X509_get_subject_name(x->ca->root))) != 0)
		goto out;
	if (rq->evidence_oid != NULL) {
		itav = cmp_itav_new(rq->evidence_oid, V_ASN1_OCTET_STRING, rq->evidence,
		    rq->evidencelen);
		if (itav == NULL || OSSL_CMP_CTX_push0_geninfo_ITAV(ctx, itav) != 1) {
			OSSL_CMP_ITAV_free(itav);
			goto ossl_fail;
		}
	}
	got = OSSL_CMP_exec_certreq(ctx, rq->type == CMPC_KUR ? OSSL_CMP_KUR :
	    rq->type == CMPC_CR ? OSSL_CMP_CR : OSSL_CMP_IR, crm);
	if (got == NULL) {
		status = OSSL_CMP_CTX_get_status(ctx);
		if (x->rejected) {
			ERR_clear_error();
			*how = CMPC_REJECTED;
			r = hsm_err(HSM_EPOLICY, "%s", x->rejected_why);
		} else if (status < 0 || status == OSSL_CMP_PKISTATUS_accepted ||
		    status == OSSL_CMP_PKISTATUS_grantedWithMods) {
			/* No (valid) answer: transport error, timeout, bad protection. */
			unreached_reason(x, reason, sizeof(reason));
			*how = CMPC_UNREACHABLE;
			r = hsm_err(HSM_EIO, "%s", reason);
		} else {
			char buf[512];

			ERR_clear_error();
			*how = CMPC_REFUSED;
			x->sysfail = (OSSL_CMP_CTX_get_failInfoCode(ctx) &
			    (1 << OSSL_CMP_PKIFAILUREINFO_systemFailure)) != 0;
			r = hsm_err(HSM_EPOLICY, "CA refused: %s",
			    OSSL_CMP_CTX_snprint_PKIStatus(ctx, buf, sizeof(buf)) != NULL ? buf :
			    "rejection");
		}
		goto out;
	}
	if (!x->checked) {
		/* The library did not call us (it always should): refuse. */
		*how = CMPC_REJECTED;
		r = hsm_err(HSM_EPOLICY, "issued certificate was not checked");
		goto out;
	}
	if (X509_up_ref(got) != 1)
		goto ossl_fail;
	*cert = got;
	*how = CMPC_OK;
	r = 0;
	goto out;
 ossl_fail:
	r = hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
 out:
	OSSL_CMP_CTX_free(ctx);
	return r;
}

/*
 * Whether a failed exchange with one CA address lets the next one be
 * tried: no valid answer came (unreachable, connection closed, HTTP
 * error, timeout, bad protection), or the CA answered that it failed
 * itself (systemFailure: its ledger or keyholder). A refusal is final.
 */
static int
next_server(const struct exch *x, enum cmpc_outcome how)
{
	return how == CMPC_UNREACHABLE || (how == CMPC_REFUSED && x->sysfail);
}

/*
 * The transactionID, kept for every server a request is sent to: the
 * caller's (given, glen > 0), else a fresh one.
 */
static ASN1_OCTET_STRING *
new_tid(const uint8_t *given, size_t glen)
{
	unsigned char b[16];
	ASN1_OCTET_STRING *tid;

	if (given == NULL || glen == 0 || glen > INT_MAX) {
		if (RAND_bytes(b, sizeof(b)) != 1)
			return NULL;
		given = b;
		glen = sizeof(b);
	}
	if ((tid = ASN1_OCTET_STRING_new()) == NULL)
		return NULL;
	if (ASN1_OCTET_STRING_set(tid, given, (int)glen) != 1) {
		ASN1_OCTET_STRING_free(tid);
		return NULL;
	}
	return tid;
}

int
cmpc_certreq(const struct cmpc_ca *ca, const struct cmpc_certreq *rq, enum cmpc_outcome *how,
    X509 **cert, STACK_OF(X509) **chain)
{
	OSSL_CRMF_MSG *crm = NULL;
	ASN1_OCTET_STRING *tid = NULL;
	int r;

	*cert = NULL;
	*chain = NULL;
	*how = CMPC_FAILED;
	if (ca->nservers == 0 || rq->key == NULL || rq->spki == NULL ||
	    (rq->type == CMPC_KUR && rq->oldcert == NULL))
		return hsm_err(HSM_EINVAL, "CMP set-up: no CA address, key or old certificate");
	if ((tid = new_tid(rq->tid, rq->tidlen)) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "CMP set-up: transactionID");
	if ((r = build_crm(rq, how, &crm)) != 0)
		goto out;
	for (size_t i = 0; i < ca->nservers; i++) {
		struct exch x = { .ca = ca, .srv = &ca->servers[i], .tid = tid, .id = rq->spiffe_id,
		    .spki = rq->spki, .spkilen = rq->spkilen };

		r = certreq_once(&x, rq, crm, how, cert);
		if (r == 0) {
			*chain = x.chain;
			x.chain = NULL;
		}
		svid_certs_free(x.chain);
		if (r == 0 || !next_server(&x, *how))
			break;
		if (i + 1 < ca->nservers)
			log_info("CMP: %s:%d: %s; trying the next CA address", x.srv->host, x.srv->port,
			    hsm_err_msg(r));
	}
 out:
	OSSL_CRMF_MSG_free(crm);
	ASN1_OCTET_STRING_free(tid);
	return r;
}

/* One genm to one server. */
/* The CA's revocation sequence from a genp's HSM_OID_CRL_HINT, or -1 without one. */
static int64_t
crl_hint(const STACK_OF(OSSL_CMP_ITAV) *got)
{
	const OSSL_CMP_ITAV *itav = cmp_itav_find(got, HSM_OID_CRL_HINT);
	const ASN1_TYPE *v = itav != NULL ? OSSL_CMP_ITAV_get0_value(itav) : NULL;
	uint64_t u;

	if (v == NULL || v->type != V_ASN1_INTEGER ||
	    !ASN1_INTEGER_get_uint64(&u, v->value.integer) || u > INT64_MAX) {
		ERR_clear_error();
		return -1;
	}
	return (int64_t)u;
}

static int
genm_once(struct exch *x, const char *id, const struct cmpc_protect *prot, const char *oid,
    enum cmpc_outcome *how, uint8_t **value, size_t *len, int64_t *hint)
{
	OSSL_CMP_CTX *ctx = NULL;
	OSSL_CMP_ITAV *itav;
	STACK_OF(OSSL_CMP_ITAV) *got = NULL;
	const ASN1_TYPE *v;
	char reason[400];
	int r;

	*how = CMPC_FAILED;
	cmp_last_error[0] = '\0';
	if ((r = ctx_new(x, &ctx)) != 0)
		return r;
	if ((itav = cmp_itav_new(oid, V_ASN1_OCTET_STRING, NULL, 0)) == NULL ||
	    OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav) != 1) {
		OSSL_CMP_ITAV_free(itav);
		r = hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
		goto out;
	}
	if ((r = set_protection(ctx, prot, id, X509_get_subject_name(x->ca->root))) != 0)
		goto out;
	if ((got = OSSL_CMP_exec_GENM_ses(ctx)) == NULL) {
		unreached_reason(x, reason, sizeof(reason));
		*how = CMPC_UNREACHABLE;
		r = hsm_err(HSM_EIO, "%s", reason);
		goto out;
	}
	if (hint != NULL)
		*hint = crl_hint(got);
	itav = cmp_itav_find(got, oid);
	v = itav != NULL ? OSSL_CMP_ITAV_get0_value(itav) : NULL;
	/* An OCTET STRING's content, or a SEQUENCE's whole encoding. */
	if (v == NULL || (v->type != V_ASN1_OCTET_STRING && v->type != V_ASN1_SEQUENCE)) {
		*how = CMPC_REFUSED;
		r = hsm_err(HSM_ENOENT, "the CA sent no %s", oid);
		goto out;
	}
	if ((*value = malloc((size_t)ASN1_STRING_length(v->value.octet_string) + 1)) == NULL) {
		r = HSM_ENOMEM;
		goto out;
	}
	*len = (size_t)ASN1_STRING_length(v->value.octet_string);
	memcpy(*value, ASN1_STRING_get0_data(v->value.octet_string), *len);
	*how = CMPC_OK;
	r = 0;
 out:
	sk_OSSL_CMP_ITAV_pop_free(got, OSSL_CMP_ITAV_free);
	OSSL_CMP_CTX_free(ctx);
	return r;
}

int
cmpc_genm(const struct cmpc_ca *ca, const char *spiffe_id, const struct cmpc_protect *prot,
    const char *oid, enum cmpc_outcome *how, uint8_t **value, size_t *len, int64_t *hint)
{
	int r = HSM_EINVAL;

	if (hint != NULL)
		*hint = -1;
	*value = NULL;
	*len = 0;
	*how = CMPC_FAILED;
	if (ca->nservers == 0)
		return hsm_err(HSM_EINVAL, "CMP set-up: no CA address");
	for (size_t i = 0; i < ca->nservers; i++) {
		struct exch x = { .ca = ca, .srv = &ca->servers[i] };

		r = genm_once(&x, spiffe_id, prot, oid, how, value, len, hint);
		if (r == 0 || !next_server(&x, *how))
			break;
	}
	return r;
}

int
cmpc_cert_seq_parse(const uint8_t *der, size_t len, STACK_OF(X509) **out)
{
	STACK_OF(X509) *certs = NULL;
	const unsigned char *p = der, *end;
	long clen;
	int tag, cls;

	*out = NULL;
	if (der == NULL || len == 0 || len > LONG_MAX ||
	    (ASN1_get_object(&p, &clen, &tag, &cls, (long)len) & 0x80) ||
	    tag != V_ASN1_SEQUENCE || cls != V_ASN1_UNIVERSAL || clen > (long)len - (p - der))
		return hsm_err(HSM_EPROTO, "the CA's certificates do not parse");
	end = p + clen;
	if ((certs = sk_X509_new_null()) == NULL)
		return HSM_ENOMEM;
	while (p < end) {
		X509 *x = sk_X509_num(certs) < CMPC_CERT_SEQ_MAX ? d2i_X509(NULL, &p, end - p) : NULL;

		if (x == NULL || !sk_X509_push(certs, x)) {
			X509_free(x);
			svid_certs_free(certs);
			ERR_clear_error();
			return hsm_err(HSM_EPROTO, "the CA's certificates do not parse");
		}
	}
	*out = certs;
	return 0;
}

int
cmpc_refresh_anchors(const struct cmpc_ca *ca, const char *spiffe_id,
    const struct cmpc_protect *prot, enum cmpc_outcome *how)
{
	STACK_OF(X509) *certs = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	int r;

	if (ca->learn == NULL)
		return 0;
	if ((r = cmpc_genm(ca, spiffe_id, prot, CMPC_OID_CA_CERTS, how, &der, &len, NULL)) == 0 &&
	    (r = cmpc_cert_seq_parse(der, len, &certs)) == 0)
		learn_roots(ca, certs);
	svid_certs_free(certs);
	free(der);
	return r;
}

int
cmpc_attest_nonce(const struct cmpc_ca *ca, const char *spiffe_id, enum cmpc_outcome *how,
    uint8_t nonce[32])
{
	struct cmpc_protect none = { .kind = CMPC_UNPROTECTED };
	uint8_t *v = NULL;
	size_t len = 0;
	char why[400];
	int r;

	r = cmpc_genm(ca, spiffe_id, &none, HSM_OID_ATTEST_NONCE, how, &v, &len, NULL);
	if (r == 0 && len == ATTEST_NONCE_LEN) {
		memcpy(nonce, v, ATTEST_NONCE_LEN);
	} else if (r == 0 || *how == CMPC_REFUSED) {
		*how = CMPC_REFUSED;
		r = hsm_err(HSM_EPROTO, "the CA sent no attestation nonce (is attestation "
		    "configured in its ca.yaml?)");
	} else if (*how == CMPC_UNREACHABLE) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = hsm_err(HSM_EIO, "asking the CA for an attestation nonce: %s", why);
	}
	free(v);
	return r;
}
