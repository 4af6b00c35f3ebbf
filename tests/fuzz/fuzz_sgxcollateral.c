/*
 * fuzz_sgxcollateral.c - SGX DCAP collateral: any bytes, never a crash,
 * and every refusal names its reason. The input is decoded in both of the
 * collateral's forms (sgxcollateral.h: one JSON file, or Intel's files,
 * here the input as both the TCB Info and the QE Identity file), and every
 * JSON object it holds (the input itself, its "tcbInfo" and
 * "enclaveIdentity" members, the documents a JSON collateral carries) is
 * read as a TCB Info and as a QE Identity (sgxtcb.h) for an SGX and a TDX
 * quote, as the verifier reads them once their signatures hold.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "err.h"
#include "sgxchain.h"
#include "sgxcollateral.h"
#include "sgxtcb.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A refusal must say why; then start clean for the next call. */
static void
refused(int rc)
{
	if (rc != 0 && hsm_err_detail()[0] == '\0')
		abort();
	hsm_err_clear();
}

static void
verdict_sane(const struct sgx_tcb_verdict *v)
{
	if (memchr(v->advisories, '\0', sizeof(v->advisories)) == NULL ||
	    memchr(v->tdx_module_id, '\0', sizeof(v->tdx_module_id)) == NULL ||
	    v->tcb_status == SGX_TCB_UNKNOWN ||
	    sgx_tcb_status_name(v->tcb_status) == NULL)
		abort();
}

/* The hex string member key of o, of n bytes, into out (left alone if not). */
static void
hex_of(struct json_object *o, const char *key, uint8_t *out, size_t n)
{
	struct json_object *v;
	const char *s;

	if (json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string) &&
	    strlen(s = json_object_get_string(v)) == 2 * n)
		(void)hsm_unhex(s, 2 * n, out);
}

/*
 * The QE report the document itself describes (when it can be read), so
 * that the level walk is reached, at QE SVN svn.
 */
static void
qe_report_of(struct json_object *o, unsigned svn, struct sgx_report_body *b)
{
	struct json_object *v;
	uint8_t misc[4] = { 0 };

	memset(b, 0, sizeof(*b));
	b->isv_svn = (uint16_t)svn;
	hex_of(o, "mrsigner", b->mrsigner, sizeof(b->mrsigner));
	hex_of(o, "attributes", b->attributes, sizeof(b->attributes));
	hex_of(o, "miscselect", misc, sizeof(misc));
	b->miscselect = hsm_getle32(misc);
	if (json_object_object_get_ex(o, "isvprodid", &v) &&
	    json_object_is_type(v, json_type_int))
		b->isv_prod_id = (uint16_t)json_object_get_int(v);
}

/* One document o read every way the verifier reads one, for quote q at SVNs svn. */
static void
read_doc(struct json_object *o, struct sgx_quote *q, unsigned svn)
{
	struct sgx_tcb_verdict v;
	struct sgx_pck_tcb pt;
	struct sgx_expiry x;
	struct json_object *ident = NULL, *lvl = NULL;
	int rc;

	memset(&v, 0, sizeof(v));
	memset(&pt, 0, sizeof(pt));
	for (size_t i = 0; i < 16; i++)
		pt.comp[i] = svn;
	pt.pcesvn = svn;
	sgx_expiry_init(&x, 1750000000, 3600);
	refused(sgx_json_dates(o, "doc", &x));
	refused(sgx_tcb_info_check(o, q, &pt));
	qe_report_of(o, svn, &q->qe_report);
	rc = sgx_qe_identity_check(o, q, &lvl, &v);
	refused(rc);
	if (rc == 0 && v.qe_status == SGX_TCB_UNKNOWN)
		abort();
	if (rc != 0)
		v.qe_status = SGX_TCB_UP_TO_DATE;
	if (q->tee_type == SGX_TEE_TDX) {
		rc = sgx_tdx_module_check(o, &q->td, &ident, v.tdx_module_id,
		    sizeof(v.tdx_module_id));
		refused(rc);
		if (rc != 0)
			ident = NULL;
	}
	rc = sgx_tcb_level(o, &pt, q, ident, lvl, &v);
	refused(rc);
	if (rc == 0)
		verdict_sane(&v);
}

