/* proxyconf.c - proxy.yaml into struct proxy_config (see proxyconf.h). */
#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/tls1.h>

#include "config.h"
#include "err.h"
#include "netaddr.h"
#include "httptok.h"
#include "proxyconf.h"
#include "route.h"
#include "spiffe.h"
#include "util.h"

#define NAME_MAX_LEN 64
#define WORKERS_MAX 64
#define SERVER_NAME_MAX 253
#define METHOD_MAX 32
#define REQUEST_TIMEOUT_MAX (24 * 3600 * 1000)

static const char *const top_known[] = {
	"agent.socket", "agent.id", "agent.timeout",
	"workers",
	"tls.min_version", "tls.tickets", "tls.profile",
	"revocation.stale", "revocation.close_established",
	"limits.max_connections", "limits.buffer_size",
	"limits.max_header_bytes", "limits.max_headers", "limits.max_streams",
	"limits.min_body_rate",
	"timeouts.handshake", "timeouts.idle", "timeouts.connect", "timeouts.drain",
	"timeouts.request", "timeouts.stream_idle",
	"inbound", "outbound",
	"metrics.listen",
	"access_log",
	"user", "seccomp.mode", "seccomp.allow",
	"admission.handshake_rate", "admission.handshake_burst", "admission.ipv4_prefix",
	"admission.ipv6_prefix", "admission.sources", "admission.max_key_operations",
	NULL
};
static const char *const inbound_known[] = {
	"name", "listen", "forward_to", "allow", "protocol", "app_protocol", "routes", NULL
};
static const char *const outbound_known[] = {
	"name", "listen", "connect", "expect_id", "server_name", "protocol", NULL
};
static const char *const route_known[] = {
	"name", "path", "path_prefix", "methods", "allow", "timeout", NULL
};

/* ---- policy ---- */

int
proxy_listener_allows(const struct proxy_listener *l, const char *id)
{
	size_t i;

	for (i = 0; i < l->nallow; i++)
		if (spiffe_pattern_match(l->allow[i], id))
			return 1;
	return 0;
}

/* ---- freeing ---- */

static void
listener_clear(struct proxy_listener *l)
{
	size_t i;

	free(l->name);
	free(l->listen);
	free(l->target);
	for (i = 0; i < l->nallow; i++)
		free(l->allow[i]);
	free(l->allow);
	free(l->server_name);
	for (i = 0; i < l->nroutes; i++)
		route_clear(&l->routes[i]);
	free(l->routes);
	memset(l, 0, sizeof(*l));
}

void
proxy_config_free(struct proxy_config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nlst; i++)
		listener_clear(&c->lst[i]);
	free(c->lst);
	free(c->path);
	free(c->agent_socket);
	free(c->agent_id);
	free(c->metrics_listen);
	free(c->access_log);
	cfg_confine_clear(&c->confine);
	free(c);
}

/* ---- values ---- */

