/*
 * inspect.c - `hsmesh inspect FILE`: print certificates and certificate
 * requests (PEM or DER), or an SGX DCAP quote (verified against offline
 * collateral with --collateral), readably. Reads untrusted files:
 * certificates go through cert_inspect_ext(), which escapes what it quotes
 * (with the evidence identities of attest.h);
 * quotes are printed as hex only.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attest.h"
#include "attest_sgx.h"
#include "cert.h"
#include "certinspect.h"
#include "cmds.h"
#include "err.h"
#include "sgxchain.h"
#include "sgxverify.h"
#include "util.h"

#define QUOTE_MAX (64 * 1024)
#define COLLATERAL_MAX (1024 * 1024)

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh inspect FILE\n"
	    "       hsmesh inspect QUOTE [--collateral FILE|DIR] [--at TIME] [--collateral-grace D]\n"
	    "                            [--insecure-test-root PEM]\n"
	    "\n"
	    "Print the certificates (a PEM bundle or one DER certificate) or the PKCS#10\n"
	    "certificate request in FILE ('-' for standard input): subject, issuer,\n"
	    "serial, SPIFFE IDs, key type and key id (SHA-256 of the public key), validity,\n"
	    "CA flag, key usages and whether a self-signature verifies.\n"
	    "\n"
	    "An SGX DCAP quote (ECDSA P-256, version 3, 4 or 5; SGX enclave or TDX TD) is\n"
	    "parsed and, with --collateral, verified offline: PCK chain to Intel's SGX Root\n"
	    "CA (built in; every chain exactly leaf, [intermediate,] root, the root byte for\n"
	    "byte Intel's), CRLs, QE report and quote signatures, attestation-key binding,\n"
	    "TCB Info and QE Identity (TDX: also the TDX module), TCB status. Exit status 1\n"
	    "names the failing step.\n"
	    "  --collateral FILE   JSON collateral (tcb_info, qe_identity, ... as dcap-qvl writes it)\n"
	    "  --collateral DIR    Intel's files: tcbInfo.json, qeIdentity.json, tcbSignChain.pem,\n"
	    "                      rootCaCrl.der, intermediateCaCrl.der [, pckCert.pem + pckSignChain.pem]\n"
	    "  --at TIME           verify as of TIME (YYYY-MM-DDTHH:MM:SSZ); default now\n"
	    "  --collateral-grace D  accept collateral expired less than D ago (90s, 15m, 12h,\n"
	    "                      7d; default 0: none): TCB Info / QE Identity / CRL nextUpdate,\n"
	    "                      certificate notAfter; 'grace used' says what had expired\n"
	    "  --insecure-test-root PEM  trust this root INSTEAD of Intel's (test data only)\n");
}

/* Standard input, bounded like a file. */
static int
read_stdin(uint8_t **out, size_t *len)
{
	uint8_t *buf = NULL, *nb;
	size_t n = 0, cap = 0, r;

	*out = NULL;
	*len = 0;
	for (;;) {
		if (n == cap) {
			if (cap > CERT_MAX_INPUT) {
				free(buf);
				return hsm_err(HSM_EINVAL, "input larger than %d bytes", CERT_MAX_INPUT);
			}
			cap = cap == 0 ? 8192 : cap * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				return hsm_err(HSM_ENOMEM, "out of memory");
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, stdin);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(stdin)) {
		free(buf);
		return hsm_err(HSM_EIO, "read error on standard input");
	}
	*out = buf;
	*len = n;
	return 0;
}

static void
hexline(const char *name, const uint8_t *p, size_t n)
{
	char hex[2 * 64 + 1];

	printf("%-18s %s\n", name, hsm_hex(p, n > 64 ? 64 : n, hex));
}

