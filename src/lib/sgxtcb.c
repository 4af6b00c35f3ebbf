/*
 * sgxtcb.c - the TCB Info and the QE Identity of SGX DCAP collateral:
 * dates, matches and the TCB status (see sgxtcb.h).
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "err.h"
#include "sgxchain.h"
#include "sgxtcb.h"
#include "util.h"

/* ---- statuses and dates ---- */

static const struct {
	enum sgx_tcb_status	 st;
	const char		*name;
} tcb_names[] = {
	{ SGX_TCB_UP_TO_DATE, "UpToDate" },
	{ SGX_TCB_SW_HARDENING_NEEDED, "SWHardeningNeeded" },
	{ SGX_TCB_CONFIGURATION_NEEDED, "ConfigurationNeeded" },
	{ SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED,
	    "ConfigurationAndSWHardeningNeeded" },
	{ SGX_TCB_OUT_OF_DATE, "OutOfDate" },
	{ SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
	    "OutOfDateConfigurationNeeded" },
	{ SGX_TCB_REVOKED, "Revoked" },
	{ SGX_TCB_TD_RELAUNCH_ADVISED, "TDRelaunchAdvised" },
	{ SGX_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
	    "TDRelaunchAdvisedConfigurationNeeded" },
};

const char *
sgx_tcb_status_name(enum sgx_tcb_status s)
{
	for (size_t i = 0; i < sizeof(tcb_names) / sizeof(tcb_names[0]); i++)
		if (tcb_names[i].st == s)
			return tcb_names[i].name;
	return "Unknown";
}

/* A status a TCB Info / identity level may carry (not a computed one). */
static enum sgx_tcb_status
tcb_status_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(tcb_names) / sizeof(tcb_names[0]); i++)
		if (strcmp(tcb_names[i].name, s) == 0 &&
		    tcb_names[i].st <= SGX_TCB_REVOKED)
			return tcb_names[i].st;
	return SGX_TCB_UNKNOWN;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int
digits(const char *s, size_t n, unsigned *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*v = *v * 10 + (unsigned)(s[i] - '0');
	}
	return 0;
}

int
sgx_parse_time(const char *s, time_t *t)
{
	unsigned y, mo, d, h, mi, se;

	*t = 0;
	if (s == NULL || strlen(s) != 20 || s[4] != '-' || s[7] != '-' ||
	    s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z' ||
	    digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
	    digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
	    digits(s + 14, 2, &mi) || digits(s + 17, 2, &se) ||
	    mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    se > 60)
		return hsm_err(HSM_EINVAL, "bad time '%.40s'", s ? s : "");
	*t = (time_t)(days_from_civil(y, mo, d) * 86400 + h * 3600 +
	    mi * 60 + se);
	return 0;
}

/* ---- reading the documents ---- */

static struct json_object *
jget(struct json_object *o, const char *key, enum json_type type)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, type))
		return NULL;
	return v;
}

static int
jtime(struct json_object *o, const char *key, time_t *t)
{
	struct json_object *v;

	*t = 0;
	if ((v = jget(o, key, json_type_string)) == NULL)
		return -1;
	return sgx_parse_time(json_object_get_string(v), t) == 0 ? 0 : -1;
}

int
sgx_json_dates(struct json_object *o, const char *what, struct sgx_expiry *x)
{
	time_t issue, next;

	if (jtime(o, "issueDate", &issue) != 0 ||
	    jtime(o, "nextUpdate", &next) != 0)
		return hsm_err(HSM_EPROTO, "%s: issueDate/nextUpdate missing "
		    "or malformed", what);
	if (x->at < issue)
		return hsm_err(HSM_EPOLICY, "%s: not yet valid at the "
		    "verification time", what);
	return sgx_expiry_note(x, what, "nextUpdate", next);
}

