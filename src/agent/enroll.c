/*
 * enroll.c - the agent's jobs (agent.h): enrollment (ir) and renewal
 * (kur) with the CA on a job thread (cmpclient.h), key destruction, the
 * schedule of renewals and retries (renew.h), and the keys a rotation
 * retired, which keep signing for their grace period.
 *
 * How each request is protected (docs/AGENT.md, "Node identity"):
 *   the node's own identity   ir: node join token (MAC) and/or evidence;
 *                             kur: signed by its own certificate
 *   an entry's identity       ir and kur: signed by the node's certificate
 *   (node-managed)            (kur names the workload's certificate in
 *                             oldCertID); the new key proves possession
 *   agent.yaml only           ir: join token and/or evidence; kur: signed
 *                             by the workload's own certificate
 *
 * A job thread owns its struct job until it sets done and writes the job
 * eventfd; the main thread then joins it and applies the result
 * (enroll_reap): the workload's state changes only on the main thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "agent.h"
#include "entries.h"
#include "err.h"
#include "evidence.h"
#include "evtype.h"
#include "heap.h"
#include "khclient.h"
#include "khsup.h"
#include "log.h"
#include "provider_kh.h"
#include "renew.h"
#include "svid.h"
#include "util.h"

uint64_t
agent_rand64(void)
{
	uint64_t r;

	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		return 0;
	return r;
}

/* The join token file: *tok (wiped by the caller) holds REF:SECRET, split at the colon. */
static int
read_join_token(const char *path, char **tok, size_t *len, struct cmpc_protect *p)
{
	char *colon;
	int r;

	*tok = NULL;
	*len = 0;
	if (path == NULL)
		return hsm_err(HSM_ENOENT, "no join_token_file configured");
	if ((r = hsm_secret_read_file(path, tok, len)) != 0)
		return hsm_err(r, "join token %s: %s", path, hsm_err_msg(r));
	if ((colon = memchr(*tok, ':', *len)) == NULL || colon == *tok ||
	    colon + 1 == *tok + *len)
		return hsm_err(HSM_EINVAL, "join token in %s is not REF:SECRET", path);
	p->kind = CMPC_MAC;
	p->ref = (const uint8_t *)*tok;
	p->reflen = (size_t)(colon - *tok);
	p->secret = (const uint8_t *)colon + 1;
	p->secretlen = *len - p->reflen - 1;
	return 0;
}

/*
 * Attestation: a fresh nonce from the CA, and a quote over SHA-256(new
 * key's SPKI) || nonce from the evidence producer. *quote is malloc'd.
 */
static int
make_evidence(struct job *j, uint8_t **quote, size_t *qlen)
{
	const struct agent_config *c = j->ag->conf;
	enum cmpc_outcome how;
	uint8_t rd[64];
	int r;

	if ((r = cmpc_attest_nonce(&j->ag->ca, j->w->c->id, &how, rd + 32)) != 0) {
		j->unreachable = how == CMPC_UNREACHABLE;
		return r;
	}
	SHA256(j->key.spki, j->key.spkilen, rd);
	if ((r = evidence_quote(&c->evidence, rd, quote, qlen)) != 0)
		return r;
	log_info("%s: %zu-byte quote from the %s evidence producer for key SHA-256 %02x%02x%02x%02x…",
	    j->w->c->id, *qlen, evidence_kind_name(c->evidence.kind), rd[0], rd[1], rd[2], rd[3]);
	return 0;
}