static int
dup_str(const char *s, char **out)
{
	if ((*out = strdup(s)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	return 0;
}

/* "250ms", or "5s" when whole seconds. */
static const char *
ms_str(unsigned ms, char *buf, size_t cap)
{
	if (ms % 1000 == 0)
		snprintf(buf, cap, "%us", ms / 1000);
	else
		snprintf(buf, cap, "%ums", ms);
	return buf;
}

/* An error about n (or, when the value is a default, about key without a line). */
static int
val_err(const struct cfg_doc *d, const struct cfg_node *n, const char *msg)
{
	if (n != NULL)
		return cfg_node_err(d, n, "%s", msg);
	return cfg_err(d, NULL, "%s", msg);
}

/*
 * The duration v (of key, written at node n or a default) in
 * milliseconds from min to max: "250ms", or what hsm_parse_duration reads
 * (s, m, h, d).
 */
static int
ms_value(const struct cfg_doc *d, const struct cfg_node *n, const char *key, const char *v,
    unsigned min, unsigned max, unsigned *out)
{
	unsigned long long ms = 0;
	char lo[32], hi[32], why[256], msg[400];
	const char *p;
	int64_t s;
	size_t len = strlen(v);
	int r;

	*out = 0;
	if (len > 2 && strcmp(v + len - 2, "ms") == 0) {
		for (p = v; *p >= '0' && *p <= '9'; p++)
			if (ms <= max)	/* stop growing; the range check below says why */
				ms = ms * 10 + (unsigned)(*p - '0');
		if (p != v + len - 2) {
			snprintf(msg, sizeof(msg), "'%s' bad duration '%.40s': expected a number and "
			    "ms, s, m, h or d", key, v);
			return val_err(d, n, msg);
		}
	} else {
		if ((r = hsm_parse_duration(v, &s)) != 0) {
			snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
			snprintf(msg, sizeof(msg), "'%s': %s", key, why);
			return val_err(d, n, msg);
		}
		ms = (uint64_t)s > max / 1000 ? (unsigned long long)max + 1 :
		    (unsigned long long)s * 1000;
	}
	if (ms < min || ms > max) {
		snprintf(msg, sizeof(msg), "'%s' must be from %s to %s, not '%.40s'", key,
		    ms_str(min, lo, sizeof(lo)), ms_str(max, hi, sizeof(hi)), v);
		return val_err(d, n, msg);
	}
	*out = (unsigned)ms;
	return 0;
}

/* A duration in milliseconds from min to max at the dotted key; absent -> def. */
static int
get_ms(const struct cfg_doc *d, const char *key, const char *def, unsigned min, unsigned max,
    unsigned *out)
{
	char *v = NULL;
	int r;

	*out = 0;
	if ((r = cfg_get_str(d, key, def, &v)) != 0)
		return r;
	r = ms_value(d, cfg_find(d, key), key, v, min, max, out);
	free(v);
	return r;
}

/* A whole number from min to max (cfg_get_uint) that fits an unsigned. */
static int
get_unsigned(const struct cfg_doc *d, const char *key, unsigned def, unsigned min,
    unsigned max, unsigned *out)
{
	unsigned long long v;
	int r;

	*out = def;
	if ((r = cfg_get_uint(d, key, def, min, max, &v)) != 0)
		return r;
	*out = (unsigned)v;
	return 0;
}

/* Resolve value (the text of node n, named name) as HOST:PORT. */
static int
get_addr(const struct cfg_doc *d, const struct cfg_node *n, const char *name, const char *value,
    int passive, struct sockaddr_storage *ss, socklen_t *len)
{
	char why[400];
	int r;

	if ((r = net_parse_addr(value, passive, ss, len)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return cfg_node_err(d, n, "'%s': %s", name, why);
	}
	return 0;
}

/* A SPIFFE ID pattern (n, named name) into a new string. */
static int
get_pattern(const struct cfg_doc *d, const struct cfg_node *n, const char *name, char **out)
{
	char why[400];
	const char *v;
	int r;

	*out = NULL;
	if ((r = cfg_node_value(d, n, name, &v)) != 0)
		return r;
	if ((r = spiffe_pattern_check(v)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return cfg_node_err(d, n, "'%s' %s", name, why);
	}
	return dup_str(v, out);
}

static int
name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > NAME_MAX_LEN)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

/* A DNS name for SNI: letters, digits, '-' and '.', no empty label. */
static int
server_name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > SERVER_NAME_MAX || s[0] == '.' || strstr(s, "..") != NULL)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
			return 0;
	return 1;
}

/* ---- listen addresses ---- */

static int
addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static int
addr_is_any(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, &in6addr_any,
	    sizeof(in6addr_any)) == 0;
}

/*
 * Would two listeners take the same connections? With SO_REUSEPORT both
 * binds succeed and the kernel would split one port's traffic between two
 * policies, so the file must not say so. Port 0 is a fresh port each time;
 * a wildcard address overlaps every address of the port.
 */
