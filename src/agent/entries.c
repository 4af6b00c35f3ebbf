/*
 * entries.c - the node's registration entries (agent.h; docs/AGENT.md,
 * "Registration entries"): asked of the CA with a genm the node's
 * certificate signs, at start and then every refresh (node.refresh, else
 * the CA's hint), cached in <state_dir>/node/entries.der for a restart
 * while the CA is away, and applied:
 *
 *   - an entry's identity the agent does not keep yet is set up (reusing
 *     its certificate from the state directory when still good, else
 *     enrolled, node-protected);
 *   - an identity several entries name may be used by a process matching
 *     any one of them (each entry's selectors all together);
 *   - an identity also listed in agent.yaml follows the entries while
 *     they name it (their selectors, node-protected renewal);
 *   - an identity no entry names any more is dropped at once: no longer
 *     served, renewed or cached, its keys destroyed (one listed in
 *     agent.yaml goes back to agent.yaml's terms instead).
 *
 * Only an answer from the CA changes the list: when the CA cannot be
 * reached the identities stay as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "agent.h"
#include "entries.h"
#include "err.h"
#include "evtype.h"
#include "log.h"
#include "renew.h"
#include "svid.h"
#include "util.h"

#define CACHE_FILE "entries.der"

/* <state_dir>/node/entries.der (malloc'd), or NULL. */
static char *
cache_path(const struct agent *ag)
{
	char *p;

	if (ag->node == NULL || asprintf(&p, "%s/%s", ag->node->dir, CACHE_FILE) < 0)
		return NULL;
	return p;
}

/* The selector sets of the entries of id in l (borrowed), into a new array. */
static int
sets_of(const struct entry_list *l, const char *id, struct sel_set **out, size_t *n)
{
	struct sel_set *v;
	size_t k = 0;

	*out = NULL;
	*n = 0;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].spiffe_id, id) == 0)
			k++;
	if ((v = calloc(k, sizeof(*v))) == NULL)
		return HSM_ENOMEM;
	k = 0;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].spiffe_id, id) == 0)
			v[k++] = l->v[i].sel;	/* shallow: wl_sels_set copies */
	*out = v;
	*n = k;
	return 0;
}

/* w's selector sets are exactly sets (in order). */
static int
same_sets(const struct wl *w, const struct sel_set *sets, size_t n)
{
	if (w->nsels != n || w->root_any)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!sel_set_equal(&w->sels[i], &sets[i]))
			return 0;
	return 1;
}

/* One line naming the selector sets (for the log). */
static void
sets_text(const struct sel_set *sets, size_t n, char *buf, size_t cap)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && o + 8 < cap; i++) {
		o += (size_t)snprintf(buf + o, cap - o, "%s[", i > 0 ? " or " : "");
		if (o >= cap)
			break;
		sel_set_text(&sets[i], ", ", buf + o, cap - o);
		o += strlen(buf + o);
		o += (size_t)snprintf(buf + o, cap - o, "]");
	}
}

/*
 * What a list says, whenever the CA said it: SHA-256 of its DER with the
 * issuing time left out. 0 or -1.
 */
static int
content_hash(const struct entry_list *l, uint8_t h[32])
{
	struct entry_list timeless = *l;
	uint8_t *der = NULL;
	size_t len = 0;

	timeless.issued = 0;
	if (entries_encode(&timeless, &der, &len) != 0)
		return -1;
	SHA256(der, len, h);
	OPENSSL_free(der);
	return 0;
}

/* A new identity of this node from its entries: set up, reused from disk or enrolled. */
static void
add_identity(struct agent *ag, const char *id, const struct sel_set *sets, size_t n)
{
	struct agent_workload c = { .id = (char *)id };
	char text[1024];
	struct wl *w = NULL;
	int r;

	if ((r = wl_new(ag, &c, 1, 0, &w)) != 0 || (r = wl_sels_set(w, sets, n)) != 0 ||
	    (r = wl_add(ag, w)) != 0) {
		log_err("%s: cannot keep this identity: %s", id, hsm_err_msg(r));
		wl_free(w);
		return;
	}
	w->node_managed = 1;
	w->mark = 1;
	sets_text(sets, n, text, sizeof(text));
	log_info("%s: registration entry for this node, served to processes matching %s", id,
	    text);
	if (access(w->cert_path, F_OK) == 0) {
		if ((r = wl_try_reuse(ag, w)) == 0) {
			enroll_schedule_renewal(ag, w);
			return;
		}
		log_warn("%s: not reusing %s: %s", id, w->cert_path, hsm_err_msg(r));
	}
	w->next_ms = hsm_now_ms();
}

