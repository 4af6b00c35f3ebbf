/*
 * test_agentconf.c - agent.yaml (agentconf.h): every key, the defaults,
 * relative paths, the CA URL forms, and each refusal with its one-line
 * message (the texts docs/AGENT.md quotes and operators see).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agentconf.h"
#include "err.h"

/* The smallest valid file; each test changes one thing (lines counted from 1). */
#define BASE \
	"token:\n" /* 1 */ \
	"  module: /usr/lib/softhsm/libsofthsm2.so\n" \
	"  uri: \"pkcs11:token=node\"\n" \
	"  pin_file: node.pin\n" \
	"ca:\n" /* 5 */ \
	"  url: http://ca.example.org:8443/.well-known/cmp\n" \
	"  root: root.pem\n" \
	"state_dir: state\n" \
	"socket: /run/hsmesh/agent.sock\n" \
	"workloads:\n" /* 10 */ \
	"  - id: spiffe://example.org/ns/web\n" \
	"    uid: 1000\n" \
	"    join_token_file: web.join\n"

static char scratch[8192];

/* text with the first occurrence of from replaced by to (a static buffer). */
static const char *
with(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);

	if (at == NULL)
		fail_msg("'%s' is not in the text", from);
	snprintf(scratch, sizeof(scratch), "%.*s%s%s", (int)(at - text), text, to,
	    at + strlen(from));
	return scratch;
}

static int
parse(const char *text, struct agent_config **c)
{
	return agent_config_parse("agent.yaml", "/etc/hsmesh", (const uint8_t *)text,
	    strlen(text), c);
}

/* Parsing text must fail with HSM_ECONFIG and exactly the message want. */
static void
refuse_(const char *text, const char *want, int line)
{
	struct agent_config *c = (struct agent_config *)1;
	int r;

	hsm_err_clear();
	if ((r = parse(text, &c)) != HSM_ECONFIG)
		fail_msg("line %d: parsed with %d, want HSM_ECONFIG", line, r);
	assert_null(c);
	if (strcmp(hsm_err_msg(r), want) != 0)
		fail_msg("line %d: message\n  '%s', want\n  '%s'", line, hsm_err_msg(r), want);
}
#define refuse(text, want) refuse_(text, want, __LINE__)

/* The same when only part of the message is the agent's (another module words the rest). */
static void
refuse_has_(const char *text, const char *part, int line)
{
	struct agent_config *c = NULL;
	int r = parse(text, &c);

	if (r != HSM_ECONFIG || c != NULL || strncmp(hsm_err_msg(r), "agent.yaml: ", 12) != 0 ||
	    strstr(hsm_err_msg(r), part) == NULL)
		fail_msg("line %d: %d '%s', want HSM_ECONFIG with '%s'", line, r, hsm_err_msg(r),
		    part);
}
#define refuse_has(text, part) refuse_has_(text, part, __LINE__)