/* The new key: generated unless a failed attempt left one; its EVP_PKEY. */
static int
job_key(struct job *j)
{
	struct agent *ag = j->ag;
	char hex[AGENT_KEYID_HEX];
	int r;

	if (!j->key.set) {
		if ((r = kh_generate(ag->kh, ag->conf->key_type, j->w->label,
		    AGENT_KH_GEN_TIMEOUT_MS, j->key.id, &j->key.spki, &j->key.spkilen)) != 0) {
			snprintf(j->why, sizeof(j->why), "keyholder: %s", hsm_err_msg(r));
			return r;
		}
		if (RAND_bytes(j->key.tid, sizeof(j->key.tid)) != 1) {
			ERR_clear_error();
			j->keep_key = 0;
			j->key.set = 1;	/* destroyed by enroll_failed */
			snprintf(j->why, sizeof(j->why), "no random bytes for a transactionID");
			return HSM_ECRYPTO;
		}
		j->key.set = 1;
		log_info("%s: generated %s key %s in the token for %s", j->w->c->id,
		    hsm_keytype_name(ag->conf->key_type), agent_keyid_hex(j->key.id, hex),
		    j->kur ? "renewal" : "enrollment");
	}
	if (j->key.pkey == NULL && (r = hsm_pkey_new(ag->kh, j->key.id, j->key.spki,
	    j->key.spkilen, 0, &j->key.pkey)) != 0) {
		j->keep_key = 0;
		snprintf(j->why, sizeof(j->why), "key %s: %s", agent_keyid_hex(j->key.id, hex),
		    hsm_err_msg(r));
		return r;
	}
	return 0;
}

static void
job_enroll(struct job *j)
{
	const struct agent_config *c = j->ag->conf;
	struct cmpc_certreq rq = { 0 };
	enum cmpc_outcome how = CMPC_FAILED;
	uint8_t *quote = NULL;
	size_t qlen = 0, toklen = 0;
	char *tok = NULL;
	int r;

	j->keep_key = 1;
	if ((j->st = job_key(j)) != 0)
		return;
	rq.type = j->kur ? CMPC_KUR : CMPC_IR;
	rq.spiffe_id = j->w->c->id;
	rq.key = j->key.pkey;
	rq.spki = j->key.spki;
	rq.spkilen = j->key.spkilen;
	rq.tid = j->key.tid;
	rq.tidlen = sizeof(j->key.tid);
	if (j->kur)
		rq.oldcert = j->oldcert;
	if (j->nodecert != NULL) {
		/* Node-protected: the node vouches, the new key proves possession. */
		rq.prot = (struct cmpc_protect){ .kind = CMPC_SIGNED, .cert = j->nodecert,
		    .key = j->nodekey };
	} else if (j->kur) {
		rq.prot = (struct cmpc_protect){ .kind = CMPC_SIGNED, .cert = j->oldcert,
		    .key = j->oldkey };
	} else if (c->evidence.kind == EVIDENCE_NONE || j->w->c->join_token_file != NULL) {
		/* With attestation evidence a join token is optional. */
		if ((r = read_join_token(j->w->c->join_token_file, &tok, &toklen, &rq.prot)) != 0)
			goto fail;
	}
	if (c->evidence.kind != EVIDENCE_NONE) {
		if ((r = make_evidence(j, &quote, &qlen)) != 0)
			goto fail;
		rq.evidence_oid = HSM_OID_SGX_QUOTE;
		rq.evidence = quote;
		rq.evidencelen = qlen;
	}
	if ((r = cmpc_certreq(&j->ag->ca, &rq, &how, &j->cert, &j->chain)) != 0) {
		j->unreachable = how == CMPC_UNREACHABLE;
		if (how == CMPC_BADKEY)
			j->keep_key = 0;
		goto fail;
	}
	/*
	 * The CA's bundle, signed by it and asked for with the new certificate:
	 * a CA prepared for rotation is trusted (and handed to the sidecars)
	 * before it issues anything. A failure costs nothing but the news.
	 */
	rq.prot = (struct cmpc_protect){ .kind = CMPC_SIGNED, .cert = j->cert, .key = rq.key };
	if ((r = cmpc_refresh_anchors(&j->ag->ca, rq.spiffe_id, &rq.prot, &how)) != 0)
		log_debug("%s: the CA's certificates: %s", rq.spiffe_id, hsm_err_msg(r));
	j->st = 0;
	goto out;
 fail:
	j->st = r;
	snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
 out:
	hsm_secret_free(tok, toklen);
	free(quote);
}

