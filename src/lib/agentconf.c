/*
 * agentconf.c - agent.yaml (see agentconf.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "agentconf.h"
#include "crl.h"
#include "err.h"
#include "netaddr.h"
#include "spiffe.h"

void
agent_config_free(struct agent_config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	cfg_token_clear(&c->token);
	evidence_conf_clear(&c->evidence);
	free(c->ca_url);
	for (size_t i = 0; i < c->nca; i++)
		cmpc_server_clear(&c->ca[i]);
	free(c->ca);
	free(c->root);
	free(c->crl_url);
	free(c->state_dir);
	free(c->socket);
	free(c->api.metrics_listen);
	for (size_t i = 0; i < c->nwl; i++) {
		free(c->wl[i].id);
		free(c->wl[i].join_token_file);
		sel_set_clear(&c->wl[i].sel);
	}
	free(c->wl);
	free(c->node.id);
	free(c->node.join_token_file);
	free(c);
}

/* http://HOST[:PORT][/PATH]; HOST may be [v6]. Node n, named key, for messages. */
static int
parse_url(const struct cfg_doc *d, const struct cfg_node *n, const char *key, const char *u,
    struct cmpc_server *srv)
{
	const char *h, *e, *p;
	unsigned long port = 80;
	char *end;

	if (strncmp(u, "http://", 7) != 0)
		return cfg_node_err(d, n, "'%s' must be an http:// URL (got '%.80s')", key, u);
	h = u + 7;
	if (*h == '[') {
		if ((e = strchr(h, ']')) == NULL)
			return cfg_node_err(d, n, "'%s': unterminated [ in host", key);
		h++;
		p = e + 1;
	} else {
		e = h + strcspn(h, ":/");
		p = e;
	}
	if (e == h)
		return cfg_node_err(d, n, "'%s' has no host", key);
	if ((srv->host = strndup(h, (size_t)(e - h))) == NULL)
		return HSM_ENOMEM;
	if (*p == ':') {
		p++;
		if (*p < '0' || *p > '9')
			return cfg_node_err(d, n, "'%s' has a bad port", key);
		errno = 0;
		port = strtoul(p, &end, 10);
		if (errno != 0 || port == 0 || port > 65535 || (*end != '\0' && *end != '/'))
			return cfg_node_err(d, n, "'%s' has a bad port", key);
		p = end;
	}
	if (*p != '\0' && *p != '/')
		return cfg_node_err(d, n, "'%s' is malformed", key);
	srv->port = (int)port;
	if ((srv->path = strdup(*p == '\0' ? "/" : p)) == NULL)
		return HSM_ENOMEM;
	return 0;
}

/* "NAME: MSG A B at line N"; msg may be err.c's buffer, so it is copied first. */
static int
wl_err(const struct cfg_doc *d, const struct cfg_node *n, const char *msg, const char *a,
    const char *b)
{
	char m[400];

	snprintf(m, sizeof(m), "%s%s%s", msg, a, b);
	return hsm_err(HSM_ECONFIG, "%s: %s at line %u", d->name, m, n->line);
}

static int
parse_uid(const char *s, uid_t *out)
{
	unsigned long long v;
	char *end;

	*out = 0;
	if (*s < '0' || *s > '9' || strlen(s) > 10)
		return HSM_EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v >= 4294967295ULL)
		return HSM_EINVAL;
	*out = (uid_t)v;
	return 0;
}

/* workloads[].selectors: a list of KIND:VALUE (selector.h). */
static int
parse_selectors(const struct cfg_doc *d, const struct cfg_node *e, struct agent_workload *w)
{
	const struct cfg_node *s;
	int r;

	if (e->type != CFG_SEQ || e->child == NULL)
		return wl_err(d, e, "'workloads.selectors' must be a non-empty list of KIND:VALUE", "",
		    "");
	for (s = e->child; s != NULL; s = s->next) {
		if (s->type != CFG_SCALAR || s->is_null || s->value == NULL)
			return wl_err(d, s, "'workloads.selectors' must be a list of KIND:VALUE", "", "");
		if ((r = sel_set_add(&w->sel, s->value)) != 0)
			return r == HSM_ENOMEM ? r : wl_err(d, s, hsm_err_msg(r), "", "");
	}
	w->has_selectors = 1;
	return 0;
}

