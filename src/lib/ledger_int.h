/*
 * ledger_int.h - what the files of the ledger share: ledger.c (the lock,
 * transactions, validation, open, join tokens, certificates),
 * ledger_entry.c (registration entries) and ledger_ca.c (the CA set).
 * Nothing else includes it; the API is ledger.h, the backends' ledger_be.h.
 */
#ifndef HSMESH_LEDGER_INT_H
#define HSMESH_LEDGER_INT_H

#include <pthread.h>

#include "ledger.h"
#include "ledger_be.h"

/*
 * A transaction the store found in conflict with a concurrent one
 * (HSM_EAGAIN) is run again, at most this many times in all, after a
 * random pause that doubles from 1 ms up to TXN_PAUSE_MAX_MS.
 */
#define TXN_TRIES 12
#define TXN_PAUSE_MAX_MS 64

struct ledger {
	pthread_mutex_t mu;	/* one call at a time on be */
	const struct ledger_ops *ops;
	struct ledger_be *be;
};

/* What ledgeri_ca_find_locked looks for and finds. */
struct ca_find {
	const char *key_id;	/* NULL: the active one */
	int found;
	int gen;
	enum ledger_ca_state state;
	char key[LEDGER_SPKI_ID_LEN + 1];
	unsigned n;		/* CAs in the set */
};

/* ledger.c: the lock, transactions, validation, certificates (see each definition) */
int ledgeri_lock(struct ledger *lg);
void ledgeri_unlock(struct ledger *lg);
int ledgeri_in_txn(struct ledger *lg, const char *what,
    int (*body)(struct ledger *, void *), void *arg);
int ledgeri_norm_hex(const char *in, size_t minlen, size_t maxlen, char *out, size_t size);
int ledgeri_ca_find_locked(struct ledger *lg, const char *key_id, struct ca_find *f);
int ledgeri_count_entry(const struct ledger_entry *e, void *arg);

#endif
