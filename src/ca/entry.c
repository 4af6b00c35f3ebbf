/*
 * entry.c - `hsmesh ca entry add|list|show|rm`: the registration entries
 * that say which node may obtain which workload identity, and which local
 * processes that node's agent serves it to (docs/PROTOCOL.md,
 * "Registration entries"; the ledger keeps them, ledger.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "err.h"
#include "ledger.h"
#include "nfprofile.h"
#include "proxyconf.h"
#include "selector.h"
#include "spiffe.h"
#include "util.h"

void
ca_entry_usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca entry add -c ca.yaml (--node ID | --node-pattern PATTERN) --id SPIFFE_ID\n"
	    "                           --selector KIND:VALUE [--selector ...] [--ttl DURATION]\n"
	    "       hsmesh ca entry add -c ca.yaml --id SPIFFE_ID --self-managed [--ttl DURATION]\n"
	    "       (either form: [--profile spiffe | --profile 3gpp-nf --nf-type TYPE ... --fqdn NAME])\n"
	    "       hsmesh ca entry list -c ca.yaml [--id SPIFFE_ID]\n"
	    "       hsmesh ca entry show -c ca.yaml (ENTRY_ID | --id SPIFFE_ID)\n"
	    "       hsmesh ca entry rm -c ca.yaml ENTRY_ID\n"
	    "\n"
	    "Registration entries: which node may obtain a workload identity, and which\n"
	    "local processes its agent serves it to. The agent of that node learns its\n"
	    "entries from the CA, enrolls and renews them protected by its node certificate\n"
	    "(no join token per workload) and serves each only to processes that match every\n"
	    "selector of an entry. Removing the last entry that names a node for an ID stops\n"
	    "that node's renewals of it at once.\n"
	    "\n"
	    "  add   prints the new entry's ID (16 hex digits)\n"
	    "  list  one line per entry: ID, SPIFFE ID, node, TTL, selectors (tab-separated)\n"
	    "  show  an entry, or every entry of an ID, in full\n"
	    "  rm    removes an entry\n"
	    "\n"
	    "  -c, --config FILE        the CA configuration (ca.yaml)\n"
	    "      --node ID            the node's SPIFFE ID (its agent's node.id)\n"
	    "      --node-pattern P     nodes matching P: an ID, or an ID followed by /* for\n"
	    "                           every ID below it (spiffe://td/node/*)\n"
	    "      --id SPIFFE_ID       the workload identity\n"
	    "      --selector K:V       uid:N, gid:N, path:/abs/exe, sha256:HEX (of the\n"
	    "                           executable), cgroup:/prefix; all must match (1 to 16)\n"
	    "      --ttl DURATION       lifetime of its certificates (default svid_ttl, at most max_ttl)\n"
	    "      --self-managed       a CMP client manages the ID itself (join token ir, kur by\n"
	    "                           its own certificate): no node, no selectors\n"
	    "      --profile NAME       the certificate profile of the ID: spiffe (a plain\n"
	    "                           X.509-SVID) or 3gpp-nf (TS 33.310's NF profile);\n"
	    "                           default ca.yaml's profile. Every entry of an ID agrees\n"
	    "      --nf-type TYPE       3gpp-nf: an NF type (AMF, SMF, NRF, ...), repeatable,\n"
	    "                           in the certificate's nfTypes extension (RFC 9310)\n"
	    "      --fqdn NAME          3gpp-nf: the NF's FQDN, inside the home network domain\n"
	    "  -h, --help               this text\n");
}

/* "hsmesh ca entry: WHAT 'ARG'" and the usage; exit status 2. */
static int
usage_error(const char *what, const char *arg)
{
	if (arg != NULL)
		fprintf(stderr, "hsmesh ca entry: %s '%s'\n", what, arg);
	else
		fprintf(stderr, "hsmesh ca entry: %s\n", what);
	ca_entry_usage(stderr);
	return 2;
}

