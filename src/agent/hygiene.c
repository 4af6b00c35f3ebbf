/*
 * hygiene.c - the agent's token hygiene at start (docs/AGENT.md, "Keys in
 * the token"): keys of the agent's own label schemes that no state file
 * references are orphans of an interrupted enrollment or a crash, and are
 * destroyed, one log line each. Keys of another label, and keys without a
 * label, are another program's and are never touched.
 *
 * A key is referenced when a certificate in a *.pem file of the state
 * directory, or of one of its subdirectories, certifies it (its key id,
 * SHA-256 of the SubjectPublicKeyInfo): the workloads' cert.pem, and any
 * other identity the agent keeps there. At start nothing is in flight (a
 * key generated for an attempt is never written down), so a key nobody
 * references can only be an orphan. When a state file cannot be read the
 * clean-up is skipped (logged): a key is only ever destroyed for certain.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"
#include "cert.h"
#include "err.h"
#include "khclient.h"
#include "log.h"
#include "svid.h"

/* The agent's label schemes: every label it gives a key starts with one of these. */
static const char *const own_prefixes[] = {
	"hsmesh-wl-",		/* workload keys: hsmesh-wl-<8 hex of SHA-256(ID)> */
	"hsmesh-node-",		/* the node's own identity */
	NULL
};

struct refs {
	uint8_t (*id)[HSM_KEYID_LEN];
	size_t n, cap;
};

static int
refs_add(struct refs *r, const uint8_t id[HSM_KEYID_LEN])
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		uint8_t (*nid)[HSM_KEYID_LEN] = realloc(r->id, cap * sizeof(*nid));

		if (nid == NULL)
			return HSM_ENOMEM;
		r->id = nid;
		r->cap = cap;
	}
	memcpy(r->id[r->n++], id, HSM_KEYID_LEN);
	return 0;
}

static int
refs_has(const struct refs *r, const uint8_t id[HSM_KEYID_LEN])
{
	for (size_t i = 0; i < r->n; i++)
		if (memcmp(r->id[i], id, HSM_KEYID_LEN) == 0)
			return 1;
	return 0;
}

/* The key ids every certificate of one PEM file names. */
static int
refs_of_file(struct refs *r, const char *path)
{
	X509 *leaf = NULL;
	STACK_OF(X509) *rest = NULL;
	uint8_t id[HSM_KEYID_LEN];
	int st;

	if ((st = svid_load_pem_file(path, &leaf, &rest)) != 0)
		return st;
	if ((st = cert_key_id(leaf, id)) == 0)
		st = refs_add(r, id);
	for (int i = 0; st == 0 && i < sk_X509_num(rest); i++)
		if ((st = cert_key_id(sk_X509_value(rest, i), id)) == 0)
			st = refs_add(r, id);
	X509_free(leaf);
	svid_certs_free(rest);
	return st;
}

/* *.pem files of dir, and (depth > 0) of its subdirectories. */
static int
refs_of_dir(struct refs *r, const char *dir, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int st = 0;

	if (d == NULL)
		return errno == ENOENT ? 0 : hsm_err(HSM_EIO, "%s: %s", dir, strerror(errno));
	while (st == 0 && (e = readdir(d)) != NULL) {
		char path[4096];
		struct stat sb;
		size_t l = strlen(e->d_name);

		if (e->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path)) {
			st = hsm_err(HSM_EINVAL, "path too long in %s", dir);
			break;
		}
		if (stat(path, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode) && depth > 0)
			st = refs_of_dir(r, path, depth - 1);
		else if (S_ISREG(sb.st_mode) && l > 4 && strcmp(e->d_name + l - 4, ".pem") == 0 &&
		    (st = refs_of_file(r, path)) != 0) {
			char why[300];

			snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
			st = hsm_err(st, "%s: %s", path, why);
		}
	}
	closedir(d);
	return st;
}

struct sweep {
	struct agent *ag;
	const struct refs *refs;
	uint8_t (*doomed)[HSM_KEYID_LEN];
	char (*labels)[HSM_MAX_LABEL + 1];
	size_t n, cap;
};

static int
note_orphan(void *arg, const uint8_t keyid[HSM_KEYID_LEN], const char *label)
{
	struct sweep *sw = arg;

	if (refs_has(sw->refs, keyid))
		return 0;
	if (sw->n == sw->cap) {
		size_t cap = sw->cap ? sw->cap * 2 : 8;
		uint8_t (*d)[HSM_KEYID_LEN] = realloc(sw->doomed, cap * sizeof(*d));
		char (*l)[HSM_MAX_LABEL + 1];

		if (d == NULL)
			return HSM_ENOMEM;
		sw->doomed = d;
		if ((l = realloc(sw->labels, cap * sizeof(*l))) == NULL)
			return HSM_ENOMEM;
		sw->labels = l;
		sw->cap = cap;
	}
	memcpy(sw->doomed[sw->n], keyid, HSM_KEYID_LEN);
	snprintf(sw->labels[sw->n], sizeof(sw->labels[0]), "%s", label);
	sw->n++;
	return 0;
}

void
agent_token_hygiene(struct agent *ag)
{
	struct refs refs = { NULL, 0, 0 };
	struct sweep sw;
	char hex[AGENT_KEYID_HEX];
	size_t removed = 0;
	int st;

	memset(&sw, 0, sizeof(sw));
	sw.ag = ag;
	sw.refs = &refs;
	if ((st = refs_of_dir(&refs, ag->conf->state_dir, 1)) != 0) {
		log_warn("not removing unreferenced keys from the token: cannot read the state: %s",
		    hsm_err_msg(st));
		goto out;
	}
	/* First list (the listing pages by key id), then destroy. */
	for (size_t p = 0; own_prefixes[p] != NULL; p++) {
		if ((st = kh_list(ag->kh, own_prefixes[p], 0, note_orphan, &sw)) != 0) {
			log_warn("not removing unreferenced keys from the token: cannot list keys "
			    "labelled %s*: %s", own_prefixes[p], hsm_err_msg(st));
			goto out;
		}
	}
	for (size_t i = 0; i < sw.n; i++) {
		if ((st = kh_destroy(ag->kh, sw.doomed[i], 0)) != 0) {
			log_warn("cannot remove unreferenced key %s (label %s): %s",
			    agent_keyid_hex(sw.doomed[i], hex), sw.labels[i], hsm_err_msg(st));
			continue;
		}
		removed++;
		log_info("removed unreferenced key %s (label %s) from the token: no certificate in %s "
		    "names it", agent_keyid_hex(sw.doomed[i], hex), sw.labels[i], ag->conf->state_dir);
	}
	if (removed > 0)
		log_info("token hygiene: %zu unreferenced key%s removed", removed, removed == 1 ? "" : "s");
out:
	free(refs.id);
	free(sw.doomed);
	free(sw.labels);
}
