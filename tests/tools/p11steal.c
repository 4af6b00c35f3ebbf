/*
 * p11steal.c - a TEST tool playing someone who holds the user PIN of a CA
 * token and wants the CA key out of it (tests/integration/t_ca_replicate.sh):
 * straight through the PKCS#11 module, not through hsmesh, it makes an AES
 * key of its own (the user cannot mark it trusted) and asks the token to
 * wrap the private key with it. Never part of the hsmesh binary; the
 * product's PKCS#11 calls are all in src/lib/p11.c.
 *
 *   p11steal MODULE TOKEN_LABEL PIN_FILE KEYID_HEX
 *
 * Prints one line, "refused CKR_..." or "wrapped N bytes", and exits 0
 * when the token refused, 1 when the key came out (wrapped), 2 on bad use
 * or any other failure.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "util.h"

int
main(int argc, char **argv)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slots[16];
	CK_ULONG ns = 16, n = 0, klen = 32, wl;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE aes, priv;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 }, kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	unsigned char id[32], out[4096];
	char pin[256];
	FILE *pf;
	void *dl;
	CK_RV rv;

	if (argc != 5 || strlen(argv[4]) != 2 * sizeof(id) ||
	    hsm_unhex(argv[4], 2 * sizeof(id), id) != 0) {
		fprintf(stderr, "usage: p11steal MODULE TOKEN_LABEL PIN_FILE KEYID_HEX\n");
		return 2;
	}
	if ((pf = fopen(argv[3], "r")) == NULL || fgets(pin, sizeof(pin), pf) == NULL)
		return 2;
	fclose(pf);
	pin[strcspn(pin, "\r\n")] = '\0';
	if ((dl = dlopen(argv[1], RTLD_NOW)) == NULL ||
	    (gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
	    gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK ||
	    f->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK)
		return 2;
	for (CK_ULONG i = 0; i < ns && s == CK_INVALID_HANDLE; i++) {
		CK_TOKEN_INFO ti;
		char label[33];

		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(label, ti.label, 32);
		label[32] = '\0';
		for (int k = 31; k >= 0 && label[k] == ' '; k--)
			label[k] = '\0';
		if (strcmp(label, argv[2]) == 0 &&
		    f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK)
			return 2;
	}
	if (s == CK_INVALID_HANDLE ||
	    f->C_Login(s, CKU_USER, (unsigned char *)pin, (CK_ULONG)strlen(pin)) != CKR_OK)
		return 2;
	{
		CK_ATTRIBUTE ft[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_ID, id, sizeof(id) } };
		CK_ATTRIBUTE at[] = {
			{ CKA_TOKEN, &no, sizeof(no) }, { CKA_VALUE_LEN, &klen, sizeof(klen) },
			{ CKA_WRAP, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &yes, sizeof(yes) },
		};

		if (f->C_FindObjectsInit(s, ft, 2) != CKR_OK || f->C_FindObjects(s, &priv, 1, &n) != CKR_OK ||
		    f->C_FindObjectsFinal(s) != CKR_OK || n != 1 ||
		    f->C_GenerateKey(s, &gen, at, 4, &aes) != CKR_OK)
			return 2;
	}
	wl = sizeof(out);
	rv = f->C_WrapKey(s, &kwp, aes, priv, out, &wl);
	if (rv == CKR_OK) {
		printf("wrapped %lu bytes\n", (unsigned long)wl);
		return 1;
	}
	printf("refused %s\n", rv == CKR_KEY_NOT_WRAPPABLE ? "CKR_KEY_NOT_WRAPPABLE" :
	    rv == CKR_KEY_UNEXTRACTABLE ? "CKR_KEY_UNEXTRACTABLE" : "another CKR");
	return rv == CKR_KEY_NOT_WRAPPABLE || rv == CKR_KEY_UNEXTRACTABLE ? 0 : 2;
}
