/*
 * pki.c - a CA under an operator's root: `hsmesh ca install --chain FILE`
 * puts the certificate an operator's CA issued for the token's CA key
 * (from `ca init --csr`) in place, with the certificates above it, once
 * capki_chain_check() accepts them; and the loading of what it installed.
 *
 * Files in state_dir: ca.pem (the CA certificate, used instead of
 * root.pem when present) and chain.pem (the certificates above it, the
 * operator's root last). chain.pem is written first: a crash between the
 * two leaves the old ca.pem with a chain that does not fit it, which the
 * next load refuses rather than serve.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "capki.h"
#include "cert.h"
#include "err.h"
#include "khclient.h"
#include "ledger.h"
#include "provider_core.h"
#include "provider_kh.h"
#include "svid.h"
#include "util.h"

int
ca_installed_load(const struct ca_config *cfg, X509 **ca, STACK_OF(X509) **chain)
{
	char cpath[PATH_MAX], hpath[PATH_MAX], why[400];
	STACK_OF(X509) *rest = NULL;
	X509 *x = NULL, *first = NULL;
	int r;

	*ca = NULL;
	*chain = NULL;
	if ((r = ca_path(cfg->state_dir, CA_CERT_FILE, cpath, sizeof(cpath))) != 0 ||
	    (r = ca_path(cfg->state_dir, CA_CHAIN_FILE, hpath, sizeof(hpath))) != 0)
		return r;
	if ((r = svid_load_pem_file(cpath, &x, &rest)) == HSM_ENOENT)
		return 0;
	if (r == 0 && sk_X509_num(rest) != 0)
		r = hsm_err(HSM_EINVAL, "%s holds more than the CA certificate", cpath);
	svid_certs_free(rest);
	rest = NULL;
	if (r == 0 && (r = svid_load_pem_file(hpath, &first, &rest)) == 0 &&
	    !sk_X509_unshift(rest, first)) {
		X509_free(first);
		r = HSM_ENOMEM;
	}
	/* What was checked at install must still fit together: the same path, at every start. */
	if (r == 0 && X509_check_issued(sk_X509_value(rest, 0), x) != X509_V_OK)
		r = hsm_err(HSM_ECONFIG, "%s was not issued by the first certificate of %s: "
		    "run 'hsmesh ca install' again", cpath, hpath);
	if (r != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		X509_free(x);
		svid_certs_free(rest);
		return r == HSM_ECONFIG ? hsm_err(r, "%s", why) :
		    hsm_err(HSM_ECONFIG, "installed CA certificate: %s", why);
	}
	*ca = x;
	*chain = rest;
	return 0;
}

int
ca_chain_pem(STACK_OF(X509) *sk, char **out, size_t *len)
{
	X509 *first = sk_X509_value(sk, 0);
	STACK_OF(X509) *more = sk_X509_new_null();
	int r = HSM_ENOMEM;

	*out = NULL;
	if (more == NULL)
		return r;
	for (int i = 1; i < sk_X509_num(sk); i++)
		if (!sk_X509_push(more, sk_X509_value(sk, i)))
			goto out;
	r = cert_pem_chain(first, more, out, len);
 out:
	sk_X509_free(more);
	return r;
}

static int
count_ca(const struct ledger_ca *c, void *arg)
{
	(*(unsigned *)arg)++;
	return 0;
}

int
ca_cmd_install(const char *cfgpath, const char *chainpath)
{
	char cpath[PATH_MAX], hpath[PATH_MAX], hex[HSM_KEYID_LEN * 2 + 1], until[HSM_TIME_STR];
	char subj[256], rootsubj[256], *pem = NULL, *cpem = NULL;
	uint8_t keyid[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen = 0, pemlen = 0, cpemlen = 0;
	struct ca_config *cfg = NULL;
	struct ca_kh k = { NULL, -1 };
	struct audit *au = NULL;
	struct ledger *lg = NULL;
	unsigned ncas = 0;
	STACK_OF(X509) *above = NULL;
	EVP_PKEY *key = NULL;
	X509 *ca = NULL;
	int64_t na = 0;
	int r;

	if ((r = ca_config_load(cfgpath, &cfg)) != 0 ||
	    (r = ca_path(cfg->state_dir, CA_CERT_FILE, cpath, sizeof(cpath))) != 0 ||
	    (r = ca_path(cfg->state_dir, CA_CHAIN_FILE, hpath, sizeof(hpath))) != 0)
		goto out;
	if ((r = svid_load_pem_file(chainpath, &ca, &above)) != 0)
		goto out;
	/* The key the certificate must certify: the one ca init made or found. */
	if ((r = ca_kh_start(cfg, &k)) != 0)
		goto out;
	r = kh_find(k.kh, cfg->key_label, 0, keyid, &spki, &spkilen);
	if (r == HSM_ENOENT)
		r = hsm_err(HSM_ENOENT, "the token holds no CA key labelled '%s': run 'hsmesh ca "
		    "init --csr' first", cfg->key_label);
	if (r != 0 || (r = capki_chain_check(ca, above, keyid, cfg->trust_domain, time(NULL))) != 0)
		goto out;
	/* The key signs now, through the keyholder: the token is ready for the certificate. */
	if ((r = hsm_pkey_new(k.kh, keyid, spki, spkilen, 0, &key)) != 0 ||
	    (r = hsm_pkey_selftest(key)) != 0)
		goto out;
	if ((r = ca_chain_pem(above, &pem, &pemlen)) != 0 || (r = cert_pem(ca, &cpem, &cpemlen)) != 0 ||
	    (r = ca_records_open(cfg, &lg, &au)) != 0 ||
	    (r = ledger_ca_list(lg, count_ca, &ncas)) != 0)
		goto out;
	/* Once rotated, the ledger's CA set decides which certificate signs, not ca.pem. */
	if (ncas > 0) {
		r = hsm_err(HSM_EPOLICY, "this CA was rotated ('hsmesh ca rotate status'): its "
		    "certificates live in the ledger's CA set, which ca install does not change");
		goto out;
	}
	X509_NAME_oneline(X509_get_subject_name(ca), subj, sizeof(subj));
	X509_NAME_oneline(X509_get_subject_name(sk_X509_value(above, sk_X509_num(above) - 1)),
	    rootsubj, sizeof(rootsubj));
	(void)cert_time_unix(X509_get0_notAfter(ca), &na);
	hsm_hex(keyid, sizeof(keyid), hex);
	/* Audited before it takes effect: fail closed. */
	if ((r = audit_event(au, "ca_installed", "subject", subj, "key_id", hex, "root", rootsubj,
	    "not_after", hsm_fmt_time(na, until), NULL)) != 0 ||
	    (r = hsm_write_file_atomic(hpath, pem, pemlen, 0644)) != 0 ||
	    (r = hsm_write_file_atomic(cpath, cpem, cpemlen, 0644)) != 0)
		goto out;
	printf("CA certificate installed: %s\n", cpath);
	printf("subject:    %s\n", subj);
	printf("key id:     %s\n", hex);
	printf("valid until %s\n", until);
	printf("chain:      %s (%d certificate%s up to %s)\n", hpath, sk_X509_num(above),
	    sk_X509_num(above) == 1 ? "" : "s", rootsubj);
	printf("Restart 'hsmesh ca serve'; agents' ca.root is the operator's root.\n");
	if (fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	EVP_PKEY_free(key);	/* before the client it borrows */
	ca_kh_stop(&k);
	audit_close(au);
	ledger_close(lg);
	X509_free(ca);
	svid_certs_free(above);
	free(spki);
	free(pem);
	free(cpem);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("install", r);
}
