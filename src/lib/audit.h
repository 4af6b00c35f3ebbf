/*
 * audit.h - one JSON object per line for every decision a daemon makes
 * (the CA's issuances, refusals, revocations; the proxy's access log).
 * Secrets must never be passed here.
 *
 * Every line is whole or absent: each record is one write(2) of the whole
 * line to a file opened O_APPEND; a write that stored only part of it
 * (a full disk) is cut off again at once, and a torn last line left by a
 * crash is removed when the file is opened (logged, and recorded as an
 * "audit_repaired" line). A DURABLE log (the CA's) also takes an
 * exclusive flock(2) around each record, so that the processes sharing it
 * (ca serve, ca token, ca revoke) never see each other's half-written
 * line, and calls fdatasync(2) before a write counts as done: a caller
 * that gets 0 knows its line is on disk. Thread-safe.
 */
#ifndef HSM_AUDIT_H
#define HSM_AUDIT_H

struct audit;

#define AUDIT_DURABLE 1		/* audit_open_flags: lock and fdatasync every record */

/* Open (create, mode 0640) path for appending, repairing a torn last line. NULL path = stderr. */
int audit_open(const char *path, struct audit **out);
/* The same with flags (AUDIT_DURABLE). */
int audit_open_flags(const char *path, int flags, struct audit **out);
/* The same, naming the log in errors as what (e.g. "access log"; the others: "audit log"). */
int audit_open_as(const char *path, int flags, const char *what, struct audit **out);
void audit_close(struct audit *a);

/*
 * Write {"time":"<RFC 3339 UTC>","event":event, k1:v1, ...}: kv is a
 * NULL-terminated list of key, value string pairs; a NULL value is
 * skipped. Values are JSON-escaped. 0 when the whole line was written
 * (and, DURABLE, synced); HSM_EIO "audit log write failed: <why>" when
 * not: then nothing of the line is left in the file. A failure is logged
 * when it starts, and once more when writes succeed again. A NULL a
 * writes nothing and succeeds.
 */
int audit_event(struct audit *a, const char *event, ...) __attribute__((sentinel));

/*
 * audit_event for a record that must be written because an earlier one
 * stands for something that did not happen (an issuance rolled back after
 * its "issued" line): on a full disk, a DURABLE log gives back the 64 KiB
 * it keeps in <path>.reserve (made at open and again after any successful
 * write) and writes it there. Logged when the reserve is used.
 */
int audit_event_urgent(struct audit *a, const char *event, ...) __attribute__((sentinel));

/* audit_event writes at most this many pairs (the rest are dropped). */
#define AUDIT_MAX_PAIRS 48

/*
 * The same with the pairs in an array: kv = key, value, key, value, ...,
 * NULL (a NULL value skips its key), e.g. for fields built at run time.
 */
int audit_event_kv(struct audit *a, const char *event, const char *const *kv);

#endif
