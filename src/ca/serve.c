/*
 * serve.c - `hsmesh ca serve`: the CMP server (cmp.h) over the CA's
 * signer, ledger and audit log. Runs until SIGTERM or SIGINT.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "cmp.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "provider_core.h"

#define MAX_CMP_BODY (256 * 1024)
#define HANDLERS 8

struct serve_arg {
	struct signer *sg;
	struct ledger *lg;
	struct audit *au;
};

/* Issue for the CMP server: the same issuance as ca issue. */
static int
serve_issue(void *arg, const struct ca_issue_req *rq, X509 **out, int *refused)
{
	struct serve_arg *a = arg;

	return ca_issue(a->sg, a->lg, a->au, rq, out, refused);
}

int
ca_cmd_serve(const char *cfgpath, const char *port_file)
{
	struct ca_config *cfg = NULL;
	struct signer sg;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	struct cmp_server_cfg sc;
	struct serve_arg sa;
	uint8_t key[32];
	int r;

	memset(&sg, 0, sizeof(sg));
	sg.k.pid = -1;
	hsm_log_init("hsmesh ca serve", HSM_LOG_INFO);
	if ((r = ca_config_load(cfgpath, &cfg)) != 0 ||
	    (r = signer_load_root(cfg, &sg)) != 0 ||
	    (r = ca_records_open(cfg, &lg, &au)) != 0 ||
	    (r = ca_token_key_load(cfg, 1, key)) != 0 ||
	    (r = signer_start(cfg, &sg)) != 0 ||
	    (r = hsm_pkey_selftest(sg.key)) != 0)
		goto out;
	memset(&sc, 0, sizeof(sc));
	sa.sg = &sg;
	sa.lg = lg;
	sa.au = au;
	sc.listen = cfg->listen;
	sc.port_file = port_file;
	sc.trust_domain = cfg->trust_domain;
	sc.cacert = sg.root;
	sc.cakey = sg.key;
	sc.ledger = lg;
	sc.audit = au;
	sc.token_key = key;
	sc.svid_ttl = cfg->svid_ttl;
	sc.max_ttl = cfg->max_ttl;
	sc.issue = serve_issue;
	sc.issue_arg = &sa;
	sc.attest = cfg->attest;
	sc.max_body = MAX_CMP_BODY;
	sc.threads = HANDLERS;
	r = cmp_serve(&sc);
 out:
	OPENSSL_cleanse(key, sizeof(key));
	signer_close(&sg);
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("serve", r);
}
