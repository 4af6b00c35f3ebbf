/*
 * main.c - `hsmesh ca`: the subcommands, their options and usage texts
 * (ca.h says which room does what).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ca.h"
#include "../cmds.h"
#include "log.h"

static void
usage_ca(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca SUBCOMMAND -c ca.yaml [OPTIONS]\n"
	    "\n"
	    "The certificate authority of a trust domain. Its key is generated inside the\n"
	    "PKCS#11 token named in ca.yaml and never leaves it; each command starts a\n"
	    "private keyholder process, the only one that loads the module or reads the PIN.\n"
	    "\n"
	    "subcommands:\n"
	    "  init   -c ca.yaml [--csr FILE]                 create or reuse the CA key, write root.pem (or a CSR)\n"
	    "  install -c ca.yaml --chain FILE                the CA certificate from an operator's root\n"
	    "  issue  -c ca.yaml --csr FILE --id ID [--ttl D]  issue an X.509-SVID, PEM on stdout\n"
	    "  token  -c ca.yaml --id ID [--ttl D] [--node]    one-time join token REF:SECRET on stdout\n"
	    "  entry  add|list|show|rm -c ca.yaml ...          registration entries: node -> workload ID, selectors\n"
	    "  serve  -c ca.yaml [--port-file F]               CMPv2 issuer at http://<listen>/.well-known/cmp\n"
	    "  revoke -c ca.yaml (--serial HEX | --id ID)      revoke certificates; renewals of an ID refused\n"
	    "  rotate prepare|activate|retire|status -c ca.yaml [--dry-run]  replace the CA key while the mesh runs\n"
	    "  replicate (nonce|request|wrap|unwrap) -c ca.yaml ...  the CA key into a replica's token\n"
	    "\n"
	    "Run 'hsmesh ca SUBCOMMAND --help' for details.\n");
}

static void
usage_token(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca token -c ca.yaml --id SPIFFE_ID [--ttl DURATION] [--node]\n"
	    "\n"
	    "Print a one-time join token REF:SECRET that enrolls exactly SPIFFE_ID over\n"
	    "CMP (REF is the sender KID, e.g. openssl cmp -ref REF -secret pass:SECRET).\n"
	    "The token expires after DURATION (default 1h) and works once. The ledger\n"
	    "keeps only a hash of SECRET; the CA derives it again from REF with the key in\n"
	    "<state_dir>/token.key (created on first use, mode 0600).\n"
	    "With --node the token enrolls a node identity (an agent's node.id), whose\n"
	    "certificate protects the enrollment of the workloads that registration entries\n"
	    "give that node; a node token never enrolls a workload ID, nor the other way\n"
	    "round. An ID that entries leave to nodes needs no workload token (refused).\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --id SPIFFE_ID  the identity the token enrolls\n"
	    "      --ttl DURATION  how long the token is valid (default 1h, at most 30d)\n"
	    "      --node          the identity is a node's\n"
	    "  -h, --help          this text\n");
}

static void
usage_serve(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca serve -c ca.yaml [--port-file FILE]\n"
	    "\n"
	    "Serve CMPv2 (RFC 4210, RFC 9483) over HTTP (RFC 6712) at\n"
	    "http://<listen>/.well-known/cmp until SIGTERM or SIGINT:\n"
	    "  ir/cr/p10cr  protected by a join token's MAC; the token decides the SPIFFE ID;\n"
	    "               or signed by a current node certificate, for a workload ID that a\n"
	    "               registration entry authorises for that node (hsmesh ca entry)\n"
	    "  kur          signed by a current certificate that was never renewed: same ID,\n"
	    "               new key (only the newest certificate of a renewal chain renews);\n"
	    "               a node-managed ID renews only by a kur its authorised node signs\n"
	    "  rr           signed by a current certificate of the same ID (not expired,\n"
	    "               revoked or renewed)\n"
	    "  genm         the CA certificates; a node's registration entries\n"
	    "The CA key stays in the token: this process signs through its keyholder,\n"
	    "restarted with backoff if it dies. Connection limits and deadlines: ca.yaml\n"
	    "front:, Prometheus metrics: metrics.listen (docs/CA.md).\n"
	    "\n"
	    "  -c, --config FILE     the CA configuration (ca.yaml)\n"
	    "      --port-file FILE  write the bound TCP port here (for listen: host:0)\n"
	    "  -h, --help            this text\n");
}

static void
usage_revoke(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca revoke -c ca.yaml (--serial HEX | --id SPIFFE_ID)\n"
	    "\n"
	    "Revoke one certificate by serial number, or every current certificate of an\n"
	    "identity; after --id, renewals (kur) and enrollments of that ID are refused.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --serial HEX    the certificate's serial number (hex)\n"
	    "      --id SPIFFE_ID  the identity\n"
	    "  -h, --help          this text\n");
}

static void
usage_init(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca init -c ca.yaml [--csr FILE]\n"
	    "\n"
	    "Find the CA key labelled key.label in the token, or generate one of key.type\n"
	    "inside it (never extractable), and write a self-signed root certificate to\n"
	    "<state_dir>/root.pem (directory created with mode 0700). Running it again\n"
	    "keeps a root.pem whose key is in the token; a root.pem whose key is not in\n"
	    "the token is an error, never silently replaced. A key found in the token is\n"
	    "adopted only if the token says it is sensitive and never was extractable.\n"
	    "With --csr FILE, write no root: write a PKCS#10 request for the CA key to FILE\n"
	    "(signed through the keyholder; it asks for CA:TRUE, pathlen 0, the URI SAN\n"
	    "spiffe://<trust_domain> and the name constraint permitted URI <trust_domain>)\n"
	    "for the operator's CA to sign; then 'hsmesh ca install --chain'.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --csr FILE      write a CSR for an operator's CA instead of a root\n"
	    "  -h, --help          this text\n");
}

static void
usage_install(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca install -c ca.yaml --chain FILE\n"
	    "\n"
	    "Install the CA certificate an operator's CA issued for the token's CA key\n"
	    "(from 'hsmesh ca init --csr'). FILE holds PEM certificates: the CA's first,\n"
	    "then the intermediates above it, the operator's self-signed root last. Checked\n"
	    "before anything is written, each failure one line: the certificate's key is\n"
	    "the token's CA key, CA:TRUE and keyCertSign, every certificate valid now, path\n"
	    "lengths leave room for it, the chain verifies to its self-signed root, its\n"
	    "name constraints (if any) permit spiffe://<trust_domain>. Written to\n"
	    "<state_dir>/ca.pem (used instead of root.pem from then on) and chain.pem;\n"
	    "audited. Restart 'hsmesh ca serve' to sign with it; agents then take the\n"
	    "operator's root as ca.root.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --chain FILE    the CA certificate and the chain above it (PEM)\n"
	    "  -h, --help          this text\n");
}

static void
usage_issue(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca issue -c ca.yaml --csr FILE --id SPIFFE_ID [--ttl DURATION]\n"
	    "                       [--nf-type TYPE ... --fqdn NAME]\n"
	    "\n"
	    "Issue an X.509-SVID for the public key of a PKCS#10 request (PEM or DER;\n"
	    "its signature must verify) with the given SPIFFE ID, which must belong to\n"
	    "the trust domain. The CSR's own subject and extensions are ignored. The\n"
	    "certificate is printed on stdout in PEM.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --csr FILE      the certificate request\n"
	    "      --id SPIFFE_ID  spiffe://<trust_domain>/<path>\n"
	    "      --ttl DURATION  validity (90s, 15m, 1h, 2d); default svid_ttl, at most max_ttl\n"
	    "      --nf-type TYPE  an NF type (AMF, SMF, ...; repeat for more): a certificate of\n"
	    "                      the 3GPP NF profile (3gpp-nf) for an ID without entries\n"
	    "      --fqdn NAME     the NF's FQDN, inside the home network domain (3gpp-nf)\n"
	    "  -h, --help          this text\n"
	    "\n"
	    "The certificate's profile is the ID's registration entries' (ca entry add\n"
	    "--profile), else ca.yaml's profile; --nf-type and --fqdn ask for 3gpp-nf.\n");
}

static void
usage_rotate(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca rotate prepare|activate|retire|status -c ca.yaml [--dry-run]\n"
	    "\n"
	    "Replace the CA key while the mesh runs (docs/LIFECYCLE.md, \"Rotating the CA\").\n"
	    "The ledger keeps the CA set; the first step records the current CA as CA 1.\n"
	    "  prepare   generate a new CA key in the token (label <key.label>.g<N>) and its\n"
	    "            self-signed certificate: in every bundle (CMP caPubs and caCerts)\n"
	    "            from the next start of 'ca serve', issuing nothing\n"
	    "  activate  the prepared CA issues from the next start of 'ca serve'; the\n"
	    "            active one becomes old and stays in the bundles. Refused until\n"
	    "            svid_ttl after prepare (every agent has renewed and holds the bundle)\n"
	    "  retire    an old CA leaves the bundles; refused while a certificate it issued\n"
	    "            is unexpired and unrevoked (the refusal says how many, until when)\n"
	    "  status    the CAs, their states and their unexpired certificates\n"
	    "Each step done already says so and succeeds; each change is audited.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --dry-run       say what the step would do, change nothing\n"
	    "  -h, --help          this text\n");
}

static void
usage_entry(FILE *f)
{
	ca_entry_usage(f);
}

/* "hsmesh ca init: WHAT 'ARG'" (ARG may be NULL), then the usage; exit status 2. */
static int
usage_error(const char *sub, void (*usage)(FILE *), const char *what, const char *arg)
{
	if (arg != NULL)
		fprintf(stderr, "hsmesh ca %s: %s '%s'\n", sub, what, arg);
	else
		fprintf(stderr, "hsmesh ca %s: %s\n", sub, what);
	usage(stderr);
	return 2;
}

