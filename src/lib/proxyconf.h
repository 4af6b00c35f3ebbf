/*
 * proxyconf.h - proxy.yaml, the sidecar proxy's configuration, and the
 * SPIFFE ID patterns its authorisation lists use.
 *
 *   agent:
 *     socket: /run/hsmesh/agent.sock   # required; relative to the file's directory
 *     id: spiffe://example.org/ns/web  # which of the agent's IDs to serve; absent:
 *                                      #   the only one the agent gives this caller
 *     timeout: 2s                      # per private-key operation, 100ms..60s
 *   workers: 2                         # event-loop threads, 1..64; default: online CPUs
 *   tls:
 *     profile: default                 # or 3gpp-nf: TLS 1.2 and 1.3, SNI required
 *     min_version: "1.3"               # "1.3" (default; 3gpp-nf: "1.2") or "1.2"
 *     tickets: true                    # session tickets (resumption); true/false, yes/no
 *   revocation:                        # the CA's CRL, from the agent (docs/PROXY.md)
 *     stale: keep                      # no current CRL (none yet, or past its nextUpdate):
 *                                      #   keep (the last CRL still applies; none: no check)
 *                                      #   or refuse (every peer refused until one arrives)
 *     close_established: true          # a new CRL closes the listed peers' connections
 *   limits:
 *     max_connections: 4096            # accepted connections in total, 1..1000000
 *     buffer_size: 16384               # bytes per direction per connection, 1024..1048576
 *   timeouts:                          # defaults as shown
 *     handshake: 5s                    # TLS handshake (and, outbound, the connect before it)
 *     idle: 300s                       # no byte either way
 *     connect: 5s                      # TCP connect to the target
 *     drain: 10s                       # grace after SIGTERM
 *   inbound:                           # mTLS in, plaintext to the local app
 *     - name: web                      # [A-Za-z0-9_.-]{1,64}, unique over inbound+outbound
 *       listen: 127.0.0.1:8443         # HOST:PORT (port 0: any free port)
 *       forward_to: 127.0.0.1:8080     # the local application
 *       allow:                         # non-empty: peer IDs or patterns (below)
 *         - spiffe://example.org/ns/client
 *   outbound:                          # plaintext in from the local app, mTLS out
 *     - name: to-db
 *       listen: 127.0.0.1:15001
 *       connect: 127.0.0.1:9443        # the peer's sidecar
 *       expect_id: spiffe://example.org/ns/db   # an ID or pattern
 *       server_name: db.example.org    # optional SNI (required by tls.profile 3gpp-nf)
 *   admission:                         # inbound full handshakes (each costs a signature)
 *     handshake_rate: 100              # per source a second, 0..1000000 (0: no per-source limit)
 *     handshake_burst: 1000            # per source at once, 1..1000000
 *     ipv4_prefix: 32                  # a source: an IPv4 /32 ... (1..32)
 *     ipv6_prefix: 64                  # ... or an IPv6 /64 (1..128)
 *     sources: 16384                   # sources tracked at once, 64..4194304
 *     max_key_operations: 1024         # admitted, signature not done yet, per process
 *   metrics:
 *     listen: 127.0.0.1:9100           # optional Prometheus endpoint
 *   access_log: /var/log/hsmesh/access.log  # optional; "-" is stderr
 *   user: hsmesh                       # optional: started as root, become hsmesh once
 *                                      #   every listener is bound (privdrop.h)
 *
 * Durations take s, m, h, d (hsm_parse_duration) and, here only, ms
 * ("250ms"). At least one listener is required; no two listeners (nor the
 * metrics endpoint) may share a listen address. Unknown keys are refused
 * everywhere, inside list entries too. Errors are HSM_ECONFIG with one
 * line naming the file, the key and its line:
 *
 *   proxy.yaml: 'inbound[1].allow[0]' invalid SPIFFE ID '...': ... at line 12
 *
 * (list indexes count from 0). See docs/PROXY.md.
 */