static int
hexfield_eq(struct json_object *o, const char *key, const uint8_t *want,
    size_t n)
{
	struct json_object *v;
	uint8_t buf[64];
	const char *s;

	if (n > sizeof(buf) || (v = jget(o, key, json_type_string)) == NULL)
		return -1;
	s = json_object_get_string(v);
	if (strlen(s) != 2 * n || hsm_unhex(s, 2 * n, buf) != 0)
		return -1;
	return CRYPTO_memcmp(buf, want, n) == 0 ? 0 : 1;
}

/* Append advisory IDs of level to res->advisories, without duplicates. */
static void
add_advisories(struct json_object *level, struct sgx_tcb_verdict *res)
{
	struct json_object *a, *e;
	const char *id;
	size_t n, cur, il;

	if ((a = jget(level, "advisoryIDs", json_type_array)) == NULL)
		return;
	n = json_object_array_length(a);
	for (size_t i = 0; i < n; i++) {
		e = json_object_array_get_idx(a, i);
		if (!json_object_is_type(e, json_type_string))
			continue;
		id = json_object_get_string(e);
		il = strlen(id);
		/* already present as a whole comma-separated token? */
		for (const char *p = res->advisories; (p = strstr(p, id)) != NULL;
		    p += il) {
			if ((p == res->advisories || p[-1] == ',') &&
			    (p[il] == ',' || p[il] == '\0'))
				goto next;
		}
		cur = strlen(res->advisories);
		if (cur + (cur ? 1 : 0) + il + 1 > sizeof(res->advisories))
			return;
		snprintf(res->advisories + cur, sizeof(res->advisories) - cur,
		    "%s%s", cur ? "," : "", id);
 next:
		;
	}
}

static int
jint(struct json_object *o, const char *key, unsigned *v)
{
	struct json_object *x;
	int64_t i;

	*v = 0;
	if ((x = jget(o, key, json_type_int)) == NULL)
		return -1;
	i = json_object_get_int64(x);
	if (i < 0 || i > 65535)
		return -1;
	*v = (unsigned)i;
	return 0;
}

/* *ok = whether the PCK TCB reaches level l (index i) of TCB Info v2/v3. */
static int
sgx_level_reached(struct json_object *l, size_t i, const struct sgx_pck_tcb *pt,
    int *ok)
{
	struct json_object *tcb, *comps, *c;
	unsigned svn, pcesvn;
	char key[32];

	*ok = 0;
	if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
	    jint(tcb, "pcesvn", &pcesvn) != 0)
		return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] "
		    "malformed", i);
	comps = jget(tcb, "sgxtcbcomponents", json_type_array);
	if (comps != NULL && json_object_array_length(comps) != 16)
		return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] "
		    "needs 16 sgxtcbcomponents", i);
	*ok = pt->pcesvn >= pcesvn;
	for (unsigned k = 0; k < 16; k++) {
		if (comps != NULL) {
			c = json_object_array_get_idx(comps, k);
			if (jint(c, "svn", &svn) != 0)
				return hsm_err(HSM_EPROTO, "tcb_info: "
				    "tcbLevels[%zu] component %u", i, k);
		} else {
			snprintf(key, sizeof(key), "sgxtcbcomp%02usvn", k + 1);
			if (jint(tcb, key, &svn) != 0)
				return hsm_err(HSM_EPROTO, "tcb_info: "
				    "tcbLevels[%zu] %s", i, key);
		}
		if (pt->comp[k] < svn)
			*ok = 0;
	}
	return 0;
}

/*
 * *ok = whether TEE_TCB_SVN reaches the tdxtcbcomponents of level l.
 * When TEE_TCB_SVN[1] (the TDX module's major version) is not zero, the
 * first two bytes are the module's and are judged by its identity
 * instead (as Intel's QVL does).
 */
static int
tdx_level_reached(struct json_object *l, size_t i, const uint8_t *teesvn,
    int *ok)
{
	struct json_object *tcb, *comps;
	unsigned svn;

	*ok = 0;
	if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
	    (comps = jget(tcb, "tdxtcbcomponents", json_type_array)) == NULL ||
	    json_object_array_length(comps) != 16)
		return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] needs 16 "
		    "tdxtcbcomponents", i);
	*ok = 1;
	for (unsigned k = teesvn[1] > 0 ? 2 : 0; k < 16; k++) {
		if (jint(json_object_array_get_idx(comps, k), "svn", &svn) != 0)
			return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] "
			    "tdx component %u", i, k);
		if (teesvn[k] < svn)
			*ok = 0;
	}
	return 0;
}

