/* test_proxyconf.c - proxy.yaml and SPIFFE ID patterns. */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "proxyconf.h"

static char dir[PATH_MAX];	/* realpath of a mkdtemp directory */
static char file[PATH_MAX + 16];

/* The smallest valid file, to which each test adds or changes one thing. */
#define AGENT "agent:\n  socket: /run/hsmesh/agent.sock\n"
#define INBOUND \
	"inbound:\n" \
	"  - name: web\n" \
	"    listen: 127.0.0.1:8443\n" \
	"    forward_to: 127.0.0.1:8080\n" \
	"    allow: [spiffe://example.org/ns/client]\n"

static int
setup(void **state)
{
	char tmpl[] = "/tmp/hsm-proxyconf-XXXXXX";

	if (mkdtemp(tmpl) == NULL || realpath(tmpl, dir) == NULL)
		return -1;
	snprintf(file, sizeof(file), "%s/proxy.yaml", dir);
	return 0;
}

static int
teardown(void **state)
{
	unlink(file);
	return rmdir(dir);
}

/* Write text as proxy.yaml in the test directory and load it with flags. */
static int
load_with(const char *text, unsigned flags, struct proxy_config **c)
{
	FILE *f;

	if ((f = fopen(file, "w")) == NULL)
		return -100;
	fputs(text, f);
	if (fclose(f) != 0)
		return -100;
	return flags == 0 ? proxy_config_load(file, c) : proxy_config_load_with(file, flags, c);
}

static int
load(const char *text, struct proxy_config **c)
{
	return load_with(text, 0, c);
}

/*
 * Loading text must fail with HSM_ECONFIG and one line naming the file
 * and containing each of word1 and word2 (NULL: not checked).
 */
static void
refuse_(const char *text, unsigned flags, const char *word1, const char *word2, int line)
{
	struct proxy_config *c = (struct proxy_config *)1;
	const char *msg;
	int r;

	hsm_err_clear();
	if ((r = load_with(text, flags, &c)) != HSM_ECONFIG)
		fail_msg("line %d: loaded with %d, want HSM_ECONFIG", line, r);
	assert_null(c);
	msg = hsm_err_msg(r);
	if (strncmp(msg, file, strlen(file)) != 0 || strchr(msg, '\n') != NULL ||
	    strstr(msg, word1) == NULL || (word2 != NULL && strstr(msg, word2) == NULL))
		fail_msg("line %d: message '%s', want the file, '%s' and '%s'", line, msg, word1,
		    word2 != NULL ? word2 : "");
}
#define refuse(text, w1, w2) refuse_(text, 0, w1, w2, __LINE__)
/* the same for a caller that serves protocol: http */
#define refuse_http(text, w1, w2) refuse_(text, PROXYCONF_HTTP, w1, w2, __LINE__)

/* Address length of a family (AF_UNSPEC: either). */
static void
addr_is(const struct sockaddr_storage *ss, socklen_t len, int family)
{
	if (family == AF_UNSPEC)
		family = ss->ss_family;
	assert_int_equal(ss->ss_family, family);
	assert_int_equal(len, family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6));
}

/* The fields every listener has; lfam/tfam: address families (AF_UNSPEC: a name). */
static void
listener_is(const struct proxy_listener *l, const char *name, int inbound, const char *listen,
    int lfam, const char *target, int tfam, size_t nallow, const char *sni)
{
	assert_string_equal(l->name, name);
	assert_int_equal(l->inbound, inbound);
	assert_string_equal(l->listen, listen);
	addr_is(&l->listen_addr, l->listen_len, lfam);
	assert_string_equal(l->target, target);
	addr_is(&l->target_addr, l->target_len, tfam);
	assert_int_equal(l->nallow, nallow);
	if (sni == NULL)
		assert_null(l->server_name);
	else
		assert_string_equal(l->server_name, sni);
}