static void
print_body(const struct sgx_report_body *b)
{
	char attr[64];

	hexline("mrenclave", b->mrenclave, sizeof(b->mrenclave));
	hexline("mrsigner", b->mrsigner, sizeof(b->mrsigner));
	printf("%-18s %u\n", "isv prod id", b->isv_prod_id);
	printf("%-18s %u\n", "isv svn", b->isv_svn);
	hsm_hex(b->attributes, sizeof(b->attributes), attr);
	printf("%-18s %s%s\n", "attributes", attr,
	    (b->attributes[0] & SGX_ATTR_DEBUG) ? " (DEBUG enclave)" : "");
	hexline("report data", b->report_data, sizeof(b->report_data));
}

/* A TD report body (TDX): the TD's measurements and the TDX module's. */
static void
print_td(const struct sgx_td_report *t, int td15)
{
	char hex[2 * 16 + 1];
	static const char *rtmr[4] = { "rtmr0", "rtmr1", "rtmr2", "rtmr3" };

	hexline("mrtd", t->mrtd, sizeof(t->mrtd));
	for (size_t i = 0; i < 4; i++)
		hexline(rtmr[i], t->rtmr[i], sizeof(t->rtmr[i]));
	hsm_hex(t->td_attributes, sizeof(t->td_attributes), hex);
	printf("%-18s %s%s\n", "td attributes", hex,
	    (t->td_attributes[0] & SGX_TD_ATTR_DEBUG) ? " (DEBUG TD)" : "");
	hexline("xfam", t->xfam, sizeof(t->xfam));
	hexline("mrconfigid", t->mrconfigid, sizeof(t->mrconfigid));
	hexline("mrowner", t->mrowner, sizeof(t->mrowner));
	hexline("mrownerconfig", t->mrownerconfig, sizeof(t->mrownerconfig));
	hexline("mrseam", t->mrseam, sizeof(t->mrseam));
	hexline("mrsignerseam", t->mrsignerseam, sizeof(t->mrsignerseam));
	hexline("seam attributes", t->seam_attributes,
	    sizeof(t->seam_attributes));
	hexline("tee tcb svn", t->tee_tcb_svn, sizeof(t->tee_tcb_svn));
	if (td15) {
		hexline("tee tcb svn2", t->tee_tcb_svn2,
		    sizeof(t->tee_tcb_svn2));
		hexline("mrservicetd", t->mrservicetd, sizeof(t->mrservicetd));
	}
	hexline("report data", t->report_data, sizeof(t->report_data));
}