/*
 * TCB level matching (TCB Info v2 and v3). SGX (teesvn NULL): *sgxl is
 * the first level the PCK TCB is at or above. TDX: *sgxl is that level
 * too, and *tdxl the first level from it on whose SGX components and
 * TDX components (TEE_TCB_SVN) are both reached.
 */
static int
match_levels(struct json_object *ti, const struct sgx_pck_tcb *pt,
    const uint8_t *teesvn, struct json_object **sgxl,
    struct json_object **tdxl)
{
	struct json_object *levels, *l;
	size_t n;
	int ok, rc;

	*sgxl = *tdxl = NULL;
	if ((levels = jget(ti, "tcbLevels", json_type_array)) == NULL)
		return hsm_err(HSM_EPROTO, "tcb_info: no tcbLevels");
	n = json_object_array_length(levels);
	for (size_t i = 0; i < n; i++) {
		l = json_object_array_get_idx(levels, i);
		if ((rc = sgx_level_reached(l, i, pt, &ok)) != 0)
			return rc;
		if (!ok)
			continue;
		if (*sgxl == NULL)
			*sgxl = l;
		if (teesvn == NULL)
			return 0;
		if ((rc = tdx_level_reached(l, i, teesvn, &ok)) != 0)
			return rc;
		if (ok) {
			*tdxl = l;
			return 0;
		}
	}
	if (*sgxl == NULL)
		return hsm_err(HSM_EPERM, "tcb_level: platform TCB below every "
		    "tcbLevel (TCB not supported)");
	return hsm_err(HSM_EPERM, "tcb_level: TDX TCB (TEE_TCB_SVN) below "
	    "every tcbLevel the platform reaches (TCB not supported)");
}

/*
 * Converge status st with another component's (the QE's, the TDX
 * module's) as Intel's QVL does: that one OutOfDate makes an UpToDate or
 * SWHardeningNeeded st OutOfDate and a ConfigurationNeeded one
 * OutOfDateConfigurationNeeded; Revoked makes anything Revoked.
 */
static enum sgx_tcb_status
converge(enum sgx_tcb_status st, enum sgx_tcb_status other)
{
	if (other == SGX_TCB_REVOKED)
		return SGX_TCB_REVOKED;
	if (other != SGX_TCB_OUT_OF_DATE)
		return st;
	switch (st) {
	case SGX_TCB_UP_TO_DATE:
	case SGX_TCB_SW_HARDENING_NEEDED:
		return SGX_TCB_OUT_OF_DATE;
	case SGX_TCB_CONFIGURATION_NEEDED:
	case SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED:
		return SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED;
	default:
		return st;
	}
}

static enum sgx_tcb_status
level_status(struct json_object *l)
{
	struct json_object *s;

	if ((s = jget(l, "tcbStatus", json_type_string)) == NULL)
		return SGX_TCB_UNKNOWN;
	return tcb_status_parse(json_object_get_string(s));
}

/* ---- TDX module (TCB Info v3 "tdxModule" / "tdxModuleIdentities") ---- */

/* tdxModuleIdentities entry whose id is "TDX_%02X" of major (any case). */
static struct json_object *
tdx_module_identity(struct json_object *ti, unsigned major)
{
	struct json_object *ids, *e, *id;
	char want[8];
	size_t n;

	if ((ids = jget(ti, "tdxModuleIdentities", json_type_array)) == NULL)
		return NULL;
	snprintf(want, sizeof(want), "TDX_%02X", major & 0xffU);
	n = json_object_array_length(ids);
	for (size_t i = 0; i < n; i++) {
		e = json_object_array_get_idx(ids, i);
		if ((id = jget(e, "id", json_type_string)) != NULL &&
		    strcasecmp(json_object_get_string(id), want) == 0)
			return e;
	}
	return NULL;
}

