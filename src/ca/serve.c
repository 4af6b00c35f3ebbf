/*
 * serve.c - `hsmesh ca serve`: the CMP server (cmp.h) over the CA's
 * signer, ledger and audit log. Runs until SIGTERM or SIGINT.
 */
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "cmp.h"
#include "crl.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "privdrop.h"
#include "provider_core.h"


struct serve_arg {
	const struct ca_config *cfg;
	struct signer *sg;
	struct ledger *lg;
	struct audit *au;
	struct ca_crl *crl;
	struct metric *kh_up, *kh_restarts;
};

/* The keyholder died (up 0) or is back (1): supervisor thread. */
static void
kh_state(void *arg, int up)
{
	struct serve_arg *a = arg;

	metric_gauge_set(a->kh_up, up);
	if (up)
		metric_inc(a->kh_restarts);
	audit_event(a->au, up ? "keyholder_restarted" : "keyholder_died", NULL);
}

static int
serve_ready(void *arg)
{
	struct serve_arg *a = arg;

	return signer_ready(a->sg);
}

static int
serve_crl(void *arg, uint8_t **der, size_t *len, uint64_t *seq)
{
	struct serve_arg *a = arg;

	return ca_crl_get(a->crl, der, len, seq);
}

/*
 * The listener is bound: the URL every certificate names from now on
 * (listen with port 0 gets the port bound), recorded for ca issue.
 */
static void
serve_bound(void *arg, unsigned port)
{
	struct serve_arg *a = arg;
	char url[sizeof(a->sg->crl_url)];
	int r;

	if ((r = ca_crl_url(a->cfg, port, url, sizeof(url))) != 0) {
		log_warn("certificates name no CRL: %s", hsm_err_msg(r));
		return;
	}
	memcpy(a->sg->crl_url, url, sizeof(url));
	if ((r = ca_crl_url_save(a->cfg, url)) != 0)
		log_warn("cannot record the CRL URL for ca issue: %s", hsm_err_msg(r));
	log_info("certificates name the CRL at %s", url);
}

/* Issue for the CMP server: the same issuance as ca issue. */
static int
serve_issue(void *arg, const struct ca_issue_req *rq, X509 **out, int *refused)
{
	struct serve_arg *a = arg;

	return ca_issue(a->cfg, a->sg, a->lg, a->au, rq, out, refused);
}