/* One entry of workloads: into *w. */
static int
parse_workload(const struct cfg_doc *d, const struct cfg_node *it, struct agent_workload *w)
{
	const struct cfg_node *e;
	struct spiffe_id sid;
	char uidsel[32];
	int r;

	if (it->type != CFG_MAP)
		return wl_err(d, it, "each workload must be a mapping with id, uid and "
		    "join_token_file", "", "");
	for (e = it->child; e != NULL; e = e->next) {
		if (strcmp(e->key, "id") != 0 && strcmp(e->key, "uid") != 0 &&
		    strcmp(e->key, "join_token_file") != 0 && strcmp(e->key, "selectors") != 0)
			return wl_err(d, e, "unknown key 'workloads.", e->key, "'");
		if (strcmp(e->key, "selectors") == 0) {
			if ((r = parse_selectors(d, e, w)) != 0)
				return r;
			continue;
		}
		if (e->type != CFG_SCALAR || e->is_null || e->value == NULL || e->value[0] == '\0')
			return wl_err(d, e, "'workloads.", e->key, "' needs a value");
		if (strcmp(e->key, "id") == 0) {
			if ((r = spiffe_id_parse(e->value, &sid)) != 0)
				return wl_err(d, e, hsm_err_msg(r), "", "");
			if (sid.path[0] == '\0')
				return wl_err(d, e, "workload ID '", e->value,
				    "' has no path (a trust domain is not a workload)");
			free(w->id);
			if ((w->id = strdup(e->value)) == NULL)
				return HSM_ENOMEM;
		} else if (strcmp(e->key, "uid") == 0) {
			if (parse_uid(e->value, &w->uid) != 0)
				return wl_err(d, e, "'workloads.uid' must be a number, not '", e->value,
				    "'");
			w->has_uid = 1;
		} else {
			free(w->join_token_file);
			if ((r = cfg_resolve_path(d->dir, e->value, &w->join_token_file)) != 0)
				return r;
		}
	}
	if (w->id == NULL)
		return wl_err(d, it, "workload without 'id'", "", "");
	if (!w->has_uid && !w->has_selectors)
		return wl_err(d, it, "workload ", w->id, " without 'uid'");
	/* uid is one more selector: all of them must match. */
	snprintf(uidsel, sizeof(uidsel), "uid:%lu", (unsigned long)w->uid);
	if (w->has_uid && (r = sel_set_add(&w->sel, uidsel)) != 0)
		return r == HSM_ENOMEM ? r : wl_err(d, it, hsm_err_msg(r), "", "");
	return 0;
}

static int
parse_workloads(const struct cfg_doc *d, struct agent_config *c)
{
	const struct cfg_node *seq = cfg_find(d, "workloads"), *it;
	size_t n = 0;
	int r;

	/* With a node identity the CA's registration entries may be all there is. */
	if (seq == NULL && c->node.configured)
		return 0;
	if (seq == NULL)
		return cfg_err(d, NULL, "missing required key 'workloads'");
	if (seq->type != CFG_SEQ || seq->child == NULL)
		return cfg_err(d, "workloads", "'workloads' must be a non-empty sequence");
	for (it = seq->child; it != NULL; it = it->next)
		n++;
	if ((c->wl = calloc(n, sizeof(*c->wl))) == NULL)
		return HSM_ENOMEM;
	for (it = seq->child; it != NULL; it = it->next) {
		struct agent_workload *w = &c->wl[c->nwl++];

		if ((r = parse_workload(d, it, w)) != 0)
			return r;
		for (size_t i = 0; i + 1 < c->nwl; i++)
			if (strcmp(c->wl[i].id, w->id) == 0)
				return wl_err(d, it, "workload ", w->id, " listed twice");
	}
	return 0;
}

int
agent_node_default_id(const char *td, const char *host, char **out)
{
	struct spiffe_id sid;
	char *id;

	*out = NULL;
	if (host == NULL || host[0] == '\0' || strchr(host, '/') != NULL ||
	    asprintf(&id, "spiffe://%s/node/%s", td, host) < 0)
		return hsm_err(HSM_ECONFIG, "cannot make a node ID of host name '%.64s': set node.id",
		    host != NULL ? host : "");
	if (spiffe_id_parse(id, &sid) != 0) {
		free(id);
		return hsm_err(HSM_ECONFIG, "host name '%.64s' makes no valid node ID: set node.id",
		    host);
	}
	*out = id;
	return 0;
}

/* node: the node identity (optional). */
static int
parse_node(const struct cfg_doc *d, struct agent_config *c)
{
	const struct cfg_node *n = cfg_find(d, "node");
	struct spiffe_id sid;
	char why[300];
	int r;

	if (n == NULL)
		return 0;
	if (n->type != CFG_MAP)
		return cfg_err(d, "node", "'node' must be a mapping (id, join_token_file, refresh)");
	c->node.configured = 1;
	if ((r = cfg_get_str(d, "node.id", NULL, &c->node.id)) != 0 ||
	    (r = cfg_get_path(d, "node.join_token_file", NULL, &c->node.join_token_file)) != 0 ||
	    (r = cfg_get_duration(d, "node.refresh", NULL, &c->node.refresh)) != 0)
		return r;
	if (c->node.id != NULL) {
		if ((r = spiffe_id_parse(c->node.id, &sid)) != 0) {
			snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
			return cfg_err(d, "node.id", "'node.id': %s", why);
		}
		if (sid.path[0] == '\0')
			return cfg_err(d, "node.id", "'node.id' needs a path (spiffe://td/node/NAME)");
	}
	if (c->node.refresh > 86400)
		return cfg_err(d, "node.refresh", "'node.refresh' must be at most 1d");
	return 0;
}

