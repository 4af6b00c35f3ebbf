/*
 * agentconf.h - agent.yaml, the node agent's configuration (docs/AGENT.md).
 *
 *   token:                         # the agent's keyholder (cfg_token_load)
 *     module: ...  uri: ...  pin_file: ... (or pin_env)  workers: ...
 *   ca:
 *     url: http://HOST[:PORT][/PATH]   # required; http only (RFC 6712); HOST may be [v6];
 *                                      # or a list of them (CA replicas, tried in order;
 *                                      # at most AGENT_MAX_CA_URLS)
 *     root: root.pem                   # required: the trust anchor and the bundle served
 *   state_dir: /var/lib/hsmesh/agent   # required
 *   socket: /run/hsmesh/agent.sock     # required: the local API
 *   key:
 *     type: ec-p256                    # ec-p256 (default) | ec-p384 | rsa-3072
 *   renew_at: 0.5                      # fraction of the lifetime, 0 < x < 1 (default 0.5)
 *   retry:
 *     min: 1s                          # backoff start (default 1s)
 *     max: 60s                         # backoff cap (default 60s), >= min
 *   node:                              # optional: the node identity (registration entries)
 *     id: spiffe://example.org/node/n1 # default spiffe://<ca.root's trust domain>/node/<hostname>
 *     join_token_file: node.join       # REF:SECRET of `hsmesh ca token --node` (or attestation)
 *     refresh: 30s                     # how often to ask the CA for entries (default: the CA's hint)
 *   workloads:                         # required without node:, non-empty when present
 *     - id: spiffe://example.org/ns/web    # unique; a path is required
 *       uid: 1000                          # who may use it (root may use every one ...)
 *       selectors: [path:/usr/bin/web]     # ... unless selectors are given: all must match
 *       join_token_file: web.join          # optional: REF:SECRET for an ir
 *   attestation: ...                   # optional (evidence.h)
 *   api:                               # optional: the local API's limits
 *     max_connections: 1024            # open clients (1..65536)
 *     max_connections_per_uid: 64      # of one uid, root not counted (1..65536)
 *     idle_timeout: 60s                # no subscription, nothing in flight
 *     frame_timeout: 5s                # an incomplete request frame
 *     tls12: true                      # sign TLS 1.2 handshake inputs too
 *   metrics:
 *     listen: 127.0.0.1:9102           # optional: Prometheus /metrics (port 0: any)
 *   crl:                               # optional: revocation (docs/AGENT.md)
 *     url: http://ca:8443/crl          # default: the cRLDistributionPoints of our certificates
 *     refresh: 60s                     # fetch at least this often (5s..1d, default 60s)
 *
 * Relative paths resolve against the file's directory. Unknown keys are
 * refused everywhere, inside workload entries too. Every error is
 * HSM_ECONFIG with one line naming the file and, where there is one, the
 * line:
 *
 *   agent.yaml: unknown key 'workloads.gid' at line 19
 *   agent.yaml: 'renew_at' must be a fraction of the lifetime between 0 and 1, not '1.5' at line 12
 */
#ifndef HSM_AGENTCONF_H
#define HSM_AGENTCONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "cmpclient.h"
#include "config.h"
#include "evidence.h"
#include "keytypes.h"
#include "selector.h"

#define AGENT_MAX_CA_URLS 16

/* One workload identity the agent keeps. */
struct agent_workload {
	char *id;			/* SPIFFE ID with a path */
	int has_uid;
	uid_t uid;			/* the local uid that may use it */
	char *join_token_file;		/* may be NULL: no ir possible */
	struct sel_set sel;		/* selectors: with uid (uid:N), all must match */
	int has_selectors;		/* selectors: given (then root is no exception) */
};

/* The node: section. */
struct agent_node {
	int configured;			/* the section is there */
	char *id;			/* NULL: spiffe://<ca.root's trust domain>/node/<hostname> */
	char *join_token_file;		/* REF:SECRET of a node token, or NULL */
	int64_t refresh;		/* seconds; 0: as the CA says */
};

/* The local API's limits (api:). */
struct agent_api_conf {
	unsigned max_conns;		/* open clients */
	unsigned max_conns_uid;		/* open clients of one uid (root is not counted) */
	unsigned idle_ms;		/* a client without subscription or request in flight */
	unsigned frame_ms;		/* an incomplete request frame */
	int tls12;			/* sign the TLS 1.2 shapes (tlssig.h) too */
	char *metrics_listen;		/* metrics.listen as written, or NULL: no /metrics */
	struct sockaddr_storage metrics_addr;
	socklen_t metrics_len;
};

struct agent_config {
	char *path;			/* the file, as given */
	struct cfg_token token;
	char *ca_url;			/* as written (a list: ", " between two) */
	struct cmpc_server *ca;		/* the CA's address(es), parsed from ca_url */
	size_t nca;
	char *root;			/* ca.root: path of the trust anchor */
	char *state_dir;
	char *socket;
	enum hsm_keytype key_type;
	double renew_at;
	int64_t retry_min, retry_max;	/* seconds */
	struct agent_workload *wl;
	size_t nwl;
	struct agent_node node;
	struct evidence_conf evidence;	/* attestation:, kind EVIDENCE_NONE when absent */
	struct agent_api_conf api;
	char *crl_url;			/* crl.url, or NULL: our certificates' CDP */
	int64_t crl_refresh;		/* crl.refresh, seconds (default 60) */
};

/*
 * The node's default ID: spiffe://<td>/node/<host>. HSM_ECONFIG when host
 * is not a valid path segment ("set node.id"). Caller frees *out.
 */
int agent_node_default_id(const char *td, const char *host, char **out);

/* Load and validate agent.yaml at path. Caller frees *out. 0, HSM_ECONFIG or HSM_ENOMEM. */
int agent_config_load(const char *path, struct agent_config **out);
/* The same from text, for tests: name for messages, dir for relative paths (path = name). */
int agent_config_parse(const char *name, const char *dir, const uint8_t *buf, size_t len,
    struct agent_config **out);
/* Free a configuration. Accepts NULL. */
void agent_config_free(struct agent_config *c);

#endif