/* Every way of reading document o: SGX and TDX quotes, high and low SVNs. */
static void
read_doc_all(struct json_object *o)
{
	static const unsigned svns[] = { 0, 3, 255 };
	struct sgx_quote q;

	if (o == NULL || !json_object_is_type(o, json_type_object))
		return;
	for (size_t i = 0; i < sizeof(svns) / sizeof(svns[0]); i++) {
		memset(&q, 0, sizeof(q));
		q.tee_type = SGX_TEE_SGX;
		q.body_type = SGX_BODY_SGX;
		read_doc(o, &q, svns[i]);
		for (unsigned major = 0; major < 2; major++) {
			memset(&q, 0, sizeof(q));
			q.tee_type = SGX_TEE_TDX;
			q.body_type = major ? SGX_BODY_TD15 : SGX_BODY_TD10;
			memset(q.td.tee_tcb_svn, (int)svns[i], sizeof(q.td.tee_tcb_svn));
			memset(q.td.tee_tcb_svn2, (int)svns[i], sizeof(q.td.tee_tcb_svn2));
			q.td.tee_tcb_svn[1] = (uint8_t)major;
			q.td.tee_tcb_svn2[1] = (uint8_t)major;
			read_doc(o, &q, svns[i]);
		}
	}
}

/* The JSON text t of n bytes, or NULL. */
static struct json_object *
parse(const char *t, size_t n)
{
	struct json_tokener *tok;
	struct json_object *o;

	if (t == NULL || n > SGX_COLL_MAX || (tok = json_tokener_new()) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, t, (int)n);
	json_tokener_free(tok);
	return o;
}

/* The JSON text t of n bytes as a document. */
static void
read_text(const char *t, size_t n)
{
	struct json_object *o = parse(t, n);

	read_doc_all(o);
	json_object_put(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t crl[] = { 0x30, 0x00 };
	struct sgx_collateral c;
	struct json_object *o, *m;
	char *b;
	int rc;

	/* An exact-size heap copy, so ASan sees any read past the end. */
	if (size > SGX_COLL_MAX || (b = malloc(size ? size : 1)) == NULL)
		return 0;
	if (size > 0)
		memcpy(b, data, size);

	rc = sgx_collateral_from_json(b, size, &c);
	refused(rc);
	if (rc == 0) {
		if (c.tcb_info == NULL || c.qe_identity == NULL ||
		    c.tcb_info_chain == NULL || c.qe_identity_chain == NULL ||
		    c.root_crl == NULL || c.root_crl_len == 0 ||
		    c.pck_crl == NULL || c.pck_crl_len == 0)
			abort();
		read_text(c.tcb_info, c.tcb_info_len);
		read_text(c.qe_identity, c.qe_identity_len);
	}
	sgx_collateral_free(&c);

	rc = sgx_collateral_from_intel(b, size, b, size, "", crl, sizeof(crl),
	    crl, sizeof(crl), NULL, &c);
	refused(rc);
	if (rc == 0) {
		/* The signed texts are taken from the input, verbatim. */
		if (c.tcb_info_len == 0 || c.tcb_info_len > size ||
		    c.qe_identity_len == 0 || c.qe_identity_len > size ||
		    memmem(b, size, c.tcb_info, c.tcb_info_len) == NULL ||
		    memmem(b, size, c.qe_identity, c.qe_identity_len) == NULL)
			abort();
		read_text(c.tcb_info, c.tcb_info_len);
		read_text(c.qe_identity, c.qe_identity_len);
	}
	sgx_collateral_free(&c);

	/* The input as a document, and Intel's files' documents in it. */
	if ((o = parse(b, size)) != NULL) {
		read_doc_all(o);
		if (json_object_object_get_ex(o, "tcbInfo", &m))
			read_doc_all(m);
		if (json_object_object_get_ex(o, "enclaveIdentity", &m))
			read_doc_all(m);
		json_object_put(o);
	}
	free(b);
	hsm_err_clear();
	return 0;
}
