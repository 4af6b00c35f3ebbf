/* sgxcollateral.c - SGX DCAP collateral from its two forms (see sgxcollateral.h). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "err.h"
#include "sgxcollateral.h"
#include "util.h"

static int
json_str(struct json_object *o, const char *key, const char **s, size_t *n)
{
	struct json_object *v;

	*s = NULL;
	*n = 0;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return hsm_err(HSM_EPROTO, "collateral: member '%s' missing "
		    "or not a string", key);
	*s = json_object_get_string(v);
	*n = (size_t)json_object_get_string_len(v);
	return 0;
}

static int
dup_member(struct json_object *o, const char *key, char **out, size_t *len)
{
	const char *s;
	size_t n;
	int rc;

	*out = NULL;
	if ((rc = json_str(o, key, &s, &n)) != 0)
		return rc;
	if ((*out = strndup(s, n)) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	if (len != NULL)
		*len = n;
	return 0;
}

static int
hex_member(struct json_object *o, const char *key, uint8_t *fixed,
    size_t fixedlen, uint8_t **out, size_t *outlen)
{
	const char *s;
	size_t n;
	uint8_t *b;
	int rc;

	if ((rc = json_str(o, key, &s, &n)) != 0)
		return rc;
	if (fixed != NULL) {
		if (n != 2 * fixedlen || hsm_unhex(s, n, fixed) != 0)
			return hsm_err(HSM_EPROTO, "collateral: member '%s' "
			    "is not %zu bytes of hex", key, fixedlen);
		return 0;
	}
	*out = NULL;
	*outlen = 0;
	if (n == 0 || n % 2 != 0)
		return hsm_err(HSM_EPROTO, "collateral: member '%s' is not "
		    "hex", key);
	if ((b = malloc(n / 2)) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	if (hsm_unhex(s, n, b) != 0) {
		free(b);
		return hsm_err(HSM_EPROTO, "collateral: member '%s' is not "
		    "hex", key);
	}
	*out = b;
	*outlen = n / 2;
	return 0;
}

void
sgx_collateral_free(struct sgx_collateral *c)
{
	if (c == NULL)
		return;
	free(c->tcb_info);
	free(c->tcb_info_chain);
	free(c->qe_identity);
	free(c->qe_identity_chain);
	free(c->root_crl);
	free(c->pck_crl);
	free(c->pck_chain);
	free(c->pck_crl_chain);
	memset(c, 0, sizeof(*c));
}

int
sgx_collateral_from_json(const char *json, size_t len,
    struct sgx_collateral *c)
{
	struct sgx_collateral t;
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&t, 0, sizeof(t));
	if (json == NULL || len == 0 || len > SGX_COLL_MAX)
		return hsm_err(HSM_EPROTO, "collateral: empty or too large");
	if ((tok = json_tokener_new()) == NULL) {
		rc = hsm_err(HSM_ENOMEM, "collateral: out of memory");
		goto out;
	}
	o = json_tokener_parse_ex(tok, json, (int)len);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		rc = hsm_err(HSM_EPROTO, "collateral: not a JSON object");
		goto out;
	}
	if ((rc = dup_member(o, "tcb_info", &t.tcb_info,
	    &t.tcb_info_len)) != 0 ||
	    (rc = hex_member(o, "tcb_info_signature", t.tcb_info_sig, 64,
	    NULL, NULL)) != 0 ||
	    (rc = dup_member(o, "tcb_info_issuer_chain", &t.tcb_info_chain,
	    NULL)) != 0 ||
	    (rc = dup_member(o, "qe_identity", &t.qe_identity,
	    &t.qe_identity_len)) != 0 ||
	    (rc = hex_member(o, "qe_identity_signature", t.qe_identity_sig,
	    64, NULL, NULL)) != 0 ||
	    (rc = dup_member(o, "qe_identity_issuer_chain",
	    &t.qe_identity_chain, NULL)) != 0 ||
	    (rc = hex_member(o, "root_ca_crl", NULL, 0, &t.root_crl,
	    &t.root_crl_len)) != 0 ||
	    (rc = hex_member(o, "pck_crl", NULL, 0, &t.pck_crl,
	    &t.pck_crl_len)) != 0 ||
	    (rc = dup_member(o, "pck_crl_issuer_chain", &t.pck_crl_chain,
	    NULL)) != 0)
		goto out;
	*c = t;
	memset(&t, 0, sizeof(t));
	rc = 0;
 out:
	sgx_collateral_free(&t);
	json_object_put(o);
	if (tok != NULL)
		json_tokener_free(tok);
	return rc;
}

/* Skip JSON whitespace from *i. */
static void
skip_ws(const char *t, size_t len, size_t *i)
{
	while (*i < len && (t[*i] == ' ' || t[*i] == '\t' || t[*i] == '\n' ||
	    t[*i] == '\r'))
		(*i)++;
}

/* *i at an opening quote: move past the closing one. */
static int
skip_string(const char *t, size_t len, size_t *i)
{
	if (*i >= len || t[*i] != '"')
		return -1;
	for ((*i)++; *i < len; (*i)++) {
		if (t[*i] == '\\') {
			(*i)++;
			continue;
		}
		if (t[*i] == '"') {
			(*i)++;
			return 0;
		}
	}
	return -1;
}