/* ---- dispatch ---- */

enum { OPT_CSR = 256, OPT_ID, OPT_TTL, OPT_SERIAL, OPT_PORT_FILE, OPT_NODE, OPT_CHAIN,
	OPT_DRY_RUN, OPT_NF_TYPE, OPT_FQDN };

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "csr", required_argument, NULL, OPT_CSR },
	{ "id", required_argument, NULL, OPT_ID },
	{ "ttl", required_argument, NULL, OPT_TTL },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "port-file", required_argument, NULL, OPT_PORT_FILE },
	{ "node", no_argument, NULL, OPT_NODE },
	{ "chain", required_argument, NULL, OPT_CHAIN },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "nf-type", required_argument, NULL, OPT_NF_TYPE },
	{ "fqdn", required_argument, NULL, OPT_FQDN },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

/* Which options each subcommand takes. */
static const struct {
	const char *name;
	void (*usage)(FILE *);
	/*
	 * letters: s csr, i id, t ttl, n serial, p port-file, N node, C chain,
	 * D dry-run, T nf-type, F fqdn
	 */
	const char *opts;
} subs[] = {
	{ "init", usage_init, "s" },
	{ "install", usage_install, "C" },
	{ "rotate", usage_rotate, "D" },
	{ "issue", usage_issue, "sitTF" },
	{ "token", usage_token, "itN" },
	{ "serve", usage_serve, "p" },
	{ "revoke", usage_revoke, "in" },
	{ "entry", usage_entry, "" },	/* its own options: entry.c */
};

