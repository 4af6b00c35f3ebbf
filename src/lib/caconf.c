/*
 * caconf.c - ca.yaml: the CA's configuration file (see caconf.h), read
 * with the generic YAML layer of config.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attest.h"
#include "caconf.h"
#include "crl.h"
#include "config.h"
#include "err.h"
#include "evidence.h"
#include "keytypes.h"
#include "nfprofile.h"
#include "spiffe.h"

/* ---- ca.yaml ---- */

static const char *const ca_known[] = {
	"trust_domain",
	"token.module", "token.uri", "token.pin_file", "token.pin_env", "token.workers",
	"token.workers_min", "token.workers_max",
	"token.test_sign_delay_ms",
	"key.type", "key.label", "key.replicable",
	"state_dir", "listen", "svid_ttl", "max_ttl", "ca_ttl", "database", "audit_log",
	"attestation.collateral", "attestation.insecure_test_root", "attestation.mrsigner",
	"attestation.mrenclave", "attestation.isv_prod_id", "attestation.min_isv_svn",
	"attestation.tcb_status", "attestation.allow_debug", "attestation.require",
	"attestation.nonce_ttl", "attestation.spiffe_id", "attestation.collateral_grace",
	"attestation.identity",
	"metrics.listen",
	"profile", "plmn.mcc", "plmn.mnc", "plmn.country",
	"front.max_connections", "front.max_connections_per_source", "front.workers",
	"front.request_timeout", "front.idle_timeout", "front.write_timeout", "front.max_body",
	"front.max_buffered",
	"crl.url", "crl.next_update",
	"replication.evidence.producer", "replication.evidence.path",
	"replication.evidence.command", "replication.evidence.timeout",
	"replication.attestation.collateral", "replication.attestation.insecure_test_root",
	"replication.attestation.mrsigner", "replication.attestation.mrenclave",
	"replication.attestation.isv_prod_id", "replication.attestation.min_isv_svn",
	"replication.attestation.tcb_status", "replication.attestation.allow_debug",
	"replication.attestation.nonce_ttl", "replication.attestation.collateral_grace",
	NULL
};

void
ca_config_free(struct ca_config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->trust_domain);
	cfg_token_clear(&c->token);
	free(c->key_label);
	free(c->state_dir);
	free(c->listen);
	free(c->svid_ttl_text);
	free(c->max_ttl_text);
	free(c->database);
	free(c->audit_log);
	free(c->metrics_listen);
	free(c->crl.url);
	free(c->plmn_mcc);
	free(c->plmn_mnc);
	free(c->plmn_country);
	attest_policy_free(c->attest);
	attest_policy_free(c->repl_attest);
	evidence_conf_clear(&c->repl_evidence);
	free(c);
}

/* host:port or [v6]:port with a decimal port 0..65535. */
static int
listen_ok(const char *s)
{
	const char *colon = strrchr(s, ':'), *p;
	long port = 0;

	if (colon == NULL || colon == s || colon[1] == '\0' || strlen(colon + 1) > 5)
		return 0;
	if (s[0] == '[' && colon[-1] != ']')
		return 0;
	for (p = colon + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		port = port * 10 + (*p - '0');
	}
	return port <= 65535;
}

/* crl: the URL every certificate names and how long a CRL is valid. */
static int
crl_load(const struct cfg_doc *d, struct ca_config *c)
{
	const char *path;
	int r;

	if ((r = cfg_get_str(d, "crl.url", NULL, &c->crl.url)) != 0 ||
	    (r = cfg_get_duration(d, "crl.next_update", "1h", &c->crl.next_update)) != 0)
		return r;
	if (c->crl.url != NULL && crl_url_path(c->crl.url, &path) != 0)
		return cfg_err(d, "crl.url", "'crl.url' must be http://HOST[:PORT]/PATH of printable "
		    "characters");
	if (c->crl.next_update < 60 || c->crl.next_update > 7 * 86400)
		return cfg_err(d, "crl.next_update", "'crl.next_update' must be 60s to 7d");
	return 0;
}

static int
label_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > HSM_MAX_LABEL)
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