static void
full_file(void **state)
{
	struct proxy_config *c = NULL;
	const struct proxy_listener *l;
	char want[PATH_MAX + 64];
	const char *y =
	    "# every key\n"
	    "agent:\n"
	    "  socket: run/agent.sock\n"
	    "  id: spiffe://example.org/ns/web\n"
	    "  timeout: 250ms\n"
	    "workers: 3\n"
	    "tls:\n"
	    "  min_version: \"1.2\"\n"
	    "  tickets: no\n"
	    "limits:\n"
	    "  max_connections: 100\n"
	    "  buffer_size: 4096\n"
	    "timeouts:\n"
	    "  handshake: 2s\n"
	    "  idle: 1m\n"
	    "  connect: 1500ms\n"
	    "  drain: 1h\n"
	    "inbound:\n"
	    "  - name: web\n"
	    "    listen: 127.0.0.1:8443\n"
	    "    forward_to: 127.0.0.1:8080\n"
	    "    allow:\n"
	    "      - spiffe://example.org/ns/client\n"
	    "      - spiffe://example.org/batch/*\n"
	    "  - name: admin.v2\n"
	    "    listen: \"[::1]:0\"\n"
	    "    forward_to: localhost:9000\n"
	    "    allow: [\"spiffe://ops.example.org/*\"]\n"
	    "outbound:\n"
	    "  - name: to-db\n"
	    "    listen: 127.0.0.1:15001\n"
	    "    connect: 127.0.0.1:9443\n"
	    "    expect_id: spiffe://example.org/ns/db\n"
	    "    server_name: db.example.org\n"
	    "  - name: to_cache\n"
	    "    listen: 127.0.0.1:0\n"
	    "    connect: \"[::1]:6380\"\n"
	    "    expect_id: spiffe://example.org/cache/*\n"
	    "admission:\n"
	    "  handshake_rate: 0\n"
	    "  handshake_burst: 7\n"
	    "  ipv4_prefix: 24\n"
	    "  ipv6_prefix: 56\n"
	    "  sources: 64\n"
	    "  max_key_operations: 3\n"
	    "metrics:\n"
	    "  listen: 127.0.0.1:9100\n"
	    "access_log: logs/access.log\n";

	assert_int_equal(load(y, &c), 0);
	assert_string_equal(c->path, file);
	snprintf(want, sizeof(want), "%s/run/agent.sock", dir);
	assert_string_equal(c->agent_socket, want);
	assert_string_equal(c->agent_id, "spiffe://example.org/ns/web");
	assert_int_equal(c->key_timeout_ms, 250);
	assert_int_equal(c->workers, 3);
	assert_int_equal(c->tls_min_version, 0x0303);
	assert_int_equal(c->tickets, 0);
	assert_int_equal(c->max_connections, 100);
	assert_int_equal(c->buffer_size, 4096);
	assert_int_equal(c->handshake_timeout_ms, 2000);
	assert_int_equal(c->idle_timeout_ms, 60000);
	assert_int_equal(c->connect_timeout_ms, 1500);
	assert_int_equal(c->drain_timeout_ms, 3600000);
	assert_int_equal(c->adm.handshake_rate, 0);
	assert_int_equal(c->adm.handshake_burst, 7);
	assert_int_equal(c->adm.ipv4_prefix, 24);
	assert_int_equal(c->adm.ipv6_prefix, 56);
	assert_int_equal(c->adm.sources, 64);
	assert_int_equal(c->adm.max_key_ops, 3);
	assert_string_equal(c->metrics_listen, "127.0.0.1:9100");
	addr_is(&c->metrics_addr, c->metrics_len, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&c->metrics_addr)->sin_port), 9100);
	snprintf(want, sizeof(want), "%s/logs/access.log", dir);
	assert_string_equal(c->access_log, want);

	/* Inbound first, then outbound, each in file order. */
	assert_int_equal(c->nlst, 4);
	l = &c->lst[0];
	listener_is(l, "web", 1, "127.0.0.1:8443", AF_INET, "127.0.0.1:8080", AF_INET, 2, NULL);
	assert_int_equal(ntohs(((struct sockaddr_in *)&l->listen_addr)->sin_port), 8443);
	assert_int_equal(ntohs(((struct sockaddr_in *)&l->target_addr)->sin_port), 8080);
	assert_string_equal(l->allow[0], "spiffe://example.org/ns/client");
	assert_string_equal(l->allow[1], "spiffe://example.org/batch/*");
	assert_true(proxy_listener_allows(l, "spiffe://example.org/ns/client"));
	assert_true(proxy_listener_allows(l, "spiffe://example.org/batch/nightly"));
	assert_false(proxy_listener_allows(l, "spiffe://example.org/ns/other"));

	l = &c->lst[1];
	listener_is(l, "admin.v2", 1, "[::1]:0", AF_INET6, "localhost:9000", AF_UNSPEC, 1, NULL);
	assert_string_equal(l->allow[0], "spiffe://ops.example.org/*");

	l = &c->lst[2];
	listener_is(l, "to-db", 0, "127.0.0.1:15001", AF_INET, "127.0.0.1:9443", AF_INET, 1,
	    "db.example.org");
	assert_int_equal(ntohs(((struct sockaddr_in *)&l->target_addr)->sin_port), 9443);
	assert_string_equal(l->allow[0], "spiffe://example.org/ns/db");
	assert_true(proxy_listener_allows(l, "spiffe://example.org/ns/db"));
	assert_false(proxy_listener_allows(l, "spiffe://example.org/ns/db2"));

	l = &c->lst[3];
	listener_is(l, "to_cache", 0, "127.0.0.1:0", AF_INET, "[::1]:6380", AF_INET6, 1, NULL);
	assert_string_equal(l->allow[0], "spiffe://example.org/cache/*");
	proxy_config_free(c);
	proxy_config_free(NULL);
}