static int
addr_clash(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr_storage *b,
    socklen_t blen)
{
	int pa = addr_port(a);

	if (pa == 0 || pa != addr_port(b))
		return 0;
	if (addr_is_any(a) || addr_is_any(b))
		return 1;
	if (a->ss_family != b->ss_family || alen != blen)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* ---- listeners ---- */

/* The required, non-empty list of SPIFFE ID patterns at key of entry it (labelled label). */
static int
get_patterns(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    const char *key, char ***out, size_t *nout)
{
	const struct cfg_node *seq, *a, *at;
	char name[160];
	size_t n = 0;
	int r;

	if ((at = cfg_node_child(it, key)) == NULL)
		return cfg_node_err(d, it, "missing required key '%s.%s'", label, key);
	if ((r = cfg_node_list(d, it, label, key, &seq)) != 0)
		return r;
	if (seq == NULL || seq->child == NULL)
		return cfg_node_err(d, at, "'%s.%s' must list at least one SPIFFE ID or pattern",
		    label, key);
	for (a = seq->child; a != NULL; a = a->next)
		n++;
	if ((*out = calloc(n, sizeof(**out))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	for (a = seq->child; a != NULL; a = a->next) {
		snprintf(name, sizeof(name), "%s.%s[%zu]", label, key, *nout);
		if ((r = get_pattern(d, a, name, &(*out)[*nout])) != 0)
			return r;
		(*nout)++;
	}
	return 0;
}

/* ---- routes (inbound, protocol: http) ---- */

/* methods: a non-empty list of tokens. */
static int
get_methods(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    struct route *rt)
{
	const struct cfg_node *seq, *a;
	const char *v;
	char name[160];
	size_t n = 0, i;
	int r;

	if ((r = cfg_node_list(d, it, label, "methods", &seq)) != 0 || cfg_node_child(it,
	    "methods") == NULL)
		return r;
	if (seq == NULL || seq->child == NULL)
		return cfg_node_err(d, cfg_node_child(it, "methods"), "'%s.methods' must list at "
		    "least one method (leave it out for any)", label);
	for (a = seq->child; a != NULL; a = a->next)
		n++;
	if ((rt->methods = calloc(n, sizeof(*rt->methods))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	for (a = seq->child; a != NULL; a = a->next) {
		snprintf(name, sizeof(name), "%s.methods[%zu]", label, rt->nmethods);
		if ((r = cfg_node_value(d, a, name, &v)) != 0)
			return r;
		for (i = 0; v[i] != '\0' && http_tchar((uint8_t)v[i]); i++)
			;
		if (v[i] != '\0' || i > METHOD_MAX)
			return cfg_node_err(d, a, "'%s' must be an HTTP method (a token of at most "
			    "%d characters, such as GET), not '%.40s'", name, METHOD_MAX, v);
		if ((r = dup_str(v, &rt->methods[rt->nmethods])) != 0)
			return r;
		rt->nmethods++;
	}
	return 0;
}

/* path or path_prefix: exactly one, already in normal form (route.h). */
static int
get_route_path(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    struct route *rt)
{
	const struct cfg_node *pn = cfg_node_child(it, "path"), *xn = cfg_node_child(it,
	    "path_prefix"), *n;
	const char *key = pn != NULL ? "path" : "path_prefix", *v;
	char name[160], why[300], *norm = NULL;
	size_t len, olen, plen;
	int r;

	if ((pn == NULL) == (xn == NULL))
		return cfg_node_err(d, it, "'%s' needs exactly one of 'path' and 'path_prefix'",
		    label);
	n = pn != NULL ? pn : xn;
	snprintf(name, sizeof(name), "%s.%s", label, key);
	if ((r = cfg_node_value(d, n, name, &v)) != 0)
		return r;
	len = strlen(v);
	if ((norm = malloc(len + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if ((r = route_path_norm(v, len, norm, len + 1, &olen, &plen)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = cfg_node_err(d, n, "'%s' %s", name, strstr(why, "path '") != NULL ?
		    strstr(why, "path '") : why);
	} else if (plen != olen) {
		r = cfg_node_err(d, n, "'%s' '%.80s' has a query: routes match paths only", name, v);
	} else if (olen != len || memcmp(norm, v, len) != 0) {
		r = cfg_node_err(d, n, "'%s' '%.80s' is not in normal form: write '%.80s'", name, v,
		    norm);
	}
	if (r != 0) {
		free(norm);
		return r;
	}
	rt->path = norm;
	rt->plen = olen;
	rt->prefix = pn == NULL;
	return 0;
}

/* Entry it (labelled label) of a routes list, the idx-th. */
static int
get_route(const struct cfg_doc *d, const struct cfg_node *it, const char *label, size_t idx,
    struct route *rt)
{
	const char *name, *to;
	char key[160], def[32];
	int r;

	if ((r = cfg_node_check_known(d, it, label, route_known)) != 0 ||
	    (r = cfg_node_str(d, it, label, "name", 0, &name)) != 0 ||
	    (r = cfg_node_str(d, it, label, "timeout", 0, &to)) != 0)
		return r;
	if (name != NULL && !name_ok(name))
		return cfg_node_err(d, cfg_node_child(it, "name"), "'%s.name' must be 1 to %d of "
		    "A-Z a-z 0-9 _ . -, not '%.80s'", label, NAME_MAX_LEN, name);
	snprintf(def, sizeof(def), "route%zu", idx);
	if ((r = dup_str(name != NULL ? name : def, &rt->name)) != 0 ||
	    (r = get_route_path(d, it, label, rt)) != 0 ||
	    (r = get_methods(d, it, label, rt)) != 0 ||
	    (r = get_patterns(d, it, label, "allow", &rt->allow, &rt->nallow)) != 0)
		return r;
	if (to != NULL) {
		snprintf(key, sizeof(key), "%s.timeout", label);
		if ((r = ms_value(d, cfg_node_child(it, "timeout"), key, to, 100,
		    REQUEST_TIMEOUT_MAX, &rt->timeout_ms)) != 0)
			return r;
	}
	return 0;
}

static int
get_routes(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    struct proxy_listener *l)
{
	const struct cfg_node *seq, *e;
	char rl[128];
	size_t n = 0, i;
	int r;

	if ((r = cfg_node_list(d, it, label, "routes", &seq)) != 0 || seq == NULL)
		return r;
	if (!l->http)
		return cfg_node_err(d, cfg_node_child(it, "routes"), "'%s.routes' needs 'protocol: "
		    "http'", label);
	for (e = seq->child; e != NULL; e = e->next)
		n++;
	if (n == 0)
		return cfg_node_err(d, cfg_node_child(it, "routes"), "'%s.routes' is empty: list "
		    "routes, or leave it out to forward every request of an allowed peer", label);
	if ((l->routes = calloc(n, sizeof(*l->routes))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	for (e = seq->child; e != NULL; e = e->next) {
		snprintf(rl, sizeof(rl), "%s.routes[%zu]", label, l->nroutes);
		if ((r = get_route(d, e, rl, l->nroutes, &l->routes[l->nroutes])) != 0) {
			route_clear(&l->routes[l->nroutes]);	/* not counted yet */
			return r;
		}
		l->nroutes++;
		for (i = 0; i + 1 < l->nroutes; i++)
			if (strcmp(l->routes[i].name, l->routes[l->nroutes - 1].name) == 0)
				return cfg_node_err(d, e, "'%s.name': duplicate route name '%s'", rl,
				    l->routes[i].name);
	}
	return 0;
}

/* protocol: tcp (the default) or http. */
static int
get_protocol(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    unsigned flags, struct proxy_listener *l)
{
	const char *v;
	int r;

	if ((r = cfg_node_str(d, it, label, "protocol", 0, &v)) != 0 || v == NULL)
		return r;
	if (strcmp(v, "tcp") == 0)
		return 0;
	if (strcmp(v, "http") != 0)
		return cfg_node_err(d, cfg_node_child(it, "protocol"), "'%s.protocol' must be tcp "
		    "or http, not '%.40s'", label, v);
	if (!(flags & PROXYCONF_HTTP))
		return cfg_node_err(d, cfg_node_child(it, "protocol"), "'%s.protocol' http is not "
		    "served by this program: only tcp", label);
	l->http = 1;
	return 0;
}

/* app_protocol (inbound, protocol: http): http/1.1 (the default) or h2c. */
static int
get_app_protocol(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    struct proxy_listener *l)
{
	const char *v;
	int r;

	if ((r = cfg_node_str(d, it, label, "app_protocol", 0, &v)) != 0 || v == NULL)
		return r;
	if (!l->http)
		return cfg_node_err(d, cfg_node_child(it, "app_protocol"), "'%s.app_protocol' needs "
		    "'protocol: http'", label);
	if (strcmp(v, "h2c") == 0)
		l->app_h2c = 1;
	else if (strcmp(v, "http/1.1") != 0)
		return cfg_node_err(d, cfg_node_child(it, "app_protocol"), "'%s.app_protocol' must "
		    "be http/1.1 or h2c, not '%.40s'", label, v);
	return 0;
}

/* The fields only an outbound entry has. */
static int
get_outbound(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    struct proxy_listener *l)
{
	const struct cfg_node *n;
	const char *sni;
	char name[96];
	int r;

	snprintf(name, sizeof(name), "%s.expect_id", label);
	if ((n = cfg_node_child(it, "expect_id")) == NULL)
		return cfg_node_err(d, it, "missing required key '%s'", name);
	if ((l->allow = calloc(1, sizeof(*l->allow))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if ((r = get_pattern(d, n, name, &l->allow[0])) != 0)
		return r;
	l->nallow = 1;
	if ((r = cfg_node_str(d, it, label, "server_name", 0, &sni)) != 0 || sni == NULL)
		return r;
	if (!server_name_ok(sni))
		return cfg_node_err(d, cfg_node_child(it, "server_name"), "'%s.server_name' must be "
		    "a DNS name, not '%.80s'", label, sni);
	return dup_str(sni, &l->server_name);
}

/* Entry it of the inbound or outbound list into c->lst[c->nlst]. */
static int
get_listener(const struct cfg_doc *d, struct proxy_config *c, const struct cfg_node *it,
    const char *label, int inbound, unsigned flags)
{
	struct proxy_listener *l = &c->lst[c->nlst++];
	const char *tkey = inbound ? "forward_to" : "connect", *name, *listen, *target;
	char key[96], addr[96];
	size_t i;
	int r;

	memset(l, 0, sizeof(*l));
	l->inbound = inbound;
	if ((r = cfg_node_check_known(d, it, label, inbound ? inbound_known :
	    outbound_known)) != 0 ||
	    (r = cfg_node_str(d, it, label, "name", 1, &name)) != 0 ||
	    (r = cfg_node_str(d, it, label, "listen", 1, &listen)) != 0 ||
	    (r = cfg_node_str(d, it, label, tkey, 1, &target)) != 0)
		return r;

	if (!name_ok(name))
		return cfg_node_err(d, cfg_node_child(it, "name"), "'%s.name' must be 1 to %d of "
		    "A-Z a-z 0-9 _ . -, not '%.80s'", label, NAME_MAX_LEN, name);
	for (i = 0; i + 1 < c->nlst; i++)
		if (strcmp(c->lst[i].name, name) == 0)
			return cfg_node_err(d, cfg_node_child(it, "name"), "'%s.name': duplicate "
			    "listener name '%s'", label, name);
	if ((r = dup_str(name, &l->name)) != 0)
		return r;

	snprintf(key, sizeof(key), "%s.listen", label);
	if ((r = get_addr(d, cfg_node_child(it, "listen"), key, listen, 1, &l->listen_addr,
	    &l->listen_len)) != 0 || (r = dup_str(listen, &l->listen)) != 0)
		return r;
	for (i = 0; i + 1 < c->nlst; i++)
		if (addr_clash(&l->listen_addr, l->listen_len, &c->lst[i].listen_addr,
		    c->lst[i].listen_len))
			return cfg_node_err(d, cfg_node_child(it, "listen"), "'%s' %s: listener '%s' "
			    "already listens there", key, net_addr_str(&l->listen_addr,
			    l->listen_len, addr, sizeof(addr)), c->lst[i].name);

	snprintf(key, sizeof(key), "%s.%s", label, tkey);
	if ((r = get_addr(d, cfg_node_child(it, tkey), key, target, 0, &l->target_addr,
	    &l->target_len)) != 0 || (r = dup_str(target, &l->target)) != 0)
		return r;

	if ((r = get_protocol(d, it, label, flags, l)) != 0)
		return r;
	if (!inbound)
		return get_outbound(d, it, label, l);
	if ((r = get_patterns(d, it, label, "allow", &l->allow, &l->nallow)) != 0 ||
	    (r = get_app_protocol(d, it, label, l)) != 0)
		return r;
	return get_routes(d, it, label, l);
}

static int
get_listeners(const struct cfg_doc *d, struct proxy_config *c, unsigned flags)
{
	const struct cfg_node *seq[2], *it;
	const char *sect[2] = { "inbound", "outbound" };
	char label[48];
	size_t n = 0, i;
	int k, r;

	for (k = 0; k < 2; k++) {
		if ((r = cfg_node_list(d, d->root, NULL, sect[k], &seq[k])) != 0)
			return r;
		for (it = seq[k] != NULL ? seq[k]->child : NULL; it != NULL; it = it->next)
			n++;
	}
	if (n == 0)
		return cfg_err(d, NULL, "no listeners: list at least one entry under 'inbound' "
		    "or 'outbound'");
	if ((c->lst = calloc(n, sizeof(*c->lst))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	for (k = 0; k < 2; k++) {
		i = 0;
		for (it = seq[k] != NULL ? seq[k]->child : NULL; it != NULL; it = it->next) {
			snprintf(label, sizeof(label), "%s[%zu]", sect[k], i++);
			if ((r = get_listener(d, c, it, label, k == 0, flags)) != 0)
				return r;
		}
	}
	return 0;
}

/* ---- the rest ---- */

static int
get_agent(const struct cfg_doc *d, struct proxy_config *c)
{
	struct spiffe_id sid;
	char why[400];
	int r;

	if ((r = cfg_require(d, "agent.socket")) != 0 ||
	    (r = cfg_get_path(d, "agent.socket", NULL, &c->agent_socket)) != 0 ||
	    (r = cfg_get_str(d, "agent.id", "", &c->agent_id)) != 0 ||
	    (r = get_ms(d, "agent.timeout", "2s", 100, 60 * 1000, &c->key_timeout_ms)) != 0)
		return r;
	if (strlen(c->agent_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return cfg_err(d, "agent.socket", "'agent.socket' path is too long for a Unix socket");
	if (c->agent_id[0] != '\0') {
		if ((r = spiffe_id_parse(c->agent_id, &sid)) != 0) {
			snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
			return cfg_err(d, "agent.id", "'agent.id' %s", why);
		}
		if (sid.path[0] == '\0')
			return cfg_err(d, "agent.id", "'agent.id' '%.100s' has no path (a trust "
			    "domain is not a workload)", c->agent_id);
	}
	return 0;
}

static int
get_tls(const struct cfg_doc *d, struct proxy_config *c)
{
	char *v = NULL, *prof = NULL;
	int r;

	if ((r = cfg_get_str(d, "tls.profile", "default", &prof)) != 0)
		goto out;
	if (strcmp(prof, "3gpp-nf") == 0) {
		c->tls_3gpp = 1;
	} else if (strcmp(prof, "default") != 0) {
		r = cfg_err(d, "tls.profile", "'tls.profile' must be \"default\" or \"3gpp-nf\", "
		    "not '%.40s'", prof);
		goto out;
	}
	if ((r = cfg_get_str(d, "tls.min_version", c->tls_3gpp ? "1.2" : "1.3", &v)) != 0 ||
	    (r = cfg_get_bool(d, "tls.tickets", 1, &c->tickets)) != 0)
		goto out;
	if (strcmp(v, "1.3") == 0)
		c->tls_min_version = TLS1_3_VERSION;
	else if (strcmp(v, "1.2") == 0)
		c->tls_min_version = TLS1_2_VERSION;
	else
		r = cfg_err(d, "tls.min_version", "'tls.min_version' must be \"1.2\" or \"1.3\", "
		    "not '%.40s'", v);
	/* TS 33.210 6.2.1: an NF supports TLS 1.2 and TLS 1.3 both. */
	if (r == 0 && c->tls_3gpp && c->tls_min_version != TLS1_2_VERSION)
		r = cfg_err(d, "tls.min_version", "'tls.min_version' \"1.3\" contradicts "
		    "'tls.profile' 3gpp-nf (TLS 1.2 and 1.3 both, TS 33.210 6.2)");
 out:
	free(prof);
	free(v);
	return r;
}

/* tls.profile 3gpp-nf: every outbound listener sends SNI (TS 33.501 13.1.0). */
static int
check_tls_profile(const struct cfg_doc *d, const struct proxy_config *c)
{
	for (size_t i = 0; c->tls_3gpp && i < c->nlst; i++)
		if (!c->lst[i].inbound && c->lst[i].server_name == NULL)
			return cfg_err(d, "tls.profile", "'tls.profile' 3gpp-nf: outbound listener "
			    "'%s' needs server_name (the peer NF's FQDN: clients send SNI, TS 33.501 "
			    "13.1.0)", c->lst[i].name);
	return 0;
}

static int
get_revocation(const struct cfg_doc *d, struct proxy_config *c)
{
	char *v = NULL;
	int r;

	if ((r = cfg_get_str(d, "revocation.stale", "keep", &v)) != 0 ||
	    (r = cfg_get_bool(d, "revocation.close_established", 1, &c->crl_close)) != 0)
		goto out;
	if (strcmp(v, "keep") == 0)
		c->crl_refuse_stale = 0;
	else if (strcmp(v, "refuse") == 0)
		c->crl_refuse_stale = 1;
	else
		r = cfg_err(d, "revocation.stale", "'revocation.stale' must be \"keep\" or "
		    "\"refuse\", not '%.40s'", v);
 out:
	free(v);
	return r;
}

static int
get_limits(const struct cfg_doc *d, struct proxy_config *c)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned def_workers = cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : (unsigned)cpus;
	unsigned buf;
	int r;

	if ((r = get_unsigned(d, "workers", def_workers, 1, WORKERS_MAX, &c->workers)) != 0 ||
	    (r = get_unsigned(d, "limits.max_connections", 4096, 1, 1000000,
	    &c->max_connections)) != 0 ||
	    (r = get_unsigned(d, "limits.buffer_size", 16384, 1024, 1048576, &buf)) != 0 ||
	    (r = get_ms(d, "timeouts.handshake", "5s", 100, 5 * 60 * 1000,
	    &c->handshake_timeout_ms)) != 0 ||
	    (r = get_ms(d, "timeouts.idle", "300s", 1000, 7 * 86400 * 1000,
	    &c->idle_timeout_ms)) != 0 ||
	    (r = get_ms(d, "timeouts.connect", "5s", 100, 5 * 60 * 1000,
	    &c->connect_timeout_ms)) != 0 ||
	    (r = get_ms(d, "timeouts.drain", "10s", 100, 3600 * 1000,
	    &c->drain_timeout_ms)) != 0)
		return r;
	c->buffer_size = buf;
	return 0;
}

/* Inbound full handshakes: per-source rate and the key operations in flight. */
static int
get_admission(const struct cfg_doc *d, struct proxy_config *c)
{
	struct proxy_admission *a = &c->adm;
	int r;

	if ((r = get_unsigned(d, "admission.handshake_rate", 100, 0, 1000000,
	    &a->handshake_rate)) != 0 ||
	    (r = get_unsigned(d, "admission.handshake_burst", 1000, 1, 1000000,
	    &a->handshake_burst)) != 0 ||
	    (r = get_unsigned(d, "admission.ipv4_prefix", 32, 1, 32, &a->ipv4_prefix)) != 0 ||
	    (r = get_unsigned(d, "admission.ipv6_prefix", 64, 1, 128, &a->ipv6_prefix)) != 0 ||
	    (r = get_unsigned(d, "admission.sources", 16384, 64, 4194304, &a->sources)) != 0 ||
	    (r = get_unsigned(d, "admission.max_key_operations", 1024, 1, 1000000,
	    &a->max_key_ops)) != 0)
		return r;
	return 0;
}

/* Keys that only protocol: http listeners use. */
static const char *const http_keys[] = {
	"limits.max_header_bytes", "limits.max_headers", "limits.max_streams",
	"limits.min_body_rate", "timeouts.request", "timeouts.stream_idle", NULL
};

/* The limits of protocol: http listeners; refused when no listener would use them. */
static int
get_http_limits(const struct cfg_doc *d, struct proxy_config *c)
{
	char bs[24];
	size_t i;
	int r, http = 0;

	for (i = 0; i < c->nlst; i++)
		http |= c->lst[i].http;
	for (i = 0; !http && http_keys[i] != NULL; i++)
		if (cfg_find(d, http_keys[i]) != NULL)
			return cfg_err(d, http_keys[i], "'%s' applies to protocol: http listeners, "
			    "and there is none", http_keys[i]);

	if ((r = get_unsigned(d, "limits.max_header_bytes", 16384, 1024, 65536,
	    &c->max_header_bytes)) != 0 ||
	    (r = get_unsigned(d, "limits.max_headers", 100, 1, 1000, &c->max_headers)) != 0 ||
	    (r = get_unsigned(d, "limits.max_streams", 100, 1, 1000, &c->max_streams)) != 0 ||
	    (r = get_unsigned(d, "limits.min_body_rate", 0, 0, 1u << 30,
	    &c->min_body_rate)) != 0 ||
	    (r = get_ms(d, "timeouts.request", "30s", 100, REQUEST_TIMEOUT_MAX,
	    &c->request_timeout_ms)) != 0 ||
	    (r = get_ms(d, "timeouts.stream_idle", "300s", 1000, 7 * 86400 * 1000,
	    &c->stream_idle_ms)) != 0)
		return r;
	/* an HTTP/1.1 head is read whole into one buffer */
	for (i = 0; i < c->nlst; i++)
		if (c->lst[i].http && c->max_header_bytes > c->buffer_size) {
			snprintf(bs, sizeof(bs), "%zu", c->buffer_size);
			return cfg_err(d, cfg_find(d, "limits.max_header_bytes") != NULL ?
			    "limits.max_header_bytes" : "limits.buffer_size", "'limits.max_header_bytes' "
			    "%u is over 'limits.buffer_size' %s: an HTTP head must fit in a buffer",
			    c->max_header_bytes, bs);
		}
	return 0;
}

static int
get_outputs(const struct cfg_doc *d, struct proxy_config *c)
{
	char addr[96];
	size_t i;
	int r;

	if ((r = cfg_get_str(d, "metrics.listen", NULL, &c->metrics_listen)) != 0)
		return r;
	if (c->metrics_listen != NULL) {
		if ((r = get_addr(d, cfg_find(d, "metrics.listen"), "metrics.listen",
		    c->metrics_listen, 1, &c->metrics_addr, &c->metrics_len)) != 0)
			return r;
		for (i = 0; i < c->nlst; i++)
			if (addr_clash(&c->metrics_addr, c->metrics_len, &c->lst[i].listen_addr,
			    c->lst[i].listen_len))
				return cfg_err(d, "metrics.listen", "'metrics.listen' %s: listener "
				    "'%s' already listens there", net_addr_str(&c->metrics_addr,
				    c->metrics_len, addr, sizeof(addr)), c->lst[i].name);
	}
	if ((r = cfg_get_str(d, "access_log", NULL, &c->access_log)) != 0)
		return r;
	if (c->access_log != NULL && strcmp(c->access_log, "-") != 0) {
		free(c->access_log);
		return cfg_get_path(d, "access_log", NULL, &c->access_log);
	}
	return 0;
}

int
proxy_config_load(const char *path, struct proxy_config **out)
{
	return proxy_config_load_with(path, 0, out);
}

int
proxy_config_load_with(const char *path, unsigned flags, struct proxy_config **out)
{
	struct proxy_config *c = NULL;
	struct cfg_doc *d = NULL;
	int r;

	*out = NULL;
	if ((r = cfg_doc_load(path, &d)) != 0)
		return r;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->path = strdup(path)) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if ((r = cfg_check_known(d, top_known)) != 0 || (r = get_agent(d, c)) != 0 ||
	    (r = get_tls(d, c)) != 0 || (r = get_revocation(d, c)) != 0 ||
	    (r = get_limits(d, c)) != 0 || (r = get_admission(d, c)) != 0 ||
	    (r = get_listeners(d, c, flags)) != 0 || (r = check_tls_profile(d, c)) != 0 ||
	    (r = get_http_limits(d, c)) != 0 ||
	    (r = get_outputs(d, c)) != 0 || (r = cfg_confine_load(d, &c->confine)) != 0)
		goto out;
	*out = c;
	c = NULL;
 out:
	proxy_config_free(c);
	cfg_doc_free(d);
	return r == 0 || r == HSM_ENOMEM ? r : HSM_ECONFIG;
}