static void *
job_main(void *arg)
{
	struct job *j = arg;
	uint64_t one = 1;
	char hex[AGENT_KEYID_HEX];
	int r;

	if (j->kind == JOB_ENROLL) {
		job_enroll(j);
	} else if (j->kind == JOB_ENTRIES) {
		entries_job_run(j);
	} else if (j->kind == JOB_CRL) {
		crl_job_run(j);
	} else if ((r = kh_destroy(j->ag->kh, j->keyid, 0)) != 0 && r != HSM_ENOENT) {
		log_warn("destroying retired key %s: %s", agent_keyid_hex(j->keyid, hex),
		    hsm_err_msg(r));
	} else {
		log_info("destroyed retired key %s", agent_keyid_hex(j->keyid, hex));
	}
	atomic_store(&j->done, 1);
	if (write(j->ag->job_efd, &one, sizeof(one)) != sizeof(one))
		log_warn("job eventfd: %s", strerror(errno));
	return NULL;
}

static void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	X509_free(j->oldcert);
	EVP_PKEY_free(j->oldkey);
	X509_free(j->nodecert);
	EVP_PKEY_free(j->nodekey);
	entries_free(j->entries);
	free(j->entries_der);
	free(j->crl_der);
	agent_key_clear(&j->key);
	X509_free(j->cert);
	svid_certs_free(j->chain);
	free(j);
}

int
enroll_job_start(struct agent *ag, struct job *j)
{
	int r;

	j->ag = ag;
	if ((r = pthread_create(&j->th, NULL, job_main, j)) != 0)
		return hsm_err(HSM_EIO, "pthread_create: %s", strerror(r));
	j->next = ag->jobs;
	ag->jobs = j;
	return 0;
}

void
enroll_destroy_key(struct agent *ag, const uint8_t id[HSM_KEYID_LEN])
{
	struct job *j = calloc(1, sizeof(*j));
	int r;

	if (j == NULL) {
		log_err("out of memory: retired key left in the token");
		return;
	}
	j->kind = JOB_DESTROY;
	memcpy(j->keyid, id, HSM_KEYID_LEN);
	if ((r = enroll_job_start(ag, j)) != 0) {
		log_err("%s", hsm_err_msg(r));
		free(j);
	}
}

/* Once per expiry: the certificate is gone, enrollment starts over (with what). */
static void
log_expired(const struct agent *ag, struct wl *w)
{
	char t[HSM_TIME_STR];

	hsm_fmt_time(w->na, t);
	if (w->node_managed)
		log_err("%s: certificate serial %s EXPIRED at %s and could not be renewed: "
		    "enrolling again, protected by the node's certificate", w->c->id, w->serial, t);
	else if (w->is_node && ag->conf->evidence.kind == EVIDENCE_NONE)
		log_err("%s: node certificate serial %s EXPIRED at %s and could not be renewed: "
		    "enrolling again with the node join token in %s (a fresh one is needed if it "
		    "was used: hsmesh ca token --node --id %s)", w->c->id, w->serial, t,
		    w->c->join_token_file != NULL ? w->c->join_token_file : "(none configured)",
		    w->c->id);
	else if (ag->conf->evidence.kind != EVIDENCE_NONE && w->c->join_token_file == NULL)
		log_err("%s: certificate serial %s EXPIRED at %s and could not be renewed: "
		    "enrolling again with attestation evidence", w->c->id, w->serial, t);
	else
		log_err("%s: certificate serial %s EXPIRED at %s and could not be renewed: "
		    "enrolling again with the join token in %s (a fresh one is needed if it "
		    "was used: hsmesh ca token --id %s)", w->c->id, w->serial, t,
		    w->c->join_token_file != NULL ? w->c->join_token_file : "(none configured)",
		    w->c->id);
	w->expired_logged = 1;
}

