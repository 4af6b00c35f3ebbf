/*
 * main.c - `hsmesh proxy`: start-up (configuration, listeners, metrics,
 * the user: switch, workers, sandbox), the main thread's loop (signals,
 * drain, the metrics endpoint), the link to the node agent (subscription,
 * identity updates, reconnection) and SIGHUP reload (see proxy.h for the
 * rooms).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "agclient.h"
#include "audit.h"
#include "../cmds.h"
#include "err.h"
#include "httplog.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "privdrop.h"
#include "provider_core.h"
#include "proxy.h"
#include "proxyconf.h"
#include "sandbox.h"
#include "util.h"

/* ---- the agent link ---- */

/* agclient's reader thread: hand the SVID to the main thread. */
static void
on_update(void *arg, int status, const struct agc_svid *sv)
{
	struct link *ln = arg;
	struct proxy *px = ln->px;
	char *chain = NULL, *bundle = NULL;
	uint64_t one = 1;

	if (status == 0) {
		chain = strdup(sv->chain_pem);
		bundle = strdup(sv->bundle_pem != NULL ? sv->bundle_pem : "");
		if (chain == NULL || bundle == NULL) {
			free(chain);
			free(bundle);
			return;
		}
		pthread_mutex_lock(&px->mbox_mu);
		free(px->mb_chain);
		free(px->mb_bundle);
		px->mb_chain = chain;
		px->mb_bundle = bundle;
		px->mb_link = ln;
		pthread_mutex_unlock(&px->mbox_mu);
	} else {
		atomic_store(&ln->ended, status);
	}
	if (write(px->mbox_evfd, &one, sizeof(one)) < 0) {
		/* saturated counter: the main thread is awake anyway */
	}
}

static void
link_connect(struct proxy *px, uint64_t now)
{
	struct agc_client *agc = NULL;
	struct link *ln;
	int st;

	px->retry_at = now + 1000;
	if ((st = agc_connect(px->cfg->agent_socket, &agc)) != 0) {
		if (!px->agent_warned)
			log_warn("agent at %s unreachable (%s): new full handshakes fail until it "
			    "is back; retrying every second", px->cfg->agent_socket, hsm_err_msg(st));
		px->agent_warned = 1;
		return;
	}
	if ((ln = calloc(1, sizeof(*ln))) == NULL) {
		agc_free(agc);
		return;
	}
	ln->agc = agc;
	ln->px = px;
	atomic_init(&ln->refs, 1);
	atomic_init(&ln->ended, 0);
	if ((st = agc_subscribe(agc, px->cfg->agent_id, on_update, ln)) != 0) {
		if (!px->agent_warned)
			log_warn("agent at %s: subscription failed (%s); retrying every second",
			    px->cfg->agent_socket, hsm_err_msg(st));
		px->agent_warned = 1;
		link_put(ln);
		return;
	}
	revoke_subscribe(px, ln);
	if (px->agent_warned)
		log_info("connected to the agent at %s again", px->cfg->agent_socket);
	px->agent_warned = 0;
	px->link = ln;
	metric_gauge_set(px->agent_up, 1);
}

static void
agent_events(struct proxy *px, uint64_t now)
{
	char *chain, *bundle;
	struct link *ln, *crl_ln;
	uint8_t *crl;
	size_t crl_len;
	uint64_t v;
	int st;

	if (read(px->mbox_evfd, &v, sizeof(v)) < 0) {
		/* EAGAIN */
	}
	pthread_mutex_lock(&px->mbox_mu);
	chain = px->mb_chain;
	bundle = px->mb_bundle;
	ln = px->mb_link;
	px->mb_chain = px->mb_bundle = NULL;
	px->mb_link = NULL;
	crl = px->mb_crl;
	crl_len = px->mb_crl_len;
	crl_ln = px->mb_crl_link;
	px->mb_crl = NULL;
	px->mb_crl_link = NULL;
	pthread_mutex_unlock(&px->mbox_mu);
	if (chain != NULL && ln == px->link && px->link != NULL)
		install_ident(px, px->link, chain, bundle);
	free(chain);
	free(bundle);
	if (crl != NULL && crl_ln == px->link && px->link != NULL)
		revoke_take(px, crl, crl_len);
	else
		free(crl);
	if (px->link != NULL && px->link->crlc != NULL &&
	    (st = atomic_exchange(&px->link->crl_ended, 0)) != 0) {
		log_warn("CRL subscription ended (%s): revocation.stale applies to the CRL held "
		    "until the next agent connection", hsm_strerror(st));
		agc_free(px->link->crlc);
		px->link->crlc = NULL;
	}
	if (px->link != NULL && (st = atomic_load(&px->link->ended)) != 0) {
		if (st == HSM_EAGAIN)
			log_warn("the agent has no certificate for us yet (%s); retrying every second",
			    hsm_strerror(st));
		else
			log_warn("agent connection lost (%s): established connections continue; new "
			    "full handshakes fail until it is back; reconnecting", hsm_strerror(st));
		px->agent_warned = 1;
		metric_gauge_set(px->agent_up, 0);
		link_put(px->link);
		px->link = NULL;
		px->retry_at = now + (st == HSM_EAGAIN ? 1000 : 200);
	}
}