/*
 * The module the TD report names must be the one the TCB Info describes:
 * MRSIGNERSEAM equal to mrsigner, SEAMATTRIBUTES equal to attributes
 * under attributesMask. The description is tdxModule, or the identity
 * TDX_<TEE_TCB_SVN[1]> when that byte (the module's major version) is
 * not zero; *ident is that identity, else NULL.
 */
int
sgx_tdx_module_check(struct json_object *ti, const struct sgx_td_report *td,
    struct json_object **ident, char *idname, size_t idlen)
{
	struct json_object *m, *a, *am;
	uint8_t attr[8], mask[8];

	*ident = NULL;
	idname[0] = '\0';
	if ((m = jget(ti, "tdxModule", json_type_object)) == NULL)
		return hsm_err(HSM_EPROTO, "tdx_module: TCB Info has no "
		    "tdxModule");
	if (td->tee_tcb_svn[1] > 0) {
		snprintf(idname, idlen, "TDX_%02X", td->tee_tcb_svn[1]);
		if ((m = tdx_module_identity(ti, td->tee_tcb_svn[1])) == NULL)
			return hsm_err(HSM_EPERM, "tdx_module: TCB Info has no "
			    "tdxModuleIdentities entry %s for the TD's module "
			    "(TEE_TCB_SVN[1] = %u)", idname,
			    td->tee_tcb_svn[1]);
		*ident = m;
	}
	a = jget(m, "attributes", json_type_string);
	am = jget(m, "attributesMask", json_type_string);
	if (a == NULL || am == NULL ||
	    strlen(json_object_get_string(a)) != 16 ||
	    strlen(json_object_get_string(am)) != 16 ||
	    hsm_unhex(json_object_get_string(a), 16, attr) != 0 ||
	    hsm_unhex(json_object_get_string(am), 16, mask) != 0)
		return hsm_err(HSM_EPROTO, "tdx_module: %s attributes "
		    "malformed", idname[0] ? idname : "tdxModule");
	switch (hexfield_eq(m, "mrsigner", td->mrsignerseam, 48)) {
	case 0:
		break;
	case 1:
		return hsm_err(HSM_EPERM, "tdx_module: MRSIGNERSEAM does not "
		    "match the TCB Info's %s mrsigner",
		    idname[0] ? idname : "tdxModule");
	default:
		return hsm_err(HSM_EPROTO, "tdx_module: %s mrsigner "
		    "malformed", idname[0] ? idname : "tdxModule");
	}
	for (size_t i = 0; i < 8; i++)
		if ((td->seam_attributes[i] & mask[i]) != (attr[i] & mask[i]))
			return hsm_err(HSM_EPERM, "tdx_module: SEAMATTRIBUTES "
			    "do not match the TCB Info's %s attributes",
			    idname[0] ? idname : "tdxModule");
	return 0;
}

/* First level of a module identity whose isvsvn the module SVN reaches. */
static int
tdx_module_level(struct json_object *ident, unsigned svn,
    struct json_object **lvl)
{
	struct json_object *levels, *l, *tcb;
	unsigned v;
	size_t n;

	*lvl = NULL;
	if ((levels = jget(ident, "tcbLevels", json_type_array)) == NULL)
		return hsm_err(HSM_EPROTO, "tcb_level: TDX module identity has "
		    "no tcbLevels");
	n = json_object_array_length(levels);
	for (size_t i = 0; i < n; i++) {
		l = json_object_array_get_idx(levels, i);
		if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
		    jint(tcb, "isvsvn", &v) != 0)
			return hsm_err(HSM_EPROTO, "tcb_level: TDX module "
			    "tcbLevels[%zu] malformed", i);
		if (svn >= v) {
			*lvl = l;
			return 0;
		}
	}
	return hsm_err(HSM_EPERM, "tcb_level: TDX module SVN %u below every "
	    "level of its identity (TCB not supported)", svn);
}

