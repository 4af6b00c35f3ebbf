/*
 * khsup.h - a supervised private keyholder. Started like kh_spawn; when it
 * dies, a supervisor thread logs it, waits a backoff and starts a new one
 * on the same kh_client (kh_respawn), so that everything holding the
 * client (keys made with hsm_pkey_new, the agent's signing path, a local
 * client's connection to the agent) goes on once it is back, untouched.
 *
 * While it is down, requests fail at once with HSM_ECLOSED "keyholder is
 * gone (restarting)"; the requests in flight when it died end with
 * "keyholder closed the connection". Backoff: KHSUP_BACKOFF_MIN_MS after a
 * death, doubling up to KHSUP_BACKOFF_MAX_MS while restarts keep failing
 * or the keyholder keeps dying within KHSUP_STABLE_MS of its start.
 * Log lines: "<who> keyholder (pid P) exited (signal 9): restarting in
 * 0.5 s", "<who> keyholder restarted (pid Q; restart N)", "<who>
 * keyholder restart failed: <why>; retrying in S s".
 */
#ifndef HSM_KHSUP_H
#define HSM_KHSUP_H

#include <sys/types.h>

#include "khclient.h"

#define KHSUP_BACKOFF_MIN_MS 500u
#define KHSUP_BACKOFF_MAX_MS 30000u
#define KHSUP_STABLE_MS 60000u
#define KHSUP_PIN_FD 4		/* the keyholder's --pin-fd */

struct khsup;

/*
 * Start the keyholder (kh_spawn with o, copied) and its supervisor; who
 * names it in log lines ("CA", "agent"). Unless o names a spawner, a
 * spawner is forked first (spawner.h) and starts every keyholder, so the
 * caller may confine itself afterwards (no fork or exec of its own); with
 * o->pin_env, the PIN is taken out of the caller's environment then and
 * reaches each keyholder through a pipe (--pin-fd 4), never through an
 * environment. The first start is not retried:
 * its error (wrong PIN, no token) comes back here. state_cb (may be NULL)
 * is called with up = 0 when it dies and 1 when it is back, on the
 * supervisor thread. Stop with khsup_stop.
 */
int khsup_start(const struct kh_spawn_opts *o, const char *who,
    void (*state_cb)(void *arg, int up), void *arg, struct khsup **out);
/* The client: the same pointer for the supervisor's whole life. */
struct kh_client *khsup_client(struct khsup *s);
/* 1 while a keyholder serves, 0 while it is being restarted. */
int khsup_up(struct khsup *s);
/* The current keyholder's pid, or -1 while there is none. */
pid_t khsup_pid(struct khsup *s);
/* Restarts so far. */
unsigned khsup_restarts(struct khsup *s);
/*
 * Stop supervising, hang up (the keyholder exits), reap it (SIGKILL after
 * 5 s) and free everything, the client too. Accepts NULL.
 */
void khsup_stop(struct khsup *s);

#endif
