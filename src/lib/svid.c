/*
 * svid.c - the X.509-SVID as its holder checks it (see svid.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "err.h"
#include "svid.h"
#include "util.h"

void
svid_certs_free(STACK_OF(X509) *sk)
{
	sk_X509_pop_free(sk, X509_free);
}

char *
svid_serial_text(X509 *x, char *out, size_t len)
{
	size_t n, i;

	if (len < 2 || cert_serial_hex(X509_get0_serialNumber(x), out + 1, len - 1) != 0) {
		snprintf(out, len, "?");
		return out;
	}
	n = strlen(out + 1);
	if (n % 2 == 1)
		out[0] = '0';
	else
		memmove(out, out + 1, n + 1);
	for (i = 0; out[i] != '\0'; i++)
		if (out[i] >= 'a' && out[i] <= 'f')
			out[i] = (char)(out[i] - 'a' + 'A');
	return out;
}

int
svid_cert_spki(X509 *x, uint8_t **out, size_t *len)
{
	unsigned char *der = NULL;
	int n;

	*out = NULL;
	*len = 0;
	if ((n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der)) <= 0)
		return hsm_err_ossl(HSM_ECRYPTO, "encoding the certificate's public key");
	if ((*out = malloc((size_t)n)) == NULL) {
		OPENSSL_free(der);
		return HSM_ENOMEM;
	}
	memcpy(*out, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	return 0;
}

int
svid_load_pem_file(const char *path, X509 **leaf, STACK_OF(X509) **rest)
{
	uint8_t *buf = NULL;
	size_t len;
	BIO *b = NULL;
	X509 *x;
	int r;

	*leaf = NULL;
	*rest = NULL;
	if ((r = hsm_read_file(path, SVID_MAX_PEM_FILE, &buf, &len)) != 0)
		return r;
	r = HSM_ENOMEM;
	if ((b = BIO_new_mem_buf(buf, (int)len)) == NULL || (*rest = sk_X509_new_null()) == NULL)
		goto out;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (*leaf == NULL)
			*leaf = x;
		else if (!sk_X509_push(*rest, x)) {
			X509_free(x);
			goto out;
		}
	}
	ERR_clear_error();
	if (*leaf == NULL) {
		r = hsm_err(HSM_EINVAL, "%s: no PEM certificate", path);
		goto out;
	}
	r = 0;
 out:
	if (r != 0) {
		X509_free(*leaf);
		svid_certs_free(*rest);
		*leaf = NULL;
		*rest = NULL;
	}
	BIO_free(b);
	free(buf);
	return r;
}

/* Exactly one URI SAN, equal to id. */
static int
check_uri_san(X509 *leaf, const char *id)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	size_t idlen = strlen(id);
	int nuri = 0, match = 0;

	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

		if (g->type != GEN_URI)
			continue;
		nuri++;
		if ((size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier) == idlen &&
		    memcmp(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier), id, idlen) == 0)
			match = 1;
	}
	GENERAL_NAMES_free(sans);
	ERR_clear_error();
	if (nuri != 1 || !match)
		return hsm_err(HSM_EPOLICY, "certificate does not carry exactly the URI SAN %s "
		    "(%d URI SANs)", id, nuri);
	return 0;
}

int
svid_verify(X509 *root, const char *id, X509 *leaf, STACK_OF(X509) *untrusted,
    const uint8_t *spki, size_t spkilen, STACK_OF(X509) **chain)
{
	return svid_verify_anchors(root, NULL, id, leaf, untrusted, spki, spkilen, chain);
}

int
svid_verify_anchors(X509 *root, STACK_OF(X509) *more, const char *id, X509 *leaf,
    STACK_OF(X509) *untrusted, const uint8_t *spki, size_t spkilen, STACK_OF(X509) **chain)
{
	X509_STORE *store = NULL;
	X509_STORE_CTX *sc = NULL;
	STACK_OF(X509) *full = NULL;
	uint8_t *got = NULL;
	size_t gotlen;
	int r;

	if (chain != NULL)
		*chain = NULL;
	if ((r = svid_cert_spki(leaf, &got, &gotlen)) != 0)
		goto out;
	if (gotlen != spkilen || memcmp(got, spki, spkilen) != 0) {
		r = hsm_err(HSM_EPOLICY, "certificate does not certify our key");
		goto out;
	}
	if ((r = check_uri_san(leaf, id)) != 0)
		goto out;
	if (X509_check_ca(leaf) != 0) {
		r = hsm_err(HSM_EPOLICY, "certificate is a CA certificate");
		goto out;
	}
	r = HSM_ENOMEM;
	if ((store = X509_STORE_new()) == NULL || (sc = X509_STORE_CTX_new()) == NULL)
		goto out;
	for (int i = 0; more != NULL && i < sk_X509_num(more); i++)
		if (X509_STORE_add_cert(store, sk_X509_value(more, i)) != 1) {
			r = hsm_err_ossl(HSM_ECRYPTO, "certificate verification set-up");
			goto out;
		}
	if (X509_STORE_add_cert(store, root) != 1 ||
	    X509_STORE_CTX_init(sc, store, leaf, untrusted) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "certificate verification set-up");
		goto out;
	}
	X509_STORE_CTX_set_flags(sc, X509_V_FLAG_X509_STRICT);
	if (X509_verify_cert(sc) != 1) {
		r = hsm_err(HSM_EPOLICY, "certificate does not chain to the root: %s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
		ERR_clear_error();
		goto out;
	}
	if (chain != NULL) {
		r = HSM_ENOMEM;
		if ((full = X509_STORE_CTX_get1_chain(sc)) == NULL)
			goto out;
		/* Drop the leaf (first) and the root (last). */
		X509_free(sk_X509_shift(full));
		if (sk_X509_num(full) > 0)
			X509_free(sk_X509_pop(full));
		*chain = full;
		full = NULL;
	}
	r = 0;
 out:
	svid_certs_free(full);
	X509_STORE_CTX_free(sc);
	X509_STORE_free(store);
	free(got);
	return r;
}
