/*
 * init.c - `hsmesh ca init`: find the CA key labelled key.label in the
 * token, or generate one of key.type inside it, and write the self-signed
 * root certificate. Idempotent: a root.pem whose key is in the token is
 * kept; one whose key is not is an error, never silently replaced. A key
 * it did not generate itself is adopted only if the token says it is
 * sensitive and never was extractable, or, for replicas (key.replicable,
 * docs/REPLICAS.md), that it leaves the token only wrapped by a key the
 * token trusts (CKA_WRAP_WITH_TRUSTED): extractable but wrap-with-trusted
 * with key.replicable, or unwrapped into this token that way. With --csr
 * FILE it writes a PKCS#10 request for the same key instead of the root,
 * for an operator's CA to sign (then `ca install`, pki.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca.h"
#include "caconf.h"
#include "cert.h"
#include "err.h"
#include "keytypes.h"
#include "khclient.h"
#include "khproto.h"
#include "provider_core.h"
#include "provider_kh.h"
#include "spiffe.h"
#include "util.h"

/* Find the key labelled key.label, or generate it. *created tells which. */
static int
find_or_make(const struct ca_config *cfg, struct ca_kh *k, uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen, int *created)
{
	int r;

	*created = 0;
	r = kh_find(k->kh, cfg->key_label, 0, keyid, spki, spkilen);
	if (r == HSM_ENOENT) {
		/* RSA key generation in a token can take many seconds. */
		r = kh_generate_flags(k->kh, cfg->key_type, cfg->key_label,
		    cfg->key_replicable ? HSM_GEN_REPLICABLE : 0, 120000, keyid, spki, spkilen);
		*created = r == 0;
	}
	return r;
}

/* The EC curve / RSA size of pub as a key.type, so a reused key can be checked against ca.yaml. */
static int
pub_keytype(EVP_PKEY *pub)
{
	char desc[64];

	cert_key_describe(pub, desc, sizeof(desc));
	if (strcmp(desc, "EC P-256") == 0)
		return HSM_KEY_EC_P256;
	if (strcmp(desc, "EC P-384") == 0)
		return HSM_KEY_EC_P384;
	if (strcmp(desc, "RSA-3072") == 0)
		return HSM_KEY_RSA_3072;
	return 0;
}

/*
 * A key this run did not generate is adopted only if the token says it is
 * sensitive and not extractable, and always was: a key that was ever
 * readable may exist outside the token. The one exception is a key that
 * leaves the token only wrapped by a trusted key (CKA_WRAP_WITH_TRUSTED)
 * and is sensitive: extractable in that way when replicable is set (a
 * replicable CA key, HSM_GEN_REPLICABLE), or once extractable that way and
 * now not (a replica's key, unwrapped into this token). Nothing weaker.
 * name says which key (for the one-line refusal naming the attributes
 * found).
 */
int
ca_adopt_check(struct ca_kh *k, const uint8_t keyid[HSM_KEYID_LEN], const char *name,
    int replicable)
{
	static const struct {
		uint8_t bit;
		const char *attr;
	} attrs[] = {
		{ KH_ATTR_EXTRACTABLE, "CKA_EXTRACTABLE" },
		{ KH_ATTR_SENSITIVE, "CKA_SENSITIVE" },
		{ KH_ATTR_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE" },
		{ KH_ATTR_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE" },
		{ KH_ATTR_WRAP_WITH_TRUSTED, "CKA_WRAP_WITH_TRUSTED" },
	};
	char what[160] = "", found[200] = "";
	uint8_t fl;
	size_t n = 0;
	int r, wwt;

	if ((r = kh_attrs(k->kh, keyid, 0, &fl)) != 0)
		return r;
	wwt = (fl & KH_ATTR_WRAP_WITH_TRUSTED) && (fl & KH_ATTR_SENSITIVE);
#define WHAT(s) snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%s", \
	    what[0] != '\0' ? " and " : "", s)
	if ((fl & KH_ATTR_EXTRACTABLE) && !wwt)
		WHAT("is extractable");
	if ((fl & KH_ATTR_EXTRACTABLE) && wwt && !replicable)
		WHAT("is extractable to trusted keys but key.replicable is not set");
	if (!(fl & KH_ATTR_SENSITIVE))
		WHAT("is not sensitive");
	if (!(fl & KH_ATTR_EXTRACTABLE) && !(fl & KH_ATTR_NEVER_EXTRACTABLE) && !wwt)
		WHAT("was extractable once");
	if ((fl & KH_ATTR_SENSITIVE) && !(fl & KH_ATTR_ALWAYS_SENSITIVE) && !wwt)
		WHAT("was not sensitive once");
#undef WHAT
	if (what[0] == '\0')
		return 0;
	/* CKA_WRAP_WITH_TRUSTED is named only when set (the exception it makes). */
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]) && n < sizeof(found); i++)
		if (attrs[i].bit != KH_ATTR_WRAP_WITH_TRUSTED || (fl & attrs[i].bit))
			n += (size_t)snprintf(found + n, sizeof(found) - n, "%s%s=%s",
			    i ? ", " : "", attrs[i].attr, (fl & attrs[i].bit) ? "TRUE" : "FALSE");
	return hsm_err(HSM_EPOLICY, "%s in the token %s (%s): refusing to adopt it", name, what,
	    found);
}