static int
parse_fraction(const struct cfg_doc *d, const char *key, double def, double *out)
{
	const struct cfg_node *n = cfg_find(d, key);
	char *end;
	double v;

	*out = def;
	if (n == NULL)
		return 0;
	if (n->type != CFG_SCALAR || n->value == NULL || n->value[0] == '\0')
		return cfg_err(d, key, "'%s' must be a number", key);
	errno = 0;
	v = strtod(n->value, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v) || v <= 0.0 || v >= 1.0)
		return cfg_err(d, key, "'%s' must be a fraction of the lifetime between 0 and 1, "
		    "not '%.40s'", key, n->value);
	*out = v;
	return 0;
}

/* A duration of at most a day, in ms. */
static int
api_duration(const struct cfg_doc *d, const char *key, const char *def, unsigned *ms)
{
	int64_t secs;
	int r;

	if ((r = cfg_get_duration(d, key, def, &secs)) != 0)
		return r;
	if (secs > 86400)
		return cfg_err(d, key, "'%s' must be at most 1d", key);
	*ms = (unsigned)secs * 1000u;
	return 0;
}

/* api: the local API's limits. */
static int
parse_api(const struct cfg_doc *d, struct agent_api_conf *a)
{
	unsigned long long n, nu;
	int r;

	if ((r = cfg_get_uint(d, "api.max_connections", 1024, 1, 65536, &n)) != 0 ||
	    (r = cfg_get_uint(d, "api.max_connections_per_uid", 64, 1, 65536, &nu)) != 0 ||
	    (r = api_duration(d, "api.idle_timeout", "60s", &a->idle_ms)) != 0 ||
	    (r = api_duration(d, "api.frame_timeout", "5s", &a->frame_ms)) != 0 ||
	    (r = cfg_get_bool(d, "api.tls12", 1, &a->tls12)) != 0 ||
	    (r = cfg_get_str(d, "metrics.listen", NULL, &a->metrics_listen)) != 0)
		return r;
	a->max_conns = (unsigned)n;
	a->max_conns_uid = (unsigned)nu;
	if (a->metrics_listen != NULL &&
	    (r = net_parse_addr(a->metrics_listen, 1, &a->metrics_addr, &a->metrics_len)) != 0) {
		char why[400];

		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return cfg_err(d, "metrics.listen", "'metrics.listen': %s", why);
	}
	return 0;
}

/*
 * The CA's addresses: ca.url, one URL or a list of them (CA replicas,
 * tried in order: cmpclient.h). ca_url keeps them as written, ", "
 * between two.
 */
static int
parse_ca(const struct cfg_doc *d, struct agent_config *c)
{
	const struct cfg_node *n = cfg_find(d, "ca.url"), *e;
	char label[32];
	const char *v;
	size_t cnt = 0, len = 1, off;
	int r;

	if (n == NULL)
		return cfg_require(d, "ca.url");
	if (n->type != CFG_SEQ) {
		if ((r = cfg_get_str(d, "ca.url", NULL, &c->ca_url)) != 0)
			return r;
		if ((c->ca = calloc(1, sizeof(*c->ca))) == NULL)
			return HSM_ENOMEM;
		c->nca = 1;
		return parse_url(d, n, "ca.url", c->ca_url, &c->ca[0]);
	}
	for (e = n->child; e != NULL; e = e->next) {
		if ((r = cfg_node_value(d, e, "ca.url", &v)) != 0)
			return r;
		cnt++;
		len += strlen(v) + 2;
	}
	if (cnt == 0)
		return cfg_node_err(d, n, "'ca.url' is an empty list");
	if (cnt > AGENT_MAX_CA_URLS)
		return cfg_node_err(d, n, "'ca.url' lists more than %d addresses", AGENT_MAX_CA_URLS);
	if ((c->ca = calloc(cnt, sizeof(*c->ca))) == NULL || (c->ca_url = calloc(1, len)) == NULL)
		return HSM_ENOMEM;
	for (e = n->child, off = 0; e != NULL; e = e->next) {
		snprintf(label, sizeof(label), "ca.url[%zu]", c->nca + 1);
		off += (size_t)snprintf(c->ca_url + off, len - off, "%s%s", c->nca > 0 ? ", " : "",
		    e->value);
		if ((r = parse_url(d, e, label, e->value, &c->ca[c->nca++])) != 0)
			return r;
	}
	return 0;
}