void
enroll_start(struct agent *ag, struct wl *w)
{
	struct job *j;
	int r;

	w->next_ms = 0;
	/* An entry's identity goes to the CA under the node's certificate only. */
	if (w->node_managed && (ag->node == NULL || !wl_valid(ag->node))) {
		if (!w->waiting_logged)
			log_info("%s: waiting for the node identity to enroll", w->c->id);
		w->waiting_logged = 1;
		w->next_ms = hsm_now_ms() + 2000;
		return;
	}
	w->waiting_logged = 0;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		log_err("%s: out of memory", w->c->id);
		w->next_ms = hsm_now_ms() + 1000;
		return;
	}
	j->kind = JOB_ENROLL;
	j->w = w;
	if (w->node_managed) {
		/* Held by the job: a rotation of the node meanwhile frees nothing it uses. */
		j->nodecert = ag->node->cert;
		X509_up_ref(j->nodecert);
		j->nodekey = ag->node->key.pkey;
		EVP_PKEY_up_ref(j->nodekey);
	}
	if (w->have && !w->revoked && time(NULL) < w->na) {
		j->kur = 1;
		j->oldcert = w->cert;
		X509_up_ref(w->cert);
		j->oldkey = w->key.pkey;
		EVP_PKEY_up_ref(w->key.pkey);
	} else if (w->have && !w->revoked && !w->expired_logged) {
		log_expired(ag, w);
	}
	j->key = w->pending;
	memset(&w->pending, 0, sizeof(w->pending));
	if ((r = enroll_job_start(ag, j)) != 0) {
		log_err("%s: %s", w->c->id, hsm_err_msg(r));
		w->pending = j->key;
		memset(&j->key, 0, sizeof(j->key));
		job_free(j);
		w->next_ms = hsm_now_ms() + 1000;
		return;
	}
	w->job = j;
}

void
enroll_schedule_renewal(struct agent *ag, struct wl *w)
{
	int64_t now_ms = (int64_t)time(NULL) * 1000, at_ms, delay_ms;
	char t[HSM_TIME_STR];

	at_ms = renew_point_ms(w->nb, w->na, ag->conf->renew_at, now_ms, agent_rand64());
	delay_ms = renew_delay_ms(at_ms, now_ms);
	w->next_ms = hsm_now_ms() + (uint64_t)delay_ms;
	hsm_fmt_time(at_ms / 1000, t);
	log_info("%s: renewal of serial %s scheduled in %llds (%s)", w->c->id, w->serial,
	    (long long)(delay_ms / 1000), t);
}

/* Next retry after a failure: retry.min doubling to retry.max, +-10 % jitter. ms to it. */
static int64_t
schedule_retry(struct agent *ag, struct wl *w)
{
	int64_t d;

	w->backoff_ms = renew_backoff_next(w->backoff_ms, ag->conf->retry_min * 1000,
	    ag->conf->retry_max * 1000);
	d = renew_backoff_jitter(w->backoff_ms, agent_rand64());
	w->next_ms = hsm_now_ms() + (uint64_t)d;
	return d;
}

static void
retire_key(struct agent *ag, const struct wl *w, const uint8_t id[HSM_KEYID_LEN])
{
	struct retired *rk = calloc(1, sizeof(*rk));

	if (rk == NULL) {
		enroll_destroy_key(ag, id);
		return;
	}
	rk->w = w;
	memcpy(rk->id, id, HSM_KEYID_LEN);
	rk->destroy_ms = hsm_now_ms() + AGENT_GRACE_MS;
	rk->next = ag->retired;
	ag->retired = rk;
}