static int
config_needed(enum sgx_tcb_status st)
{
	return st == SGX_TCB_CONFIGURATION_NEEDED ||
	    st == SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED ||
	    st == SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED ||
	    st == SGX_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED;
}

/* svn of tdxtcbcomponents[k] of level l, or -1. */
static long
tdx_comp(struct json_object *l, unsigned k)
{
	struct json_object *tcb, *comps;
	unsigned v;

	if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
	    (comps = jget(tcb, "tdxtcbcomponents", json_type_array)) == NULL ||
	    json_object_array_length(comps) != 16 ||
	    jint(json_object_array_get_idx(comps, k), "svn", &v) != 0)
		return -1;
	return (long)v;
}

/*
 * TD report 1.5: a TD whose platform was updated since it launched (its
 * TEE_TCB_SVN2, the current module, reaches the newest level while
 * TEE_TCB_SVN, the one it was launched on, is OutOfDate) is told to
 * relaunch rather than judged out of date: Intel's QVL check, where sgx
 * is the SGX level's status, tdx the TDX level converged with the module,
 * module the module's own status (UNKNOWN if no identity applied).
 */
static int
td_relaunch(struct json_object *ti, const struct sgx_td_report *td,
    enum sgx_tcb_status sgx, enum sgx_tcb_status module,
    enum sgx_tcb_status qe, enum sgx_tcb_status *tdx)
{
	struct json_object *levels, *latest, *ident, *ml, *tcb;
	const uint8_t *s2 = td->tee_tcb_svn2;
	unsigned need0;
	long c;

	if (qe == SGX_TCB_OUT_OF_DATE || qe == SGX_TCB_REVOKED)
		return 0;
	if (sgx != SGX_TCB_UP_TO_DATE && sgx != SGX_TCB_SW_HARDENING_NEEDED &&
	    sgx != SGX_TCB_CONFIGURATION_NEEDED &&
	    sgx != SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED)
		return 0;
	if (*tdx != SGX_TCB_OUT_OF_DATE &&
	    *tdx != SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED)
		return 0;
	if (module != SGX_TCB_OUT_OF_DATE)
		return 0;
	if ((levels = jget(ti, "tcbLevels", json_type_array)) == NULL ||
	    json_object_array_length(levels) == 0)
		return hsm_err(HSM_EPERM, "tcb_level: no TDX TCB level (TCB "
		    "not supported)");
	latest = json_object_array_get_idx(levels, 0);
	if (s2[1] == 0) {
		if ((c = tdx_comp(latest, 0)) < 0)
			return hsm_err(HSM_EPROTO, "tcb_level: tcbLevels[0] "
			    "tdx components");
		need0 = (unsigned)c;
	} else {
		if ((ident = tdx_module_identity(ti, s2[1])) == NULL)
			return hsm_err(HSM_EPERM, "tcb_level: TCB Info has no "
			    "identity TDX_%02X for TEE_TCB_SVN2", s2[1]);
		if ((levels = jget(ident, "tcbLevels",
		    json_type_array)) == NULL ||
		    json_object_array_length(levels) == 0)
			return hsm_err(HSM_EPERM, "tcb_level: TDX module "
			    "identity without levels (TCB not supported)");
		ml = json_object_array_get_idx(levels, 0);
		if ((tcb = jget(ml, "tcb", json_type_object)) == NULL ||
		    jint(tcb, "isvsvn", &need0) != 0)
			return hsm_err(HSM_EPROTO, "tcb_level: TDX module "
			    "tcbLevels[0] malformed");
	}
	if ((c = tdx_comp(latest, 2)) < 0)
		return hsm_err(HSM_EPROTO, "tcb_level: tcbLevels[0] tdx "
		    "components");
	if (s2[0] >= need0 && s2[2] >= (unsigned long)c)
		*tdx = config_needed(sgx) || config_needed(*tdx) ?
		    SGX_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED :
		    SGX_TCB_TD_RELAUNCH_ADVISED;
	return 0;
}

