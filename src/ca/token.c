/*
 * token.c - join tokens: `hsmesh ca token` (one token on stdout), the key
 * that derives their secrets, and the derivation the CMP server repeats
 * to check a request's MAC (docs/PROTOCOL.md, "Join tokens").
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "err.h"
#include "ledger.h"
#include "spiffe.h"
#include "util.h"

#define TOKEN_TTL_MAX (30 * 86400)

void
ca_token_secret(const uint8_t key[32], const char *ref, char secret[CA_TOKEN_SECRET_LEN + 1])
{
	uint8_t mac[32];
	unsigned int len = sizeof(mac);
	char hex[65];

	HMAC(EVP_sha256(), key, 32, (const unsigned char *)ref, strlen(ref), mac, &len);
	hsm_hex(mac, CA_TOKEN_SECRET_LEN / 2, hex);
	memcpy(secret, hex, CA_TOKEN_SECRET_LEN + 1);
	OPENSSL_cleanse(mac, sizeof(mac));
	OPENSSL_cleanse(hex, sizeof(hex));
}

/*
 * Create path with 32 fresh random bytes unless it exists. Replicas
 * starting at once on one state directory may race here: the file is
 * linked into place, never renamed over, so the first key wins and every
 * process reads that one.
 */
static int
token_key_create(const char *path)
{
	char tmp[PATH_MAX];
	uint8_t fresh[32];
	int r, n = snprintf(tmp, sizeof(tmp), "%s.new.%d", path, (int)getpid());

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return hsm_err(HSM_EINVAL, "path too long: %s", path);
	if (RAND_bytes(fresh, sizeof(fresh)) != 1)
		return hsm_err_ossl(HSM_ECRYPTO, "RAND_bytes");
	r = hsm_write_file_atomic(tmp, fresh, sizeof(fresh), 0600);
	OPENSSL_cleanse(fresh, sizeof(fresh));
	if (r != 0)
		return r;
	if (link(tmp, path) != 0 && errno != EEXIST)
		r = hsm_err(HSM_EIO, "cannot create %s: %s", path, strerror(errno));
	unlink(tmp);
	return r;
}

int
ca_token_key_load(const struct ca_config *cfg, int create, uint8_t key[32])
{
	char path[PATH_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	if ((r = ca_path(cfg->state_dir, CA_TOKEN_KEY_FILE, path, sizeof(path))) != 0)
		return r;
	r = hsm_read_file(path, 64, &buf, &len);
	if (r == HSM_ENOENT && create) {
		if ((r = token_key_create(path)) != 0)
			return r;
		r = hsm_read_file(path, 64, &buf, &len);
	}
	if (r == HSM_ENOENT)
		return hsm_err(HSM_ENOENT, "%s is missing: no join token was ever made", path);
	if (r != 0)
		return r;
	if (len != 32) {
		OPENSSL_clear_free(buf, len);
		return hsm_err(HSM_ECONFIG, "%s must hold exactly 32 bytes", path);
	}
	memcpy(key, buf, 32);
	OPENSSL_clear_free(buf, len);
	return 0;
}

/* What the entries say of an ID a token is asked for (token_check). */
struct token_scan {
	const char *id;
	char managed_by[LEDGER_ENTRY_ID_LEN + 1];	/* a node-managed entry of id */
	char node_of[LEDGER_ENTRY_ID_LEN + 1];		/* an entry naming id as its node */
	char entry_of[LEDGER_ENTRY_ID_LEN + 1];		/* any entry of id */
};

static int
token_scan_one(const struct ledger_entry *e, void *arg)
{
	struct token_scan *ts = arg;

	if (strcmp(e->spiffe_id, ts->id) == 0) {
		memcpy(ts->entry_of, e->id, sizeof(ts->entry_of));
		if (!e->self_managed)
			memcpy(ts->managed_by, e->id, sizeof(ts->managed_by));
	}
	if (!e->self_managed && !e->node_is_pattern && strcmp(e->node, ts->id) == 0)
		memcpy(ts->node_of, e->id, sizeof(ts->node_of));
	return 0;
}

/*
 * A node token enrolls a node, a workload token a workload, and the two
 * never share an ID (ledger.h). A workload token is also pointless for an
 * ID that entries leave to nodes: the CA would refuse it. 0 or the refusal.
 */
static int
token_check(struct ledger *lg, const char *id, int node)
{
	struct token_scan ts = { .id = id };
	unsigned nodes = 0, workloads = 0;
	int r;

	if ((r = ledger_id_kinds(lg, id, &nodes, &workloads)) != 0 ||
	    (r = ledger_entry_list(lg, NULL, token_scan_one, &ts)) != 0)
		return r;
	if (node && workloads > 0)
		return hsm_err(HSM_EPOLICY, "%s is a workload identity (it has workload "
		    "certificates): a node token cannot enroll it", id);
	if (node && ts.entry_of[0] != '\0')
		return hsm_err(HSM_EPOLICY, "%s is the ID of registration entry %s: a workload "
		    "identity, not a node's", id, ts.entry_of);
	if (!node && (nodes > 0 || ts.node_of[0] != '\0'))
		return hsm_err(HSM_EPOLICY, "%s is a node identity: its join token needs --node", id);
	if (!node && ts.managed_by[0] != '\0')
		return hsm_err(HSM_EPOLICY, "%s is node-managed (registration entry %s): the agent of "
		    "an authorised node enrolls it, no join token is needed", id, ts.managed_by);
	return 0;
}

int
ca_cmd_token(const char *cfgpath, const char *id, const char *ttl_text, int node)
{
	struct ca_config *cfg = NULL;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	uint8_t key[32], rnd[8], h[32];
	char ref[17], secret[CA_TOKEN_SECRET_LEN + 1], why[512], exp[32];
	int64_t ttl = 3600;
	int r;

	if ((r = ca_config_load(cfgpath, &cfg)) != 0)
		goto out;
	if (ttl_text != NULL && (r = hsm_parse_duration(ttl_text, &ttl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = hsm_err(HSM_EINVAL, "--ttl: %s", why);
		goto out;
	}
	if (ttl > TOKEN_TTL_MAX) {
		r = hsm_err(HSM_EPOLICY, "a join token may live at most 30d");
		goto out;
	}
	if ((r = spiffe_id_check_domain(id, cfg->trust_domain)) != 0 ||
	    (r = hsm_mkdir_p(cfg->state_dir, 0700)) != 0 ||
	    (r = ca_records_open(cfg, &lg, &au)) != 0 ||
	    (r = token_check(lg, id, node)) != 0 ||
	    (r = ca_token_key_load(cfg, 1, key)) != 0)
		goto out;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "RAND_bytes");
		goto out;
	}
	hsm_hex(rnd, sizeof(rnd), ref);
	ca_token_secret(key, ref, secret);
	SHA256((const unsigned char *)secret, strlen(secret), h);
	if ((r = ledger_token_add_kind(lg, ref, h, id, (int64_t)time(NULL) + ttl,
	    node ? LEDGER_NODE : LEDGER_WORKLOAD)) != 0)
		goto out;
	snprintf(exp, sizeof(exp), "%lld", (long long)((int64_t)time(NULL) + ttl));
	audit_event(au, "token", "id", id, "token", ref, "expires", exp, "kind",
	    node ? "node" : NULL, NULL);
	printf("%s:%s\n", ref, secret);
	if (fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(secret, sizeof(secret));
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("token", r);
}
