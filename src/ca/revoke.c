/*
 * revoke.c - `hsmesh ca revoke`: one certificate by serial, or every
 * current certificate of an identity (whose renewals and enrollments are
 * refused from then on).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "err.h"
#include "ledger.h"
#include "spiffe.h"

/* A serial as typed (hex, any case, leading zeros) in the ledger's spelling. */
static int
serial_arg(const char *serial, char low[LEDGER_SERIAL_MAX + 1])
{
	size_t i, l = strlen(serial);

	if (l == 0 || l > LEDGER_SERIAL_MAX || strspn(serial, "0123456789abcdefABCDEF") != l)
		return hsm_err(HSM_EINVAL, "--serial '%s' is not a hex serial number", serial);
	/* Serials are stored without leading zeros, lower case. */
	while (l > 1 && *serial == '0') {
		serial++;
		l--;
	}
	for (i = 0; i <= l; i++)
		low[i] = (char)((serial[i] >= 'A' && serial[i] <= 'F') ? serial[i] - 'A' + 'a' :
		    serial[i]);
	return 0;
}

int
ca_cmd_revoke(const char *cfgpath, const char *serial, const char *id)
{
	char low[LEDGER_SERIAL_MAX + 1], n[16];
	struct ca_config *cfg = NULL;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	unsigned count = 0;
	int r;

	if ((r = ca_config_load(cfgpath, &cfg)) != 0 || (r = ca_records_open(cfg, &lg, &au)) != 0)
		goto out;
	if (serial != NULL) {
		if ((r = serial_arg(serial, low)) != 0)
			goto out;
		if ((r = ledger_cert_revoke(lg, low, 0, (int64_t)time(NULL))) == HSM_ENOENT)
			r = hsm_err(HSM_ENOENT, "no certificate with serial %s in the ledger", low);
		if (r != 0)
			goto out;
		audit_event(au, "revoked", "op", "revoke", "serial", low, NULL);
		printf("revoked certificate %s\n", low);
	} else {
		if ((r = spiffe_id_check_domain(id, cfg->trust_domain)) != 0 ||
		    (r = ledger_revoke_id(lg, id, 0, (int64_t)time(NULL), &count)) != 0)
			goto out;
		snprintf(n, sizeof(n), "%u", count);
		audit_event(au, "revoked", "op", "revoke", "id", id, "count", n, NULL);
		printf("revoked %s: %u current certificate(s); renewals refused from now on\n", id,
		    count);
	}
	if (fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("revoke", r);
}