#ifndef HSM_PROXYCONF_H
#define HSM_PROXYCONF_H

#include <stddef.h>
#include <sys/socket.h>

#include "config.h"	/* struct cfg_confine */
#include "route.h"
#include "spiffe.h"	/* the patterns of allow and expect_id */

struct proxy_listener {
	char *name;
	int inbound;				/* 1 inbound (mTLS server), 0 outbound */
	char *listen;				/* as written */
	struct sockaddr_storage listen_addr;
	socklen_t listen_len;
	char *target;				/* forward_to (inbound) or connect (outbound), as written */
	struct sockaddr_storage target_addr;
	socklen_t target_len;
	char **allow;				/* inbound: allow list; outbound: the one expect_id */
	size_t nallow;
	char *server_name;			/* outbound SNI or NULL */
	int http;				/* protocol: http (0: tcp) */
	int app_h2c;				/* inbound http: the app speaks h2c (0: HTTP/1.1) */
	struct route *routes;			/* inbound http: first match decides (route.h) */
	size_t nroutes;				/* 0: every request of an allowed peer */
};

/* admission: (docs/PROXY.md, "Handshake admission"); defaults as in the comment above */
struct proxy_admission {
	unsigned handshake_rate;		/* full handshakes a second per source; 0: off */
	unsigned handshake_burst;
	unsigned ipv4_prefix, ipv6_prefix;	/* bits of a source's address that count */
	unsigned sources;			/* sources tracked at once */
	unsigned max_key_ops;			/* full handshakes admitted, signature not done */
};

struct proxy_config {
	char *path;				/* the file, as given */
	char *agent_socket;
	char *agent_id;				/* "" when absent */
	unsigned key_timeout_ms;
	unsigned workers;
	int tls_min_version;			/* 0x0304 (TLS1_3_VERSION) or 0x0303 (TLS1_2_VERSION) */
	int tls_3gpp;				/* tls.profile 3gpp-nf: 1.2 and 1.3, SNI on every outbound */
	int tickets;
	int crl_refuse_stale;			/* revocation.stale: refuse (0: keep) */
	int crl_close;				/* revocation.close_established */
	unsigned max_connections;
	size_t buffer_size;
	unsigned handshake_timeout_ms, idle_timeout_ms, connect_timeout_ms, drain_timeout_ms;
	/* protocol: http */
	unsigned max_header_bytes, max_headers, max_streams;
	unsigned min_body_rate;			/* bytes/s a request body must keep up; 0: off */
	unsigned request_timeout_ms;		/* routes without their own timeout */
	unsigned stream_idle_ms;
	struct proxy_admission adm;
	struct proxy_listener *lst;		/* inbound first, then outbound, file order */
	size_t nlst;
	char *metrics_listen;			/* NULL when absent */
	struct sockaddr_storage metrics_addr;
	socklen_t metrics_len;
	char *access_log;			/* NULL, "-" or a path */
	struct cfg_confine confine;		/* user:, seccomp.mode, seccomp.allow (no keyholder) */
};

/*
 * Load and validate proxy.yaml at path (host names in addresses are
 * resolved now). Caller frees *out with proxy_config_free(). 0, or
 * HSM_ECONFIG (HSM_ENOMEM) with a one-line detail naming file and line.
 * A listener with "protocol: http" is refused here, for a caller that
 * does not serve HTTP; the sidecar loads with proxy_config_load_with
 * PROXYCONF_HTTP.
 */
int proxy_config_load(const char *path, struct proxy_config **out);

/* flags of proxy_config_load_with */
#define PROXYCONF_HTTP 0x1	/* the caller serves protocol: http listeners */

/* proxy_config_load with flags (PROXYCONF_*). */
int proxy_config_load_with(const char *path, unsigned flags, struct proxy_config **out);

/* Free a configuration. Accepts NULL. */
void proxy_config_free(struct proxy_config *c);

/* 1 when id matches any of l->allow, else 0. */
int proxy_listener_allows(const struct proxy_listener *l, const char *id);

#endif