/* tls.profile 3gpp-nf: TLS 1.2 and 1.3 both, SNI on every outbound listener. */
static void
tls_profile(void **state)
{
	struct proxy_config *c = NULL;
#define OUT_SNI "outbound:\n  - name: to-amf\n    listen: 127.0.0.1:0\n" \
	"    connect: 127.0.0.1:9443\n    expect_id: spiffe://example.org/amf\n"

	assert_int_equal(load(AGENT INBOUND "tls:\n  profile: 3gpp-nf\n" OUT_SNI
	    "    server_name: amf1.5gc.mnc001.mcc001.3gppnetwork.org\n", &c), 0);
	assert_int_equal(c->tls_3gpp, 1);
	assert_int_equal(c->tls_min_version, 0x0303);
	assert_string_equal(c->lst[1].server_name, "amf1.5gc.mnc001.mcc001.3gppnetwork.org");
	proxy_config_free(c);
	c = NULL;
	assert_int_equal(load(AGENT INBOUND "tls:\n  profile: default\n", &c), 0);
	assert_int_equal(c->tls_3gpp, 0);
	assert_int_equal(c->tls_min_version, 0x0304);
	proxy_config_free(c);
	refuse(AGENT INBOUND "tls:\n  profile: 3gpp-nf\n" OUT_SNI, "'tls.profile' 3gpp-nf",
	    "'to-amf' needs server_name");
	refuse(AGENT INBOUND "tls:\n  profile: 3gpp-nf\n  min_version: \"1.3\"\n",
	    "'tls.min_version' \"1.3\" contradicts", "TS 33.210");
	refuse(AGENT INBOUND "tls:\n  profile: 3gpp\n", "'tls.profile' must be", "'3gpp'");
#undef OUT_SNI
}

static void
defaults(void **state)
{
	struct proxy_config *c = NULL;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	assert_int_equal(load(AGENT INBOUND, &c), 0);
	assert_string_equal(c->agent_socket, "/run/hsmesh/agent.sock");
	assert_string_equal(c->agent_id, "");
	assert_int_equal(c->key_timeout_ms, 2000);
	assert_int_equal(c->workers, cpus < 1 ? 1 : cpus > 64 ? 64 : cpus);
	assert_int_equal(c->tls_min_version, 0x0304);
	assert_int_equal(c->tickets, 1);
	assert_int_equal(c->max_connections, 4096);
	assert_int_equal(c->buffer_size, 16384);
	assert_int_equal(c->handshake_timeout_ms, 5000);
	assert_int_equal(c->idle_timeout_ms, 300000);
	assert_int_equal(c->connect_timeout_ms, 5000);
	assert_int_equal(c->drain_timeout_ms, 10000);
	assert_int_equal(c->adm.handshake_rate, 100);
	assert_int_equal(c->adm.handshake_burst, 1000);
	assert_int_equal(c->adm.ipv4_prefix, 32);
	assert_int_equal(c->adm.ipv6_prefix, 64);
	assert_int_equal(c->adm.sources, 16384);
	assert_int_equal(c->adm.max_key_ops, 1024);
	assert_int_equal(c->nlst, 1);
	assert_null(c->metrics_listen);
	assert_null(c->access_log);
	assert_int_equal(c->crl_refuse_stale, 0);	/* revocation.stale: keep */
	assert_int_equal(c->crl_close, 1);		/* revocation.close_established: true */
	proxy_config_free(c);

	/* Outbound alone is enough; an empty inbound list is no listener; "-" is stderr. */
	assert_int_equal(load(AGENT "inbound: []\noutbound:\n  - name: o\n"
	    "    listen: 127.0.0.1:15001\n    connect: 127.0.0.1:9443\n"
	    "    expect_id: spiffe://example.org/db\naccess_log: \"-\"\n"
	    "tls:\n  tickets: True\n", &c), 0);
	assert_int_equal(c->nlst, 1);
	assert_int_equal(c->lst[0].inbound, 0);
	assert_string_equal(c->access_log, "-");
	assert_int_equal(c->tickets, 1);
	proxy_config_free(c);
}

static void
revocation(void **state)
{
	struct proxy_config *c = NULL;

	assert_int_equal(load(AGENT INBOUND "revocation:\n  stale: refuse\n"
	    "  close_established: no\n", &c), 0);
	assert_int_equal(c->crl_refuse_stale, 1);
	assert_int_equal(c->crl_close, 0);
	proxy_config_free(c);
	refuse(AGENT INBOUND "revocation:\n  stale: ignore\n",
	    "'revocation.stale' must be \"keep\" or \"refuse\", not 'ignore'", "line 9");
	refuse(AGENT INBOUND "revocation:\n  close_established: sometimes\n",
	    "revocation.close_established", NULL);
	refuse(AGENT INBOUND "revocation:\n  check: off\n", "unknown key 'revocation.check'", NULL);
}