/* metrics.listen and the front: section, each limit with its default. */
static int
front_load(const struct cfg_doc *d, struct ca_config *c)
{
	struct ca_front *f = &c->front;
	unsigned long long v, workers;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int r;

	if ((r = cfg_get_str(d, "metrics.listen", NULL, &c->metrics_listen)) != 0)
		return r;
	if (c->metrics_listen != NULL && !listen_ok(c->metrics_listen))
		return cfg_err(d, "metrics.listen", "'metrics.listen' must be HOST:PORT, not '%.100s'",
		    c->metrics_listen);
	if (c->metrics_listen != NULL && strcmp(c->metrics_listen, c->listen) == 0 &&
	    strcmp(strrchr(c->listen, ':'), ":0") != 0)
		return cfg_err(d, "metrics.listen", "'metrics.listen' must differ from 'listen'");
	workers = cpus > 0 ? 2 * (unsigned long long)cpus : 4;
	if (workers < 2)
		workers = 2;
	if (workers > 32)
		workers = 32;
	if ((r = cfg_get_uint(d, "front.max_connections", 4096, 1, 1048576, &v)) != 0)
		return r;
	f->max_connections = (unsigned)v;
	if ((r = cfg_get_uint(d, "front.max_connections_per_source",
	    f->max_connections < 64 ? f->max_connections : 64, 1, f->max_connections, &v)) != 0)
		return r;
	f->max_connections_per_source = (unsigned)v;
	if ((r = cfg_get_uint(d, "front.workers", workers, 1, 64, &v)) != 0)
		return r;
	f->workers = (unsigned)v;
	if ((r = cfg_get_duration(d, "front.request_timeout", "10s", &f->request_timeout)) != 0 ||
	    (r = cfg_get_duration(d, "front.idle_timeout", "5s", &f->idle_timeout)) != 0 ||
	    (r = cfg_get_duration(d, "front.write_timeout", "10s", &f->write_timeout)) != 0 ||
	    (r = cfg_get_uint(d, "front.max_body", 262144, 1024, 16777216, &v)) != 0)
		return r;
	f->max_body = v;
	if ((r = cfg_get_uint(d, "front.max_buffered", 67108864, 65536, 1ULL << 40, &v)) != 0)
		return r;
	f->max_buffered = v;
	if (f->max_buffered < f->max_body + 8192)
		return cfg_err(d, "front.max_buffered", "'front.max_buffered' must hold at least "
		    "one request (front.max_body + 8192 bytes)");
	return 0;
}

/*
 * profile and plmn: the default certificate profile and what the 3GPP NF
 * profile takes from the CA (nfprofile.h). plmn: is all or nothing;
 * profile 3gpp-nf needs it, and an svid_ttl within the profile's 3 years.
 */
static int
profile_load(const struct cfg_doc *d, struct ca_config *c)
{
	enum cert_profile_kind k;
	char *v = NULL, why[300];
	int r;

	if ((r = cfg_get_str(d, "profile", "spiffe", &v)) != 0)
		return r;
	r = nf_profile_parse(v, 0, &k);
	free(v);
	if (r != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		return cfg_err(d, "profile", "'profile': %s", why);
	}
	c->profile = (int)k;
	if ((r = cfg_get_str(d, "plmn.mcc", NULL, &c->plmn_mcc)) != 0 ||
	    (r = cfg_get_str(d, "plmn.mnc", NULL, &c->plmn_mnc)) != 0 ||
	    (r = cfg_get_str(d, "plmn.country", NULL, &c->plmn_country)) != 0)
		return r;
	if (c->plmn_mcc != NULL || c->plmn_mnc != NULL || c->plmn_country != NULL) {
		if ((r = cfg_require(d, "plmn.mcc")) != 0 || (r = cfg_require(d, "plmn.mnc")) != 0 ||
		    (r = cfg_require(d, "plmn.country")) != 0)
			return r;
		if (nf_plmn_check(c->plmn_mcc, c->plmn_mnc) != 0) {
			snprintf(why, sizeof(why), "%s", hsm_err_detail());
			return cfg_err(d, strstr(why, "MCC") == why ? "plmn.mcc" : "plmn.mnc",
			    "'plmn': %s", why);
		}
		if (nf_country_check(c->plmn_country) != 0) {
			snprintf(why, sizeof(why), "%s", hsm_err_detail());
			return cfg_err(d, "plmn.country", "'plmn.country': %s", why);
		}
	}
	if (c->profile == PROFILE_3GPP_NF && c->plmn_mcc == NULL)
		return cfg_err(d, "profile", "profile %s needs the home network: plmn.mcc, "
		    "plmn.mnc and plmn.country", NF_PROFILE_NAME);
	if (c->profile == PROFILE_3GPP_NF && nf_ttl_check(c->svid_ttl) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		return cfg_err(d, "svid_ttl", "'svid_ttl' %s: %s", c->svid_ttl_text, why);
	}
	return 0;
}