static int
inspect_quote(const char *file, const uint8_t *buf, size_t len, const char *coll,
    const char *at_text, const char *grace_text, const char *test_root_file)
{
	struct sgx_quote q;
	struct sgx_collateral c;
	struct sgx_verify_opts o;
	struct sgx_verify_result res;
	uint8_t *root = NULL;
	size_t rootlen = 0;
	char *rootpem = NULL, when[32], span[48];
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = sgx_quote_parse(buf, len, &q)) != 0) {
		fprintf(stderr, "hsmesh inspect: %s: not a certificate, request or SGX quote: %s\n", file,
		    hsm_err_msg(r));
		return 1;
	}
	printf("%-18s SGX DCAP quote v%u (%s)\n", "type", q.version, q.tee_type == 0 ? "SGX" : "TDX");
	printf("%-18s qe svn %u, pce svn %u\n", "header", q.qe_svn, q.pce_svn);
	if (q.tee_type == 0)
		print_body(&q.enclave);
	else
		print_td(&q.td, q.body_type == SGX_BODY_TD15);
	if (coll == NULL) {
		printf("%-18s not verified (no --collateral)\n", "verdict");
		return 0;
	}
	memset(&o, 0, sizeof(o));
	o.at = time(NULL);
	if (at_text != NULL && sgx_parse_time(at_text, &o.at) != 0) {
		fprintf(stderr, "hsmesh inspect: --at '%s' is not YYYY-MM-DDTHH:MM:SSZ\n", at_text);
		return 2;
	}
	if (grace_text != NULL && strcmp(grace_text, "0") != 0 &&
	    hsm_parse_duration(grace_text, &o.collateral_grace) != 0) {
		fprintf(stderr, "hsmesh inspect: --collateral-grace '%s' is not a duration (0, 90s, 15m, 12h, 7d)\n",
		    grace_text);
		return 2;
	}
	if (test_root_file != NULL) {
		if ((r = hsm_read_file(test_root_file, COLLATERAL_MAX, &root, &rootlen)) != 0) {
			fprintf(stderr, "hsmesh inspect: %s\n", hsm_err_msg(r));
			return 1;
		}
		rootpem = (char *)root;		/* NUL-terminated by hsm_read_file */
		o.insecure_test_root_pem = rootpem;
	}
	if ((r = attest_sgx_collateral_load(coll, &c)) != 0) {
		fprintf(stderr, "hsmesh inspect: collateral %s: %s\n", coll, hsm_err_msg(r));
		goto out;
	}
	r = sgx_verify_quote(buf, len, &c, &o, &res);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&o.at));
	printf("%-18s %s%s\n", "verified at", when, rootpem != NULL ? " (INSECURE test root)" : "");
	if (r != 0) {
		printf("%-18s REFUSED at step %s\n", "verdict", sgx_step_name(res.failed_step));
		fprintf(stderr, "hsmesh inspect: quote refused at step %s: %s\n",
		    sgx_step_name(res.failed_step), hsm_err_msg(r));
		goto out;
	}
	printf("%-18s verified\n", "verdict");
	printf("%-18s %s (platform %s, QE %s)\n", "tcb status", sgx_tcb_status_name(res.tcb_status),
	    sgx_tcb_status_name(res.platform_status), sgx_tcb_status_name(res.qe_status));
	if (res.tee_type == SGX_TEE_TDX) {
		printf("%-18s SGX level %s", "tdx tcb", sgx_tcb_status_name(res.sgx_level_status));
		if (res.tdx_module_id[0] != '\0')
			printf(", module %s %s", res.tdx_module_id,
			    sgx_tcb_status_name(res.tdx_module_status));
		printf("\n");
	}
	printf("%-18s %s\n", "advisories", res.advisories[0] ? res.advisories : "none");
	hexline("fmspc", res.fmspc, sizeof(res.fmspc));
	printf("%-18s %u\n", "pce svn", res.pcesvn);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&res.collateral_expiry));
	printf("%-18s %s\n", "collateral until", when);
	if (res.collateral_expired)
		printf("%-18s collateral expired %s before the verification time (%s); accepted within --collateral-grace %s\n",
		    "grace used", sgx_fmt_span(res.collateral_expired_by, span, sizeof(span)),
		    res.collateral_expired_items, grace_text);
 out:
	sgx_collateral_free(&c);
	free(root);
	return r == 0 ? 0 : 1;
}

int
inspect_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "collateral", required_argument, NULL, 'C' },
		{ "at", required_argument, NULL, 'A' },
		{ "collateral-grace", required_argument, NULL, 'G' },
		{ "insecure-test-root", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file, *coll = NULL, *at = NULL, *grace = NULL, *test_root = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r, ch;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'C': coll = optarg; break;
		case 'A': at = optarg; break;
		case 'G': grace = optarg; break;
		case 'R': test_root = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "hsmesh inspect: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	/* Options may also follow the file. */
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	file = argv[optind++];
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'C': coll = optarg; break;
		case 'A': at = optarg; break;
		case 'G': grace = optarg; break;
		case 'R': test_root = optarg; break;
		default:
			fprintf(stderr, "hsmesh inspect: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(file, "-") == 0)
		r = read_stdin(&buf, &len);
	else
		r = hsm_read_file(file, CERT_MAX_INPUT > QUOTE_MAX ? CERT_MAX_INPUT : QUOTE_MAX, &buf, &len);
	if (r != 0) {
		fprintf(stderr, "hsmesh inspect: %s\n", hsm_err_msg(r));
		return 1;
	}
	/* A certificate or request first; else, a quote. */
	if (coll == NULL && at == NULL && grace == NULL && test_root == NULL &&
	    cert_inspect_ext(buf, len, attest_identity_describe, stdout) == 0) {
		free(buf);
		return 0;
	}
	r = inspect_quote(file, buf, len, coll, at, grace, test_root);
	free(buf);
	return r;
}
