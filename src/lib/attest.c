/*
 * attest.c - the CA's attestation policy, independent of the kind of
 * evidence (see attest.h): the generic settings, and dispatch to each
 * kind's checker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest.h"
#include "config.h"
#include "err.h"

/* Every kind of evidence the CA can check, in the order they are tried. */
static const struct attest_ops *const kinds[] = { &attest_sgx_ops };
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* The kind's policy inside p, or NULL when p does not accept that kind. */
static void *
kind_policy(const struct attest_policy *p, enum ev_type t)
{
	if (p == NULL)
		return NULL;
	switch (t) {
	case EV_SGX:
		return p->sgx;
	default:
		return NULL;
	}
}

static const struct attest_ops *
kind_ops(enum ev_type t)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (kinds[i]->type == t)
			return kinds[i];
	return NULL;
}

void
attest_policy_free(struct attest_policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < NKINDS; i++)
		kinds[i]->policy_free(kind_policy(p, kinds[i]->type));
	free(p->trust_domain);
	free(p);
}

int
attest_policy_load(const struct cfg_doc *d, const char *section, const char *trust_domain,
    struct attest_policy **out)
{
	const struct cfg_node *sect = cfg_find(d, section);
	struct attest_policy *p;
	char key[96], *ident = NULL;
	void *kp;
	int r;

	*out = NULL;
	if (sect == NULL)
		return 0;
	if (sect->type != CFG_MAP)
		return cfg_err(d, section, "'%s' must be a mapping", section);
	if ((p = calloc(1, sizeof(*p))) == NULL || (p->trust_domain = strdup(trust_domain)) == NULL) {
		attest_policy_free(p);
		return HSM_ENOMEM;
	}
#define K(s) (snprintf(key, sizeof(key), "%s.%s", section, s), key)
	if ((r = cfg_get_bool(d, K("require"), 0, &p->require)) != 0 ||
	    (r = cfg_get_duration(d, K("nonce_ttl"), "5m", &p->nonce_ttl)) != 0)
		goto out;
	if (p->nonce_ttl <= 0 || p->nonce_ttl > 3600) {
		r = cfg_err(d, K("nonce_ttl"), "'%s' must be from 1s to 1h", key);
		goto out;
	}
	/* What an enrollment by evidence alone makes: a workload's identity, or a node's. */
	if ((r = cfg_get_str(d, K("identity"), "workload", &ident)) != 0)
		goto out;
	if (strcmp(ident, "node") == 0) {
		p->node_identity = 1;
	} else if (strcmp(ident, "workload") != 0) {
		r = cfg_err(d, K("identity"), "'%s' must be workload or node, not '%.40s'", key, ident);
		goto out;
	}
#undef K
	for (size_t i = 0; i < NKINDS; i++) {
		kp = NULL;
		if ((r = kinds[i]->policy_load(d, section, trust_domain, &kp)) != 0)
			goto out;
		switch (kinds[i]->type) {
		case EV_SGX:
			p->sgx = kp;
			break;
		default:
			kinds[i]->policy_free(kp);
			break;
		}
	}
	*out = p;
	p = NULL;
	r = 0;
 out:
	free(ident);
	attest_policy_free(p);
	return r == 0 || r == HSM_ENOMEM ? r : HSM_ECONFIG;
}

const struct ev_type_info *
attest_accepted(const struct attest_policy *p, size_t i)
{
	for (size_t k = 0; k < NKINDS; k++)
		if (kind_policy(p, kinds[k]->type) != NULL && i-- == 0)
			return ev_type_get(kinds[k]->type);
	return NULL;
}

int
attest_check(const struct attest_policy *p, enum ev_type type, const uint8_t *ev, size_t len,
    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
    struct attest_result *r)
{
	const struct attest_ops *ops = kind_ops(type);
	const void *kp = kind_policy(p, type);

	memset(r, 0, sizeof(*r));
	r->type = type;
	if (ops == NULL || kp == NULL) {
		snprintf(r->why, sizeof(r->why), "this CA accepts no evidence of that kind");
		return HSM_EUNSUPPORTED;
	}
	return ops->check(kp, p, ev, len, spki, spkilen, nonce_key, now, r);
}

int
attest_identity_ext(const struct attest_result *r, X509_EXTENSION **out)
{
	const struct attest_ops *ops = kind_ops(r->type);

	*out = NULL;
	if (ops == NULL || !r->verified)
		return hsm_err(HSM_EINVAL, "no verified evidence to record");
	return ops->identity_ext(r, out);
}

void
attest_audit_fields(const struct attest_result *r, struct attest_audit *a)
{
	const struct ev_type_info *e = ev_type_get(r->type);
	const struct attest_ops *ops = kind_ops(r->type);

	memset(a, 0, sizeof(*a));
	attest_audit_add(a, "evidence", e != NULL ? e->name : "unknown");
	if (!r->verified) {
		attest_audit_add(a, "reason", r->why);
		return;
	}
	if (ops != NULL)
		ops->audit_fields(r, a);
	if (r->spiffe_id[0] != '\0')
		attest_audit_add(a, "id", r->spiffe_id);
	if (r->why[0] != '\0')
		attest_audit_add(a, "reason", r->why);
}

void
attest_auth_tag(const struct attest_result *r, char *buf, size_t cap)
{
	const struct attest_ops *ops = kind_ops(r->type);

	if (cap > 0)
		buf[0] = '\0';
	if (ops != NULL && r->verified)
		ops->auth_tag(r, buf, cap);
}

int
attest_describe(const struct attest_policy *p, size_t i, char *buf, size_t cap)
{
	for (size_t k = 0; k < NKINDS; k++) {
		const void *kp = kind_policy(p, kinds[k]->type);

		if (kp != NULL && i-- == 0) {
			kinds[k]->describe(kp, p, buf, cap);
			return 1;
		}
	}
	return 0;
}

int
attest_identity_describe(X509 *x, size_t i, const char **label, char *buf, size_t cap)
{
	const struct ev_type_info *e;

	*label = NULL;
	if (i >= NKINDS || (e = ev_type_get(kinds[i]->type)) == NULL)
		return HSM_ENOENT;
	*label = e->identity_label;
	return kinds[i]->identity_describe(x, buf, cap);
}
