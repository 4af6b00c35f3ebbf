/*
 * p11uri.c - RFC 7512 "pkcs11:" URI parser (see p11uri.h).
 *
 * The URI names the token that holds the keys, so the parser is strict
 * where leniency would widen a match: unknown or repeated path attributes,
 * bad escapes, over-long values and NUL bytes in text attributes are all
 * errors. Input comes from configuration files, but the parser is fuzzed
 * as if it came from a peer.
 */
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "p11uri.h"
#include "util.h"

#define SCHEME "pkcs11:"

/*
 * Percent-decode the len bytes at v into out (at most cap bytes). Text
 * values (binary false) are NUL-terminated and may not contain a NUL:
 * "token=a%00b" would otherwise match token "a". Raw control characters
 * are refused: they never belong in a URI and hide well in config files.
 */
static int
pct_decode(const char *name, const char *v, size_t len, bool binary,
    uint8_t *out, size_t cap, size_t *outlen)
{
	size_t i, n = 0;
	int hi, lo;
	unsigned char c;

	*outlen = 0;
	for (i = 0; i < len; i++) {
		c = (unsigned char)v[i];
		if (c == '%') {
			if (len - i < 3)
				return hsm_err(HSM_EINVAL,
				    "pkcs11 URI attribute '%s': truncated %% escape", name);
			if ((hi = hsm_hexval((unsigned char)v[i + 1])) < 0 ||
			    (lo = hsm_hexval((unsigned char)v[i + 2])) < 0)
				return hsm_err(HSM_EINVAL,
				    "pkcs11 URI attribute '%s': bad %% escape", name);
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
			if (c == '\0' && !binary)
				return hsm_err(HSM_EINVAL,
				    "pkcs11 URI attribute '%s': NUL byte in a text value", name);
		} else if (c < 0x20 || c == 0x7f)
			return hsm_err(HSM_EINVAL,
			    "pkcs11 URI attribute '%s': control character", name);
		/* Keep one byte for the NUL of text values. */
		if (n >= cap - (binary ? 0 : 1))
			return hsm_err(HSM_EINVAL,
			    "pkcs11 URI attribute '%s' is too long (at most %zu bytes)",
			    name, cap - (binary ? 0 : 1));
		out[n++] = c;
	}
	if (!binary)
		out[n] = '\0';
	*outlen = n;
	return 0;
}

static int
text_attr(const char *name, const char *v, size_t len, bool *has, char *out, size_t cap)
{
	size_t n;
	int r;

	if (*has)
		return hsm_err(HSM_EINVAL, "pkcs11 URI attribute '%s' given twice", name);
	if ((r = pct_decode(name, v, len, false, (uint8_t *)out, cap, &n)) != 0)
		return r;
	*has = true;
	return 0;
}

static int
slot_id_attr(const char *v, size_t len, struct p11_uri *u)
{
	char buf[32];
	unsigned long id = 0;
	size_t n, i;
	int r;

	if (u->has_slot_id)
		return hsm_err(HSM_EINVAL, "pkcs11 URI attribute 'slot-id' given twice");
	if ((r = pct_decode("slot-id", v, len, false, (uint8_t *)buf, sizeof(buf), &n)) != 0)
		return r;
	if (n == 0)
		return hsm_err(HSM_EINVAL, "pkcs11 URI attribute 'slot-id' is empty");
	for (i = 0; i < n; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return hsm_err(HSM_EINVAL,
			    "pkcs11 URI attribute 'slot-id' is not a decimal number");
		if (id > (ULONG_MAX - (unsigned long)(buf[i] - '0')) / 10)
			return hsm_err(HSM_EINVAL, "pkcs11 URI attribute 'slot-id' is too large");
		id = id * 10 + (unsigned long)(buf[i] - '0');
	}
	u->slot_id = id;
	u->has_slot_id = true;
	return 0;
}

