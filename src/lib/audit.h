/*
 * audit.h - one JSON object per line for every decision a daemon makes
 * (the CA's issuances, refusals, revocations). Thread-safe; each line is
 * written with one write(2) to a file opened O_APPEND, so concurrent
 * writers do not interleave. Secrets must never be passed here.
 */
#ifndef HSM_AUDIT_H
#define HSM_AUDIT_H

struct audit;

/* Open (create, mode 0640) path for appending. NULL path = stderr. */
int audit_open(const char *path, struct audit **out);
void audit_close(struct audit *a);

/*
 * Write {"time":"<RFC 3339 UTC>","event":event, k1:v1, ...}: kv is a
 * NULL-terminated list of key, value string pairs; a NULL value is
 * skipped. Values are JSON-escaped. Errors are ignored (an audit write
 * failure is logged once to stderr).
 */
void audit_event(struct audit *a, const char *event, ...) __attribute__((sentinel));

/* audit_event writes at most this many pairs (the rest are dropped). */
#define AUDIT_MAX_PAIRS 48

/*
 * The same with the pairs in an array: kv = key, value, key, value, ...,
 * NULL (a NULL value skips its key), e.g. for fields built at run time.
 */
void audit_event_kv(struct audit *a, const char *event, const char *const *kv);

#endif