/* The key of an existing root.pem, which the token must still hold. */
static int
root_key(const char *root_path, X509 *root, struct ca_kh *k, uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen)
{
	char hex[HSM_KEYID_LEN * 2 + 1];
	int r;

	if ((r = cert_key_id(root, keyid)) != 0)
		return r;
	r = ca_kh_pubkey(k, keyid, spki, spkilen);
	if (r == HSM_ENOENT)
		r = hsm_err(HSM_ENOENT, "%s exists but the token holds no matching key "
		    "(key id %s); move it away to create a new CA", root_path,
		    hsm_hex(keyid, HSM_KEYID_LEN, hex));
	return r;
}

/* The CSR for the CA key, written to path (PEM, 0644). */
static int
write_csr(const struct ca_config *cfg, EVP_PKEY *key, EVP_PKEY *pub, const char *path)
{
	X509_REQ *req = NULL;
	BIO *b = NULL;
	char *data;
	long len;
	int r;

	if ((r = cert_make_ca_csr(key, pub, cfg->trust_domain, &req)) != 0)
		goto out;
	if ((b = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509_REQ(b, req) != 1 ||
	    (len = BIO_get_mem_data(b, &data)) <= 0) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot encode the CSR");
		goto out;
	}
	r = hsm_write_file_atomic(path, data, (size_t)len, 0644);
 out:
	BIO_free(b);
	X509_REQ_free(req);
	return r;
}

int
ca_cmd_init(const char *cfgpath, const char *csr)
{
	char root_path[PATH_MAX], hex[HSM_KEYID_LEN * 2 + 1], desc[64], *pem = NULL;
	uint8_t keyid[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen = 0, pemlen = 0;
	struct ca_config *cfg = NULL;
	struct ca_kh k = { NULL, -1 };
	const unsigned char *p;
	EVP_PKEY *pub = NULL, *key = NULL;
	X509 *root = NULL;
	int r, exists = 0, created = 0;

	if ((r = ca_config_load(cfgpath, &cfg)) != 0 ||
	    (r = hsm_mkdir_p(cfg->state_dir, 0700)) != 0 ||
	    (r = ca_path(cfg->state_dir, CA_ROOT_FILE, root_path, sizeof(root_path))) != 0 ||
	    (r = ca_root_load(cfg, root_path, &root, &exists)) != 0)
		goto out;
	if ((r = ca_kh_start(cfg, &k)) != 0)
		goto out;
	if (root != NULL)
		r = root_key(root_path, root, &k, keyid, &spki, &spkilen);
	else
		r = find_or_make(cfg, &k, keyid, &spki, &spkilen, &created);
	if (r != 0)
		goto out;
	if (!created) {
		snprintf(desc, sizeof(desc), "key '%s'", cfg->key_label);
		if (root != NULL)
			snprintf(desc, sizeof(desc), "the key of %s", CA_ROOT_FILE);
		if ((r = ca_adopt_check(&k, keyid, desc, cfg->key_replicable)) != 0)
			goto out;
	}

	p = spki;
	if ((pub = d2i_PUBKEY(NULL, &p, (long)spkilen)) == NULL) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot parse the CA public key");
		goto out;
	}
	if (!created && root == NULL && pub_keytype(pub) != (int)cfg->key_type) {
		r = hsm_err(HSM_ECONFIG, "the token's key '%s' is %s but key.type is %s; "
		    "choose another key.label for a new key", cfg->key_label,
		    cert_key_describe(pub, desc, sizeof(desc)), hsm_keytype_name(cfg->key_type));
		goto out;
	}
	/* A signature now proves the PIN, the key and the keyholder before anything is written. */
	if ((r = hsm_pkey_new(k.kh, keyid, spki, spkilen, 0, &key)) != 0 ||
	    (r = hsm_pkey_selftest(key)) != 0)
		goto out;

	if (csr != NULL) {
		if ((r = write_csr(cfg, key, pub, csr)) != 0)
			goto out;
	} else if (root == NULL) {
		if ((r = cert_make_root(key, pub, cfg->trust_domain, cfg->ca_ttl, &root)) != 0 ||
		    (r = cert_pem(root, &pem, &pemlen)) != 0 ||
		    (r = hsm_write_file_atomic(root_path, pem, pemlen, 0644)) != 0)
			goto out;
	}

	printf("CA key %s in the token (%s, label '%s'%s)\n",
	    created ? "generated" : "reused", cert_key_describe(pub, desc, sizeof(desc)),
	    cfg->key_label, created && cfg->key_replicable ?
	    ", replicable: wrappable to trusted keys only" : "");
	printf("key id:     %s\n", hsm_hex(keyid, sizeof(keyid), hex));
	if (csr != NULL)
		printf("csr:        %s (for the operator's CA; then 'hsmesh ca install --chain')\n",
		    csr);
	else
		printf("root:       %s (%s)\n", root_path, exists ? "kept" : "created");
	printf("spiffe id:  %s%s\n", SPIFFE_SCHEME, cfg->trust_domain);
	if (fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	EVP_PKEY_free(key);	/* before the client it borrows */
	ca_kh_stop(&k);
	EVP_PKEY_free(pub);
	X509_free(root);
	free(spki);
	free(pem);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("init", r);
}