/* user: as in ca.yaml and agent.yaml; the seccomp keys of those are not the proxy's. */
static void
confine(void **state)
{
	struct proxy_config *c = NULL;

	assert_int_equal(load(AGENT INBOUND "user: nobody\n", &c), 0);
	assert_string_equal(c->confine.user, "nobody");
	assert_null(c->confine.mode);
	proxy_config_free(c);
	assert_int_equal(load(AGENT INBOUND, &c), 0);
	assert_null(c->confine.user);
	proxy_config_free(c);
	refuse(AGENT INBOUND "user: [a, b]\n", "'user'", NULL);
	/* the daemon's own filter as in ca.yaml and agent.yaml; no keyholder */
	assert_int_equal(load(AGENT INBOUND "seccomp:\n  mode: log\n  allow: fadvise64, flock\n", &c), 0);
	assert_string_equal(c->confine.mode, "log");
	assert_string_equal(c->confine.allow, "fadvise64, flock");
	proxy_config_free(c);
	refuse(AGENT INBOUND "seccomp:\n  mode: strict\n", "'seccomp.mode' must be enforce, log, kill or off", NULL);
	refuse(AGENT INBOUND "seccomp:\n  allow: fooat\n", "'fooat' is not a system call", NULL);
	refuse(AGENT INBOUND "seccomp:\n  keyholder_allow: flock\n",
	    "unknown key 'seccomp.keyholder_allow'", NULL);
}

static void
unknown_keys(void **state)
{
	refuse(AGENT INBOUND "foo: 1\n", "unknown key 'foo'", "line 8");
	refuse(AGENT INBOUND "tls:\n  max_version: \"1.3\"\n", "unknown key 'tls.max_version'",
	    "line 9");
	refuse("agent:\n  socket: /a.sock\n  pin: 1\n" INBOUND, "unknown key 'agent.pin'", NULL);
	/* Inside list entries, with the entry's index. */
	refuse(AGENT INBOUND "  - name: b\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: [spiffe://example.org/x]\n    expect_id: spiffe://example.org/y\n",
	    "unknown key 'inbound[1].expect_id'", "line 12");
	refuse(AGENT "outbound:\n  - name: o\n    listen: 127.0.0.1:1\n    connect: 127.0.0.1:2\n"
	    "    expect_id: spiffe://example.org/db\n    allow: [spiffe://example.org/x]\n",
	    "unknown key 'outbound[0].allow'", "line 8");
	refuse(AGENT "inbound:\n  - web\n", "'inbound[0]' must be a mapping", NULL);
	refuse(AGENT "inbound:\n  name: web\n", "'inbound' must be a list", NULL);
}

static void
missing_keys(void **state)
{
	refuse(INBOUND, "missing required key 'agent.socket'", NULL);
	refuse("agent:\n  id: spiffe://example.org/w\n" INBOUND,
	    "missing required key 'agent.socket'", NULL);
	refuse(AGENT "inbound:\n  - listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n",
	    "missing required key 'inbound[0].name'", "line 4");
	refuse(AGENT "inbound:\n  - name: a\n    forward_to: 127.0.0.1:2\n",
	    "missing required key 'inbound[0].listen'", NULL);
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:2\n",
	    "missing required key 'inbound[0].forward_to'", NULL);
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n",
	    "missing required key 'inbound[0].allow'", NULL);
	refuse(AGENT "outbound:\n  - name: o\n    listen: 127.0.0.1:1\n    connect: 127.0.0.1:2\n",
	    "missing required key 'outbound[0].expect_id'", NULL);
	refuse(AGENT "outbound:\n  - name: o\n    listen: 127.0.0.1:1\n"
	    "    expect_id: spiffe://example.org/db\n", "missing required key 'outbound[0].connect'",
	    NULL);
	refuse(AGENT INBOUND "  - name:\n    listen: 127.0.0.1:1\n",
	    "'inbound[1].name' has no value", NULL);
}

static void
no_listeners(void **state)
{
	refuse(AGENT, "no listeners", NULL);
	refuse(AGENT "inbound: []\noutbound:\n", "no listeners", NULL);
}