static int
config_from_doc(const struct cfg_doc *d, struct agent_config **out)
{
	static const char *const known[] = {
		"token.module", "token.uri", "token.pin_file", "token.pin_env",
		"token.test_sign_delay_ms", "token.workers", "token.workers_min", "token.workers_max",
		"ca.url", "ca.root", "state_dir",
		"socket", "key.type", "renew_at", "retry.min", "retry.max", "workloads",
		"attestation.producer", "attestation.path", "attestation.command",
		"attestation.timeout", "node.id", "node.join_token_file", "node.refresh",
		"api.max_connections", "api.max_connections_per_uid",
		"api.idle_timeout", "api.frame_timeout", "api.tls12", "metrics.listen",
		"crl.url", "crl.refresh", NULL
	};
	struct agent_config *c;
	const char *crlpath;
	char *kt = NULL;
	int r;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return HSM_ENOMEM;
	if ((r = cfg_check_known(d, known)) != 0 ||
	    (r = cfg_token_load(d, "token", &c->token)) != 0 ||
	    (r = cfg_require(d, "ca.url")) != 0 || (r = cfg_require(d, "ca.root")) != 0 ||
	    (r = cfg_require(d, "state_dir")) != 0 || (r = cfg_require(d, "socket")) != 0 ||
	    (r = cfg_get_path(d, "ca.root", NULL, &c->root)) != 0 ||
	    (r = cfg_get_path(d, "state_dir", NULL, &c->state_dir)) != 0 ||
	    (r = cfg_get_path(d, "socket", NULL, &c->socket)) != 0 ||
	    (r = cfg_get_str(d, "key.type", "ec-p256", &kt)) != 0 ||
	    (r = parse_fraction(d, "renew_at", 0.5, &c->renew_at)) != 0 ||
	    (r = cfg_get_duration(d, "retry.min", "1s", &c->retry_min)) != 0 ||
	    (r = cfg_get_duration(d, "retry.max", "60s", &c->retry_max)) != 0 ||
	    (r = parse_ca(d, c)) != 0 || (r = parse_node(d, c)) != 0 ||
	    (r = parse_workloads(d, c)) != 0 ||
	    (r = evidence_conf_load(d, "attestation", &c->evidence)) != 0 ||
	    (r = parse_api(d, &c->api)) != 0)
		goto out;
	if (hsm_keytype_parse(kt, &c->key_type) != 0) {
		r = cfg_err(d, "key.type", "'key.type' must be ec-p256, ec-p384 or rsa-3072, "
		    "not '%.40s'", kt);
		goto out;
	}
	if (c->retry_max < c->retry_min) {
		r = cfg_err(d, "retry.max", "'retry.max' is shorter than 'retry.min'");
		goto out;
	}
	if ((r = cfg_get_str(d, "crl.url", NULL, &c->crl_url)) != 0 ||
	    (r = cfg_get_duration(d, "crl.refresh", "60s", &c->crl_refresh)) != 0)
		goto out;
	if (c->crl_url != NULL && crl_url_path(c->crl_url, &crlpath) != 0) {
		r = cfg_err(d, "crl.url", "'crl.url' must be http://HOST[:PORT]/PATH");
		goto out;
	}
	if (c->crl_refresh < 5 || c->crl_refresh > 86400) {
		r = cfg_err(d, "crl.refresh", "'crl.refresh' must be 5s to 1d");
		goto out;
	}
	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		r = cfg_err(d, "socket", "'socket' path is too long for a Unix socket");
		goto out;
	}
	*out = c;
	c = NULL;
	r = 0;
 out:
	free(kt);
	agent_config_free(c);
	return r == HSM_ENOMEM ? r : (r != 0 ? HSM_ECONFIG : 0);
}

/* d into *out with path (a copy) as the file's name. */
static int
from_doc(const char *path, const struct cfg_doc *d, struct agent_config **out)
{
	int r;

	if ((r = config_from_doc(d, out)) == 0 && ((*out)->path = strdup(path)) == NULL) {
		agent_config_free(*out);
		*out = NULL;
		r = HSM_ENOMEM;
	}
	return r;
}

int
agent_config_load(const char *path, struct agent_config **out)
{
	struct cfg_doc *d = NULL;
	int r;

	*out = NULL;
	if ((r = cfg_doc_load(path, &d)) != 0)
		return r;
	r = from_doc(path, d, out);
	cfg_doc_free(d);
	return r;
}

int
agent_config_parse(const char *name, const char *dir, const uint8_t *buf, size_t len,
    struct agent_config **out)
{
	struct cfg_doc *d = NULL;
	int r;

	*out = NULL;
	if ((r = cfg_doc_parse(name, dir, buf, len, &d)) != 0)
		return r;
	r = from_doc(name, d, out);
	cfg_doc_free(d);
	return r;
}