struct entry_args {
	const char *cfgpath, *node, *pattern, *id, *ttl, *entry_id, *profile, *fqdn;
	char nf_types[LEDGER_NF_TYPES_MAX + 1];
	int self_managed;
	char selectors[LEDGER_SELECTORS_MAX + 1];
	size_t nsel;
	int bad_selectors;	/* too many, or too long together */
};

/* A pattern of node IDs of trust domain td: valid syntax, and what it names is in td. */
static int
pattern_check(const char *pattern, const char *td)
{
	char prefix[SPIFFE_ID_MAX + 1];
	size_t n = strlen(pattern);
	int r;

	if ((r = spiffe_pattern_check(pattern)) != 0)
		return r;
	if (n >= 2 && strcmp(pattern + n - 2, "/*") == 0) {
		memcpy(prefix, pattern, n - 2);
		prefix[n - 2] = '\0';
		/* The bare trust domain and a star: every node, allowed. */
		if (strncmp(prefix, SPIFFE_SCHEME, strlen(SPIFFE_SCHEME)) == 0 &&
		    strcmp(prefix + strlen(SPIFFE_SCHEME), td) == 0)
			return 0;
		return spiffe_id_check_domain(prefix, td);
	}
	return spiffe_id_check_domain(pattern, td);
}

/*
 * --profile, --nf-type, --fqdn into e: a known profile; 3gpp-nf (named,
 * or ca.yaml's default) with NF types and an FQDN inside ca.yaml's home
 * network, and a TTL (ttl, else svid_ttl) within the profile's cap.
 */
static int
profile_arg(const struct ca_config *cfg, const struct entry_args *a, int64_t ttl,
    struct ledger_entry *e)
{
	enum cert_profile_kind k = PROFILE_INHERIT;
	struct nf_params np;
	char why[400];
	int r;

