/*
 * token_backend.h - the PKCS#11 token the unit tests run against.
 *
 * SoftHSM2 by default, with its store in a temporary directory. With
 * HSMESH_TOKEN_BACKEND=tpm (set by tpm_run in tests/integration/tpm.sh,
 * which also starts swtpm and tpm2-abrmd and exports TPM2_PKCS11_STORE),
 * tpm2-pkcs11 on the software TPM. Tokens get user PIN 1234, SO PIN 5678.
 */
#ifndef HSM_TEST_TOKEN_BACKEND_H
#define HSM_TEST_TOKEN_BACKEND_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TB_SOFTHSM_MODULE	"/usr/lib/softhsm/libsofthsm2.so"
#define TB_TPM_MODULE		"/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so"

static inline bool
tb_tpm(void)
{
	const char *b = getenv("HSMESH_TOKEN_BACKEND");

	return b != NULL && strcmp(b, "tpm") == 0;
}

static inline const char *
tb_module(void)
{
	return tb_tpm() ? TB_TPM_MODULE : TB_SOFTHSM_MODULE;
}

/* Make the backend's store ready under dir (SoftHSM2: dir/tokens and a config). */
static inline int
tb_setup(const char *dir)
{
	char conf[256], tokdir[256];
	FILE *f;

	if (tb_tpm())
		return getenv("TPM2_PKCS11_STORE") != NULL ? 0 : -1;
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
	snprintf(tokdir, sizeof(tokdir), "%s/tokens", dir);
	if (mkdir(tokdir, 0700) != 0 || (f = fopen(conf, "w")) == NULL)
		return -1;
	fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
	    tokdir);
	if (fclose(f) != 0)
		return -1;
	return setenv("SOFTHSM2_CONF", conf, 1);
}

/* A fresh token labelled label (no quote characters). */
static inline int
tb_new_token(const char *label)
{
	char cmd[512];

	if (tb_tpm())
		snprintf(cmd, sizeof(cmd), "tpm2_ptool addtoken --pid=1 --label='%s' "
		    "--userpin=1234 --sopin=5678 --path=\"$TPM2_PKCS11_STORE\" >/dev/null", label);
	else
		snprintf(cmd, sizeof(cmd), "softhsm2-util --init-token --free --label '%s' "
		    "--pin 1234 --so-pin 5678 >/dev/null", label);
	return system(cmd) == 0 ? 0 : -1;
}

#endif