static void
defaults(void **state)
{
	struct agent_config *c = NULL;

	assert_int_equal(parse(BASE, &c), 0);
	assert_string_equal(c->path, "agent.yaml");
	assert_string_equal(c->token.module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(c->token.uri, "pkcs11:token=node");
	assert_string_equal(c->token.pin_file, "/etc/hsmesh/node.pin");
	assert_null(c->token.pin_env);
	assert_int_equal(c->token.workers, 0);
	assert_int_equal(c->token.sign_delay_ms, 0);
	assert_string_equal(c->ca_url, "http://ca.example.org:8443/.well-known/cmp");
	assert_int_equal(c->nca, 1);
	assert_string_equal(c->ca[0].host, "ca.example.org");
	assert_int_equal(c->ca[0].port, 8443);
	assert_string_equal(c->ca[0].path, "/.well-known/cmp");
	/* Relative paths against the file's directory; absolute ones as they are. */
	assert_string_equal(c->root, "/etc/hsmesh/root.pem");
	assert_string_equal(c->state_dir, "/etc/hsmesh/state");
	assert_string_equal(c->socket, "/run/hsmesh/agent.sock");
	assert_int_equal(c->key_type, HSM_KEY_EC_P256);
	assert_true(c->renew_at == 0.5);
	assert_int_equal(c->retry_min, 1);
	assert_int_equal(c->retry_max, 60);
	assert_int_equal(c->evidence.kind, EVIDENCE_NONE);
	assert_int_equal(c->nwl, 1);
	assert_string_equal(c->wl[0].id, "spiffe://example.org/ns/web");
	assert_int_equal(c->wl[0].uid, 1000);
	assert_string_equal(c->wl[0].join_token_file, "/etc/hsmesh/web.join");
	/* The local API's limits. */
	assert_int_equal(c->api.max_conns, 1024);
	assert_int_equal(c->api.max_conns_uid, 64);
	assert_int_equal(c->api.idle_ms, 60000);
	assert_int_equal(c->api.frame_ms, 5000);
	assert_true(c->api.tls12);
	agent_config_free(c);
}

static void
api_section(void **state)
{
	struct agent_config *c = NULL;

	assert_int_equal(parse(BASE "api:\n  max_connections: 300\n  max_connections_per_uid: 8\n"
	    "  idle_timeout: 2m\n  frame_timeout: 1s\n  tls12: false\n", &c), 0);
	assert_int_equal(c->api.max_conns, 300);
	assert_int_equal(c->api.max_conns_uid, 8);
	assert_int_equal(c->api.idle_ms, 120000);
	assert_int_equal(c->api.frame_ms, 1000);
	assert_false(c->api.tls12);
	assert_null(c->api.metrics_listen);
	agent_config_free(c);
	assert_int_equal(parse(BASE "metrics:\n  listen: 127.0.0.1:0\n", &c), 0);
	assert_string_equal(c->api.metrics_listen, "127.0.0.1:0");
	assert_int_equal(c->api.metrics_addr.ss_family, AF_INET);
	agent_config_free(c);
	refuse_has(BASE "metrics:\n  listen: nowhere\n", "'metrics.listen'");
	refuse(BASE "api:\n  max_connections: 0\n",
	    "agent.yaml: 'api.max_connections' must be a whole number from 1 to 65536, not '0' at "
	    "line 15");
	refuse_has(BASE "api:\n  max_connections_per_uid: lots\n", "'api.max_connections_per_uid'");
	refuse_has(BASE "api:\n  idle_timeout: 0s\n", "line 15");
	refuse(BASE "api:\n  frame_timeout: 2d\n",
	    "agent.yaml: 'api.frame_timeout' must be at most 1d at line 15");
	refuse_has(BASE "api:\n  tls12: maybe\n", "'api.tls12'");
	refuse(BASE "api:\n  max_clients: 3\n", "agent.yaml: unknown key 'api.max_clients' at line 15");
}

/* token.workers_min / workers_max: the bounds of a size that follows the token. */
static void
token_workers_bounds(void **state)
{
	struct agent_config *c = NULL;

	assert_int_equal(parse(with(BASE, "  pin_file: node.pin\n",
	    "  pin_file: node.pin\n  workers_min: 1\n  workers_max: 4\n"), &c), 0);
	assert_int_equal(c->token.workers, 0);
	assert_int_equal(c->token.workers_min, 1);
	assert_int_equal(c->token.workers_max, 4);
	agent_config_free(c);
	refuse_has(with(BASE, "  pin_file: node.pin\n", "  pin_file: node.pin\n  workers: 2\n  workers_min: 1\n"),
	    "'token.workers' fixes the token sessions");
}

static void
every_key(void **state)
{
	struct agent_config *c = NULL;
	const char *y =
	    "token:\n"
	    "  module: /usr/lib/softhsm/libsofthsm2.so\n"
	    "  uri: \"pkcs11:token=node\"\n"
	    "  pin_env: NODE_PIN\n"
	    "  workers: 8\n"
	    "  test_sign_delay_ms: 5\n"
	    "ca:\n"
	    "  url: http://[fd00::1]:9443/cmp\n"
	    "  root: /etc/pki/root.pem\n"
	    "state_dir: /var/lib/hsmesh/agent\n"
	    "socket: run/agent.sock\n"
	    "key:\n"
	    "  type: ec-p384\n"
	    "renew_at: 0.75\n"
	    "retry:\n"
	    "  min: 2s\n"
	    "  max: 5m\n"
	    "workloads:\n"
	    "  - id: spiffe://example.org/ns/web\n"
	    "    uid: 1000\n"
	    "  - {id: spiffe://example.org/ns/db, uid: 0, join_token_file: /etc/db.join}\n"
	    "attestation:\n"
	    "  producer: command\n"
	    "  command: [/usr/bin/quote-tool, --dcap]\n"
	    "  timeout: 10s\n";

	assert_int_equal(parse(y, &c), 0);
	assert_string_equal(c->token.pin_env, "NODE_PIN");
	assert_null(c->token.pin_file);
	assert_int_equal(c->token.workers, 8);
	assert_int_equal(c->token.sign_delay_ms, 5);
	assert_string_equal(c->ca[0].host, "fd00::1");
	assert_int_equal(c->ca[0].port, 9443);
	assert_string_equal(c->ca[0].path, "/cmp");
	assert_string_equal(c->root, "/etc/pki/root.pem");
	assert_string_equal(c->state_dir, "/var/lib/hsmesh/agent");
	assert_string_equal(c->socket, "/etc/hsmesh/run/agent.sock");
	assert_int_equal(c->key_type, HSM_KEY_EC_P384);
	assert_true(c->renew_at == 0.75);
	assert_int_equal(c->retry_min, 2);
	assert_int_equal(c->retry_max, 300);
	assert_int_equal(c->nwl, 2);
	assert_null(c->wl[0].join_token_file);
	assert_string_equal(c->wl[1].id, "spiffe://example.org/ns/db");
	assert_int_equal(c->wl[1].uid, 0);
	assert_string_equal(c->wl[1].join_token_file, "/etc/db.join");
	assert_int_equal(c->evidence.kind, EVIDENCE_COMMAND);
	assert_string_equal(c->evidence.argv[0], "/usr/bin/quote-tool");
	assert_string_equal(c->evidence.argv[1], "--dcap");
	assert_null(c->evidence.argv[2]);
	assert_int_equal(c->evidence.timeout_ms, 10000);
	agent_config_free(c);

	/* The other key types. */
	assert_int_equal(parse(BASE "key:\n  type: rsa-3072\n", &c), 0);
	assert_int_equal(c->key_type, HSM_KEY_RSA_3072);
	agent_config_free(c);
}

static void
ca_urls(void **state)
{
	static const struct {
		const char *url, *host, *path;
		int port;
	} ok[] = {
		{ "http://ca", "ca", "/", 80 },
		{ "http://ca/", "ca", "/", 80 },
		{ "http://10.0.0.1:1/a/b?c", "10.0.0.1", "/a/b?c", 1 },
		{ "http://[::1]", "::1", "/", 80 },
		{ "http://[::1]:65535", "::1", "/", 65535 },
	};
	struct agent_config *c = NULL;
	char line[256];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(line, sizeof(line), "  url: %s\n", ok[i].url);
		assert_int_equal(parse(with(BASE, "  url: http://ca.example.org:8443/.well-known/cmp\n",
		    line), &c), 0);
		assert_string_equal(c->ca[0].host, ok[i].host);
		assert_string_equal(c->ca[0].path, ok[i].path);
		assert_int_equal(c->ca[0].port, ok[i].port);
		agent_config_free(c);
	}
#define URL(u) with(BASE, "http://ca.example.org:8443/.well-known/cmp", u)
	refuse(URL("https://ca.example.org/"),
	    "agent.yaml: 'ca.url' must be an http:// URL (got 'https://ca.example.org/') at line 6");
	refuse(URL("http://"), "agent.yaml: 'ca.url' has no host at line 6");
	refuse(URL("http://:80/"), "agent.yaml: 'ca.url' has no host at line 6");
	refuse(URL("http://[::1/"), "agent.yaml: 'ca.url': unterminated [ in host at line 6");
	refuse(URL("http://[::1]x"), "agent.yaml: 'ca.url' is malformed at line 6");
	refuse(URL("http://ca:0/"), "agent.yaml: 'ca.url' has a bad port at line 6");
	refuse(URL("http://ca:65536/"), "agent.yaml: 'ca.url' has a bad port at line 6");
	refuse(URL("http://ca:/"), "agent.yaml: 'ca.url' has a bad port at line 6");
	refuse(URL("http://ca:8x/"), "agent.yaml: 'ca.url' has a bad port at line 6");
#undef URL
}