/* An enrollment succeeded: the new SVID in use, stored, scheduled and pushed. */
static int
enroll_installed(struct agent *ag, struct job *j)
{
	struct wl *w = j->w;
	char oldser[96], oldhex[AGENT_KEYID_HEX], hex[AGENT_KEYID_HEX], t[HSM_TIME_STR];
	uint8_t oldid[HSM_KEYID_LEN];
	int had = w->have, revoked = w->revoked, r;

	snprintf(oldser, sizeof(oldser), "%s", w->serial);
	memcpy(oldid, w->key.id, HSM_KEYID_LEN);
	if ((r = wl_install(ag, w, j->cert, j->chain, &j->key)) != 0)
		return r;
	j->cert = NULL;
	j->chain = NULL;
	if ((r = wl_store(w)) != 0)
		log_err("%s: %s (the certificate is in use but not saved)", w->c->id,
		    hsm_err_msg(r));
	hsm_fmt_time(w->na, t);
	if (had && revoked) {
		/* A revoked certificate's key signs nothing more: no grace. */
		log_info("%s: re-enrolled after revocation: certificate serial %s -> %s (key %s -> "
		    "%s; the old key destroyed now, no grace), valid until %s", w->c->id, oldser, w->serial,
		    agent_keyid_hex(oldid, oldhex), agent_keyid_hex(w->key.id, hex), t);
		enroll_destroy_key(ag, oldid);
	} else if (had) {
		log_info("%s: rotated certificate serial %s -> %s (key %s -> %s), valid until %s",
		    w->c->id, oldser, w->serial, agent_keyid_hex(oldid, oldhex),
		    agent_keyid_hex(w->key.id, hex), t);
		retire_key(ag, w, oldid);
	} else {
		log_info("%s: enrolled certificate serial %s (key %s), valid until %s",
		    w->c->id, w->serial, agent_keyid_hex(w->key.id, hex), t);
	}
	w->backoff_ms = 0;
	enroll_schedule_renewal(ag, w);
	if (w->is_node)
		enroll_node_ready(ag);
	else
		api_push_update(ag, w);
	return 0;
}

/* An attempt failed: keep or drop its key, schedule the retry, say what that means. */
static void
enroll_failed(struct agent *ag, struct job *j)
{
	struct wl *w = j->w;
	const char *unreach = j->unreachable ? "CA unreachable: " : "";
	char t[HSM_TIME_STR];
	long long in;

	if (j->key.set) {
		if (j->keep_key) {
			w->pending = j->key;
			memset(&j->key, 0, sizeof(j->key));
		} else {
			enroll_destroy_key(ag, j->key.id);
		}
	}
	in = (long long)((schedule_retry(ag, w) + 500) / 1000);
	hsm_fmt_time(w->na, t);
	/* A refusal may mean the entry went: ask the CA for the entries again now. */
	if (w->node_managed && !j->unreachable)
		entries_refresh_soon(ag);
	if (w->have && time(NULL) < w->na)
		log_warn("%s: %s (%s): keeping certificate serial %s valid until %s; retrying in %llds",
		    w->c->id, j->unreachable ? "CA unreachable" : "renewal failed", j->why,
		    w->serial, t, in);
	else if (w->have && w->node_managed)
		log_err("%s: certificate serial %s EXPIRED at %s and enrollment failed (%s%s); "
		    "retrying in %llds", w->c->id, w->serial, t, unreach, j->why, in);
	else if (w->have && ag->conf->evidence.kind != EVIDENCE_NONE &&
	    w->c->join_token_file == NULL)
		log_err("%s: certificate serial %s EXPIRED at %s and enrollment with attestation "
		    "evidence failed (%s%s); retrying in %llds", w->c->id, w->serial, t, unreach,
		    j->why, in);
	else if (w->have)
		log_err("%s: certificate serial %s EXPIRED at %s and enrollment failed (%s%s): a new "
		    "join token is needed in %s; retrying in %llds", w->c->id, w->serial, t,
		    unreach, j->why,
		    w->c->join_token_file != NULL ? w->c->join_token_file : "join_token_file", in);
	else
		log_warn("%s: enrollment failed (%s%s): no certificate yet; retrying in %llds",
		    w->c->id, unreach, j->why, in);
}