/* The access log at path (NULL: none, *out NULL; "-": stderr), opened as the running user. */
static int
access_log_open(const char *path, struct audit **out)
{
	*out = NULL;
	if (path == NULL)
		return 0;
	return audit_open_as(strcmp(path, "-") == 0 ? NULL : path, 0, "access log", out);
}

/* Put a (or no log) in place of the access log in use, which is closed. */
static void
access_log_install(struct proxy *px, struct audit *a)
{
	struct audit *old;

	pthread_rwlock_wrlock(&px->alog_lock);
	old = px->alog;
	px->alog = a;
	pthread_rwlock_unlock(&px->alog_lock);
	audit_close(old);
}

int
policy_http_metrics(struct proxy *px, struct policy *p)
{
	const struct proxy_config *cfg = p->cfg;
	const char **names = NULL;
	int st = 0;

	if ((p->hm = calloc(cfg->nlst, sizeof(*p->hm))) == NULL)
		return HSM_ENOMEM;
	for (size_t i = 0; i < cfg->nlst && st == 0; i++) {
		const struct proxy_listener *l = &cfg->lst[i];

		if (!l->http)
			continue;
		if (l->nroutes > 0 && (names = calloc(l->nroutes, sizeof(*names))) == NULL)
			return HSM_ENOMEM;
		for (size_t k = 0; k < l->nroutes; k++)
			names[k] = l->routes[k].name;
		st = http_metrics_new(px->m, l->name, names, l->nroutes, &p->hm[i]);
		free(names);
		names = NULL;
	}
	return st;
}

