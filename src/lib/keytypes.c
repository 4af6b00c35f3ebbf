/* keytypes.c - names of key types and signature algorithms. */
#include <string.h>

#include "err.h"
#include "keytypes.h"

int
hsm_keytype_parse(const char *s, enum hsm_keytype *out)
{
	static const struct { const char *name; enum hsm_keytype kt; } tab[] = {
		{ "ec-p256", HSM_KEY_EC_P256 }, { "p256", HSM_KEY_EC_P256 },
		{ "ecdsa-p256", HSM_KEY_EC_P256 }, { "ec-p384", HSM_KEY_EC_P384 },
		{ "p384", HSM_KEY_EC_P384 }, { "ecdsa-p384", HSM_KEY_EC_P384 },
		{ "rsa-3072", HSM_KEY_RSA_3072 }, { "rsa3072", HSM_KEY_RSA_3072 },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (strcmp(s, tab[i].name) == 0) {
			*out = tab[i].kt;
			return 0;
		}
	}
	return hsm_err(HSM_EINVAL, "unknown key type '%s' (use ec-p256, ec-p384 or rsa-3072)", s);
}

const char *
hsm_keytype_name(int kt)
{
	switch (kt) {
	case HSM_KEY_EC_P256: return "ec-p256";
	case HSM_KEY_EC_P384: return "ec-p384";
	case HSM_KEY_RSA_3072: return "rsa-3072";
	default: return "unknown";
	}
}

int
hsm_sigalg_digest_len(int alg)
{
	switch (alg) {
	case HSM_SIG_ECDSA: return 0;
	case HSM_SIG_RSA_PKCS1_SHA256: case HSM_SIG_RSA_PSS_SHA256: return 32;
	case HSM_SIG_RSA_PKCS1_SHA384: case HSM_SIG_RSA_PSS_SHA384: return 48;
	case HSM_SIG_RSA_PKCS1_SHA512: case HSM_SIG_RSA_PSS_SHA512: return 64;
	default: return -1;
	}
}