static int
path_attr(const char *name, size_t nlen, const char *v, size_t vlen, struct p11_uri *u)
{
	static const char *const types[] = { "public", "private", "cert", "secret-key", "data" };
	char nm[32];
	size_t i;
	int r;

	/* Attribute names are matched exactly (RFC 7512 names are lower-case). */
	if (nlen == 0 || nlen >= sizeof(nm))
		return hsm_err(HSM_EINVAL, "pkcs11 URI: bad path attribute name");
	memcpy(nm, name, nlen);
	nm[nlen] = '\0';

	if (strcmp(nm, "token") == 0)
		return text_attr(nm, v, vlen, &u->has_token, u->token, sizeof(u->token));
	if (strcmp(nm, "manufacturer") == 0)
		return text_attr(nm, v, vlen, &u->has_manufacturer, u->manufacturer,
		    sizeof(u->manufacturer));
	if (strcmp(nm, "serial") == 0)
		return text_attr(nm, v, vlen, &u->has_serial, u->serial, sizeof(u->serial));
	if (strcmp(nm, "model") == 0)
		return text_attr(nm, v, vlen, &u->has_model, u->model, sizeof(u->model));
	if (strcmp(nm, "object") == 0)
		return text_attr(nm, v, vlen, &u->has_object, u->object, sizeof(u->object));
	if (strcmp(nm, "slot-id") == 0)
		return slot_id_attr(v, vlen, u);
	if (strcmp(nm, "id") == 0) {
		if (u->has_id)
			return hsm_err(HSM_EINVAL, "pkcs11 URI attribute 'id' given twice");
		if ((r = pct_decode(nm, v, vlen, true, u->id, sizeof(u->id), &u->id_len)) != 0)
			return r;
		u->has_id = true;
		return 0;
	}
	if (strcmp(nm, "type") == 0) {
		if ((r = text_attr(nm, v, vlen, &u->has_type, u->type, sizeof(u->type))) != 0)
			return r;
		for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcmp(u->type, types[i]) == 0)
				return 0;
		u->has_type = false;
		return hsm_err(HSM_EINVAL, "pkcs11 URI attribute 'type': unknown object type");
	}
	/*
	 * library-*, slot-description, slot-manufacturer and vendor x-*
	 * attributes are valid RFC 7512 but not matched here: ignoring them
	 * would select more tokens than the URI's author meant.
	 */
	return hsm_err(HSM_EINVAL, "pkcs11 URI: unknown or unsupported path attribute '%s'", nm);
}

static int
query_attr(const char *name, size_t nlen, const char *v, size_t vlen, struct p11_uri *u)
{
	if (nlen == 9 && memcmp(name, "pin-value", 9) == 0)
		return hsm_err(HSM_EINVAL,
		    "pkcs11 URI: pin-value is refused (give the PIN in a file or environment variable)");
	if (nlen == 10 && memcmp(name, "pin-source", 10) == 0)
		return text_attr("pin-source", v, vlen, &u->has_pin_source, u->pin_source,
		    sizeof(u->pin_source));
	if (nlen == 11 && memcmp(name, "module-path", 11) == 0)
		return text_attr("module-path", v, vlen, &u->has_module_path, u->module_path,
		    sizeof(u->module_path));
	/* RFC 7512: unknown query attributes are ignored (module-name among them). */
	return 0;
}

/* Split s[0..len) on sep into name=value pairs and hand each to fn. */
static int
parse_attrs(const char *s, size_t len, char sep, bool query,
    int (*fn)(const char *, size_t, const char *, size_t, struct p11_uri *),
    struct p11_uri *u)
{
	const char *p = s, *end = s + len, *e, *eq;
	int r;

	while (p < end) {
		if ((e = memchr(p, sep, (size_t)(end - p))) == NULL)
			e = end;
		if (e == p) {
			/* Tolerate an empty component ("a=b;" or "?&x=y"). */
			p = e + 1;
			continue;
		}
		if ((eq = memchr(p, '=', (size_t)(e - p))) == NULL)
			return hsm_err(HSM_EINVAL, "pkcs11 URI: %s attribute without '='",
			    query ? "query" : "path");
		if ((r = fn(p, (size_t)(eq - p), eq + 1, (size_t)(e - eq - 1), u)) != 0)
			return r;
		p = e + 1;
	}
	return 0;
}

int
p11_uri_parse(const char *s, struct p11_uri *out)
{
	struct p11_uri u;
	const char *path, *q;
	size_t len, plen;
	int r;

	memset(out, 0, sizeof(*out));
	memset(&u, 0, sizeof(u));
	if (s == NULL)
		return hsm_err(HSM_EINVAL, "pkcs11 URI missing");
	len = strlen(s);
	if (len < sizeof(SCHEME) - 1 || strncasecmp(s, SCHEME, sizeof(SCHEME) - 1) != 0)
		return hsm_err(HSM_EINVAL, "not a pkcs11: URI");
	path = s + sizeof(SCHEME) - 1;
	len -= sizeof(SCHEME) - 1;
	if ((q = memchr(path, '?', len)) != NULL)
		plen = (size_t)(q - path);
	else
		plen = len;
	/* A fragment has no meaning here; '#' must be escaped in values. */
	if (memchr(path, '#', len) != NULL)
		return hsm_err(HSM_EINVAL, "pkcs11 URI: unexpected '#'");
	if ((r = parse_attrs(path, plen, ';', false, path_attr, &u)) != 0)
		return r;
	if (q != NULL && (r = parse_attrs(q + 1, len - plen - 1, '&', true, query_attr, &u)) != 0)
		return r;
	*out = u;
	return 0;
}

bool
p11_uri_field_eq(const unsigned char *field, size_t len, const char *want)
{
	size_t wlen = strlen(want);

	/* PKCS#11 pads with blanks; some modules pad with NULs instead. */
	while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0'))
		len--;
	while (wlen > 0 && want[wlen - 1] == ' ')
		wlen--;
	return len == wlen && memcmp(field, want, len) == 0;
}