/* Two optional strings are equal (both NULL, or the same text). */
static int
str_same(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/*
 * SIGHUP: re-read proxy.yaml. Allow lists, expect_id, targets, SNI,
 * routes and timeouts apply to new connections (routes: to new
 * requests); the listener set itself (names, addresses, protocols)
 * needs a restart: a reload never binds, so it needs no privilege after
 * the user: switch. The access log is reopened (log rotation). All or
 * nothing: a file that does not load, a listener change, an access log
 * that cannot be opened (as the running user) or a failed set-up leave
 * the running policy and access log in place.
 */
static void
reload(struct proxy *px)
{
	struct proxy_config *nc = NULL;
	struct policy *p, *old;
	struct audit *alog = NULL;
	size_t i;
	int st;

	if ((st = proxy_config_load_with(px->cfgpath, PROXYCONF_HTTP, &nc)) != 0) {
		log_err("reload refused, keeping the running configuration: %s", hsm_err_msg(st));
		return;
	}
	if (nc->nlst != px->cfg->nlst)
		goto incompatible;
	for (i = 0; i < nc->nlst; i++)
		if (strcmp(nc->lst[i].name, px->cfg->lst[i].name) != 0 ||
		    nc->lst[i].inbound != px->cfg->lst[i].inbound ||
		    nc->lst[i].http != px->cfg->lst[i].http ||
		    strcmp(nc->lst[i].listen, px->cfg->lst[i].listen) != 0)
			goto incompatible;
	if (strcmp(nc->agent_socket, px->cfg->agent_socket) != 0 ||
	    strcmp(nc->agent_id, px->cfg->agent_id) != 0 || nc->workers != px->cfg->workers ||
	    nc->tls_min_version != px->cfg->tls_min_version || nc->tickets != px->cfg->tickets ||
	    nc->max_connections != px->cfg->max_connections ||
	    memcmp(&nc->adm, &px->cfg->adm, sizeof(nc->adm)) != 0 ||
	    !str_same(nc->metrics_listen, px->cfg->metrics_listen) ||
	    !str_same(nc->confine.user, px->cfg->confine.user) ||
	    !str_same(nc->confine.mode, px->cfg->confine.mode) ||
	    !str_same(nc->confine.allow, px->cfg->confine.allow))
		log_warn("reload: changes to agent, workers, tls, limits.max_connections, admission, "
		    "metrics, user or seccomp take effect at the next restart");
	if ((st = access_log_open(nc->access_log, &alog)) != 0) {
		log_err("reload refused, keeping the running configuration and access log: %s",
		    hsm_err_msg(st));
		proxy_config_free(nc);
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		audit_close(alog);
		proxy_config_free(nc);
		return;
	}
	p->cfg = nc;
	atomic_init(&p->refs, 1);
	if ((st = policy_http_metrics(px, p)) != 0) {
		log_err("reload refused, keeping the running configuration: route metrics: %s",
		    hsm_err_msg(st));
		audit_close(alog);
		policy_put(p);
		return;
	}
	access_log_install(px, alog);
	pthread_mutex_lock(&px->mu);
	old = px->pol;
	px->pol = p;
	atomic_fetch_add(&px->gen, 1);
	pthread_mutex_unlock(&px->mu);
	policy_put(old);
	log_info("reloaded %s: new connections use the new policy of %zu listeners", px->cfgpath,
	    nc->nlst);
	return;
 incompatible:
	log_err("reload refused, keeping the running configuration: the set of listeners "
	    "(names, directions, listen addresses, protocols) changed; restart the proxy for that");
	proxy_config_free(nc);
}

/* ---- start-up ---- */

/* Buckets of the handshake and key-operation histograms, seconds. */
static const double hs_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1, 2.5, 5 };

/*
 * The series of each listener, registered in this order (so HELP comes
 * from the first of a family): where the series goes in struct lmetrics,
 * its family, and a label after "listener" (value NULL: the listener's
 * direction).
 */
static const struct lseries {
	size_t off;
	enum metric_type type;
	const char *name, *help, *label, *value;
} lseries[] = {
	{ offsetof(struct lmetrics, conns), METRIC_COUNTER, "hsmesh_proxy_connections_total",
	    "Connections accepted", "direction", NULL },
	{ offsetof(struct lmetrics, active), METRIC_GAUGE, "hsmesh_proxy_connections_active",
	    "Connections open now", NULL, NULL },
	{ offsetof(struct lmetrics, hs_full), METRIC_COUNTER, "hsmesh_proxy_handshakes_total",
	    "Completed and authorised TLS handshakes", "resumed", "false" },
	{ offsetof(struct lmetrics, hs_resumed), METRIC_COUNTER, "hsmesh_proxy_handshakes_total",
	    NULL, "resumed", "true" },
	{ offsetof(struct lmetrics, rx), METRIC_COUNTER, "hsmesh_proxy_bytes_total",
	    "Bytes relayed, seen from the connecting client", "direction", "received" },
	{ offsetof(struct lmetrics, tx), METRIC_COUNTER, "hsmesh_proxy_bytes_total", NULL,
	    "direction", "sent" },
	{ offsetof(struct lmetrics, hs_time), METRIC_HISTOGRAM, "hsmesh_proxy_handshake_seconds",
	    "From accept to an authorised TLS session", NULL, NULL },
	{ offsetof(struct lmetrics, limit), METRIC_COUNTER, "hsmesh_proxy_connections_refused_total",
	    "Connections closed at accept because limits.max_connections was reached", NULL, NULL },
	{ offsetof(struct lmetrics, upstream_fail), METRIC_COUNTER,
	    "hsmesh_proxy_upstream_connect_failures_total",
	    "Connections to forward_to/connect that failed or timed out", NULL, NULL },
	{ offsetof(struct lmetrics, up_opened), METRIC_COUNTER,
	    "hsmesh_proxy_upstream_connections_total",
	    "Upstream connections an HTTP listener's pools opened", NULL, NULL },
	{ offsetof(struct lmetrics, up_active), METRIC_GAUGE,
	    "hsmesh_proxy_upstream_connections_active",
	    "Upstream connections of an HTTP listener's pools open now", NULL, NULL },
};

