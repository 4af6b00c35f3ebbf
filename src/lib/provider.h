/*
 * provider.h - the whole "hsmesh" OpenSSL 3 provider: its core
 * (provider_core.h) and both backends (provider_kh.h: a keyholder, for
 * the agent and the CA; provider_agent.h: the node agent, for proxies).
 * A process that must not reach a backend includes the core and the
 * backend it uses instead (the proxy: provider_core.h and
 * provider_agent.h; tests/integration/t_layout.sh checks it).
 */
#ifndef HSM_PROVIDER_H
#define HSM_PROVIDER_H

#include "provider_agent.h"
#include "provider_core.h"
#include "provider_kh.h"

#endif
