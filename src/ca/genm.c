/*
 * genm.c - general messages of `hsmesh ca serve` (cmp.h): an attestation
 * nonce, a node's registration entries with the CRL push hint, or the CA
 * certificates (id-it-caCerts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/cmp.h>

#include "attest.h"
#include "audit.h"
#include "ca.h"
#include "cmp.h"
#include "cmpder.h"
#include "entries.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "selector.h"

#define OID_IT_CA_CERTS "1.3.6.1.5.5.7.4.17"	/* id-it-caCerts, RFC 9483 4.3.1 */

/* A genp body of one ITAV (cmp_itav_new). */
static int
genp_one(const char *oid, int vtype, const uint8_t *data, size_t len,
    STACK_OF(OSSL_CMP_ITAV) **out)
{
	OSSL_CMP_ITAV *itav = cmp_itav_new(oid, vtype, data, len);

	if (itav == NULL || (*out = sk_OSSL_CMP_ITAV_new_null()) == NULL ||
	    !sk_OSSL_CMP_ITAV_push(*out, itav)) {
		sk_OSSL_CMP_ITAV_free(*out);
		*out = NULL;
		OSSL_CMP_ITAV_free(itav);
		return 0;
	}
	return 1;
}

/* A node's entries, collected from the ledger for the genp. */
struct collect {
	const char *node;
	int64_t max_ttl;
	struct entry_list *l;
	size_t cap;
};

/* One line of an entry's selectors after another into set. */
static int
selectors_of(const char *text, struct sel_set *set)
{
	char line[SEL_TEXT_MAX + 1];
	int r;

	for (const char *p = text; *p != '\0'; p += *p == '\n') {
		size_t l = strcspn(p, "\n");

		if (l > SEL_TEXT_MAX)
			return HSM_EINVAL;
		memcpy(line, p, l);
		line[l] = '\0';
		if ((r = sel_set_add(set, line)) != 0)
			return r;
		p += l;
	}
	return 0;
}

static int
collect_one(const struct ledger_entry *e, void *arg)
{
	struct collect *c = arg;
	struct entry *x, *v;
	int r;

	if (!ledger_entry_covers(e, c->node))
		return 0;
	if (c->l->n == ENTRIES_MAX)
		return hsm_err(HSM_EPOLICY, "more than %d entries for one node", ENTRIES_MAX);
	if (c->l->n == c->cap) {
		c->cap = c->cap == 0 ? 16 : 2 * c->cap;
		if ((v = realloc(c->l->v, c->cap * sizeof(*v))) == NULL)
			return HSM_ENOMEM;
		c->l->v = v;
	}
	x = &c->l->v[c->l->n++];
	memset(x, 0, sizeof(*x));
	memcpy(x->id, e->id, sizeof(e->id));
	x->ttl = e->ttl < c->max_ttl ? e->ttl : c->max_ttl;
	if ((x->spiffe_id = strdup(e->spiffe_id)) == NULL)
		return HSM_ENOMEM;
	if ((r = selectors_of(e->selectors, &x->sel)) != 0)
		return r;
	return 0;
}

/*
 * The push hint (docs/PROTOCOL.md, "Revocation"): beside a node's entries,
 * an ITAV HSM_OID_CRL_HINT whose value is an INTEGER, the ledger's
 * revocation sequence; an agent whose CRL reflects a lower one fetches the
 * CRL now. Old agents look for their own ITAV only. 1, or 0 when it
 * cannot be added (then the genp fails like any other).
 */