/* The process's series (no labels), after the listeners'. */
static const struct pseries {
	size_t off;
	enum metric_type type;
	const char *name, *help;
} pseries[] = {
	{ offsetof(struct proxy, keyop_time), METRIC_HISTOGRAM, "hsmesh_proxy_key_operation_seconds",
	    "Private-key operations through the agent, as seen by the handshake" },
	{ offsetof(struct proxy, rotations), METRIC_COUNTER, "hsmesh_proxy_certificate_rotations_total",
	    "Certificates replaced by a rotation pushed from the agent" },
	{ offsetof(struct proxy, not_after), METRIC_GAUGE,
	    "hsmesh_proxy_certificate_expiry_timestamp_seconds",
	    "notAfter of the certificate new handshakes use (Unix time)" },
	{ offsetof(struct proxy, agent_up), METRIC_GAUGE, "hsmesh_proxy_agent_connected",
	    "1 while the proxy is connected to the node agent" },
	{ offsetof(struct proxy, keyops_now), METRIC_GAUGE,
	    "hsmesh_proxy_key_operations_in_flight",
	    "Inbound full handshakes admitted whose signature is not done yet" },
	{ offsetof(struct proxy, crl_number), METRIC_GAUGE, "hsmesh_proxy_crl_number",
	    "crlNumber of the CRL new handshakes check (0: none held)" },
	{ offsetof(struct proxy, crl_next_update), METRIC_GAUGE,
	    "hsmesh_proxy_crl_next_update_timestamp_seconds",
	    "nextUpdate of the CRL held (Unix time; 0: none held)" },
	{ offsetof(struct proxy, revoked_closed), METRIC_COUNTER,
	    "hsmesh_proxy_revoked_connections_closed_total",
	    "Established connections closed because a new CRL lists the peer" },
};

static int
register_one(struct metrics *m, enum metric_type type, const char *name, const char *help,
    const char *const *labels, struct metric **out)
{
	if (type == METRIC_HISTOGRAM)
		return metrics_histogram(m, name, help, hs_bounds,
		    sizeof(hs_bounds) / sizeof(hs_bounds[0]), labels, out);
	return metrics_get(m, type, name, help, labels, out);
}

static int
register_metrics(struct proxy *px)
{
	struct proxy_config *cfg = px->cfg;
	int st = 0;

	if ((px->lm = calloc(cfg->nlst, sizeof(*px->lm))) == NULL)
		return HSM_ENOMEM;
	for (size_t i = 0; i < cfg->nlst; i++) {
		const char *dir = cfg->lst[i].inbound ? "inbound" : "outbound";

		for (size_t k = 0; k < sizeof(lseries) / sizeof(lseries[0]); k++) {
			const struct lseries *d = &lseries[k];
			const char *labels[] = { "listener", cfg->lst[i].name, d->label,
			    d->value != NULL ? d->value : dir, NULL };

			if ((st = register_one(px->m, d->type, d->name, d->help, labels,
			    (struct metric **)((char *)&px->lm[i] + d->off))) != 0)
				return st;
		}
	}
	for (size_t k = 0; k < sizeof(pseries) / sizeof(pseries[0]); k++)
		if ((st = register_one(px->m, pseries[k].type, pseries[k].name, pseries[k].help,
		    NULL, (struct metric **)((char *)px + pseries[k].off))) != 0)
			return st;
	return 0;
}

/* Append "NAME PORT\n" to the ports-file text. */
static int
ports_add(char **ports, size_t *plen, const char *name, int port)
{
	char line[128], *np;
	size_t n;

	snprintf(line, sizeof(line), "%s %d\n", name, port);
	n = strlen(line);
	if ((np = realloc(*ports, *plen + n + 1)) == NULL)
		return HSM_ENOMEM;
	memcpy(np + *plen, line, n + 1);
	*ports = np;
	*plen += n;
	return 0;
}

