/*
 * main.c - the node agent's daemon (`hsmesh agent -c agent.yaml`; the
 * rooms are listed in agent.h): start-up, the keyholder process, the epoll
 * loop (the local API, signals, finished jobs, timers) and shutdown.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#include "agent.h"
#include "cert.h"
#include "../cmds.h"
#include "err.h"
#include "heap.h"
#include "khclient.h"
#include "khsup.h"
#include "log.h"
#include "privdrop.h"
#include "sandbox.h"
#include "provider_core.h"
#include "spiffe.h"
#include "svid.h"
#include "util.h"

/* Tags of ag->ep for the signalfd and the job eventfd; the API has its own. */
static char tag_signal, tag_job;

void
agent_usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh agent -c agent.yaml [-d]\n"
	    "       hsmesh agent client --socket PATH get [SPIFFE_ID] [--bundle FILE]\n"
	    "       hsmesh agent client --socket PATH sign [SPIFFE_ID] [--key HEX] < DATA > SIG.der\n"
	    "       hsmesh agent client --socket PATH watch [SPIFFE_ID] [--count N]\n"
	    "\n"
	    "The node agent: keeps an X.509-SVID per workload (keys in the token, enrolment\n"
	    "and renewal with CMP) and serves them on a local Unix socket, each to the\n"
	    "processes its selectors select. With a node: section it keeps a node identity\n"
	    "of its own (never served) and the workloads the CA's registration entries give\n"
	    "the node, enrolled and renewed under the node's certificate.\n"
	    "\n"
	    "  -c FILE   agent.yaml (see docs/AGENT.md)\n"
	    "  -d        debug logging\n"
	    "\n"
	    "'agent client' is a debugging client of the local API: 'get' prints the\n"
	    "certificate chain (PEM), 'sign' has the agent sign stdin (ECDSA, SHA-256;\n"
	    "it signs TLS handshake signature inputs only, at most 64 KiB) with the\n"
	    "workload's current key, or with the key --key names (64 hex digits: the\n"
	    "SHA-256 of its SubjectPublicKeyInfo; current or just retired), DER\n"
	    "signature on stdout; 'watch' prints one line per certificate received\n"
	    "(the current one, then each rotation).\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT stop the agent; SIGHUP fetches the CA's CRL now\n"
	    "(docs/LIFECYCLE.md, \"Revocation\").\n");
}

/* The trust domain a root names in its spiffe://TD URI SAN into td ("" when none). */
static void
root_trust_domain(X509 *root, char *td, size_t cap)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(root, NID_subject_alt_name, NULL, NULL);
	struct spiffe_id sid;
	char uri[SPIFFE_ID_MAX + 1];

	td[0] = '\0';
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		int type, n;
		const ASN1_IA5STRING *s = GENERAL_NAME_get0_value(gn, &type);

		if (type != GEN_URI || (n = ASN1_STRING_length(s)) <= 0 || (size_t)n >= sizeof(uri))
			continue;
		memcpy(uri, ASN1_STRING_get0_data(s), (size_t)n);
		uri[n] = '\0';
		if (strlen(uri) == (size_t)n && spiffe_id_parse(uri, &sid) == 0 &&
		    sid.path[0] == '\0') {
			snprintf(td, cap, "%s", sid.trust_domain);
			break;
		}
	}
	GENERAL_NAMES_free(gens);
}

/* The anchors learned beside ca.root (cmpc_ca.anchors): a copy, NULL for none. */
static STACK_OF(X509) *
agent_anchors(void *arg)
{
	struct agent *ag = arg;
	STACK_OF(X509) *out = NULL;

	pthread_mutex_lock(&ag->anchors_mu);
	if (ag->learned != NULL && sk_X509_num(ag->learned) > 0 &&
	    (out = sk_X509_new_null()) != NULL &&
	    !X509_add_certs(out, ag->learned, X509_ADD_FLAG_UP_REF)) {
		svid_certs_free(out);
		out = NULL;
	}
	pthread_mutex_unlock(&ag->anchors_mu);
	return out;
}

/* 1 when a and b hold the same certificates. */
static int
same_certs(STACK_OF(X509) *a, STACK_OF(X509) *b)
{
	int na = a != NULL ? sk_X509_num(a) : 0, nb = b != NULL ? sk_X509_num(b) : 0;

	if (na != nb)
		return 0;
	for (int i = 0; i < na; i++) {
		int found = 0;

		for (int j = 0; j < nb && !found; j++)
			found = X509_cmp(sk_X509_value(a, i), sk_X509_value(b, j)) == 0;
		if (!found)
			return 0;
	}
	return 1;
}