/* ca.url as a list: CA replicas, in order. */
static void
ca_url_list(void **state)
{
	struct agent_config *c = NULL;
	char many[1200];
	size_t n = 0;

#define LIST(l) with(BASE, "  url: http://ca.example.org:8443/.well-known/cmp\n", l)
	assert_int_equal(parse(LIST("  url:\n    - http://ca1:8443/.well-known/cmp\n"
	    "    - http://[fd00::2]:9443/cmp\n    - http://ca3\n"), &c), 0);
	assert_int_equal(c->nca, 3);
	assert_string_equal(c->ca[0].host, "ca1");
	assert_int_equal(c->ca[0].port, 8443);
	assert_string_equal(c->ca[0].path, "/.well-known/cmp");
	assert_string_equal(c->ca[1].host, "fd00::2");
	assert_int_equal(c->ca[1].port, 9443);
	assert_string_equal(c->ca[2].host, "ca3");
	assert_int_equal(c->ca[2].port, 80);
	assert_string_equal(c->ca_url,
	    "http://ca1:8443/.well-known/cmp, http://[fd00::2]:9443/cmp, http://ca3");
	agent_config_free(c);
	/* a one-entry list is one address */
	assert_int_equal(parse(LIST("  url: [http://ca1:1/]\n"), &c), 0);
	assert_int_equal(c->nca, 1);
	assert_string_equal(c->ca_url, "http://ca1:1/");
	agent_config_free(c);

	refuse(LIST("  url: []\n"), "agent.yaml: 'ca.url' is an empty list at line 6");
	refuse(LIST("  url:\n    - http://ca1\n    - https://ca2\n"),
	    "agent.yaml: 'ca.url[2]' must be an http:// URL (got 'https://ca2') at line 8");
	refuse(LIST("  url:\n    - http://ca1\n    - {a: b}\n"),
	    "agent.yaml: 'ca.url' must be a single value, not a mapping at line 8");
	n = (size_t)snprintf(many, sizeof(many), "  url:\n");
	for (int i = 0; i <= AGENT_MAX_CA_URLS; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "    - http://ca%d\n", i);
	refuse(LIST(many), "agent.yaml: 'ca.url' lists more than 16 addresses at line 6");
#undef LIST
}