/* Bind every listener once per worker (SO_REUSEPORT); port 0 resolves on the first. */
static int
bind_listeners(struct proxy *px, char **ports, size_t *plen)
{
	struct proxy_config *cfg = px->cfg;
	char addr[96];
	int st = 0;

	for (size_t i = 0; i < cfg->nlst; i++) {
		const struct proxy_listener *l = &cfg->lst[i];
		struct sockaddr_storage ss = l->listen_addr;
		socklen_t sl = l->listen_len;

		for (unsigned k = 0; k < px->nw; k++) {
			if ((st = net_listen(&ss, sl, 1, 1, 1024, &px->w[k].lfd[i])) != 0) {
				st = hsm_err(st, "listener %s: %s", l->name, hsm_err_msg(st));
				goto out;
			}
			if (k == 0) {
				sl = sizeof(ss);
				getsockname(px->w[0].lfd[i], (struct sockaddr *)&ss, &sl);
			}
		}
		net_addr_str(&ss, sl, addr, sizeof(addr));
		log_info("%s %s listening on %s -> %s%s%s", l->inbound ? "inbound" : "outbound",
		    l->name, addr, l->target, l->inbound ? "" : " expecting ",
		    l->inbound ? "" : l->allow[0]);
		if ((st = ports_add(ports, plen, l->name, net_local_port(px->w[0].lfd[i]))) != 0)
			break;
	}
 out:
	return st;
}

/*
 * user: of proxy.yaml, once every listener is bound (privdrop.h). The
 * file must stay readable for SIGHUP: said now rather than at the first
 * reload.
 */
static int
become_user(struct proxy *px)
{
	const char *user = px->cfg->confine.user;
	int st;

	if ((st = priv_drop(user)) != 0 || user == NULL || *user == '\0')
		return st;
	log_info("running as user '%s' (uid %u, gid %u)", user, (unsigned)getuid(),
	    (unsigned)getgid());
	if (access(px->cfgpath, R_OK) != 0)
		log_warn("%s is not readable by user '%s' (%s): SIGHUP reloads will be refused",
		    px->cfgpath, user, strerror(errno));
	return 0;
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
proxy_usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh proxy -c proxy.yaml [-d] [--ports-file FILE] [--check]\n"
	    "\n"
	    "The sidecar: mutual TLS in front of (inbound) and for (outbound) one workload.\n"
	    "Certificates come from the node agent; every private-key operation is done by\n"
	    "the agent's token, asynchronously. See docs/PROXY.md.\n"
	    "\n"
	    "  -c, --config FILE    proxy.yaml\n"
	    "  -d, --debug          debug log lines\n"
	    "      --ports-file F   write 'NAME PORT' per listener once bound (port 0 picks one)\n"
	    "      --check          check proxy.yaml (and that its user: exists) and exit\n"
	    "  -h, --help           this text\n"
	    "\n"
	    "Started as root with 'user: NAME' in proxy.yaml, the proxy binds its listeners\n"
	    "and metrics endpoint, then becomes NAME (groups, gid, uid; no capability kept)\n"
	    "before it opens the access log, writes the ports file or reads anything else.\n"
	    "Started as another user than root or NAME, it refuses to start.\n"
	    "\n"
	    "Its seccomp filter goes on once the workers run: seccomp.mode enforce (default),\n"
	    "kill, log or off; seccomp.allow adds system calls (docs/ARCHITECTURE.md).\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT drain (stop accepting, let connections finish for up to\n"
	    "timeouts.drain, a second signal stops at once); SIGHUP reloads the policy and\n"
	    "reopens the access log, as the running user, all or nothing: it never binds, so\n"
	    "a changed listen address needs a restart (the reload is refused).\n");
}

static int
main_loop(struct proxy *px)
{
	struct epoll_event evs[32];
	struct signalfd_siginfo si;
	uint64_t now;
	int n, i;

	for (;;) {
		n = epoll_wait(px->ep, evs, 32, 100);
		now = hsm_now_ms();
		for (i = 0; i < n; i++) {
			int *tag = evs[i].data.ptr;

			if (tag == &px->sfd) {
				while (read(px->sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						reload(px);
					} else if (atomic_load(&px->draining)) {
						log_info("second signal: stopping now");
						px->drain_end = now;
					} else {
						log_info("%s: draining %u connections (up to %u ms)",
						    strsignal((int)si.ssi_signo),
						    atomic_load(&px->nconns), px->cfg->drain_timeout_ms);
						atomic_store(&px->draining, 1);
						px->drain_end = now + px->cfg->drain_timeout_ms;
						wake_workers(px);
					}
				}
			} else if (tag == &px->mbox_evfd) {
				agent_events(px, now);
			} else if ((void *)tag == px->msrv) {
				metrics_srv_run(px->msrv, now);
			}
		}
		if (px->msrv != NULL)
			metrics_srv_expire(px->msrv, now);
		admission_flush(px, now, 0);
		if (px->link == NULL && now >= px->retry_at && !atomic_load(&px->draining))
			link_connect(px, now);
		if (atomic_load(&px->draining) &&
		    (atomic_load(&px->nconns) == 0 || now >= px->drain_end)) {
			unsigned left = atomic_load(&px->nconns);

			if (left > 0)
				log_warn("drain time over: closing %u connections", left);
			atomic_store(&px->stopping, 1);
			wake_workers(px);
			return 0;
		}
	}
}