/* Make the identities served agree with l (see the top of this file). */
static void
apply(struct agent *ag, const struct entry_list *l)
{
	struct sel_set *sets;
	size_t n;
	char text[1024];
	struct wl *w;
	int r;

	for (size_t i = 0; i < ag->nwl; i++)
		ag->wl[i]->mark = 0;
	for (size_t i = 0; i < l->n; i++) {
		const char *id = l->v[i].spiffe_id;

		/* Every entry of an ID is handled with its first. */
		if ((w = wl_find(ag, id)) != NULL && w->mark)
			continue;
		if (strcmp(id, ag->node->c->id) == 0 ||
		    (ag->td[0] != '\0' && spiffe_id_check_domain(id, ag->td) != 0)) {
			log_warn("%s: registration entry %s ignored (the node's own ID, or another "
			    "trust domain)", id, l->v[i].id);
			continue;
		}
		if (sets_of(l, id, &sets, &n) != 0) {
			log_err("%s: out of memory", id);
			continue;
		}
		if (w == NULL) {
			add_identity(ag, id, sets, n);
		} else if (!w->node_managed || !same_sets(w, sets, n)) {
			sets_text(sets, n, text, sizeof(text));
			if ((r = wl_sels_set(w, sets, n)) != 0)
				log_err("%s: %s", id, hsm_err_msg(r));
			else if (!w->node_managed)
				log_info("%s: also a registration entry for this node: the entry applies "
				    "(renewal under the node's certificate; served to processes "
				    "matching %s)", id, text);
			else
				log_info("%s: served to processes matching %s from now on", id, text);
			w->node_managed = 1;
			w->mark = 1;
		} else {
			w->mark = 1;
		}
		free(sets);
	}
	/* Backwards: enroll_drop takes w out of ag->wl. */
	for (size_t i = ag->nwl; i-- > 0;) {
		w = ag->wl[i];
		if (!w->node_managed || w->mark)
			continue;
		if (w->from_conf) {
			w->node_managed = 0;
			if ((r = wl_sels_from_conf(w)) != 0)
				log_err("%s: %s", w->c->id, hsm_err_msg(r));
			log_warn("%s: no registration entry names this node any more; agent.yaml "
			    "lists it: served and renewed as agent.yaml says", w->c->id);
			continue;
		}
		enroll_drop(ag, w);
	}
	ag->entries_known = 1;
}

void
entries_load_cache(struct agent *ag)
{
	struct entry_list *l = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	char *path = cache_path(ag), t[HSM_TIME_STR];
	int r;

	if (path == NULL || access(path, F_OK) != 0) {
		free(path);
		return;
	}
	if ((r = hsm_read_file(path, ENTRIES_DER_MAX, &der, &len)) != 0 ||
	    (r = entries_decode(der, len, &l)) != 0) {
		log_warn("%s: %s (ignored: the CA's answer will do)", path, hsm_err_msg(r));
	} else if (strcmp(l->node, ag->node->c->id) != 0) {
		log_warn("%s: the entries of another node (%s): ignored", path, l->node);
	} else {
		log_info("%zu registration entr%s from %s (the CA's list of %s)", l->n,
		    l->n == 1 ? "y" : "ies", path, hsm_fmt_time(l->issued, t));
		if (content_hash(l, ag->entries_hash) != 0)
			memset(ag->entries_hash, 0, sizeof(ag->entries_hash));
		apply(ag, l);
	}
	entries_free(l);
	free(der);
	free(path);
}