/* A removed identity's last job ended: its keys go, and so does it. */
static void
zombie_done(struct agent *ag, struct job *j)
{
	struct wl **pp, *w = j->w;

	if (j->key.set)
		enroll_destroy_key(ag, j->key.id);
	for (pp = &ag->zombies; *pp != NULL; pp = &(*pp)->zombie_next) {
		if (*pp == w) {
			*pp = w->zombie_next;
			break;
		}
	}
	wl_free(w);
}

/* Main thread: a finished enrollment job for its workload. */
static void
enroll_done(struct agent *ag, struct job *j)
{
	int r;

	j->w->job = NULL;
	if (j->w->removed) {
		zombie_done(ag, j);
		return;
	}
	if (j->st == 0) {
		if ((r = enroll_installed(ag, j)) == 0)
			return;
		j->st = r;
		snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
	}
	enroll_failed(ag, j);
}

void
enroll_reap(struct agent *ag)
{
	struct job **pp = &ag->jobs, *j;
	int reaped = 0;

	while ((j = *pp) != NULL) {
		if (!atomic_load(&j->done)) {
			pp = &j->next;
			continue;
		}
		reaped = 1;
		*pp = j->next;
		pthread_join(j->th, NULL);
		if (j->kind == JOB_ENROLL)
			enroll_done(ag, j);
		else if (j->kind == JOB_ENTRIES)
			entries_done(ag, j);
		else if (j->kind == JOB_CRL)
			crl_done(ag, j);
		job_free(j);
	}
	/* The last job of a burst ended: its threads' freed memory back to the kernel. */
	if (reaped && ag->jobs == NULL)
		hsm_heap_trim();
}

int
enroll_finish(struct agent *ag, unsigned ms)
{
	struct job *j;

	for (uint64_t until = hsm_now_ms() + ms; ag->jobs != NULL; usleep(20000)) {
		int running = 0;

		for (j = ag->jobs; j != NULL; j = j->next)
			if (!atomic_load(&j->done))
				running = 1;
		if (!running)
			break;
		if (hsm_now_ms() >= until)
			return -1;
	}
	while ((j = ag->jobs) != NULL) {
		ag->jobs = j->next;
		pthread_join(j->th, NULL);
		/* Keep a certificate we got; drop keys nothing will use. */
		if (j->kind == JOB_ENROLL)
			enroll_done(ag, j);
		else if (j->kind == JOB_ENTRIES)
			ag->entries_job = NULL;
		else if (j->kind == JOB_CRL)
			ag->crl_job = NULL;
		job_free(j);
	}
	return 0;
}

int
enroll_next_timeout(const struct agent *ag)
{
	uint64_t now = hsm_now_ms(), soonest = 0;

	for (size_t i = 0; i <= ag->nwl; i++) {
		const struct wl *w = i < ag->nwl ? ag->wl[i] : ag->node;

		if (w != NULL && w->job == NULL && w->next_ms != 0 &&
		    (soonest == 0 || w->next_ms < soonest))
			soonest = w->next_ms;
	}
	if (ag->entries_job == NULL && ag->entries_next_ms != 0 &&
	    (soonest == 0 || ag->entries_next_ms < soonest))
		soonest = ag->entries_next_ms;
	if (ag->crl_job == NULL && ag->crl_next_ms != 0 &&
	    (soonest == 0 || ag->crl_next_ms < soonest))
		soonest = ag->crl_next_ms;
	for (const struct retired *rk = ag->retired; rk != NULL; rk = rk->next)
		if (soonest == 0 || rk->destroy_ms < soonest)
			soonest = rk->destroy_ms;
	if (soonest == 0)
		return -1;
	if (soonest <= now)
		return 0;
	return soonest - now > 60000 ? 60000 : (int)(soonest - now);
}

