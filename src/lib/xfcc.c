/* xfcc.c - Envoy's x-forwarded-client-cert header (see xfcc.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "err.h"
#include "hmsg.h"
#include "util.h"
#include "xfcc.h"

/* Append "key=value" to out (at *n), quoting value when it needs it. -1 when it may not be written. */
static int
put_pair(char *out, size_t *n, const char *key, const char *v)
{
	size_t i, k = *n;
	int quote = strpbrk(v, ",;=\"") != NULL;

	for (i = 0; v[i] != '\0'; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f || v[i] == '\\')
			return -1;
	if (k > 0)
		out[k++] = ';';
	memcpy(out + k, key, strlen(key));
	k += strlen(key);
	out[k++] = '=';
	if (quote)
		out[k++] = '"';
	for (i = 0; v[i] != '\0'; i++) {
		if (v[i] == '"')
			out[k++] = '\\';
		out[k++] = v[i];
	}
	if (quote)
		out[k++] = '"';
	*n = k;
	return 0;
}

int
xfcc_value(const char *own_id, const uint8_t *der, size_t der_len, const char *peer_id,
    char **out)
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1], *v;
	size_t n = 0, cap;

	*out = NULL;
	if (own_id == NULL || peer_id == NULL || der == NULL || der_len == 0)
		return hsm_err(HSM_EINVAL, "xfcc: an identity or certificate is missing");
	if (EVP_Digest(der, der_len, md, NULL, EVP_sha256(), NULL) != 1)
		return hsm_err_ossl(HSM_ECRYPTO, "xfcc: SHA-256");
	hsm_hex(md, sizeof(md), hex);
	/* every byte may double when escaped, plus keys, quotes and separators */
	cap = 2 * (strlen(own_id) + strlen(peer_id)) + sizeof(hex) + 32;
	if ((v = malloc(cap)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if (put_pair(v, &n, "By", own_id) != 0 || put_pair(v, &n, "Hash", hex) != 0 ||
	    put_pair(v, &n, "URI", peer_id) != 0) {
		free(v);
		return hsm_err(HSM_EINVAL, "xfcc: an identity has a control character or a backslash");
	}
	v[n] = '\0';
	*out = v;
	return 0;
}

int
xfcc_set(struct hmsg *m, const char *value, size_t *removed)
{
	size_t k = hmsg_del(m, XFCC_NAME);

	if (removed != NULL)
		*removed = k;
	return hmsg_add(m, XFCC_NAME, strlen(XFCC_NAME), value, strlen(value));
}

int
xfcc_apply(struct hmsg *m, const char *own_id, const uint8_t *der, size_t der_len,
    const char *peer_id, size_t *removed)
{
	char *v = NULL;
	size_t k;
	int r;

	/* a forged header goes even when ours cannot be made */
	if ((r = xfcc_value(own_id, der, der_len, peer_id, &v)) != 0) {
		k = hmsg_del(m, XFCC_NAME);
		if (removed != NULL)
			*removed = k;
		return r;
	}
	r = xfcc_set(m, v, removed);
	free(v);
	return r;
}

int
xfcc_uri(const char *v, char *out, size_t cap)
{
	const char *k;
	size_t klen, n;
	int want;

	if (cap == 0)
		return hsm_err(HSM_EINVAL, "xfcc: no room");
	out[0] = '\0';
	while (*v != '\0' && *v != ',') {
		while (*v == ' ' || *v == '\t')
			v++;
		for (k = v; *v != '=' && *v != ';' && *v != ',' && *v != '\0'; v++)
			if ((unsigned char)*v < 0x20 || *v == 0x7f || *v == '"')
				return hsm_err(HSM_EPROTO, "xfcc: bad character in a key");
		if (*v != '=')
			return hsm_err(HSM_EPROTO, "xfcc: a pair without '='");
		klen = (size_t)(v - k);
		want = klen == 3 && (k[0] == 'U' || k[0] == 'u') && (k[1] == 'R' || k[1] == 'r') &&
		    (k[2] == 'I' || k[2] == 'i');
		v++;
		n = 0;
		if (*v == '"') {
			for (v++; *v != '"'; v++) {
				if (*v == '\\' && v[1] != '\0')
					v++;
				if (*v == '\0' || (unsigned char)*v < 0x20 || *v == 0x7f)
					return hsm_err(HSM_EPROTO, "xfcc: unterminated quoted value");
				if (want && n + 1 >= cap)
					return hsm_err(HSM_EINVAL, "xfcc: value too long");
				if (want)
					out[n++] = *v;
			}
			v++;
		} else {
			for (; *v != ';' && *v != ',' && *v != '\0'; v++) {
				if ((unsigned char)*v < 0x20 || *v == 0x7f || *v == '"')
					return hsm_err(HSM_EPROTO, "xfcc: bad character in a value");
				if (want && n + 1 >= cap)
					return hsm_err(HSM_EINVAL, "xfcc: value too long");
				if (want)
					out[n++] = *v;
			}
		}
		if (*v != ';' && *v != ',' && *v != '\0')
			return hsm_err(HSM_EPROTO, "xfcc: text after a quoted value");
		if (want) {
			out[n] = '\0';
			return 0;
		}
		if (*v == ';')
			v++;
	}
	return hsm_err(HSM_ENOENT, "xfcc: no URI");
}
