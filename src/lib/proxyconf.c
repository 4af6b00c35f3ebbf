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
#include "proxyconf.h"
#include "spiffe.h"

#define NAME_MAX_LEN 64
#define WORKERS_MAX 64
#define SERVER_NAME_MAX 253

static const char *const top_known[] = {
	"agent.socket", "agent.id", "agent.timeout",
	"workers",
	"tls.min_version", "tls.tickets",
	"limits.max_connections", "limits.buffer_size",
	"timeouts.handshake", "timeouts.idle", "timeouts.connect", "timeouts.drain",
	"inbound", "outbound",
	"metrics.listen",
	"access_log",
	NULL
};
static const char *const inbound_known[] = {
	"name", "listen", "forward_to", "allow", NULL
};
static const char *const outbound_known[] = {
	"name", "listen", "connect", "expect_id", "server_name", NULL
};

/* ---- SPIFFE ID patterns ---- */

int
spiffe_pattern_check(const char *pattern)
{
	struct spiffe_id sid;
	char prefix[SPIFFE_ID_MAX + 1];
	const char *star;
	size_t n;

	if (pattern == NULL)
		pattern = "";
	n = strlen(pattern);
	if ((star = strchr(pattern, '*')) == NULL)
		return spiffe_id_parse(pattern, &sid);
	/* One star, as the whole last segment after an ID (P-star in proxyconf.h). */
	if (star != pattern + n - 1 || n < 2 || star[-1] != '/')
		return hsm_err(HSM_EINVAL, "invalid SPIFFE ID pattern '%.200s': '*' is allowed only "
		    "as the whole last segment ('spiffe://td/path/*')", pattern);
	if (n - 2 > SPIFFE_ID_MAX)
		return hsm_err(HSM_EINVAL, "invalid SPIFFE ID pattern '%.200s': too long", pattern);
	memcpy(prefix, pattern, n - 2);
	prefix[n - 2] = '\0';
	return spiffe_id_parse(prefix, &sid);
}

int
spiffe_pattern_match(const char *pattern, const char *id)
{
	size_t n = strlen(pattern);

	if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '/')
		return strncmp(id, pattern, n - 1) == 0 && id[n - 1] != '\0';
	return strcmp(pattern, id) == 0;
}

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

/*
 * A duration in milliseconds from min to max: "250ms", or what
 * cfg_get_duration reads (s, m, h, d). Absent -> def.
 */
static int
get_ms(const struct cfg_doc *d, const char *key, const char *def, unsigned min, unsigned max,
    unsigned *out)
{
	unsigned long long ms = 0;
	char *v = NULL, lo[32], hi[32];
	const char *p;
	int64_t s;
	size_t n;
	int r;

	*out = 0;
	if ((r = cfg_get_str(d, key, def, &v)) != 0)
		return r;
	n = strlen(v);
	if (n > 2 && strcmp(v + n - 2, "ms") == 0) {
		for (p = v; *p >= '0' && *p <= '9'; p++)
			if (ms <= max)	/* stop growing; the range check below says why */
				ms = ms * 10 + (unsigned)(*p - '0');
		if (p != v + n - 2) {
			r = cfg_err(d, key, "'%s' bad duration '%.40s': expected a number and ms, s, "
			    "m, h or d", key, v);
			goto out;
		}
	} else {
		if ((r = cfg_get_duration(d, key, def, &s)) != 0)
			goto out;
		ms = (uint64_t)s > max / 1000 ? (unsigned long long)max + 1 :
		    (unsigned long long)s * 1000;
	}
	if (ms < min || ms > max) {
		r = cfg_err(d, key, "'%s' must be from %s to %s, not '%.40s'", key,
		    ms_str(min, lo, sizeof(lo)), ms_str(max, hi, sizeof(hi)), v);
		goto out;
	}
	*out = (unsigned)ms;
 out:
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

/* The allow list of an inbound entry it (labelled label). */
static int
get_allow(const struct cfg_doc *d, const struct cfg_node *it, const char *label,
    struct proxy_listener *l)
{
	const struct cfg_node *seq, *a, *at;
	char name[96];
	size_t n = 0;
	int r;

	if ((at = cfg_node_child(it, "allow")) == NULL)
		return cfg_node_err(d, it, "missing required key '%s.allow'", label);
	if ((r = cfg_node_list(d, it, label, "allow", &seq)) != 0)
		return r;
	if (seq == NULL || seq->child == NULL)
		return cfg_node_err(d, at, "'%s.allow' must list at least one SPIFFE ID or pattern",
		    label);
	for (a = seq->child; a != NULL; a = a->next)
		n++;
	if ((l->allow = calloc(n, sizeof(*l->allow))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	for (a = seq->child; a != NULL; a = a->next) {
		snprintf(name, sizeof(name), "%s.allow[%zu]", label, l->nallow);
		if ((r = get_pattern(d, a, name, &l->allow[l->nallow])) != 0)
			return r;
		l->nallow++;
	}
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
    const char *label, int inbound)
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

	return inbound ? get_allow(d, it, label, l) : get_outbound(d, it, label, l);
}

static int
get_listeners(const struct cfg_doc *d, struct proxy_config *c)
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
			if ((r = get_listener(d, c, it, label, k == 0)) != 0)
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
	char *v = NULL;
	int r;

	if ((r = cfg_get_str(d, "tls.min_version", "1.3", &v)) != 0 ||
	    (r = cfg_get_bool(d, "tls.tickets", 1, &c->tickets)) != 0)
		goto out;
	if (strcmp(v, "1.3") == 0)
		c->tls_min_version = TLS1_3_VERSION;
	else if (strcmp(v, "1.2") == 0)
		c->tls_min_version = TLS1_2_VERSION;
	else
		r = cfg_err(d, "tls.min_version", "'tls.min_version' must be \"1.2\" or \"1.3\", "
		    "not '%.40s'", v);
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
	    (r = get_tls(d, c)) != 0 || (r = get_limits(d, c)) != 0 ||
	    (r = get_listeners(d, c)) != 0 || (r = get_outputs(d, c)) != 0)
		goto out;
	*out = c;
	c = NULL;
 out:
	proxy_config_free(c);
	cfg_doc_free(d);
	return r == 0 || r == HSM_ENOMEM ? r : HSM_ECONFIG;
}