void
enroll_run_timers(struct agent *ag)
{
	uint64_t now = hsm_now_ms();
	struct retired **pp = &ag->retired, *rk;

	if (ag->node != NULL && ag->node->job == NULL && ag->node->next_ms != 0 &&
	    ag->node->next_ms <= now)
		enroll_start(ag, ag->node);
	for (size_t i = 0; i < ag->nwl; i++) {
		struct wl *w = ag->wl[i];

		if (w->job == NULL && w->next_ms != 0 && w->next_ms <= now)
			enroll_start(ag, w);
	}
	entries_maybe_fetch(ag);
	crl_maybe_fetch(ag);
	while ((rk = *pp) != NULL) {
		if (rk->destroy_ms > now) {
			pp = &rk->next;
			continue;
		}
		*pp = rk->next;
		enroll_destroy_key(ag, rk->id);
		free(rk);
	}
}

const uint8_t *
enroll_signing_key(const struct agent *ag, const struct wl *w, const uint8_t id[HSM_KEYID_LEN])
{
	uint64_t now = hsm_now_ms();

	if (memcmp(w->key.id, id, HSM_KEYID_LEN) == 0)
		return w->key.id;
	for (const struct retired *rk = ag->retired; rk != NULL; rk = rk->next)
		if (rk->w == w && rk->destroy_ms > now && memcmp(rk->id, id, HSM_KEYID_LEN) == 0)
			return rk->id;
	return NULL;
}

void
enroll_drop_keys(struct agent *ag)
{
	int alive = ag->khsup != NULL && khsup_up(ag->khsup);

	for (struct retired *rk = ag->retired, *next; rk != NULL; rk = next) {
		next = rk->next;
		if (alive)
			(void)kh_destroy(ag->kh, rk->id, 2000);
		free(rk);
	}
	ag->retired = NULL;
	for (size_t i = 0; i <= ag->nwl; i++) {
		struct wl *w = i < ag->nwl ? ag->wl[i] : ag->node;

		if (w != NULL && w->pending.set && alive)
			(void)kh_destroy(ag->kh, w->pending.id, 2000);
	}
}

void
enroll_node_ready(struct agent *ag)
{
	uint64_t now = hsm_now_ms();

	/* Workloads waiting for the node go now; the entries are asked for at once. */
	for (size_t i = 0; i < ag->nwl; i++) {
		struct wl *w = ag->wl[i];

		if (w->node_managed && w->job == NULL && w->waiting_logged)
			w->next_ms = now;
	}
	if (ag->entries_job == NULL && !ag->entries_known)
		ag->entries_next_ms = now;
}

/* Remove what w left on disk (cert.pem, bundle.pem, its directory). */
static void
drop_files(const struct wl *w)
{
	(void)unlink(w->cert_path);
	(void)unlink(w->bundle_path);
	(void)rmdir(w->dir);
}

void
enroll_drop(struct agent *ag, struct wl *w)
{
	struct retired **pp = &ag->retired, *rk;
	char hex[AGENT_KEYID_HEX];

	wl_unlist(ag, w);
	api_workload_gone(ag, w);
	/* No grace for a key of an identity this node may no longer use. */
	while ((rk = *pp) != NULL) {
		if (rk->w != w) {
			pp = &rk->next;
			continue;
		}
		*pp = rk->next;
		enroll_destroy_key(ag, rk->id);
		free(rk);
	}
	if (w->pending.set)
		enroll_destroy_key(ag, w->pending.id);
	if (w->have) {
		enroll_destroy_key(ag, w->key.id);
		log_info("%s: no longer this node's (registration entry removed): not served or "
		    "renewed any more; key %s destroyed", w->c->id, agent_keyid_hex(w->key.id, hex));
	} else {
		log_info("%s: no longer this node's (registration entry removed)", w->c->id);
	}
	drop_files(w);
	if (w->job != NULL) {
		/* Its job still uses w: freed when it ends (zombie_done). */
		w->removed = 1;
		w->zombie_next = ag->zombies;
		ag->zombies = w;
		return;
	}
	wl_free(w);
}
