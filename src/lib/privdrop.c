/*
 * privdrop.c - becoming the configured user (see privdrop.h).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "privdrop.h"

/* The password entry of user: its uid and primary gid. */
static int
lookup(const char *user, uid_t *uid, gid_t *gid)
{
	struct passwd pw, *res = NULL;
	long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
	char *buf;
	int e;

	if (sz < 1024)
		sz = 16384;
	if ((buf = malloc((size_t)sz)) == NULL)
		return HSM_ENOMEM;
	e = getpwnam_r(user, &pw, buf, (size_t)sz, &res);
	if (res != NULL) {
		*uid = pw.pw_uid;
		*gid = pw.pw_gid;
	}
	free(buf);
	if (res == NULL)
		return hsm_err(HSM_ECONFIG, "user '%s' does not exist%s%s", user, e != 0 ? ": " : "",
		    e != 0 ? strerror(e) : "");
	return 0;
}

int
priv_lookup(const char *user)
{
	uid_t uid;
	gid_t gid;

	if (user == NULL || *user == '\0')
		return 0;
	return lookup(user, &uid, &gid);
}

int
priv_drop(const char *user)
{
	uid_t uid = 0, ruid, euid, suid;
	gid_t gid = 0, rgid, egid, sgid;
	int r;

	if (user == NULL || *user == '\0')
		return 0;
	if ((r = lookup(user, &uid, &gid)) != 0)
		return r;
	if (geteuid() != 0) {
		if (geteuid() == uid && getuid() == uid)
			return 0;
		return hsm_err(HSM_EPERM, "user '%s' (uid %u): started as uid %u, which cannot "
		    "become another user (start as root or as '%s')", user, (unsigned)uid,
		    (unsigned)geteuid(), user);
	}
	if (initgroups(user, gid) != 0)
		return hsm_err(HSM_EIO, "user '%s': cannot set its groups: %s", user, strerror(errno));
	if (setresgid(gid, gid, gid) != 0)
		return hsm_err(HSM_EIO, "user '%s': cannot set gid %u: %s", user, (unsigned)gid,
		    strerror(errno));
	if (setresuid(uid, uid, uid) != 0)
		return hsm_err(HSM_EIO, "user '%s': cannot set uid %u: %s", user, (unsigned)uid,
		    strerror(errno));
	if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
	    ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid)
		return hsm_err(HSM_EIO, "user '%s': the switch did not take", user);
	/* Root cannot come back (setuid(0) must fail for anyone but root). */
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		return hsm_err(HSM_EIO, "user '%s': root could be regained after the switch", user);
	return 0;
}
