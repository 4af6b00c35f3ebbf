/*
 * ledger_entry.c - registration entries in the ledger (see ledger.h):
 * their validation and the rules that keep entries and certificates
 * consistent across replicas.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "cert.h"
#include "err.h"
#include "ledger.h"
#include "ledger_be.h"
#include "log.h"
#include "nfprofile.h"
#include "proxyconf.h"
#include "selector.h"
#include "spiffe.h"
#include "util.h"
#include "ledger_int.h"

/* ---- registration entries ---- */

/* An entry's ID: exactly LEDGER_ENTRY_ID_LEN hex digits, stored lower-case. */
static int
entry_id_arg(const char *in, char out[LEDGER_ENTRY_ID_LEN + 1])
{
	if (ledgeri_norm_hex(in, LEDGER_ENTRY_ID_LEN, LEDGER_ENTRY_ID_LEN, out, LEDGER_ENTRY_ID_LEN + 1) != 0)
		return hsm_err(HSM_EINVAL, "ledger: an entry ID is %d hex digits",
		    LEDGER_ENTRY_ID_LEN);
	return 0;
}

/* A SPIFFE ID with a path (what a workload or a node is called). */
static int
check_path_id(const char *id, const char *what)
{
	struct spiffe_id sid;
	int r;

	if (id == NULL || id[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: missing %s", what);
	if ((r = spiffe_id_parse(id, &sid)) != 0)
		return r;
	if (sid.path[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: the %s %s has no path", what, id);
	return 0;
}

/* selectors: 1..SEL_SET_MAX selectors, one a line, each valid (selector.h). */
static int
check_selectors(const char *text)
{
	char line[SEL_TEXT_MAX + 1];
	struct selector sel;
	size_t n = 0;
	int r;

	for (const char *p = text; *p != '\0';) {
		size_t l = strcspn(p, "\n");

		if (l == 0 || l > SEL_TEXT_MAX)
			return hsm_err(HSM_EINVAL, "ledger: an empty or overlong selector line");
		memcpy(line, p, l);
		line[l] = '\0';
		if ((r = sel_parse(line, &sel)) != 0)
			return r;
		sel_clear(&sel);
		if (++n > SEL_SET_MAX)
			return hsm_err(HSM_EINVAL, "ledger: more than %d selectors", SEL_SET_MAX);
		p += l;
		if (*p == '\n' && *++p == '\0')
			return hsm_err(HSM_EINVAL, "ledger: an empty selector line");
	}
	return 0;
}

/* The certificate profile of e: a known one, with its NF fields exactly when it is 3gpp-nf. */
static int
check_profile(const struct ledger_entry *e)
{
	enum cert_profile_kind k;
	int r;

	if ((r = nf_profile_parse(e->profile, 1, &k)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: %s", hsm_err_detail());
	if (k != PROFILE_3GPP_NF) {
		if (e->nf_types[0] != '\0' || e->fqdn[0] != '\0')
			return hsm_err(HSM_EINVAL, "ledger: NF types and an FQDN go with profile %s "
			    "only", NF_PROFILE_NAME);
		return 0;
	}
	if (e->nf_types[0] == '\0' || e->fqdn[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: profile %s needs NF types and an FQDN",
		    NF_PROFILE_NAME);
	if (nf_types_parse(e->nf_types, NULL) != 0 || nf_fqdn_check(e->fqdn, NULL) != 0)
		return hsm_err(HSM_EINVAL, "ledger: %s", hsm_err_detail());
	return 0;
}

/* e's fields, each within its bounds and consistent with the others. */
static int
entry_arg(const struct ledger_entry *e)
{
	int r;

	if (strnlen(e->spiffe_id, sizeof(e->spiffe_id)) == sizeof(e->spiffe_id) ||
	    strnlen(e->node, sizeof(e->node)) == sizeof(e->node) ||
	    strnlen(e->selectors, sizeof(e->selectors)) == sizeof(e->selectors) ||
	    strnlen(e->profile, sizeof(e->profile)) == sizeof(e->profile) ||
	    strnlen(e->nf_types, sizeof(e->nf_types)) == sizeof(e->nf_types) ||
	    strnlen(e->fqdn, sizeof(e->fqdn)) == sizeof(e->fqdn))
		return hsm_err(HSM_EINVAL, "ledger: an entry field is too long");
	if ((r = check_path_id(e->spiffe_id, "workload ID")) != 0 || (r = check_profile(e)) != 0)
		return r;
	if (e->ttl < 0 || e->ttl > CERT_MAX_TTL)
		return hsm_err(HSM_EINVAL, "ledger: entry TTL out of range");
	if (e->self_managed) {
		if (e->node[0] != '\0' || e->selectors[0] != '\0')
			return hsm_err(HSM_EINVAL, "ledger: a self-managed entry names no node and no "
			    "selectors (no agent serves it)");
		return 0;
	}
	if (e->node[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: a node-managed entry names a node or a node "
		    "pattern");
	if ((r = e->node_is_pattern ? spiffe_pattern_check(e->node) :
	    check_path_id(e->node, "node ID")) != 0)
		return r;
	if (!e->node_is_pattern && strcmp(e->node, e->spiffe_id) == 0)
		return hsm_err(HSM_EINVAL, "ledger: a node cannot be its own workload");
	if (e->selectors[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: a node-managed entry needs at least one selector "
		    "(which local processes the agent serves it to)");
	return check_selectors(e->selectors);
}

struct mode_check {
	const struct ledger_entry *e;
	char other[LEDGER_ENTRY_ID_LEN + 1];
};

/* 1 (and m->other set) when x disagrees with m->e on who manages the ID; 2 on its profile. */
static int
mode_conflict(const struct ledger_entry *x, void *arg)
{
	struct mode_check *m = arg;
	const struct ledger_entry *e = m->e;

	if (x->self_managed == e->self_managed && strcmp(x->profile, e->profile) == 0 &&
	    strcmp(x->nf_types, e->nf_types) == 0 && strcmp(x->fqdn, e->fqdn) == 0)
		return 0;
	memcpy(m->other, x->id, sizeof(m->other));
	return x->self_managed != e->self_managed ? 1 : 2;
}

/*
 * ledger_entry_add's transaction. The checks span several IDs, so the
 * body locks each ID it decides on (in one order: two adds never wait
 * on each other in a cycle), as ledger_issue locks the ID it issues:
 * on a store shared by replicas, an entry and a certificate that would
 * contradict each other never both commit.
 */
static int
entry_add_body(struct ledger *lg, void *v)
{
	struct ledger_entry *e = v;
	struct mode_check m = { .e = e };
	unsigned nodes = 0, workloads = 0, named = 0;
	const char *first = e->spiffe_id, *second = NULL;
	int r;

	if (!e->self_managed && !e->node_is_pattern) {
		second = e->node;
		if (strcmp(first, second) > 0) {
			first = e->node;
			second = e->spiffe_id;
		}
	}
	if ((r = lg->ops->id_lock(lg->be, first)) != 0 ||
	    (second != NULL && (r = lg->ops->id_lock(lg->be, second)) != 0))
		return r;
	/* The workload ID is no node's ... */
	if ((r = lg->ops->cert_kinds(lg->be, e->spiffe_id, &nodes, &workloads)) == 0 && nodes > 0)
		r = hsm_err(HSM_EPOLICY, "%s is a node identity (it has node certificates)",
		    e->spiffe_id);
	if (r == 0 && (r = lg->ops->entry_names_node(lg->be, e->spiffe_id)) > 0)
		r = hsm_err(HSM_EPOLICY, "%s is named as a node by another entry", e->spiffe_id);
	/* ... the node no workload's ... */
	if (r == 0 && !e->self_managed && !e->node_is_pattern) {
		if ((r = lg->ops->cert_kinds(lg->be, e->node, &nodes, &workloads)) == 0 && workloads > 0)
			r = hsm_err(HSM_EPOLICY, "%s is a workload identity, not a node's", e->node);
		if (r == 0 && (r = lg->ops->entry_list(lg->be, e->node, ledgeri_count_entry, &named)) == 0 &&
		    named > 0)
			r = hsm_err(HSM_EPOLICY, "%s is the ID of a registration entry, not a node",
			    e->node);
	}
	/* ... and every entry of one ID agrees on who manages it. */
	if (r == 0 && (r = lg->ops->entry_list(lg->be, e->spiffe_id, mode_conflict, &m)) == 1)
		r = hsm_err(HSM_EPOLICY, "%s is %s by entry %s", e->spiffe_id,
		    e->self_managed ? "node-managed" : "self-managed", m.other);
	else if (r == 2)
		r = hsm_err(HSM_EPOLICY, "entry %s of %s has another certificate profile (profile, "
		    "NF types, FQDN): all entries of one ID agree on it", m.other, e->spiffe_id);
	if (r == 0)
		r = lg->ops->entry_insert(lg->be, e);
	return r;
}

int
ledger_entry_add(struct ledger *lg, struct ledger_entry *e)
{
	uint8_t rnd[LEDGER_ENTRY_ID_LEN / 2];
	int r;

	if ((r = entry_arg(e)) != 0)
		return r;
	if (e->id[0] == '\0') {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return hsm_err(HSM_EIO, "ledger: no random bytes for an entry ID");
		hsm_hex(rnd, sizeof(rnd), e->id);
	} else if ((r = entry_id_arg(e->id, e->id)) != 0) {
		return r;
	}
	e->created = (int64_t)time(NULL);
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = ledgeri_in_txn(lg, "add entry", entry_add_body, e);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_entry_get(struct ledger *lg, const char *id, struct ledger_entry *out)
{
	char hex[LEDGER_ENTRY_ID_LEN + 1];
	int r;

	memset(out, 0, sizeof(*out));
	if (id == NULL || (r = entry_id_arg(id, hex)) != 0)
		return id == NULL ? hsm_err(HSM_EINVAL, "ledger: missing entry ID") : r;
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->entry_get(lg->be, hex, out);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_entry_rm(struct ledger *lg, const char *id)
{
	char hex[LEDGER_ENTRY_ID_LEN + 1];
	int r;

	if (id == NULL || (r = entry_id_arg(id, hex)) != 0)
		return id == NULL ? hsm_err(HSM_EINVAL, "ledger: missing entry ID") : r;
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	if ((r = lg->ops->entry_delete(lg->be, hex)) == 0)
		r = hsm_err(HSM_ENOENT, "no registration entry %s", hex);
	else if (r == 1)
		r = 0;
	ledgeri_unlock(lg);
	return r;
}

int
ledger_entry_list(struct ledger *lg, const char *spiffe_id, ledger_entry_cb cb, void *arg)
{
	int r;

	if (cb == NULL)
		return hsm_err(HSM_EINVAL, "ledger: list: missing callback");
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->entry_list(lg->be, spiffe_id, cb, arg);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_entry_covers(const struct ledger_entry *e, const char *node_id)
{
	if (e->self_managed || node_id == NULL)
		return 0;
	return e->node_is_pattern ? spiffe_pattern_match(e->node, node_id) :
	    strcmp(e->node, node_id) == 0;
}
