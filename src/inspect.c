/*
 * inspect.c - `hsmesh inspect FILE`: print certificates and certificate
 * requests (PEM or DER) readably. Reads untrusted files: everything it
 * prints goes through cert_inspect(), which escapes what it quotes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cert.h"
#include "cmds.h"
#include "err.h"
#include "util.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh inspect FILE\n"
	    "\n"
	    "Print the certificates (a PEM bundle or one DER certificate) or the PKCS#10\n"
	    "certificate request in FILE ('-' for standard input): subject, issuer,\n"
	    "serial, SPIFFE IDs, key type and key id (SHA-256 of the public key), validity,\n"
	    "CA flag, key usages and whether a self-signature verifies.\n");
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

int
inspect_main(int argc, char **argv)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	const char *file;
	int r;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0')) {
		if (argc >= 2 && argv[1][0] == '-' && argv[1][1] != '\0')
			fprintf(stderr, "hsmesh inspect: unknown option '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	file = argv[1];
	if (strcmp(file, "-") == 0)
		r = read_stdin(&buf, &len);
	else
		r = hsm_read_file(file, CERT_MAX_INPUT, &buf, &len);
	if (r != 0) {
		fprintf(stderr, "hsmesh inspect: %s\n", hsm_err_msg(r));
		return 1;
	}
	r = cert_inspect(buf, len, stdout);
	free(buf);
	if (r != 0) {
		fprintf(stderr, "hsmesh inspect: %s: %s\n", file, hsm_err_msg(r));
		return 1;
	}
	return 0;
}
