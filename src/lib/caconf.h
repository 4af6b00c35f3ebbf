/*
 * caconf.h - ca.yaml, the configuration of the CA (`hsmesh ca`), read with
 * the generic YAML layer of config.h; its "attestation:" section is the
 * attestation policy (attest.h). Every error is HSM_ECONFIG with a one-line
 * detail naming the file and, where the key exists, its line.
 */
#ifndef HSM_CACONF_H
#define HSM_CACONF_H

#include <stdint.h>

#include "config.h"
#include "evidence.h"
#include "keytypes.h"

struct attest_policy;

/* ca.yaml. */
struct ca_config {
	char *path;		/* the file, as given */
	char *trust_domain;
	struct cfg_token token;
	enum hsm_keytype key_type;	/* key.type, default ec-p256 */
	char *key_label;		/* key.label, default "hsmesh-ca" */
	int key_replicable;		/* key.replicable: created wrappable to trusted keys only */
	char *state_dir;
	char *listen;			/* host:port, default 127.0.0.1:8443 */
	int64_t svid_ttl;		/* seconds, default 1h */
	int64_t max_ttl;		/* default 24h */
	int64_t ca_ttl;			/* default 3650d */
	char *svid_ttl_text;		/* as written, for messages ("1h") */
	char *max_ttl_text;
	char *database;			/* an SQLite file (default <state_dir>/ledger.db), or a
					   postgresql:// URI, kept as written */
	char *audit_log;		/* default <state_dir>/audit.log */
	struct attest_policy *attest;	/* attestation:, or NULL (attest.h) */
	/* the certificate profile (nfprofile.h, docs/CA.md) */
	int profile;			/* enum cert_profile_kind: profile, default spiffe */
	char *plmn_mcc, *plmn_mnc;	/* plmn.mcc, plmn.mnc: the home network, or NULL */
	char *plmn_country;		/* plmn.country: subject C of 3gpp-nf certificates, or NULL */
	/* `hsmesh ca replicate` (docs/REPLICAS.md): */
	struct attest_policy *repl_attest;	/* replication.attestation: what a target must prove */
	struct evidence_conf repl_evidence;	/* replication.evidence: how this token proves it */
	char *metrics_listen;		/* metrics.listen (host:port), or NULL */
	/* front: the limits of `ca serve`'s HTTP front (docs/CA.md) */
	struct ca_front {
		unsigned max_connections;		/* default 4096 */
		unsigned max_connections_per_source;	/* default 64 */
		unsigned workers;			/* default 2 x CPUs (2..32) */
		int64_t request_timeout;		/* seconds, default 10 */
		int64_t idle_timeout;			/* seconds, default 5 */
		int64_t write_timeout;			/* seconds, default 10 */
		uint64_t max_body;			/* bytes, default 262144 */
		uint64_t max_buffered;			/* bytes, default 67108864 */
	} front;
	/* crl: the CRL ca serve publishes (docs/CA.md, "Revocation") */
	struct ca_crl_conf {
		char *url;		/* crl.url, or NULL: http://<listen>/crl (crl.h) */
		int64_t next_update;	/* crl.next_update, seconds, default 1h (60s..7d) */
	} crl;
};

/*
 * Load and validate ca.yaml at path. Caller frees *out with
 * ca_config_free(). 0 or HSM_ECONFIG (detail: one line, file and line).
 */
int ca_config_load(const char *path, struct ca_config **out);
/* Same from text, for tests: name for messages, dir for relative paths. */
int ca_config_parse(const char *name, const char *dir, const uint8_t *buf, size_t len,
    struct ca_config **out);
/* Free a configuration. Accepts NULL. */
void ca_config_free(struct ca_config *c);

#endif