int
sgx_tcb_level(struct json_object *ti, const struct sgx_pck_tcb *pt,
    const struct sgx_quote *q, struct json_object *ident,
    struct json_object *qe_level, struct sgx_tcb_verdict *r)
{
	struct json_object *l, *tl, *ml, *tmp;
	int rc, tdx = q->tee_type == SGX_TEE_TDX;

	if ((rc = match_levels(ti, pt, tdx ? q->td.tee_tcb_svn : NULL, &l,
	    &tl)) != 0)
		return rc;
	if (tdx) {
		if ((r->sgx_level_status = level_status(l)) ==
		    SGX_TCB_UNKNOWN)
			goto unknown;
		l = tl;
	}
	if ((r->platform_status = level_status(l)) == SGX_TCB_UNKNOWN)
		goto unknown;
	add_advisories(l, r);
	if (ident != NULL) {
		/* the TDX module: its SVN against its identity's levels */
		if ((rc = tdx_module_level(ident, q->td.tee_tcb_svn[0],
		    &ml)) != 0)
			return rc;
		r->tdx_module_status = level_status(ml);
		if (r->tdx_module_status != SGX_TCB_UP_TO_DATE &&
		    r->tdx_module_status != SGX_TCB_OUT_OF_DATE &&
		    r->tdx_module_status != SGX_TCB_REVOKED)
			return hsm_err(HSM_EPROTO, "tcb_level: TDX module "
			    "level status not UpToDate, OutOfDate or Revoked");
		add_advisories(ml, r);
		r->platform_status = converge(r->platform_status,
		    r->tdx_module_status);
	}
	if (tdx && q->body_type == SGX_BODY_TD15 &&
	    r->platform_status != SGX_TCB_REVOKED &&
	    (rc = td_relaunch(ti, &q->td, r->sgx_level_status,
	    r->tdx_module_status, r->qe_status, &r->platform_status)) != 0)
		return rc;
	/* Converge platform and QE status as Intel's QVL does. */
	r->tcb_status = converge(r->platform_status, r->qe_status);
	if (qe_level != NULL)
		add_advisories(qe_level, r);
	return 0;
 unknown:
	tmp = jget(l, "tcbStatus", json_type_string);
	return hsm_err(HSM_EPROTO, "tcb_level: unknown tcbStatus '%.40s'",
	    tmp != NULL ? json_object_get_string(tmp) : "?");
}

/* ---- the tcb_info and qe_identity steps ---- */

int
sgx_tcb_info_check(struct json_object *ti, const struct sgx_quote *q,
    const struct sgx_pck_tcb *pt)
{
	struct json_object *id;
	unsigned v;
	int tdx = q->tee_type == SGX_TEE_TDX;

	if (jint(ti, "version", &v) != 0 || (v != 2 && v != 3))
		return hsm_err(HSM_EUNSUPPORTED, "tcb_info: version not 2 or 3");
	/* v3 names the TEE; v2 is SGX only and has no id */
	id = jget(ti, "id", json_type_string);
	if (tdx && (v != 3 || id == NULL ||
	    strcmp(json_object_get_string(id), "TDX") != 0))
		return hsm_err(HSM_EPERM, "tcb_info: not a TDX TCB Info (id "
		    "TDX, version 3) for a TDX quote");
	if (!tdx && ((v == 3 && id == NULL) || (id != NULL &&
	    strcmp(json_object_get_string(id), "SGX") != 0)))
		return hsm_err(HSM_EPROTO, "tcb_info: id is not SGX");
	if (jget(ti, "tcbType", json_type_int) != NULL &&
	    (jint(ti, "tcbType", &v) != 0 || v != 0))
		return hsm_err(HSM_EUNSUPPORTED, "tcb_info: tcbType not 0");
	if (hexfield_eq(ti, "fmspc", pt->fmspc, 6) != 0 ||
	    hexfield_eq(ti, "pceId", pt->pceid, 2) != 0)
		return hsm_err(HSM_EPERM, "tcb_info: FMSPC or PCEID does not "
		    "match the PCK certificate");
	return 0;
}

