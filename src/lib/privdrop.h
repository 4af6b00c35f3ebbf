/*
 * privdrop.h - the `user:` setting of ca.yaml, agent.yaml and proxy.yaml:
 * a daemon started as root becomes that user (its uid, its primary group
 * and its supplementary groups) once its listeners are bound, and before
 * it opens its state, starts its keyholder or serves anyone.
 *
 * Started as that very user, nothing changes. Started as another user who
 * is not root, the daemon refuses to start: it cannot become someone else,
 * and running as the wrong user silently would be worse.
 */
#ifndef HSM_PRIVDROP_H
#define HSM_PRIVDROP_H

#include <sys/types.h>

/*
 * Become user (a name from the password database; NULL or "" does
 * nothing). As root: initgroups, setgid, setuid (real, effective and
 * saved), then checks that root cannot be regained. 0, or HSM_ECONFIG
 * ("user 'x' does not exist") / HSM_EPERM ("started as uid N, which
 * cannot become 'x'") / HSM_EIO with a one-line detail.
 */
int priv_drop(const char *user);

/*
 * 0 when user (NULL or "": no user) is in the password database, else
 * HSM_ECONFIG "user 'x' does not exist" (a configuration check: whether
 * the process may become it depends on who starts it).
 */
int priv_lookup(const char *user);

#endif