int
proxy_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "ports-file", required_argument, NULL, 'p' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct proxy px;
	const char *ports_file = NULL;
	char *ports = NULL;
	size_t plen = 0;
	struct policy *pol = NULL;
	struct audit *alog = NULL;
	struct epoll_event ev;
	sigset_t sigs;
	int ch, debug = 0, check = 0, st, ret = 1;
	unsigned started = 0, i;

	memset(&px, 0, sizeof(px));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:dh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			px.cfgpath = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'p':
			ports_file = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 'h':
			proxy_usage(stdout);
			return 0;
		default:
			proxy_usage(stderr);
			return 2;
		}
	}
	if (px.cfgpath == NULL || optind != argc) {
		fprintf(stderr, "hsmesh proxy: %s\n", px.cfgpath == NULL ? "missing -c proxy.yaml" :
		    "unexpected argument");
		return 2;
	}
	hsm_log_init("hsmesh proxy", debug ? HSM_LOG_DEBUG : HSM_LOG_INFO);
	if ((st = proxy_config_load_with(px.cfgpath, PROXYCONF_HTTP, &px.cfg)) != 0) {
		fprintf(stderr, "hsmesh proxy: %s\n", hsm_err_msg(st));
		return 1;
	}
	if (check) {
		if ((st = priv_lookup(px.cfg->confine.user)) != 0) {
			fprintf(stderr, "hsmesh proxy: %s: %s\n", px.cfgpath, hsm_err_msg(st));
			proxy_config_free(px.cfg);
			return 1;
		}
		printf("%s: ok (%zu listeners)\n", px.cfgpath, px.cfg->nlst);
		proxy_config_free(px.cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	pthread_mutex_init(&px.mu, NULL);
	pthread_mutex_init(&px.mbox_mu, NULL);
	pthread_rwlock_init(&px.alog_lock, NULL);
	px.ep = px.sfd = px.mbox_evfd = -1;
	px.nw = px.cfg->workers;
	/* The policy in force starts as a second copy of the start-up file. */
	if ((pol = calloc(1, sizeof(*pol))) == NULL || (st = proxy_config_load_with(px.cfgpath,
	    PROXYCONF_HTTP, &pol->cfg)) != 0) {
		st = pol == NULL ? HSM_ENOMEM : st;
		free(pol);
		goto fail;
	}
	atomic_init(&pol->refs, 1);
	px.pol = pol;
	if ((st = hsm_provider_init()) != 0) {
		st = hsm_err(HSM_ECRYPTO, "OpenSSL initialisation failed");
		goto fail;
	}
	if ((st = metrics_new(&px.m)) != 0 || (st = register_metrics(&px)) != 0 ||
	    (st = policy_http_metrics(&px, px.pol)) != 0 || (st = admission_init(&px)) != 0)
		goto fail;
	if ((px.sess = calloc(px.cfg->nlst, sizeof(*px.sess))) == NULL) {
		st = HSM_ENOMEM;
		goto fail;
	}
	for (i = 0; i < px.cfg->nlst; i++)
		pthread_mutex_init(&px.sess[i].mu, NULL);
	if ((px.w = calloc(px.nw, sizeof(*px.w))) == NULL) {
		st = HSM_ENOMEM;
		goto fail;
	}
	for (i = 0; i < px.nw; i++)
		if ((st = worker_init(&px, &px.w[i], i)) != 0)
			goto fail;
	if ((st = bind_listeners(&px, &ports, &plen)) != 0)
		goto fail;
	for (i = 0; i < px.nw; i++)
		if ((st = worker_listen(&px.w[i])) != 0)
			goto fail;
	if (px.cfg->metrics_listen != NULL) {
		char addr[96];
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int mfd;

		if ((st = net_listen(&px.cfg->metrics_addr, px.cfg->metrics_len, 0, 1, 64,
		    &mfd)) != 0)
			goto fail;
		if ((st = metrics_srv_new(px.m, mfd, &px.msrv)) != 0) {
			close(mfd);
			goto fail;
		}
		getsockname(mfd, (struct sockaddr *)&ss, &sl);
		log_info("metrics on http://%s/metrics", net_addr_str(&ss, sl, addr, sizeof(addr)));
		if ((st = ports_add(&ports, &plen, "metrics", net_local_port(mfd))) != 0)
			goto fail;
	}
	/*
	 * Bound as started (a port below 1024 needs root), then user: for
	 * everything else, the access log and the ports file included, so
	 * that what a reload reopens is what the user can open.
	 */
	if ((st = become_user(&px)) != 0 || (st = access_log_open(px.cfg->access_log, &alog)) != 0)
		goto fail;
	access_log_install(&px, alog);
	if (ports_file != NULL && (st = hsm_write_file_atomic(ports_file, ports, plen, 0644)) != 0)
		goto fail;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if ((px.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (px.mbox_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    (px.ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		st = hsm_err(HSM_EIO, "signalfd/eventfd/epoll: %s", strerror(errno));
		goto fail;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &px.sfd };
	epoll_ctl(px.ep, EPOLL_CTL_ADD, px.sfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &px.mbox_evfd };
	epoll_ctl(px.ep, EPOLL_CTL_ADD, px.mbox_evfd, &ev);
	if (px.msrv != NULL) {
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = px.msrv };
		epoll_ctl(px.ep, EPOLL_CTL_ADD, metrics_srv_fd(px.msrv), &ev);
	}
	for (i = 0; i < px.nw; i++) {
		if (pthread_create(&px.w[i].th, NULL, worker_main, &px.w[i]) != 0) {
			st = hsm_err(HSM_EIO, "cannot start worker threads");
			goto fail;
		}
		started++;
	}
	link_connect(&px, hsm_now_ms());
	if ((st = sandbox_enter_named(SANDBOX_PROXY, px.cfg->confine.mode, px.cfg->confine.allow)) != 0)
		goto fail;
	log_info("started: %u workers, %zu listeners, agent %s", px.nw, px.cfg->nlst,
	    px.cfg->agent_socket);
	ret = main_loop(&px) == 0 ? 0 : 1;
	goto out;
 fail:
	fprintf(stderr, "hsmesh proxy: %s\n", hsm_err_msg(st));
	atomic_store(&px.stopping, 1);
	atomic_store(&px.draining, 1);
	if (started > 0)
		wake_workers(&px);
	ret = 1;
 out:
	for (i = 0; i < started; i++)
		pthread_join(px.w[i].th, NULL);
	if (ret == 0)
		log_info("stopped");
	/*
	 * Connections whose key operation is still paused cannot be freed
	 * (their async job would leak or resume into freed memory): exit()
	 * reclaims them. Everything else is released for leak checkers.
	 */
	link_put(px.link);
	if (px.w != NULL)
		for (i = 0; i < px.nw; i++)
			worker_fini(&px.w[i]);
	free(px.w);
	metrics_srv_free(px.msrv);
	admission_fini(&px);
	ident_put(px.cur);
	policy_put(px.pol);
	audit_close(px.alog);
	metrics_free(px.m);
	free(px.lm);
	if (px.sess != NULL)
		for (i = 0; i < px.cfg->nlst; i++)
			sess_clear(&px.sess[i]);
	free(px.sess);
	free(px.mb_chain);
	free(px.mb_bundle);
	free(px.mb_crl);
	free(px.crl_pending);
	X509_CRL_free(px.crl);
	X509_free(px.crl_ca);
	if (px.sfd >= 0)
		close(px.sfd);
	if (px.mbox_evfd >= 0)
		close(px.mbox_evfd);
	if (px.ep >= 0)
		close(px.ep);
	proxy_config_free(px.cfg);
	free(ports);
	return ret;
}