void
entries_job_run(struct job *j)
{
	struct agent *ag = j->ag;
	struct cmpc_protect prot = { .kind = CMPC_SIGNED, .cert = j->nodecert, .key = j->nodekey };
	enum cmpc_outcome how = CMPC_FAILED;
	const char *node = ag->node->c->id;
	int r;

	if ((r = cmpc_genm(&ag->ca, node, &prot, HSM_OID_ENTRIES, &how, &j->entries_der,
	    &j->entries_len, &j->crl_hint)) != 0) {
		j->unreachable = how == CMPC_UNREACHABLE;
	} else if ((r = entries_decode(j->entries_der, j->entries_len, &j->entries)) == 0 &&
	    strcmp(j->entries->node, node) != 0) {
		r = hsm_err(HSM_EPROTO, "the CA sent the entries of another node");
	}
	j->st = r;
	if (r != 0)
		snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
}

void
entries_maybe_fetch(struct agent *ag)
{
	struct job *j;
	int r;

	if (ag->node == NULL || ag->entries_job != NULL || ag->entries_next_ms == 0 ||
	    hsm_now_ms() < ag->entries_next_ms || !wl_valid(ag->node))
		return;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		ag->entries_next_ms = hsm_now_ms() + 1000;
		return;
	}
	j->kind = JOB_ENTRIES;
	j->nodecert = ag->node->cert;
	X509_up_ref(j->nodecert);
	j->nodekey = ag->node->key.pkey;
	EVP_PKEY_up_ref(j->nodekey);
	if ((r = enroll_job_start(ag, j)) != 0) {
		log_err("registration entries: %s", hsm_err_msg(r));
		X509_free(j->nodecert);
		EVP_PKEY_free(j->nodekey);
		free(j);
		ag->entries_next_ms = hsm_now_ms() + 1000;
		return;
	}
	ag->entries_job = j;
	ag->entries_next_ms = 0;
}

/* The list of j, as the CA sent it: applied and cached when it changed. */
static void
entries_got(struct agent *ag, struct job *j)
{
	uint8_t h[32];
	char *path;
	int r;

	/* The same list again: nothing to do. */
	if (content_hash(j->entries, h) == 0 && ag->entries_known &&
	    memcmp(h, ag->entries_hash, 32) == 0)
		return;
	log_info("registration entries from the CA: %zu for this node", j->entries->n);
	memcpy(ag->entries_hash, h, 32);
	apply(ag, j->entries);
	if ((path = cache_path(ag)) != NULL &&
	    (r = hsm_write_file_atomic(path, j->entries_der, j->entries_len, 0644)) != 0)
		log_warn("%s: %s (the entries apply, but a restart without the CA would not know them)",
		    path, hsm_err_msg(r));
	free(path);
}

void
entries_done(struct agent *ag, struct job *j)
{
	int64_t d;

	ag->entries_job = NULL;
	if (j->st != 0) {
		ag->entries_backoff_ms = renew_backoff_next(ag->entries_backoff_ms,
		    ag->conf->retry_min * 1000, ag->conf->retry_max * 1000);
		d = renew_backoff_jitter(ag->entries_backoff_ms, agent_rand64());
		ag->entries_next_ms = hsm_now_ms() + (uint64_t)d;
		log_warn("registration entries: %s%s; keeping the %zu identities as they are; asking "
		    "again in %llds", j->unreachable ? "CA unreachable: " : "", j->why, ag->nwl,
		    (long long)((d + 500) / 1000));
		return;
	}
	ag->entries_backoff_ms = 0;
	crl_hint(ag, j->crl_hint);
	ag->entries_refresh = ag->conf->node.refresh > 0 ? ag->conf->node.refresh :
	    j->entries->refresh;
	entries_got(ag, j);
	ag->entries_next_ms = hsm_now_ms() + (uint64_t)ag->entries_refresh * 1000;
}

void
entries_refresh_soon(struct agent *ag)
{
	uint64_t soon = hsm_now_ms() + 1000;

	if (ag->node != NULL && ag->entries_job == NULL &&
	    (ag->entries_next_ms == 0 || ag->entries_next_ms > soon))
		ag->entries_next_ms = soon;
}