/* *i at a value: move past it. */
static int
skip_value(const char *t, size_t len, size_t *i)
{
	size_t depth = 0;

	if (*i >= len)
		return -1;
	if (t[*i] == '"')
		return skip_string(t, len, i);
	if (t[*i] != '{' && t[*i] != '[') {
		while (*i < len && t[*i] != ',' && t[*i] != '}' &&
		    t[*i] != ']')
			(*i)++;
		return *i < len ? 0 : -1;
	}
	while (*i < len) {
		if (t[*i] == '"') {
			if (skip_string(t, len, i) != 0)
				return -1;
			continue;
		}
		if (t[*i] == '{' || t[*i] == '[')
			depth++;
		else if (t[*i] == '}' || t[*i] == ']') {
			if (depth == 0)
				return -1;
			if (--depth == 0) {
				(*i)++;
				return 0;
			}
		}
		(*i)++;
	}
	return -1;
}

/*
 * The exact text of member key's value in the top-level object t
 * (a key without escapes). The text must also be valid JSON: the caller
 * parses it again with json-c.
 */
static int
json_raw_member(const char *t, size_t len, const char *key,
    const char **v, size_t *vl)
{
	size_t i = 0, ks, ke, kl = strlen(key), vs;

	*v = NULL;
	*vl = 0;
	skip_ws(t, len, &i);
	if (i >= len || t[i] != '{')
		return -1;
	i++;
	for (;;) {
		skip_ws(t, len, &i);
		ks = i;
		if (skip_string(t, len, &i) != 0)
			return -1;
		ke = i;
		skip_ws(t, len, &i);
		if (i >= len || t[i] != ':')
			return -1;
		i++;
		skip_ws(t, len, &i);
		vs = i;
		if (skip_value(t, len, &i) != 0)
			return -1;
		if (ke - ks == kl + 2 && memcmp(t + ks + 1, key, kl) == 0) {
			*v = t + vs;
			*vl = i - vs;
			return 0;
		}
		skip_ws(t, len, &i);
		if (i >= len || t[i] != ',')
			return -1;
		i++;
	}
}

/* Signed object + hex signature from an Intel-format collateral file. */
static int
intel_signed(const char *txt, size_t len, const char *key, char **obj,
    size_t *objlen, uint8_t *sig)
{
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL;
	const char *raw;
	size_t rl;
	int rc;

	*obj = NULL;
	*objlen = 0;
	if (txt == NULL || len == 0 || len > SGX_COLL_MAX)
		return hsm_err(HSM_EPROTO, "collateral: %s: empty or too "
		    "large", key);
	if ((tok = json_tokener_new()) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	o = json_tokener_parse_ex(tok, txt, (int)len);
	json_tokener_free(tok);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		rc = hsm_err(HSM_EPROTO, "collateral: %s: not a JSON object",
		    key);
		goto out;
	}
	if ((rc = hex_member(o, "signature", sig, 64, NULL, NULL)) != 0)
		goto out;
	if (json_raw_member(txt, len, key, &raw, &rl) != 0 || rl == 0 ||
	    raw[0] != '{') {
		rc = hsm_err(HSM_EPROTO, "collateral: member '%s' missing or "
		    "not an object", key);
		goto out;
	}
	if ((*obj = strndup(raw, rl)) == NULL) {
		rc = hsm_err(HSM_ENOMEM, "collateral: out of memory");
		goto out;
	}
	*objlen = rl;
	rc = 0;
 out:
	json_object_put(o);
	return rc;
}

static int
dup_bytes(const void *p, size_t n, uint8_t **out, size_t *outlen,
    const char *what)
{
	*out = NULL;
	*outlen = 0;
	if (p == NULL || n == 0 || n > SGX_COLL_MAX)
		return hsm_err(HSM_EPROTO, "collateral: %s missing", what);
	if ((*out = malloc(n)) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	memcpy(*out, p, n);
	*outlen = n;
	return 0;
}

int
sgx_collateral_from_intel(const char *tcbinfo, size_t tcbinfo_len,
    const char *qeid, size_t qeid_len, const char *tcb_chain,
    const uint8_t *root_crl, size_t root_crl_len,
    const uint8_t *pck_crl, size_t pck_crl_len, const char *pck_chain,
    struct sgx_collateral *c)
{
	struct sgx_collateral t;
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&t, 0, sizeof(t));
	if (tcb_chain == NULL) {
		rc = hsm_err(HSM_EPROTO, "collateral: TCB signing chain "
		    "missing");
		goto out;
	}
	if ((rc = intel_signed(tcbinfo, tcbinfo_len, "tcbInfo", &t.tcb_info,
	    &t.tcb_info_len, t.tcb_info_sig)) != 0 ||
	    (rc = intel_signed(qeid, qeid_len, "enclaveIdentity",
	    &t.qe_identity, &t.qe_identity_len, t.qe_identity_sig)) != 0 ||
	    (rc = dup_bytes(root_crl, root_crl_len, &t.root_crl,
	    &t.root_crl_len, "root CA CRL")) != 0 ||
	    (rc = dup_bytes(pck_crl, pck_crl_len, &t.pck_crl,
	    &t.pck_crl_len, "PCK CRL")) != 0)
		goto out;
	if ((t.tcb_info_chain = strdup(tcb_chain)) == NULL ||
	    (t.qe_identity_chain = strdup(tcb_chain)) == NULL ||
	    (pck_chain != NULL &&
	    (t.pck_chain = strdup(pck_chain)) == NULL)) {
		rc = hsm_err(HSM_ENOMEM, "collateral: out of memory");
		goto out;
	}
	*c = t;
	memset(&t, 0, sizeof(t));
	rc = 0;
 out:
	sgx_collateral_free(&t);
	return rc;
}