	if (a->profile != NULL && (r = nf_profile_parse(a->profile, 0, &k)) != 0)
		return r;
	if (k == PROFILE_INHERIT && (a->nf_types[0] != '\0' || a->fqdn != NULL))
		k = (enum cert_profile_kind)cfg->profile;
	if (k == PROFILE_SPIFFE && (a->nf_types[0] != '\0' || a->fqdn != NULL))
		return hsm_err(HSM_EINVAL, "--nf-type and --fqdn go with --profile %s",
		    NF_PROFILE_NAME);
	if (k == PROFILE_INHERIT && cfg->profile == PROFILE_3GPP_NF)
		return hsm_err(HSM_EINVAL, "ca.yaml's profile is %s: give the entry --nf-type and "
		    "--fqdn (or --profile spiffe)", NF_PROFILE_NAME);
	snprintf(e->profile, sizeof(e->profile), "%s", nf_profile_name(a->profile != NULL ? k :
	    PROFILE_INHERIT));
	if (k != PROFILE_3GPP_NF)
		return 0;
	memset(&np, 0, sizeof(np));
	np.mcc = cfg->plmn_mcc;
	np.mnc = cfg->plmn_mnc;
	np.country = cfg->plmn_country;
	np.fqdn = a->fqdn;
	np.nf_types = a->nf_types;
	if ((r = nf_params_check(&np)) != 0 || (r = nf_ttl_check(ttl > 0 ? ttl : cfg->svid_ttl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return hsm_err(r, "profile %s: %s", NF_PROFILE_NAME, why);
	}
	snprintf(e->profile, sizeof(e->profile), "%s", NF_PROFILE_NAME);
	snprintf(e->nf_types, sizeof(e->nf_types), "%s", a->nf_types);
	snprintf(e->fqdn, sizeof(e->fqdn), "%s", a->fqdn);
	return 0;
}

static int
cmd_add(struct ca_config *cfg, struct ledger *lg, struct audit *au, const struct entry_args *a)
{
	struct ledger_entry e;
	char why[512], ttl[32];
	int64_t t = 0;
	int r;

	memset(&e, 0, sizeof(e));
	if (a->ttl != NULL) {
		if ((r = hsm_parse_duration(a->ttl, &t)) != 0) {
			snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
			return hsm_err(HSM_EINVAL, "--ttl: %s", why);
		}
		if (t > cfg->max_ttl)
			return hsm_err(HSM_EPOLICY, "--ttl %s exceeds max_ttl %s", a->ttl,
			    cfg->max_ttl_text);
	}
	if ((r = spiffe_id_check_domain(a->id, cfg->trust_domain)) != 0 ||
	    (r = profile_arg(cfg, a, t, &e)) != 0)
		return r;
	if (a->node != NULL && (r = spiffe_id_check_domain(a->node, cfg->trust_domain)) != 0)
		return r;
	if (a->pattern != NULL && (r = pattern_check(a->pattern, cfg->trust_domain)) != 0)
		return r;
	snprintf(e.spiffe_id, sizeof(e.spiffe_id), "%s", a->id);
	snprintf(e.node, sizeof(e.node), "%s", a->node != NULL ? a->node :
	    a->pattern != NULL ? a->pattern : "");
	e.node_is_pattern = a->pattern != NULL;
	memcpy(e.selectors, a->selectors, sizeof(e.selectors));
	e.ttl = t;
	e.self_managed = a->self_managed;
	if ((r = ledger_entry_add(lg, &e)) != 0)
		return r;
	snprintf(ttl, sizeof(ttl), "%lld", (long long)e.ttl);
	audit_event(au, "entry_added", "entry", e.id, "id", e.spiffe_id,
	    e.self_managed ? "mode" : e.node_is_pattern ? "node_pattern" : "node",
	    e.self_managed ? "self-managed" : e.node, "selectors",
	    e.selectors[0] != '\0' ? e.selectors : NULL, "ttl", e.ttl > 0 ? ttl : NULL,
	    "profile", e.profile[0] != '\0' ? e.profile : NULL,
	    "nf_types", e.nf_types[0] != '\0' ? e.nf_types : NULL,
	    "fqdn", e.fqdn[0] != '\0' ? e.fqdn : NULL, NULL);
	printf("%s\n", e.id);
	return 0;
}

/* The selectors of e on one line, separated by sep. */
static void
selectors_line(const struct ledger_entry *e, const char *sep, char *buf, size_t cap)
{
	size_t o = 0;

	buf[0] = '\0';
	for (const char *p = e->selectors; *p != '\0' && o < cap; p += *p == '\n') {
		size_t l = strcspn(p, "\n");

		o += (size_t)snprintf(buf + o, cap - o, "%s%.*s", o > 0 ? sep : "", (int)l, p);
		p += l;
	}
}

static void
ttl_text(const struct ledger_entry *e, char *buf, size_t cap)
{
	if (e->ttl == 0)
		snprintf(buf, cap, "default");
	else if (e->ttl % 86400 == 0)
		snprintf(buf, cap, "%lldd", (long long)(e->ttl / 86400));
	else if (e->ttl % 3600 == 0)
		snprintf(buf, cap, "%lldh", (long long)(e->ttl / 3600));
	else if (e->ttl % 60 == 0)
		snprintf(buf, cap, "%lldm", (long long)(e->ttl / 60));
	else
		snprintf(buf, cap, "%llds", (long long)e->ttl);
}

static int
list_one(const struct ledger_entry *e, void *arg)
{
	char sel[LEDGER_SELECTORS_MAX + 64], ttl[32];

	selectors_line(e, ",", sel, sizeof(sel));
	ttl_text(e, ttl, sizeof(ttl));
	printf("%s\t%s\t%s\t%s\t%s\n", e->id, e->spiffe_id, e->self_managed ? "(self-managed)" :
	    e->node, ttl, e->self_managed ? "-" : sel);
	(*(unsigned *)arg)++;
	return 0;
}

static int
show_one(const struct ledger_entry *e, void *arg)
{
	char sel[LEDGER_SELECTORS_MAX + 64], ttl[32], t[HSM_TIME_STR];
	unsigned *n = arg;

	if ((*n)++ > 0)
		printf("\n");
	selectors_line(e, "\n             ", sel, sizeof(sel));
	ttl_text(e, ttl, sizeof(ttl));
	printf("entry:       %s\n", e->id);
	printf("spiffe id:   %s\n", e->spiffe_id);
	if (e->self_managed)
		printf("managed by:  itself (self-managed: join token ir, kur by its own certificate)\n");
	else
		printf("managed by:  %s %s\n", e->node_is_pattern ? "the nodes matching" : "node",
		    e->node);
	printf("selectors:   %s\n", e->self_managed ? "(none: no agent serves it)" : sel);
	printf("ttl:         %s\n", e->ttl == 0 ? "default (svid_ttl)" : ttl);
	printf("profile:     %s\n", e->profile[0] != '\0' ? e->profile : "default (ca.yaml)");
	if (e->nf_types[0] != '\0')
		printf("nf types:    %s\nfqdn:        %s\n", e->nf_types, e->fqdn);
	printf("created:     %s\n", hsm_fmt_time(e->created, t));
	return 0;
}

static int
run(const char *sub, const struct entry_args *a)
{
	struct ca_config *cfg = NULL;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	struct ledger_entry e;
	unsigned n = 0;
	char fail[32];
	int r;

	snprintf(fail, sizeof(fail), "entry %s", sub);
	if ((r = ca_config_load(a->cfgpath, &cfg)) != 0 || (r = ca_records_open(cfg, &lg, &au)) != 0)
		goto out;
	if (strcmp(sub, "add") == 0) {
		r = cmd_add(cfg, lg, au, a);
	} else if (strcmp(sub, "list") == 0) {
		r = ledger_entry_list(lg, a->id, list_one, &n);
	} else if (strcmp(sub, "show") == 0 && a->entry_id != NULL) {
		if ((r = ledger_entry_get(lg, a->entry_id, &e)) == 0)
			r = show_one(&e, &n);
	} else if (strcmp(sub, "show") == 0) {
		if ((r = ledger_entry_list(lg, a->id, show_one, &n)) == 0 && n == 0)
			r = hsm_err(HSM_ENOENT, "no registration entry for %s", a->id);
	} else {
		if ((r = ledger_entry_get(lg, a->entry_id, &e)) == 0 &&
		    (r = ledger_entry_rm(lg, a->entry_id)) == 0) {
			audit_event(au, "entry_removed", "entry", e.id, "id", e.spiffe_id, NULL);
			printf("removed entry %s (%s)\n", e.id, e.spiffe_id);
		}
	}
	if (r == 0 && fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail(fail, r);
}

/* --selector: one more line of a->selectors (checked now: one line for a typo). */
static int
add_selector(struct entry_args *a, const char *text)
{
	struct selector s;
	char canon[SEL_TEXT_MAX + 1];
	size_t have = strlen(a->selectors), l;
	int r;

	if ((r = sel_parse(text, &s)) != 0)
		return r;
	r = sel_text(&s, canon, sizeof(canon));
	sel_clear(&s);
	if (r != 0)
		return hsm_err(HSM_EINVAL, "selector too long");
	l = strlen(canon);
	if (++a->nsel > SEL_SET_MAX || have + l + 2 > sizeof(a->selectors))
		return hsm_err(HSM_EINVAL, "at most %d selectors", SEL_SET_MAX);
	snprintf(a->selectors + have, sizeof(a->selectors) - have, "%s%s", have > 0 ? "\n" : "",
	    canon);
	return 0;
}

enum {
	OPT_NODE = 256, OPT_PATTERN, OPT_ID, OPT_SELECTOR, OPT_TTL, OPT_SELF, OPT_PROFILE,
	OPT_NF_TYPE, OPT_FQDN
};

int
ca_entry_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "node", required_argument, NULL, OPT_NODE },
		{ "node-pattern", required_argument, NULL, OPT_PATTERN },
		{ "id", required_argument, NULL, OPT_ID },
		{ "selector", required_argument, NULL, OPT_SELECTOR },
		{ "ttl", required_argument, NULL, OPT_TTL },
		{ "self-managed", no_argument, NULL, OPT_SELF },
		{ "profile", required_argument, NULL, OPT_PROFILE },
		{ "nf-type", required_argument, NULL, OPT_NF_TYPE },
		{ "fqdn", required_argument, NULL, OPT_FQDN },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct entry_args a;
	const char *sub;
	int ch, r;

	memset(&a, 0, sizeof(a));
	if (argc < 2) {
		ca_entry_usage(stderr);
		return 2;
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		ca_entry_usage(stdout);
		return 0;
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 &&
	    strcmp(sub, "rm") != 0)
		return usage_error("unknown subcommand", sub);
	argc--;
	argv++;
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			a.cfgpath = optarg;
			break;
		case 'h':
			ca_entry_usage(stdout);
			return 0;
		case OPT_NODE:
			a.node = optarg;
			break;
		case OPT_PATTERN:
			a.pattern = optarg;
			break;
		case OPT_ID:
			a.id = optarg;
			break;
		case OPT_TTL:
			a.ttl = optarg;
			break;
		case OPT_SELF:
			a.self_managed = 1;
			break;
		case OPT_PROFILE:
			a.profile = optarg;
			break;
		case OPT_NF_TYPE:
			if ((r = ca_nf_type_add(a.nf_types, sizeof(a.nf_types), optarg)) != 0)
				return ca_fail("entry add: --nf-type", r);
			break;
		case OPT_FQDN:
			a.fqdn = optarg;
			break;
		case OPT_SELECTOR:
			if ((r = add_selector(&a, optarg)) != 0)
				return ca_fail("entry add", r);
			break;
		case ':':
			return usage_error("missing value for option", argv[optind - 1]);
		default:
			return usage_error("unknown option", argv[optind - 1]);
		}
	}
	/* show and rm name an entry by its ID (the one positional argument) */
	if (optind < argc && (strcmp(sub, "show") == 0 || strcmp(sub, "rm") == 0))
		a.entry_id = argv[optind++];
	if (optind < argc)
		return usage_error("unexpected argument", argv[optind]);
	if (a.cfgpath == NULL)
		return usage_error("-c ca.yaml is required", NULL);
	if (strcmp(sub, "add") == 0) {
		if (a.id == NULL)
			return usage_error("add: --id is required", NULL);
		if (a.self_managed && (a.node != NULL || a.pattern != NULL || a.nsel > 0))
			return usage_error("add: --self-managed takes no --node, --node-pattern or "
			    "--selector (no agent serves it)", NULL);
		if (!a.self_managed && (a.node != NULL) == (a.pattern != NULL))
			return usage_error("add: give exactly one of --node and --node-pattern "
			    "(or --self-managed)", NULL);
		if (!a.self_managed && a.nsel == 0)
			return usage_error("add: at least one --selector (which local processes "
			    "the agent serves the identity to)", NULL);
	} else if (a.node != NULL || a.pattern != NULL || a.nsel > 0 || a.ttl != NULL ||
	    a.self_managed || a.profile != NULL || a.nf_types[0] != '\0' || a.fqdn != NULL) {
		return usage_error("--node, --node-pattern, --selector, --ttl, --self-managed, "
		    "--profile, --nf-type and --fqdn are for add", NULL);
	}
	if (strcmp(sub, "list") == 0 && a.entry_id != NULL)
		return usage_error("list takes no ENTRY_ID", NULL);
	if (strcmp(sub, "show") == 0 && (a.entry_id != NULL) == (a.id != NULL))
		return usage_error("show: give an ENTRY_ID or --id", NULL);
	if (strcmp(sub, "rm") == 0 && (a.entry_id == NULL || a.id != NULL))
		return usage_error("rm: give the ENTRY_ID (hsmesh ca entry list shows them)", NULL);
	return run(sub, &a);
}