int
ca_main(int argc, char **argv)
{
	const char *sub, *cfgpath = NULL, *csr = NULL, *id = NULL, *ttl = NULL, *serial = NULL;
	const char *port_file = NULL, *allowed = NULL, *chain = NULL, *fqdn = NULL;
	char nf_types[LEDGER_NF_TYPES_MAX + 1] = "";
	void (*usage)(FILE *) = NULL;
	const char *step = NULL;
	int ch, node = 0, dry_run = 0, r;

	hsm_log_init("hsmesh ca", HSM_LOG_WARN);
	if (argc < 2) {
		usage_ca(stderr);
		return 2;
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		usage_ca(stdout);
		return 0;
	}
	/* A command of steps, with options of its own. */
	if (strcmp(sub, "replicate") == 0)
		return ca_cmd_replicate(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(sub, subs[i].name) == 0) {
			usage = subs[i].usage;
			allowed = subs[i].opts;
		}
	}
	if (usage == NULL) {
		fprintf(stderr, "hsmesh ca: unknown subcommand '%s'\n", sub);
		usage_ca(stderr);
		return 2;
	}
	if (strcmp(sub, "entry") == 0)
		return ca_entry_main(argc - 1, argv + 1);

	/* Options of the subcommand: argv[1] plays argv[0] for getopt (rotate: its step). */
	argc--;
	argv++;
	if (strcmp(sub, "rotate") == 0) {
		if (argc < 2 || argv[1][0] == '-') {
			if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
				usage(stdout);
				return 0;
			}
			return usage_error(sub, usage, "a step is required", NULL);
		}
		step = argv[1];
		argc--;
		argv++;
	}
	optind = 0;	/* glibc: full re-initialisation */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:c:h", long_opts, NULL)) != -1) {
		char letter = ch == OPT_CSR ? 's' : ch == OPT_ID ? 'i' : ch == OPT_TTL ? 't' :
		    ch == OPT_SERIAL ? 'n' : ch == OPT_PORT_FILE ? 'p' : ch == OPT_NODE ? 'N' :
		    ch == OPT_CHAIN ? 'C' : ch == OPT_DRY_RUN ? 'D' : ch == OPT_NF_TYPE ? 'T' :
		    ch == OPT_FQDN ? 'F' : 0;

		if (letter != 0 && strchr(allowed, letter) == NULL)
			return usage_error(sub, usage, "option not valid for this subcommand:",
			    argv[optind - 1]);
		switch (ch) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_CSR:
			csr = optarg;
			break;
		case OPT_ID:
			id = optarg;
			break;
		case OPT_TTL:
			ttl = optarg;
			break;
		case OPT_SERIAL:
			serial = optarg;
			break;
		case OPT_PORT_FILE:
			port_file = optarg;
			break;
		case OPT_NODE:
			node = 1;
			break;
		case OPT_CHAIN:
			chain = optarg;
			break;
		case OPT_DRY_RUN:
			dry_run = 1;
			break;
		case OPT_NF_TYPE:
			if ((r = ca_nf_type_add(nf_types, sizeof(nf_types), optarg)) != 0)
				return ca_fail("issue: --nf-type", r);
			break;
		case OPT_FQDN:
			fqdn = optarg;
			break;
		case ':':
			return usage_error(sub, usage, "missing value for option", argv[optind - 1]);
		default:
			if (optopt != 0) {
				char o[3] = { '-', (char)optopt, '\0' };

				return usage_error(sub, usage, "unknown option", o);
			}
			return usage_error(sub, usage, "unknown option", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error(sub, usage, "unexpected argument", argv[optind]);
	if (cfgpath == NULL)
		return usage_error(sub, usage, "-c ca.yaml is required", NULL);
	if (strcmp(sub, "init") == 0)
		return ca_cmd_init(cfgpath, csr);
	if (strcmp(sub, "rotate") == 0)
		return ca_cmd_rotate(cfgpath, step, dry_run);
	if (strcmp(sub, "install") == 0) {
		if (chain == NULL)
			return usage_error(sub, usage, "--chain is required", NULL);
		return ca_cmd_install(cfgpath, chain);
	}
	if (strcmp(sub, "issue") == 0) {
		if (csr == NULL || id == NULL)
			return usage_error(sub, usage, "--csr and --id are required", NULL);
		if ((nf_types[0] != '\0') != (fqdn != NULL))
			return usage_error(sub, usage, "--nf-type and --fqdn go together", NULL);
		return ca_cmd_issue(cfgpath, csr, id, ttl, nf_types[0] != '\0' ? nf_types : NULL,
		    fqdn);
	}
	if (strcmp(sub, "token") == 0) {
		if (id == NULL)
			return usage_error(sub, usage, "--id is required", NULL);
		return ca_cmd_token(cfgpath, id, ttl, node);
	}
	if (strcmp(sub, "revoke") == 0) {
		if ((serial == NULL) == (id == NULL))
			return usage_error(sub, usage, "give exactly one of --serial and --id", NULL);
		return ca_cmd_revoke(cfgpath, serial, id);
	}
	return ca_cmd_serve(cfgpath, port_file);
}
