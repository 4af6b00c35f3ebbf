/*
 * profile.c - which certificate profile an issuance gets (ca.h,
 * docs/CA.md): a node's certificate is always a plain X.509-SVID; a
 * workload's takes its registration entries' profile, else ca.yaml's
 * default; the 3GPP NF profile takes its NF types and FQDN from the
 * entries (or from `ca issue --nf-type --fqdn` for an ID without one) and
 * the home network from ca.yaml.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "caconf.h"
#include "err.h"
#include "ledger.h"
#include "nfprofile.h"

int
ca_nf_type_add(char *list, size_t cap, const char *type)
{
	size_t have = strlen(list);
	int r;

	if ((r = nf_type_check(type)) != 0)
		return r;
	if (have + strlen(type) + 2 > cap)
		return hsm_err(HSM_EINVAL, "too many NF types (at most %d)", NF_TYPES_MAX);
	snprintf(list + have, cap - have, "%s%s", have > 0 ? "," : "", type);
	return nf_types_parse(list, NULL);
}

/* The first entry of an ID: all of them agree on the profile (ledger.h). */
static int
first_entry(const struct ledger_entry *e, void *arg)
{
	struct ledger_entry *first = arg;

	if (first->id[0] == '\0')
		*first = *e;
	return 0;
}

int
ca_profile_for(const struct ca_config *cfg, struct ledger *lg, const char *spiffe_id, int kind,
    const char *nf_types, const char *fqdn, struct ca_profile *out)
{
	struct ledger_entry *e;
	enum cert_profile_kind k;
	int opts = (nf_types != NULL && *nf_types != '\0') || (fqdn != NULL && *fqdn != '\0');
	int r;

	memset(out, 0, sizeof(*out));
	out->kind = PROFILE_SPIFFE;
	if (kind == LEDGER_NODE) {
		snprintf(out->source, sizeof(out->source), "a node identity");
		if (opts)
			return hsm_err(HSM_EPOLICY, "%s is a node identity: its certificates are plain "
			    "X.509-SVIDs (no --nf-type, --fqdn)", spiffe_id);
		return 0;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if ((r = ledger_entry_list(lg, spiffe_id, first_entry, e)) != 0)
		goto out;
	if (e->id[0] != '\0') {
		if (opts) {
			r = hsm_err(HSM_EPOLICY, "%s has registration entries (entry %s): their "
			    "profile applies (no --nf-type, --fqdn)", spiffe_id, e->id);
			goto out;
		}
		if ((r = nf_profile_parse(e->profile, 1, &k)) != 0)
			goto out;
		if (k == PROFILE_INHERIT) {
			k = (enum cert_profile_kind)cfg->profile;
			snprintf(out->source, sizeof(out->source), "ca.yaml (entry %s names none)",
			    e->id);
		} else {
			snprintf(out->source, sizeof(out->source), "entry %s", e->id);
		}
		snprintf(out->nf_types, sizeof(out->nf_types), "%s", e->nf_types);
		snprintf(out->fqdn, sizeof(out->fqdn), "%s", e->fqdn);
	} else if (opts) {
		k = PROFILE_3GPP_NF;
		snprintf(out->source, sizeof(out->source), "--nf-type and --fqdn");
		snprintf(out->nf_types, sizeof(out->nf_types), "%s", nf_types != NULL ? nf_types : "");
		snprintf(out->fqdn, sizeof(out->fqdn), "%s", fqdn != NULL ? fqdn : "");
	} else {
		k = (enum cert_profile_kind)cfg->profile;
		snprintf(out->source, sizeof(out->source), "ca.yaml");
	}
	out->kind = k;
	if (k == PROFILE_3GPP_NF && (out->nf_types[0] == '\0' || out->fqdn[0] == '\0')) {
		r = hsm_err(HSM_EPOLICY, "profile %s (from %s) needs NF types and an FQDN for %s: "
		    "register them (hsmesh ca entry add --id ID --profile %s --nf-type T --fqdn "
		    "NAME ...)%s", NF_PROFILE_NAME, out->source, spiffe_id, NF_PROFILE_NAME,
		    e->id[0] == '\0' ? " or give ca issue --nf-type and --fqdn" : "");
		goto out;
	}
	if (k != PROFILE_3GPP_NF) {
		out->nf_types[0] = '\0';
		out->fqdn[0] = '\0';
	}
	r = 0;
 out:
	free(e);
	return r;
}

void
ca_nf_params(const struct ca_config *cfg, const struct ca_profile *p, struct nf_params *np)
{
	memset(np, 0, sizeof(*np));
	np->mcc = cfg->plmn_mcc;
	np->mnc = cfg->plmn_mnc;
	np->country = cfg->plmn_country;
	np->nf_types = p->nf_types;
	np->fqdn = p->fqdn;
}
