/* fuzz_spiffe.c - the SPIFFE ID parser: any bytes, never a crash, and what it accepts is sane. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "spiffe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spiffe_id id;
	char *s, again[SPIFFE_ID_MAX + 1];
	size_t tl, pl;

	/* The parser takes a C string: give it one of exactly this size. */
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (spiffe_id_parse(s, &id) == 0) {
		tl = strnlen(id.trust_domain, sizeof(id.trust_domain));
		pl = strnlen(id.path, sizeof(id.path));
		/* Bounded, NUL-terminated, and the parts put back together are the input. */
		if (tl == 0 || tl > SPIFFE_TD_MAX || pl > SPIFFE_ID_MAX || strlen(s) > SPIFFE_ID_MAX)
			abort();
		if (strlen(SPIFFE_SCHEME) + tl + pl != strlen(s))
			abort();
		memcpy(again, SPIFFE_SCHEME, strlen(SPIFFE_SCHEME));
		memcpy(again + strlen(SPIFFE_SCHEME), id.trust_domain, tl);
		memcpy(again + strlen(SPIFFE_SCHEME) + tl, id.path, pl + 1);
		if (strcmp(again, s) != 0)
			abort();
		/* The path is clean: no empty, "." or ".." segment, no trailing slash. */
		if (pl > 0 && (id.path[0] != '/' || id.path[pl - 1] == '/' ||
		    strstr(id.path, "//") != NULL || strstr(id.path, "/./") != NULL ||
		    strstr(id.path, "/../") != NULL || strcmp(id.path + pl - 2, "/.") == 0 ||
		    (pl >= 3 && strcmp(id.path + pl - 3, "/..") == 0)))
			abort();
		if (spiffe_td_check(id.trust_domain) != 0)
			abort();
		(void)spiffe_id_check_domain(s, id.trust_domain);
	} else if (strchr(hsm_err_detail(), '\n') != NULL) {
		abort();	/* details are one line, whatever the input held */
	}
	(void)spiffe_td_check(s);
	free(s);
	return 0;
}