static void
refusals(void **state)
{
	char big[300], line[320];

	refuse("colour: blue\n" BASE, "agent.yaml: unknown key 'colour' at line 1");
	refuse(with(BASE, "ca:\n", "ca:\n  proxy: x\n"), "agent.yaml: unknown key 'ca.proxy' at line 6");
	refuse(with(BASE, "    uid: 1000\n", "    uid: 1000\n    gid: 1\n"),
	    "agent.yaml: unknown key 'workloads.gid' at line 13");
	refuse(BASE "renew_at: 1.5\n",
	    "agent.yaml: 'renew_at' must be a fraction of the lifetime between 0 and 1, not '1.5' "
	    "at line 14");
	refuse(BASE "renew_at: 0\n",
	    "agent.yaml: 'renew_at' must be a fraction of the lifetime between 0 and 1, not '0' "
	    "at line 14");
	refuse(BASE "renew_at: half\n",
	    "agent.yaml: 'renew_at' must be a fraction of the lifetime between 0 and 1, not 'half' "
	    "at line 14");
	refuse(BASE "renew_at: [1]\n", "agent.yaml: 'renew_at' must be a number at line 14");
	refuse(BASE "  - id: spiffe://example.org/ns/web\n    uid: 7\n",
	    "agent.yaml: workload spiffe://example.org/ns/web listed twice at line 14");
	refuse(with(BASE, "    uid: 1000\n", "    uid: nobody\n"),
	    "agent.yaml: 'workloads.uid' must be a number, not 'nobody' at line 12");
	refuse(with(BASE, "    uid: 1000\n", "    uid: 4294967295\n"),
	    "agent.yaml: 'workloads.uid' must be a number, not '4294967295' at line 12");
	refuse(with(BASE, "    uid: 1000\n", "    uid: -1\n"),
	    "agent.yaml: 'workloads.uid' must be a number, not '-1' at line 12");
	refuse(with(BASE, "    uid: 1000\n", "    uid:\n"),
	    "agent.yaml: 'workloads.uid' needs a value at line 12");
	refuse(with(BASE, "    uid: 1000\n", ""),
	    "agent.yaml: workload spiffe://example.org/ns/web without 'uid' at line 11");
	refuse(with(BASE, "  - id: spiffe://example.org/ns/web\n    uid: 1000\n", "  - uid: 1000\n"),
	    "agent.yaml: workload without 'id' at line 11");
	refuse(with(BASE, "spiffe://example.org/ns/web", "spiffe://example.org"),
	    "agent.yaml: workload ID 'spiffe://example.org' has no path (a trust domain is not "
	    "a workload) at line 11");
	refuse_has(with(BASE, "spiffe://example.org/ns/web", "spiffe://Example.org/web"),
	    "invalid SPIFFE ID");
	refuse(with(BASE, "  - id: spiffe://example.org/ns/web\n    uid: 1000\n    join_token_file: web.join\n",
	    "  - web\n"),
	    "agent.yaml: each workload must be a mapping with id, uid and join_token_file at line 11");
	refuse(with(BASE, "workloads:\n  - id: spiffe://example.org/ns/web\n    uid: 1000\n"
	    "    join_token_file: web.join\n", "workloads: []\n"),
	    "agent.yaml: 'workloads' must be a non-empty sequence at line 10");
	refuse(with(BASE, "workloads:\n  - id: spiffe://example.org/ns/web\n    uid: 1000\n"
	    "    join_token_file: web.join\n", "workloads: web\n"),
	    "agent.yaml: 'workloads' must be a non-empty sequence at line 10");
	refuse(with(BASE, "workloads:\n  - id: spiffe://example.org/ns/web\n    uid: 1000\n"
	    "    join_token_file: web.join\n", ""),
	    "agent.yaml: missing required key 'workloads'");
	refuse(with(BASE, "  url: http://ca.example.org:8443/.well-known/cmp\n", ""),
	    "agent.yaml: missing required key 'ca.url' in section 'ca' at line 5");
	refuse(with(BASE, "  root: root.pem\n", ""),
	    "agent.yaml: missing required key 'ca.root' in section 'ca' at line 5");
	refuse(with(BASE, "state_dir: state\n", ""), "agent.yaml: missing required key 'state_dir'");
	refuse(with(BASE, "socket: /run/hsmesh/agent.sock\n", ""),
	    "agent.yaml: missing required key 'socket'");
	refuse(BASE "key:\n  type: ed25519\n",
	    "agent.yaml: 'key.type' must be ec-p256, ec-p384 or rsa-3072, not 'ed25519' at line 15");
	refuse(BASE "retry:\n  min: 1m\n  max: 10s\n",
	    "agent.yaml: 'retry.max' is shorter than 'retry.min' at line 16");
	refuse_has(BASE "retry:\n  min: 1x\n", "'retry.min'");
	refuse_has(BASE "retry:\n  min: 1x\n", "line 15");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "/run/", 5);
	snprintf(line, sizeof(line), "socket: %s\n", big);
	refuse(with(BASE, "socket: /run/hsmesh/agent.sock\n", line),
	    "agent.yaml: 'socket' path is too long for a Unix socket at line 9");
	/* Sections read by other modules keep their words, with file and line. */
	refuse_has(BASE "attestation:\n  producer: magic\n", "attestation");
	refuse_has(with(BASE, "  pin_file: node.pin\n", ""), "pin");
	refuse_has(with(BASE, "  module: /usr/lib/softhsm/libsofthsm2.so\n", ""), "token.module");
}