static void
bad_values(void **state)
{
	/* Durations. */
	refuse("agent:\n  socket: /a.sock\n  timeout: 5x\n" INBOUND, "'agent.timeout'",
	    "bad duration");
	refuse("agent:\n  socket: /a.sock\n  timeout: 50ms\n" INBOUND, "'agent.timeout' must be "
	    "from 100ms to 60s", "line 3");
	refuse("agent:\n  socket: /a.sock\n  timeout: 2m\n" INBOUND, "from 100ms to 60s", NULL);
	refuse(AGENT INBOUND "timeouts:\n  idle: 1.5s\n", "'timeouts.idle'", "bad duration");
	refuse(AGENT INBOUND "timeouts:\n  connect: msms\n", "'timeouts.connect'", "bad duration");
	refuse(AGENT INBOUND "timeouts:\n  drain: 99999999999999999999ms\n", "'timeouts.drain' "
	    "must be from", NULL);
	refuse(AGENT INBOUND "timeouts:\n  handshake: 0s\n", "'timeouts.handshake'", NULL);
	/* Numbers and choices. */
	refuse(AGENT INBOUND "workers: 0\n", "'workers' must be a whole number from 1 to 64",
	    "line 8");
	refuse(AGENT INBOUND "workers: 65\n", "'workers'", "'65'");
	refuse(AGENT INBOUND "workers: -1\n", "'workers'", NULL);
	refuse(AGENT INBOUND "workers: 99999999999999999999999\n", "'workers'", NULL);
	refuse(AGENT INBOUND "limits:\n  buffer_size: 512\n", "'limits.buffer_size'", "1024");
	refuse(AGENT INBOUND "limits:\n  max_connections: 1000001\n", "'limits.max_connections'",
	    NULL);
	refuse(AGENT INBOUND "admission:\n  handshake_rate: 1000001\n",
	    "'admission.handshake_rate'", "0 to 1000000");
	refuse(AGENT INBOUND "admission:\n  handshake_burst: 0\n", "'admission.handshake_burst'",
	    NULL);
	refuse(AGENT INBOUND "admission:\n  ipv4_prefix: 33\n", "'admission.ipv4_prefix'", NULL);
	refuse(AGENT INBOUND "admission:\n  ipv6_prefix: 0\n", "'admission.ipv6_prefix'", NULL);
	refuse(AGENT INBOUND "admission:\n  sources: 63\n", "'admission.sources'", NULL);
	refuse(AGENT INBOUND "admission:\n  max_key_operations: 0\n",
	    "'admission.max_key_operations'", NULL);
	refuse(AGENT INBOUND "admission:\n  rate: 5\n", "'admission.rate'", "unknown");
	refuse(AGENT INBOUND "tls:\n  min_version: \"1.1\"\n", "'tls.min_version'", "'1.1'");
	refuse(AGENT INBOUND "tls:\n  min_version: 1.0\n", "'tls.min_version'", NULL);
	refuse(AGENT INBOUND "tls:\n  tickets: maybe\n", "'tls.tickets' must be true or false",
	    NULL);
	/* The agent. */
	refuse("agent:\n  socket: /a.sock\n  id: spiffe://Example.org/w\n" INBOUND, "'agent.id'",
	    "invalid SPIFFE ID");
	refuse("agent:\n  socket: /a.sock\n  id: spiffe://example.org\n" INBOUND, "'agent.id'",
	    "no path");
	refuse("agent:\n  socket: /" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n" INBOUND,
	    "'agent.socket'", "too long");
	refuse("agent: /a.sock\n" INBOUND, "'agent' must be a mapping", NULL);
}

static void
bad_addresses(void **state)
{
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: [spiffe://example.org/x]\n", "'inbound[0].listen'", "is not host:port");
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:0\n"
	    "    allow: [spiffe://example.org/x]\n", "'inbound[0].forward_to'", "line 6");
	refuse(AGENT "outbound:\n  - name: o\n    listen: 127.0.0.1:1\n    connect: db:x\n"
	    "    expect_id: spiffe://example.org/db\n", "'outbound[0].connect'", "not host:port");
	refuse(AGENT INBOUND "metrics:\n  listen: 127.0.0.1:70000\n", "'metrics.listen'",
	    "not host:port");
	refuse(AGENT "outbound:\n  - name: o\n    listen: 127.0.0.1:1\n    connect: 127.0.0.1:2\n"
	    "    expect_id: spiffe://example.org/db\n    server_name: \"db example\"\n",
	    "'outbound[0].server_name' must be a DNS name", NULL);
}

static void
duplicates(void **state)
{
	/* Names are unique across inbound and outbound. */
	refuse(AGENT INBOUND "outbound:\n  - name: web\n    listen: 127.0.0.1:1\n"
	    "    connect: 127.0.0.1:2\n    expect_id: spiffe://example.org/db\n",
	    "'outbound[0].name'", "duplicate listener name 'web'");
	refuse(AGENT "inbound:\n  - name: -bad name\n    listen: 127.0.0.1:1\n"
	    "    forward_to: 127.0.0.1:2\n",
	    "'inbound[0].name' must be 1 to 64", NULL);
	/* One listen address per listener (port 0 excepted), nor the metrics endpoint's. */
	refuse(AGENT INBOUND "outbound:\n  - name: o\n    listen: 127.0.0.1:8443\n"
	    "    connect: 127.0.0.1:2\n    expect_id: spiffe://example.org/db\n",
	    "'outbound[0].listen'", "listener 'web' already listens there");
	refuse(AGENT INBOUND "outbound:\n  - name: o\n    listen: 0.0.0.0:8443\n"
	    "    connect: 127.0.0.1:2\n    expect_id: spiffe://example.org/db\n",
	    "'outbound[0].listen'", "already listens");
	refuse(AGENT INBOUND "metrics:\n  listen: 127.0.0.1:8443\n", "'metrics.listen'",
	    "already listens");
	refuse(AGENT INBOUND "  - name: web\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: [spiffe://example.org/x]\n", "'inbound[1].name'", "duplicate listener name");
}