static int
ca_config_from_doc(const struct cfg_doc *d, struct ca_config **out)
{
	struct ca_config *c = NULL;
	char *kt = NULL, why[400];
	int r;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->path = strdup(d->name)) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if ((r = cfg_check_known(d, ca_known)) != 0)
		goto out;

	if ((r = cfg_require(d, "trust_domain")) != 0 ||
	    (r = cfg_get_str(d, "trust_domain", NULL, &c->trust_domain)) != 0)
		goto out;
	if (spiffe_td_check(c->trust_domain) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		r = cfg_err(d, "trust_domain", "%s", why);
		goto out;
	}

	if ((r = cfg_token_load(d, "token", &c->token)) != 0)
		goto out;

	if ((r = cfg_get_str(d, "key.type", "ec-p256", &kt)) != 0)
		goto out;
	if (hsm_keytype_parse(kt, &c->key_type) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		r = cfg_err(d, "key.type", "'key.type': %s", why);
		goto out;
	}
	if ((r = cfg_get_str(d, "key.label", "hsmesh-ca", &c->key_label)) != 0 ||
	    (r = cfg_get_bool(d, "key.replicable", 0, &c->key_replicable)) != 0)
		goto out;
	if (!label_ok(c->key_label)) {
		r = cfg_err(d, "key.label", "'key.label' must be 1 to %d printable characters",
		    HSM_MAX_LABEL);
		goto out;
	}

	if ((r = cfg_require(d, "state_dir")) != 0 ||
	    (r = cfg_get_path(d, "state_dir", NULL, &c->state_dir)) != 0)
		goto out;
	if ((r = cfg_get_str(d, "listen", "127.0.0.1:8443", &c->listen)) != 0)
		goto out;
	if (!listen_ok(c->listen)) {
		r = cfg_err(d, "listen", "'listen' must be HOST:PORT, not '%.100s'", c->listen);
		goto out;
	}

	if ((r = cfg_get_duration(d, "svid_ttl", "1h", &c->svid_ttl)) != 0 ||
	    (r = cfg_get_duration(d, "max_ttl", "24h", &c->max_ttl)) != 0 ||
	    (r = cfg_get_duration(d, "ca_ttl", "3650d", &c->ca_ttl)) != 0 ||
	    (r = cfg_get_str(d, "svid_ttl", "1h", &c->svid_ttl_text)) != 0 ||
	    (r = cfg_get_str(d, "max_ttl", "24h", &c->max_ttl_text)) != 0)
		goto out;
	if (c->svid_ttl > c->max_ttl) {
		r = cfg_err(d, cfg_find(d, "svid_ttl") != NULL ? "svid_ttl" : "max_ttl",
		    "svid_ttl %s exceeds max_ttl %s", c->svid_ttl_text, c->max_ttl_text);
		goto out;
	}

	/* A URI (postgresql://...) is kept as written; a path resolves against the file's directory. */
	if ((r = cfg_get_str(d, "database", NULL, &c->database)) != 0)
		goto out;
	if (c->database != NULL && strstr(c->database, "://") == NULL) {
		free(c->database);
		c->database = NULL;
		if ((r = cfg_get_path(d, "database", NULL, &c->database)) != 0)
			goto out;
	}
	if ((r = cfg_get_path(d, "audit_log", NULL, &c->audit_log)) != 0)
		goto out;
	if ((c->database == NULL && (r = cfg_resolve_path(c->state_dir, "ledger.db", &c->database)) != 0) ||
	    (c->audit_log == NULL && (r = cfg_resolve_path(c->state_dir, "audit.log", &c->audit_log)) != 0))
		goto out;
	if ((r = attest_policy_load(d, "attestation", c->trust_domain, &c->attest)) != 0 ||
	    (r = attest_policy_load(d, "replication.attestation", c->trust_domain,
	    &c->repl_attest)) != 0 ||
	    (r = evidence_conf_load(d, "replication.evidence", &c->repl_evidence)) != 0 ||
	    (r = front_load(d, c)) != 0 || (r = profile_load(d, c)) != 0 ||
	    (r = crl_load(d, c)) != 0)
		goto out;

	*out = c;
	c = NULL;
	r = 0;
 out:
	free(kt);
	ca_config_free(c);
	return r == 0 || r == HSM_ENOMEM ? r : HSM_ECONFIG;
}

int
ca_config_parse(const char *name, const char *dir, const uint8_t *buf, size_t len,
    struct ca_config **out)
{
	struct cfg_doc *d = NULL;
	int r;

	*out = NULL;
	if ((r = cfg_doc_parse(name, dir, buf, len, &d)) != 0)
		return r;
	r = ca_config_from_doc(d, out);
	cfg_doc_free(d);
	return r;
}

int
ca_config_load(const char *path, struct ca_config **out)
{
	struct cfg_doc *d = NULL;
	int r;

	*out = NULL;
	if ((r = cfg_doc_load(path, &d)) != 0)
		return r;
	r = ca_config_from_doc(d, out);
	cfg_doc_free(d);
	return r;
}
