/*
 * main.c - `hsmesh` subcommand dispatch.
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh COMMAND [ARGS]\n"
	    "\n"
	    "A service mesh whose private keys never leave a PKCS#11 token.\n"
	    "\n"
	    "commands:\n"
	    "  ca init      -c ca.yaml [--csr F]                make or adopt the CA key in the token, write root.pem (or a CSR)\n"
	    "  ca install   -c ca.yaml --chain F                install the CA certificate an operator's root issued\n"
	    "  ca rotate    prepare|activate|retire|status -c ca.yaml [--dry-run]  replace the CA key, no call dropped\n"
	    "  ca issue     -c ca.yaml --csr F --id ID [--ttl D] issue an X.509-SVID (PEM on stdout)\n"
	    "  ca token     -c ca.yaml --id ID [--ttl D] [--node] one-time join token REF:SECRET on stdout\n"
	    "  ca entry     add|list|show|rm -c ca.yaml ...     registration entries: which node gets which ID\n"
	    "  ca serve     -c ca.yaml [--port-file F]          CMPv2 issuer at http://<listen>/.well-known/cmp\n"
	    "  ca revoke    -c ca.yaml (--serial HEX | --id ID) revoke certificates; renewals of an ID refused\n"
	    "  ca replicate nonce|request|wrap|unwrap -c ca.yaml the CA key into a replica's token, never in clear\n"
	    "  agent        -c agent.yaml                       node agent: enroll/rotate workload SVIDs, local API\n"
	    "  agent client --socket P get|sign|watch [ID]      debugging client of the agent's local API\n"
	    "  proxy        -c proxy.yaml                       sidecar: mTLS in and out of a workload, keys in the token\n"
	    "  keyholder    --module M --token URI ...          the process that owns the token (the only one)\n"
	    "  inspect      FILE | QUOTE [--collateral F]       print a certificate, CSR or SGX quote readably\n"
	    "  app serve    --listen HOST:PORT --name N         the small HTTP app behind the sidecars\n"
	    "  app get      URL [--count N]                     its keep-alive client\n"
	    "  demo                                             run the demonstration on a throwaway token\n"
	    "\n"
	    "Run 'hsmesh COMMAND --help' for a command's options.\n");
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "ca", ca_main },
		{ "keyholder", keyholder_main },
		{ "inspect", inspect_main },
		{ "demo", demo_main },
		{ "agent", agent_main },
		{ "app", app_main },
		{ "proxy", proxy_main },
	};

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "hsmesh: unknown command '%s' (try 'hsmesh --help')\n", argv[1]);
	return 2;
}
