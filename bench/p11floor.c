/*
 * p11floor.c - the memory floor of a process holding a PKCS#11 token
 * session (make bench), the keyholder's counterpart of sslfloor.c.
 *
 *   p11floor MODULE LABEL PIN_FILE
 *
 * Initialises libcrypto (its default provider fetched, as any user of it
 * does), loads MODULE, initialises it, opens a read-write session on the
 * token labelled LABEL and logs in with the PIN in PIN_FILE (first line),
 * then prints "ready" and waits for a signal to end it. No key is
 * touched, no request served. bench/run.sh reads its VmRSS, PSS and
 * private memory meanwhile: the least a process that keeps a token session
 * open with this module maps (SoftHSM2 links libcrypto and libstdc++
 * itself), before hsmesh's keyholder does any work.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

int
main(int argc, char **argv)
{
	CK_C_GetFunctionList get;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slots[16];
	CK_ULONG nslots = 16;
	CK_SESSION_HANDLE s;
	CK_TOKEN_INFO ti;
	CK_ULONG i;
	char label[sizeof(ti.label) + 1];
	char pin[256] = "";
	EVP_MD *md;
	FILE *pf;
	void *h;

	if (argc != 4) {
		fprintf(stderr, "usage: p11floor MODULE LABEL PIN_FILE\n");
		return 2;
	}
	if ((pf = fopen(argv[3], "r")) == NULL || fgets(pin, sizeof(pin), pf) == NULL) {
		fprintf(stderr, "p11floor: cannot read %s\n", argv[3]);
		return 1;
	}
	fclose(pf);
	pin[strcspn(pin, "\r\n")] = '\0';
	if (OPENSSL_init_crypto(0, NULL) != 1 || (md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
		fprintf(stderr, "p11floor: cannot initialise libcrypto\n");
		return 1;
	}
	EVP_MD_free(md);
	if ((h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL ||
	    (get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList")) == NULL ||
	    get(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK ||
	    f->C_GetSlotList(CK_TRUE, slots, &nslots) != CKR_OK) {
		fprintf(stderr, "p11floor: cannot initialise %s\n", argv[1]);
		return 1;
	}
	for (i = 0; i < nslots; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(label, ti.label, sizeof(ti.label));
		label[sizeof(ti.label)] = '\0';
		for (size_t e = sizeof(ti.label); e > 0 && label[e - 1] == ' '; e--)
			label[e - 1] = '\0';
		if (strcmp(label, argv[2]) == 0)
			break;
	}
	if (i == nslots ||
	    f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK ||
	    f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK) {
		fprintf(stderr, "p11floor: cannot open a logged-in session on token %s\n", argv[2]);
		return 1;
	}
	OPENSSL_cleanse(pin, sizeof(pin));
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