/* The CA set as this process took it at start: the active generation, the bundle's size. */
static void
serve_ca_metrics(struct metrics *m, struct signer *sg)
{
	struct metric *gen = NULL, *nb = NULL;

	if (m == NULL)
		return;
	(void)metrics_get(m, METRIC_GAUGE, "hsmesh_ca_active_generation",
	    "The generation of the CA this process issues with (ca rotate; 0: never rotated)",
	    NULL, &gen);
	(void)metrics_get(m, METRIC_GAUGE, "hsmesh_ca_bundle_cas",
	    "CA certificates in the bundle this process hands out (the active one included)",
	    NULL, &nb);
	metric_gauge_set(gen, sg->gen);
	metric_gauge_set(nb, 1 + (sg->bundle != NULL ? sk_X509_num(sg->bundle) : 0));
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
	struct metrics *m = NULL;
	const char *crl_path = CRL_PATH_DEFAULT;
	uint8_t key[32];
	int r;

	memset(&sa, 0, sizeof(sa));
	memset(&sg, 0, sizeof(sg));
	memset(&sc, 0, sizeof(sc));
	sc.lfd = sc.mfd = -1;
	sg.k.pid = -1;
	hsm_log_init("hsmesh ca serve", HSM_LOG_INFO);
	if ((r = ca_config_load(cfgpath, &cfg)) != 0)
		goto out;
	/* Bound as started (a port below 1024 needs root), then user: for everything else. */
	sc.listen = cfg->listen;
	sc.metrics_listen = cfg->metrics_listen;
	if ((r = cmp_bind(&sc)) != 0 || (r = priv_drop(cfg->confine.user)) != 0)
		goto out;
	if (cfg->confine.user != NULL)
		log_info("running as user '%s' (uid %u)", cfg->confine.user, (unsigned)getuid());
	if ((r = signer_load_root(cfg, &sg)) != 0 ||
	    (r = ca_records_open(cfg, &lg, &au)) != 0 ||
	    (r = signer_use_set(&sg, lg)) != 0 ||
	    (r = ca_token_key_load(cfg, 1, key)) != 0 ||
	    (cfg->metrics_listen != NULL && (r = metrics_new(&m)) != 0))
		goto out;
	memset(&sa, 0, sizeof(sa));
	sa.cfg = cfg;
	sa.sg = &sg;
	sa.lg = lg;
	sa.au = au;
	(void)metrics_get(m, METRIC_GAUGE, "hsmesh_ca_keyholder_up",
	    "1 while the CA's keyholder runs, 0 while it is restarted", NULL, &sa.kh_up);
	(void)metrics_get(m, METRIC_COUNTER, "hsmesh_ca_keyholder_restarts_total",
	    "Restarts of the CA's keyholder after it died", NULL, &sa.kh_restarts);
	if ((r = signer_start_supervised(cfg, &sg, kh_state, &sa)) != 0 ||
	    (r = hsm_pkey_selftest(sg.key)) != 0)
		goto out;
	metric_gauge_set(sa.kh_up, 1);
	serve_ca_metrics(m, &sg);
	if ((r = ca_crl_new(sg.root, sg.key, lg, cfg->crl.next_update, serve_ready, &sa,
	    &sa.crl)) != 0 ||
	    (cfg->crl.url != NULL && (r = crl_url_path(cfg->crl.url, &crl_path)) != 0))
		goto out;
	sc.crl_path = crl_path;
	sc.crl_get = serve_crl;
	sc.crl_arg = &sa;
	sc.on_bound = serve_bound;
	sc.bound_arg = &sa;
	sc.port_file = port_file;
	sc.trust_domain = cfg->trust_domain;
	sc.cacert = sg.root;
	sc.cachain = sg.chain;
	sc.cabundle = sg.bundle;
	sc.cakey = sg.key;
	sc.ledger = lg;
	sc.audit = au;
	sc.token_key = key;
	sc.svid_ttl = cfg->svid_ttl;
	sc.max_ttl = cfg->max_ttl;
	sc.issue = serve_issue;
	sc.issue_arg = &sa;
	sc.attest = cfg->attest;
	sc.signer_ready = serve_ready;
	sc.signer_arg = &sa;
	sc.metrics = m;
	sc.seccomp_mode = cfg->confine.mode;
	sc.seccomp_allow = cfg->confine.allow;
	sc.lim.max_conns = cfg->front.max_connections;
	sc.lim.max_conns_per_source = cfg->front.max_connections_per_source;
	sc.lim.workers = cfg->front.workers;
	sc.lim.request_timeout_ms = (uint64_t)cfg->front.request_timeout * 1000;
	sc.lim.idle_timeout_ms = (uint64_t)cfg->front.idle_timeout * 1000;
	sc.lim.write_timeout_ms = (uint64_t)cfg->front.write_timeout * 1000;
	sc.lim.max_body = (size_t)cfg->front.max_body;
	sc.lim.max_buffered = (size_t)cfg->front.max_buffered;
	r = cmp_serve(&sc);
	sc.lfd = sc.mfd = -1;	/* closed by cmp_serve */
 out:
	if (sc.lfd >= 0)
		close(sc.lfd);
	if (sc.mfd >= 0)
		close(sc.mfd);
	OPENSSL_cleanse(key, sizeof(key));
	ca_crl_free(sa.crl);
	signer_close(&sg);
	ledger_close(lg);
	audit_close(au);
	metrics_free(m);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("serve", r);
}