/* The hex string member key of o, exactly n bytes, into out; -1 if not. */
static int
jhex(struct json_object *o, const char *key, uint8_t *out, size_t n)
{
	struct json_object *v;

	if ((v = jget(o, key, json_type_string)) == NULL ||
	    strlen(json_object_get_string(v)) != 2 * n ||
	    hsm_unhex(json_object_get_string(v), 2 * n, out) != 0)
		return -1;
	return 0;
}

int
sgx_qe_identity_check(struct json_object *qi, const struct sgx_quote *q,
    struct json_object **level, struct sgx_tcb_verdict *v)
{
	const struct sgx_report_body *qe = &q->qe_report;
	struct json_object *tmp, *levels, *l;
	uint8_t mb[4], mm[4], attr[16], amask[16];
	unsigned misc, miscmask, prodid, svn, ver;
	int tdx = q->tee_type == SGX_TEE_TDX;
	size_t n;

	*level = NULL;
	/* TDX quotes come from the TD QE, described by an identity v2 */
	if ((tmp = jget(qi, "id", json_type_string)) == NULL ||
	    strcmp(json_object_get_string(tmp), tdx ? "TD_QE" : "QE") != 0 ||
	    (tdx && (jint(qi, "version", &ver) != 0 || ver != 2)))
		return hsm_err(tdx ? HSM_EPERM : HSM_EPROTO, "qe_identity: id "
		    "is not %s", tdx ? "TD_QE (version 2)" : "QE");
	if (jhex(qi, "miscselect", mb, 4) != 0 ||
	    jhex(qi, "miscselectMask", mm, 4) != 0)
		return hsm_err(HSM_EPROTO, "qe_identity: miscselect");
	/*
	 * The hex text is the field's bytes in report order (as Intel's QVL
	 * reads it), i.e. a little-endian u32.
	 */
	misc = hsm_getle32(mb);
	miscmask = hsm_getle32(mm);
	if (jhex(qi, "attributes", attr, 16) != 0 ||
	    jhex(qi, "attributesMask", amask, 16) != 0 ||
	    jint(qi, "isvprodid", &prodid) != 0)
		return hsm_err(HSM_EPROTO, "qe_identity: attributes or "
		    "isvprodid malformed");
	if ((qe->miscselect & miscmask) != (misc & miscmask))
		return hsm_err(HSM_EPERM, "qe_identity: QE miscselect mismatch");
	for (size_t i = 0; i < 16; i++)
		if ((qe->attributes[i] & amask[i]) != (attr[i] & amask[i]))
			return hsm_err(HSM_EPERM, "qe_identity: QE attributes "
			    "mismatch");
	if (hexfield_eq(qi, "mrsigner", qe->mrsigner, 32) != 0 ||
	    qe->isv_prod_id != prodid)
		return hsm_err(HSM_EPERM, "qe_identity: QE MRSIGNER or ISVPRODID "
		    "mismatch");
	if ((levels = jget(qi, "tcbLevels", json_type_array)) == NULL)
		return hsm_err(HSM_EPROTO, "qe_identity: no tcbLevels");
	/* Below every level: revoked, as in Intel's QVL. */
	v->qe_status = SGX_TCB_REVOKED;
	n = json_object_array_length(levels);
	for (size_t i = 0; i < n; i++) {
		l = json_object_array_get_idx(levels, i);
		if ((tmp = jget(l, "tcb", json_type_object)) == NULL ||
		    jint(tmp, "isvsvn", &svn) != 0)
			return hsm_err(HSM_EPROTO, "qe_identity: tcbLevels[%zu] "
			    "malformed", i);
		if (qe->isv_svn >= svn) {
			*level = l;
			v->qe_status = level_status(l);
			break;
		}
	}
	if (v->qe_status == SGX_TCB_UNKNOWN)
		return hsm_err(HSM_EPROTO, "qe_identity: unknown tcbStatus");
	return 0;
}