static void
bad_allow(void **state)
{
	struct proxy_config *c = NULL;

	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow:\n      - spiffe://example.org/ok\n      - spiffe://example.org/a*\n",
	    "'inbound[0].allow[1]'", "line 9");
	refuse(AGENT INBOUND "  - name: b\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow:\n      - spiffe://x/*/y\n",
	    "'inbound[1].allow[0]' invalid SPIFFE ID pattern 'spiffe://x/*/y'", "line 12");
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: [spiffe://EXAMPLE.org/ns/x]\n", "'inbound[0].allow[0]' invalid SPIFFE ID",
	    NULL);
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: [\"*\"]\n", "'inbound[0].allow[0]'", NULL);
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: [\"spiffe://*\"]\n", "'inbound[0].allow[0]'", NULL);
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: []\n", "'inbound[0].allow' must list at least one", "line 7");
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow:\n", "'inbound[0].allow' must list at least one", NULL);
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: spiffe://example.org/x\n", "'inbound[0].allow' must be a list", NULL);
	refuse(AGENT "inbound:\n  - name: a\n    listen: 127.0.0.1:1\n    forward_to: 127.0.0.1:2\n"
	    "    allow: [[spiffe://example.org/x]]\n", "'inbound[0].allow[0]' must be a single value",
	    NULL);
	refuse(AGENT "outbound:\n  - name: o\n    listen: 127.0.0.1:1\n    connect: 127.0.0.1:2\n"
	    "    expect_id: spiffe://example.org/db*\n", "'outbound[0].expect_id'", NULL);

	/* A missing file names itself. */
	unlink(file);
	c = (struct proxy_config *)1;
	assert_int_equal(proxy_config_load(file, &c), HSM_ECONFIG);
	assert_null(c);
	assert_non_null(strstr(hsm_err_detail(), "proxy.yaml"));
}