static void
load_from_a_file(void **state)
{
	char dir[] = "/tmp/hsm-agentconf-XXXXXX", path[PATH_MAX], want[PATH_MAX + 32];
	struct agent_config *c = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/agent.yaml", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(BASE, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(agent_config_load(path, &c), 0);
	assert_string_equal(c->path, path);
	snprintf(want, sizeof(want), "%s/root.pem", dir);
	assert_string_equal(c->root, want);
	snprintf(want, sizeof(want), "%s/web.join", dir);
	assert_string_equal(c->wl[0].join_token_file, want);
	agent_config_free(c);
	unlink(path);
	c = (struct agent_config *)1;
	assert_int_equal(agent_config_load(path, &c), HSM_ECONFIG);
	assert_null(c);
	assert_non_null(strstr(hsm_err_msg(HSM_ECONFIG), "agent.yaml"));
	rmdir(dir);
	agent_config_free(NULL);
}

/* node: and selectors: the node identity, and who may use a workload. */
static void
node_and_selectors(void **state)
{
	struct agent_config *c = NULL;
	const char *nodeonly = with(BASE, "workloads:\n  - id: spiffe://example.org/ns/web\n"
	    "    uid: 1000\n    join_token_file: web.join\n",
	    "node:\n  id: spiffe://example.org/node/n1\n  join_token_file: node.join\n"
	    "  refresh: 5s\n");
	char text[128], *id = NULL;

	/* Without workloads: a node whose workloads all come from the CA's entries. */
	assert_int_equal(parse(nodeonly, &c), 0);
	assert_true(c->node.configured);
	assert_string_equal(c->node.id, "spiffe://example.org/node/n1");
	assert_string_equal(c->node.join_token_file, "/etc/hsmesh/node.join");
	assert_int_equal(c->node.refresh, 5);
	assert_int_equal(c->nwl, 0);
	agent_config_free(c);
	/* The defaults: the ID comes from the host, the refresh from the CA. */
	assert_int_equal(parse(BASE "node:\n  join_token_file: n.join\n", &c), 0);
	assert_true(c->node.configured);
	assert_null(c->node.id);
	assert_int_equal(c->node.refresh, 0);
	assert_int_equal(c->nwl, 1);
	assert_false(c->wl[0].has_selectors);
	/* uid is one selector of the workload's set */
	assert_int_equal(c->wl[0].sel.n, 1);
	assert_int_equal(sel_text(&c->wl[0].sel.v[0], text, sizeof(text)), 0);
	assert_string_equal(text, "uid:1000");
	agent_config_free(c);
	assert_int_equal(agent_node_default_id("example.org", "n1.rack-2", &id), 0);
	assert_string_equal(id, "spiffe://example.org/node/n1.rack-2");
	free(id);
	assert_int_equal(agent_node_default_id("example.org", "bad host", &id), HSM_ECONFIG);
	assert_null(id);
	assert_non_null(strstr(hsm_err_msg(HSM_ECONFIG), "set node.id"));
	/* selectors beside uid, or instead of it */
	assert_int_equal(parse(with(BASE, "    uid: 1000\n", "    uid: 1000\n    selectors:\n"
	    "      - path:/usr/bin/web\n      - cgroup:/system.slice\n"), &c), 0);
	assert_true(c->wl[0].has_selectors);
	assert_int_equal(c->wl[0].sel.n, 3);
	agent_config_free(c);
	assert_int_equal(parse(with(BASE, "    uid: 1000\n", "    selectors: [gid:100]\n"), &c), 0);
	assert_false(c->wl[0].has_uid);
	assert_int_equal(c->wl[0].sel.n, 1);
	agent_config_free(c);
	refuse(with(BASE, "    uid: 1000\n", "    uid: 1000\n    selectors: [uid:x]\n"),
	    "agent.yaml: selector 'uid:x': uid must be a number from 0 to 4294967294 at line 13");
	refuse(with(BASE, "    uid: 1000\n", "    uid: 1000\n    selectors: []\n"),
	    "agent.yaml: 'workloads.selectors' must be a non-empty list of KIND:VALUE at line 13");
	refuse(with(BASE, "    uid: 1000\n", "    uid: 1000\n    selectors: path:/x\n"),
	    "agent.yaml: 'workloads.selectors' must be a non-empty list of KIND:VALUE at line 13");
	refuse(BASE "node:\n  name: n1\n", "agent.yaml: unknown key 'node.name' at line 15");
	refuse(BASE "node: n1\n",
	    "agent.yaml: 'node' must be a mapping (id, join_token_file, refresh) at line 14");
	refuse(BASE "node:\n  id: spiffe://example.org\n",
	    "agent.yaml: 'node.id' needs a path (spiffe://td/node/NAME) at line 15");
	refuse_has(BASE "node:\n  id: spiffe://Example.org/n\n", "invalid SPIFFE ID");
	refuse(BASE "node:\n  refresh: 2d\n", "agent.yaml: 'node.refresh' must be at most 1d at line 15");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults),
		cmocka_unit_test(api_section),
		cmocka_unit_test(every_key),
		cmocka_unit_test(token_workers_bounds),
		cmocka_unit_test(ca_urls),
		cmocka_unit_test(ca_url_list),
		cmocka_unit_test(refusals),
		cmocka_unit_test(node_and_selectors),
		cmocka_unit_test(load_from_a_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