/*
 * cmpc_ca.learn: the CA roots of a verified answer's caPubs. They replace
 * the learned set (ca.root is always kept), and the bundle served from
 * then on (each identity's at its next installation) is ca.root and them:
 * a CA prepared for rotation is trusted before it issues, a retired one
 * leaves.
 */
static void
agent_learn(void *arg, STACK_OF(X509) *roots)
{
	struct agent *ag = arg;
	STACK_OF(X509) *keep = sk_X509_new_null();
	char *pem = NULL, sn[80];
	size_t pemlen = 0;

	for (int i = 0; keep != NULL && i < sk_X509_num(roots); i++) {
		X509 *c = sk_X509_value(roots, i);

		if (X509_cmp(c, ag->root) != 0 && !X509_add_cert(keep, c, X509_ADD_FLAG_UP_REF)) {
			svid_certs_free(keep);
			keep = NULL;
		}
	}
	if (keep == NULL)
		return;
	pthread_mutex_lock(&ag->anchors_mu);
	if (!same_certs(keep, ag->learned) && cert_pem_chain(ag->root, keep, &pem, &pemlen) == 0) {
		svid_certs_free(ag->learned);
		ag->learned = keep;
		keep = NULL;
		free(ag->root_pem);
		ag->root_pem = pem;
		ag->root_pemlen = pemlen;
		log_info("the CA's bundle changed: %d CA certificate%s beside ca.root%s%s",
		    sk_X509_num(ag->learned), sk_X509_num(ag->learned) == 1 ? "" : "s",
		    sk_X509_num(ag->learned) > 0 ? ", serial " : "",
		    sk_X509_num(ag->learned) > 0 ?
		    svid_serial_text(sk_X509_value(ag->learned, 0), sn, sizeof(sn)) : "");
	}
	pthread_mutex_unlock(&ag->anchors_mu);
	svid_certs_free(keep);
}