static void
patterns(void **state)
{
	static const struct {
		const char *pattern, *id;
		int match;
	} cases[] = {
		/* Exact. */
		{ "spiffe://example.org/ns/web", "spiffe://example.org/ns/web", 1 },
		{ "spiffe://example.org/ns/web", "spiffe://example.org/ns/we", 0 },
		{ "spiffe://example.org/ns/web", "spiffe://example.org/ns/web/x", 0 },
		{ "spiffe://example.org/ns/web", "spiffe://example.org/ns", 0 },
		/* Prefix: below /ns, not /ns itself nor a longer segment. */
		{ "spiffe://example.org/ns/*", "spiffe://example.org/ns/a", 1 },
		{ "spiffe://example.org/ns/*", "spiffe://example.org/ns/a/b/c", 1 },
		{ "spiffe://example.org/ns/*", "spiffe://example.org/ns", 0 },
		{ "spiffe://example.org/ns/*", "spiffe://example.org/ns/", 0 },
		{ "spiffe://example.org/ns/*", "spiffe://example.org/nsx/a", 0 },
		{ "spiffe://example.org/ns/*", "spiffe://example.org/n", 0 },
		{ "spiffe://example.org/ns/*", "spiffe://other.org/ns/a", 0 },
		{ "spiffe://example.org/ns/*", "", 0 },
		/* The whole trust domain, and only it. */
		{ "spiffe://example.org/*", "spiffe://example.org/a", 1 },
		{ "spiffe://example.org/*", "spiffe://example.org/ns/web", 1 },
		{ "spiffe://example.org/*", "spiffe://example.org", 0 },
		{ "spiffe://example.org/*", "spiffe://example.org.evil/a", 0 },
		{ "spiffe://example.org/*", "spiffe://example.orgx/a", 0 },
		{ "spiffe://example.org/*", "spiffe://sub.example.org/a", 0 },
		/* A star anywhere else is a literal character, which no valid ID contains. */
		{ "spiffe://example.org/a*", "spiffe://example.org/ab", 0 },
	};
	size_t i;

	/* Syntax. */
	assert_int_equal(spiffe_pattern_check("spiffe://example.org/ns/web"), 0);
	assert_int_equal(spiffe_pattern_check("spiffe://example.org"), 0);
	assert_int_equal(spiffe_pattern_check("spiffe://example.org/*"), 0);
	assert_int_equal(spiffe_pattern_check("spiffe://example.org/ns/*"), 0);
	assert_int_equal(spiffe_pattern_check("spiffe://example.org/a*"), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "spiffe://example.org/a*"));
	assert_int_equal(spiffe_pattern_check("spiffe://x/*/y"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("spiffe://x/**"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("spiffe://x/*/*"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("spiffe://*"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("spiffe://*.example.org/x"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("spiffe://example.org//*"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("spiffe://example.org/../*"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("/*"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check("*"), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check(""), HSM_EINVAL);
	assert_int_equal(spiffe_pattern_check(NULL), HSM_EINVAL);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (spiffe_pattern_match(cases[i].pattern, cases[i].id) != cases[i].match)
			fail_msg("'%s' ~ '%s' should be %d", cases[i].pattern, cases[i].id,
			    cases[i].match);
}


/* An inbound HTTP listener: the smallest valid one, to which tests add routes. */
#define HTTP_IN \
	"inbound:\n" \
	"  - name: smf\n" \
	"    listen: 127.0.0.1:8443\n" \
	"    forward_to: 127.0.0.1:8080\n" \
	"    protocol: http\n" \
	"    allow: [spiffe://example.org/*]\n"

static void
http_listeners(void **state)
{
	struct proxy_config *c = NULL;
	const struct proxy_listener *l;
	const char *y = AGENT
	    "limits:\n"
	    "  max_header_bytes: 8192\n"
	    "  max_headers: 50\n"
	    "  max_streams: 250\n"
	    "  min_body_rate: 4096\n"
	    "timeouts:\n"
	    "  request: 2500ms\n"
	    "  stream_idle: 2m\n"
	    HTTP_IN
	    "    app_protocol: h2c\n"
	    "    routes:\n"
	    "      - name: create\n"
	    "        path: /nsmf-pdusession/v1/sm-contexts\n"
	    "        methods: [POST]\n"
	    "        allow: [spiffe://example.org/amf]\n"
	    "        timeout: 10s\n"
	    "      - path_prefix: /nnrf-nfm/v1/\n"
	    "        methods: [GET, HEAD]\n"
	    "        allow:\n"
	    "          - spiffe://example.org/*\n"
	    "          - spiffe://other.org/nrf\n"
	    "outbound:\n"
	    "  - name: to-nrf\n"
	    "    listen: 127.0.0.1:15001\n"
	    "    connect: 127.0.0.1:9443\n"
	    "    expect_id: spiffe://example.org/nrf\n"
	    "    protocol: http\n";

	/* a sidecar that does not serve HTTP yet refuses it, naming the key and line */
	refuse(y, "'inbound[0].protocol' http is not served", "line 15");
	assert_int_equal(load_with(y, PROXYCONF_HTTP, &c), 0);
	assert_int_equal(c->max_header_bytes, 8192);
	assert_int_equal(c->max_headers, 50);
	assert_int_equal(c->max_streams, 250);
	assert_int_equal(c->min_body_rate, 4096);
	assert_int_equal(c->request_timeout_ms, 2500);
	assert_int_equal(c->stream_idle_ms, 120000);
	l = &c->lst[0];
	assert_int_equal(l->http, 1);
	assert_int_equal(l->app_h2c, 1);
	assert_int_equal(l->nroutes, 2);
	assert_string_equal(l->routes[0].name, "create");
	assert_string_equal(l->routes[0].path, "/nsmf-pdusession/v1/sm-contexts");
	assert_int_equal(l->routes[0].prefix, 0);
	assert_int_equal(l->routes[0].nmethods, 1);
	assert_string_equal(l->routes[0].methods[0], "POST");
	assert_int_equal(l->routes[0].timeout_ms, 10000);
	assert_true(route_allows(&l->routes[0], "spiffe://example.org/amf"));
	assert_false(route_allows(&l->routes[0], "spiffe://example.org/nrf"));
	assert_string_equal(l->routes[1].name, "route1");
	assert_string_equal(l->routes[1].path, "/nnrf-nfm/v1/");
	assert_int_equal(l->routes[1].prefix, 1);
	assert_int_equal(l->routes[1].nmethods, 2);
	assert_int_equal(l->routes[1].nallow, 2);
	assert_int_equal(l->routes[1].timeout_ms, 0);
	assert_ptr_equal(route_find(l->routes, l->nroutes, "GET", "/nnrf-nfm/v1/nf-instances",
	    strlen("/nnrf-nfm/v1/nf-instances")), &l->routes[1]);
	assert_int_equal(c->lst[1].http, 1);
	assert_int_equal(c->lst[1].nroutes, 0);
	proxy_config_free(c);

	/* defaults; tcp is the default protocol and may be written */
	assert_int_equal(load(AGENT INBOUND "    protocol: tcp\n", &c), 0);
	assert_int_equal(c->lst[0].http, 0);
	assert_int_equal(c->max_header_bytes, 16384);
	assert_int_equal(c->max_headers, 100);
	assert_int_equal(c->max_streams, 100);
	assert_int_equal(c->min_body_rate, 0);
	assert_int_equal(c->request_timeout_ms, 30000);
	assert_int_equal(c->stream_idle_ms, 300000);
	proxy_config_free(c);

	/* an HTTP listener without routes forwards every request of an allowed peer */
	assert_int_equal(load_with(AGENT HTTP_IN "    app_protocol: http/1.1\n", PROXYCONF_HTTP, &c),
	    0);
	assert_int_equal(c->lst[0].app_h2c, 0);
	assert_int_equal(c->lst[0].nroutes, 0);
	assert_null(c->lst[0].routes);
	proxy_config_free(c);
}

static void
bad_routes(void **state)
{
	refuse(AGENT INBOUND "    protocol: quic\n", "'inbound[0].protocol' must be tcp or http",
	    "line 8");
	refuse_http(AGENT INBOUND "    routes:\n      - path: /\n        allow: [spiffe://a.org/x]\n",
	    "'inbound[0].routes' needs 'protocol: http'", "line 8");
	refuse_http(AGENT "outbound:\n  - name: o\n    listen: 127.0.0.1:15001\n"
	    "    connect: 127.0.0.1:9443\n    expect_id: spiffe://example.org/db\n"
	    "    protocol: http\n    routes: []\n", "unknown key 'outbound[0].routes'", NULL);
	refuse_http(AGENT HTTP_IN "    routes: []\n", "'inbound[0].routes' is empty", NULL);
	refuse_http(AGENT INBOUND "    app_protocol: h2c\n", "'inbound[0].app_protocol' needs "
	    "'protocol: http'", "line 8");
	refuse_http(AGENT HTTP_IN "    app_protocol: h2\n", "'inbound[0].app_protocol' must be "
	    "http/1.1 or h2c", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - allow: [spiffe://a.org/x]\n",
	    "'inbound[0].routes[0]' needs exactly one of 'path' and 'path_prefix'", "line 10");
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        path_prefix: /a\n"
	    "        allow: [spiffe://a.org/x]\n", "exactly one", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n",
	    "missing required key 'inbound[0].routes[0].allow'", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        allow: []\n",
	    "'inbound[0].routes[0].allow' must list at least one", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        allow: [spiffe://a.org/*/x]\n",
	    "'inbound[0].routes[0].allow[0]' invalid SPIFFE ID pattern", "line 11");
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        allow: [spiffe://a.org/x]\n"
	    "        hosts: [a]\n", "unknown key 'inbound[0].routes[0].hosts'", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: a\n        allow: [spiffe://a.org/x]\n",
	    "'inbound[0].routes[0].path'", "does not start with '/'");
	refuse_http(AGENT HTTP_IN "    routes:\n      - path_prefix: /a/../b\n"
	    "        allow: [spiffe://a.org/x]\n", "'inbound[0].routes[0].path_prefix'", "'..'");
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /%61\n        allow: [spiffe://a.org/x]\n",
	    "not in normal form", "write '/a'");
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a?b=1\n        allow: [spiffe://a.org/x]\n",
	    "has a query", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        methods: []\n"
	    "        allow: [spiffe://a.org/x]\n", "'inbound[0].routes[0].methods' must list", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        methods: [\"GE T\"]\n"
	    "        allow: [spiffe://a.org/x]\n", "'inbound[0].routes[0].methods[0]' must be an HTTP "
	    "method", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        timeout: 50ms\n"
	    "        allow: [spiffe://a.org/x]\n", "'inbound[0].routes[0].timeout' must be from 100ms "
	    "to 86400s", "line 11");
	refuse_http(AGENT HTTP_IN "    routes:\n      - path: /a\n        timeout: soon\n"
	    "        allow: [spiffe://a.org/x]\n", "'inbound[0].routes[0].timeout'", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - name: r\n        path: /a\n"
	    "        allow: [spiffe://a.org/x]\n      - name: r\n        path: /b\n"
	    "        allow: [spiffe://a.org/x]\n", "duplicate route name 'r'", NULL);
	refuse_http(AGENT HTTP_IN "    routes:\n      - name: \"a b\"\n        path: /a\n"
	    "        allow: [spiffe://a.org/x]\n", "'inbound[0].routes[0].name' must be", NULL);
	/* limits */
	refuse_http(AGENT HTTP_IN "limits:\n  max_header_bytes: 100\n", "'limits.max_header_bytes'",
	    NULL);
	refuse_http(AGENT HTTP_IN "limits:\n  max_streams: 0\n", "'limits.max_streams'", NULL);
	refuse_http(AGENT HTTP_IN "limits:\n  max_headers: 1001\n", "'limits.max_headers'", NULL);
	refuse_http(AGENT HTTP_IN "timeouts:\n  request: 25h\n", "'timeouts.request' must be from",
	    NULL);
	refuse_http(AGENT HTTP_IN "timeouts:\n  stream_idle: 10ms\n", "'timeouts.stream_idle'",
	    NULL);
	/* nothing is silently ignored: HTTP limits without an HTTP listener are refused */
	refuse(AGENT INBOUND "limits:\n  max_streams: 10\n", "'limits.max_streams' applies to "
	    "protocol: http listeners, and there is none", "line 9");
	refuse(AGENT INBOUND "timeouts:\n  stream_idle: 1m\n", "'timeouts.stream_idle' applies",
	    NULL);
	refuse_http(AGENT HTTP_IN "limits:\n  buffer_size: 4096\n",
	    "'limits.max_header_bytes' 16384 is over 'limits.buffer_size' 4096", "line 10");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_file),
		cmocka_unit_test(defaults),
		cmocka_unit_test(tls_profile),
		cmocka_unit_test(unknown_keys),
		cmocka_unit_test(missing_keys),
		cmocka_unit_test(no_listeners),
		cmocka_unit_test(bad_values),
		cmocka_unit_test(bad_addresses),
		cmocka_unit_test(duplicates),
		cmocka_unit_test(bad_allow),
		cmocka_unit_test(patterns),
		cmocka_unit_test(http_listeners),
		cmocka_unit_test(bad_routes),
		cmocka_unit_test(revocation),
		cmocka_unit_test(confine),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