static int
genp_crl_hint(struct txn *t, STACK_OF(OSSL_CMP_ITAV) *out)
{
	OSSL_CMP_ITAV *itav = NULL;
	ASN1_INTEGER *ai = NULL;
	ASN1_TYPE *v = NULL;
	ASN1_OBJECT *oid = NULL;
	uint64_t seq;

	if (ledger_revocation_seq(t->s->cfg->ledger, &seq) != 0) {
		log_warn("no CRL hint for %s: %s", t->peer, hsm_err_msg(HSM_EIO));
		return 1;	/* the entries still go out; the agent's schedule remains */
	}
	if ((ai = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set_uint64(ai, seq) ||
	    (v = ASN1_TYPE_new()) == NULL || (oid = OBJ_txt2obj(HSM_OID_CRL_HINT, 1)) == NULL)
		goto fail;
	ASN1_TYPE_set(v, V_ASN1_INTEGER, ai);
	ai = NULL;
	if ((itav = OSSL_CMP_ITAV_create(oid, v)) == NULL)
		goto fail;
	oid = NULL;
	v = NULL;
	if (!sk_OSSL_CMP_ITAV_push(out, itav))
		goto fail;
	return 1;
 fail:
	OSSL_CMP_ITAV_free(itav);
	ASN1_TYPE_free(v);
	ASN1_OBJECT_free(oid);
	ASN1_INTEGER_free(ai);
	return 0;
}

/*
 * The genp value for a node's genm of HSM_OID_ENTRIES: the DER of its
 * registration entries (entries.h). Only a current node certificate gets
 * them; anything else is refused and audited. 1 with *out set, else 0.
 */
static int
genp_entries(struct txn *t, STACK_OF(OSSL_CMP_ITAV) **out)
{
	struct collect c = { .node = t->signer_id, .max_ttl = t->s->cfg->max_ttl };
	char buf[160];
	uint8_t *der = NULL;
	size_t len = 0;
	int r, ok = 0;

	if (t->auth != AUTH_CERT || t->signer_kind != LEDGER_NODE ||
	    cmp_signer_refusal(t, buf, sizeof(buf)) != NULL) {
		/* The library answers with an error message; the refusal is logged and audited. */
		OSSL_CMP_PKISI_free(cmp_refuse(t, "genm", OSSL_CMP_PKIFAILUREINFO_notAuthorized,
		    t->auth != AUTH_CERT || t->signer_kind != LEDGER_NODE ?
		    "registration entries are for a node, signing with its certificate" :
		    cmp_signer_refusal(t, buf, sizeof(buf))));
		return 0;
	}
	if ((c.l = calloc(1, sizeof(*c.l))) == NULL || (c.l->node = strdup(t->signer_id)) == NULL) {
		r = HSM_ENOMEM;
		goto out;
	}
	c.l->issued = (int64_t)time(NULL);
	c.l->refresh = CMP_ENTRIES_REFRESH;
	if ((r = ledger_entry_list(t->s->cfg->ledger, NULL, collect_one, &c)) != 0 ||
	    (r = entries_encode(c.l, &der, &len)) != 0)
		goto out;
	log_debug("%zu registration entr%s for node %s (%s)", c.l->n, c.l->n == 1 ? "y" : "ies",
	    t->signer_id, t->peer);
	ok = genp_one(HSM_OID_ENTRIES, V_ASN1_OCTET_STRING, der, len, out) &&
	    genp_crl_hint(t, *out);
 out:
	if (r != 0) {
		snprintf(buf, sizeof(buf), "registration entries: %s", hsm_err_msg(r));
		audit_event(t->s->cfg->audit, "error", "op", "genm", "peer", t->peer, "id",
		    t->signer_id, "reason", buf, NULL);
		log_warn("%s", buf);
	}
	OPENSSL_free(der);
	entries_free(c.l);
	return ok;
}

/*
 * genm: an attestation nonce (HSM_OID_ATTEST_NONCE, OCTET STRING of 32
 * bytes, evtype.h) when asked for one; a node's registration entries
 * (HSM_OID_ENTRIES) when a node asks for them; otherwise id-it-caCerts
 * (RFC 9483 4.3.1) with our CA certificate and the chain above it.
 */
int
cmp_genm(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
    STACK_OF(OSSL_CMP_ITAV) **out)
{
	struct txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	unsigned char *der = NULL, *buf = NULL, *p;
	uint8_t nonce[ATTEST_NONCE_LEN];
	int n, len = 0, total, ok = 0, nchain, nall;

	*out = NULL;
	if (t->s->cfg->attest != NULL && cmp_itav_find(in, HSM_OID_ATTEST_NONCE) != NULL) {
		ev_nonce_make(t->s->nonce_key, time(NULL), nonce);
		log_info("attestation nonce for %s", t->peer);
		return genp_one(HSM_OID_ATTEST_NONCE, V_ASN1_OCTET_STRING, nonce, sizeof(nonce), out);
	}
	if (cmp_itav_find(in, HSM_OID_ENTRIES) != NULL)
		return genp_entries(t, out);
	if (t->auth == AUTH_NONE)
		return 0;
	/* SEQUENCE OF Certificate: ours, the chain above it (an operator's), the other CAs. */
	nchain = t->s->cfg->cachain != NULL ? sk_X509_num(t->s->cfg->cachain) : 0;
	nall = nchain + (t->s->cfg->cabundle != NULL ? sk_X509_num(t->s->cfg->cabundle) : 0);
	for (int i = -1; i < nall; i++) {
		X509 *x = i < 0 ? t->s->cfg->cacert : i < nchain ?
		    sk_X509_value(t->s->cfg->cachain, i) :
		    sk_X509_value(t->s->cfg->cabundle, i - nchain);
		unsigned char *one = NULL, *grown;

		if ((n = i2d_X509(x, &one)) <= 0)
			goto done;
		if ((grown = OPENSSL_realloc(der, (size_t)len + (size_t)n)) == NULL) {
			OPENSSL_free(one);
			goto done;
		}
		der = grown;
		memcpy(der + len, one, (size_t)n);
		len += n;
		OPENSSL_free(one);
	}
	total = ASN1_object_size(1, len, V_ASN1_SEQUENCE);
	if (total <= 0 || (buf = OPENSSL_malloc((size_t)total)) == NULL)
		goto done;
	p = buf;
	ASN1_put_object(&p, 1, len, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(p, der, (size_t)len);
	ok = genp_one(OID_IT_CA_CERTS, V_ASN1_SEQUENCE, buf, (size_t)total, out);
done:
	OPENSSL_free(der);
	OPENSSL_free(buf);
	return ok;
}