/* ca.root: the trust anchor, also the bundle served; the CA as cmpclient sees it. */
static int
load_root(struct agent *ag)
{
	X509 *leaf = NULL;
	STACK_OF(X509) *rest = NULL;
	char why[300];
	int r;

	if ((r = svid_load_pem_file(ag->conf->root, &leaf, &rest)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return hsm_err(HSM_ECONFIG, "%s: ca.root: %s", ag->conf->path, why);
	}
	svid_certs_free(rest);
	if (X509_check_ca(leaf) == 0) {
		X509_free(leaf);
		return hsm_err(HSM_ECONFIG, "%s: ca.root %s is not a CA certificate",
		    ag->conf->path, ag->conf->root);
	}
	ag->root = leaf;
	ag->ca = (struct cmpc_ca){ .servers = ag->conf->ca, .nservers = ag->conf->nca,
	    .root = leaf, .debug = ag->debug, .anchors = agent_anchors, .learn = agent_learn,
	    .anchors_arg = ag };
	root_trust_domain(leaf, ag->td, sizeof(ag->td));
	return cert_pem_chain(leaf, NULL, &ag->root_pem, &ag->root_pemlen);
}

/*
 * The node identity of node: (agent.h): its ID (node.id, else
 * spiffe://<the root's trust domain>/node/<host name>), which must be in
 * the root's trust domain when the root names one. Not served: it is not
 * among ag->wl.
 */
static int
node_setup(struct agent *ag)
{
	const struct agent_node *n = &ag->conf->node;
	struct agent_workload c = { .join_token_file = n->join_token_file };
	char host[256], why[400], *id = NULL;
	int r;

	if (!n->configured)
		return 0;
	if (n->id == NULL) {
		if (ag->td[0] == '\0')
			return hsm_err(HSM_ECONFIG, "%s: node.id is needed: ca.root %s names no trust "
			    "domain (no spiffe:// URI)", ag->conf->path, ag->conf->root);
		if (gethostname(host, sizeof(host)) != 0)
			return hsm_err(HSM_ECONFIG, "%s: node.id is needed: no host name",
			    ag->conf->path);
		host[sizeof(host) - 1] = '\0';
		if ((r = agent_node_default_id(ag->td, host, &id)) != 0)
			return r;
	} else if ((id = strdup(n->id)) == NULL) {
		return HSM_ENOMEM;
	}
	if (ag->td[0] != '\0' && (r = spiffe_id_check_domain(id, ag->td)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		free(id);
		return hsm_err(HSM_ECONFIG, "%s: node.id: %s", ag->conf->path, why);
	}
	for (size_t i = 0; i < ag->conf->nwl; i++) {
		if (strcmp(ag->conf->wl[i].id, id) == 0) {
			r = hsm_err(HSM_ECONFIG, "%s: %s is the node's ID and a workload's", ag->conf->path,
			    id);
			free(id);
			return r;
		}
	}
	c.id = id;
	r = wl_new(ag, &c, 1, 1, &ag->node);
	free(id);
	return r;
}

/* Reuse w's certificate from its state directory when still good, else enroll now. */
static void
reuse_or_enroll(struct agent *ag, struct wl *w)
{
	int r;

	if (access(w->cert_path, F_OK) == 0) {
		if ((r = wl_try_reuse(ag, w)) == 0) {
			enroll_schedule_renewal(ag, w);
			return;
		}
		log_warn("%s: not reusing %s: %s", w->c->id, w->cert_path, hsm_err_msg(r));
	}
	w->next_ms = hsm_now_ms();	/* enroll at once */
}

/*
 * The private keyholder (a child on a socketpair): the only process that
 * opens the token. Supervised: if it dies it is restarted with backoff on
 * the same client (khsup.h), and local clients stay connected meanwhile.
 */
static int
start_keyholder(struct agent *ag)
{
	const struct cfg_token *t = &ag->conf->token;
	struct kh_spawn_opts ko = {
		.module = t->module,
		.token_uri = t->uri,
		.pin_file = t->pin_file,
		.pin_env = t->pin_env,
		.sign_delay_ms = t->sign_delay_ms,
		.workers = (int)t->workers,
		.workers_min = (int)t->workers_min,
		.workers_max = (int)t->workers_max,
		.seccomp = ag->conf->confine.mode,
		.seccomp_allow = ag->conf->confine.kh_allow,
	};
	int r;

	if ((r = khsup_start(&ko, "agent", NULL, NULL, &ag->khsup)) != 0)
		return r;
	ag->kh = khsup_client(ag->khsup);
	log_info("keyholder started (pid %ld) for %s", (long)khsup_pid(ag->khsup), t->uri);
	return 0;
}

int
agent_epoll_add(int ep, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		return hsm_err(HSM_EIO, "epoll_ctl: %s", strerror(errno));
	return 0;
}

/*
 * SIGTERM/SIGINT: quit. SIGHUP: fetch the CRL now. SIGCHLD is only drained: the keyholder's
 * supervisor reaps it (and restarts it), evidence commands their own.
 */
static void
handle_signals(struct agent *ag)
{
	struct signalfd_siginfo si;

	while (read(ag->sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			continue;
		if (si.ssi_signo == SIGHUP) {
			crl_fetch_now(ag, "SIGHUP");
			continue;
		}
		log_info("signal %d: shutting down", (int)si.ssi_signo);
		ag->quit = 1;
	}
}

static int
loop(struct agent *ag)
{
	struct epoll_event evs[64];
	int n;

	while (!ag->quit) {
		n = epoll_wait(ag->ep, evs, 64, enroll_next_timeout(ag));
		if (n < 0 && errno != EINTR)
			return hsm_err(HSM_EIO, "epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;

			if (tag == &tag_signal) {
				handle_signals(ag);
			} else if (tag == &tag_job) {
				uint64_t v;

				if (read(ag->job_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn("job eventfd: %s", strerror(errno));
				enroll_reap(ag);
			} else {
				api_event(ag, tag);
			}
		}
		enroll_run_timers(ag);
	}
	return 0;
}

static void
shutdown_agent(struct agent *ag)
{
	api_stop(ag);
	/*
	 * A CA exchange cannot be cancelled. Give running jobs a moment; past
	 * that, stop the keyholder and leave at once without freeing what
	 * their threads still use.
	 */
	if (enroll_finish(ag, 3000) != 0) {
		log_warn("abandoning a CA exchange in progress");
		if (ag->khsup != NULL && khsup_pid(ag->khsup) > 0)
			kill(khsup_pid(ag->khsup), SIGTERM);
		fflush(stderr);
		_exit(0);
	}
	/* Retired and pending keys would be orphans in the token: destroy them now. */
	enroll_drop_keys(ag);
	for (size_t i = 0; i < ag->nwl; i++)
		wl_free(ag->wl[i]);
	free(ag->wl);
	ag->wl = NULL;
	ag->nwl = 0;
	wl_free(ag->node);
	ag->node = NULL;
	khsup_stop(ag->khsup);		/* hangs up, reaps it, frees the client */
	ag->khsup = NULL;
	ag->kh = NULL;
	crl_free(ag);
	X509_free(ag->root);
	svid_certs_free(ag->learned);
	svid_certs_free(ag->issuers);
	free(ag->root_pem);
	if (ag->ep != -1)
		close(ag->ep);
	if (ag->sfd != -1)
		close(ag->sfd);
	if (ag->job_efd != -1)
		close(ag->job_efd);
}

/* Everything up to the loop: workloads, keyholder, signals, the socket, reuse or enroll. */
static int
start(struct agent *ag)
{
	sigset_t sigs;
	int r;

	for (size_t i = 0; i < ag->conf->nwl; i++) {
		struct wl *w = NULL;

		if ((r = wl_new(ag, &ag->conf->wl[i], 0, 0, &w)) != 0 ||
		    (r = wl_sels_from_conf(w)) != 0 || (r = wl_add(ag, w)) != 0) {
			wl_free(w);
			return r;
		}
		w->from_conf = 1;
	}
	if ((r = node_setup(ag)) != 0)
		return r;
	if ((r = hsm_provider_init()) != 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGCHLD);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if ((ag->sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) == -1 ||
	    (ag->job_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1 ||
	    (ag->ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return hsm_err(HSM_EIO, "event set-up: %s", strerror(errno));
	/* Bound as started, then user: for everything else (the keyholder included). */
	if ((r = api_start(ag)) != 0 || (r = agent_epoll_add(ag->ep, ag->sfd, &tag_signal)) != 0 ||
	    (r = agent_epoll_add(ag->ep, ag->job_efd, &tag_job)) != 0 ||
	    (r = priv_drop(ag->conf->confine.user)) != 0)
		return r;
	if (ag->conf->confine.user != NULL)
		log_info("running as user '%s' (uid %u)", ag->conf->confine.user, (unsigned)getuid());
	/*
	 * The keyholder and the evidence command are started by spawners,
	 * forked now (they reset the signals we block): once confined, we
	 * cannot fork or exec.
	 */
	if ((r = start_keyholder(ag)) != 0 || (r = evidence_spawner(&ag->conf->evidence)) != 0)
		return r;
	agent_token_hygiene(ag);
	api_log_ready(ag);
	/* The node first: the entries it learns may name workloads of agent.yaml. */
	if (ag->node != NULL) {
		log_info("node identity %s (never served on the local API)", ag->node->c->id);
		reuse_or_enroll(ag, ag->node);
		entries_load_cache(ag);
		/* Ask the CA for the entries at once (when the node's certificate is good). */
		ag->entries_next_ms = hsm_now_ms();
	}
	/* agent.yaml's (those the cached entries took over included). */
	for (size_t i = 0; i < ag->nwl; i++) {
		struct wl *w = ag->wl[i];

		if (w->from_conf && !w->have && w->next_ms == 0)
			reuse_or_enroll(ag, w);
	}
	/* The CRL kept from last time (our certificates checked against it), then fetched. */
	crl_load_cache(ag);
	log_info("serving %zu workload identit%s on %s", ag->nwl, ag->nwl == 1 ? "y" : "ies",
	    ag->conf->socket);
	/* Started: the start-up's freed memory back to the kernel (heap.h). */
	hsm_heap_trim();
	/* From here on, only the calls serving needs (sandbox.h). */
	return sandbox_enter_named(SANDBOX_AGENT, ag->conf->confine.mode, ag->conf->confine.allow);
}

int
agent_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct agent ag = { .ep = -1, .sfd = -1, .job_efd = -1,
	    .anchors_mu = PTHREAD_MUTEX_INITIALIZER };
	const char *path = NULL;
	int ch, r, debug = 0, ret = 1;

	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return agent_client_main(argc - 1, argv + 1);
	/* Two threads allocate while serving (the main loop, the keyholder client's reader). */
	hsm_heap_lean(2);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:dh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'h':
			agent_usage(stdout);
			return 0;
		default:
			agent_usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		agent_usage(stderr);
		return 2;
	}
	hsm_log_init("hsmesh agent", debug ? HSM_LOG_DEBUG : HSM_LOG_INFO);
	ag.debug = debug;
	if ((r = agent_config_load(path, &ag.conf)) != 0) {
		fprintf(stderr, "hsmesh agent: %s\n", hsm_err_msg(r));
		return 1;
	}
	if ((r = load_root(&ag)) != 0 || (r = hsm_mkdir_p(ag.conf->state_dir, 0755)) != 0) {
		fprintf(stderr, "hsmesh agent: %s\n", hsm_err_msg(r));
		goto out;
	}
	if ((r = start(&ag)) != 0 || (r = loop(&ag)) != 0) {
		log_err("%s", hsm_err_msg(r));
		goto out;
	}
	ret = 0;
 out:
	shutdown_agent(&ag);
	agent_config_free(ag.conf);
	return ret;
}
