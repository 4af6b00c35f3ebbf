/* config.c - YAML configuration files (see config.h). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "config.h"
#include "err.h"
#include "keytypes.h"
#include "p11uri.h"
#include "util.h"

#define CFG_MAX_FILE (1024 * 1024)	/* a config file is small; refuse a runaway one */
#define CFG_MAX_DEPTH 32
#define CFG_MAX_NODES 100000

/* ---- the tree ---- */

static void
node_free(struct cfg_node *n)
{
	struct cfg_node *c, *next;

	if (n == NULL)
		return;
	for (c = n->child; c != NULL; c = next) {
		next = c->next;
		node_free(c);
	}
	free(n->key);
	free(n->value);
	free(n);
}

void
cfg_doc_free(struct cfg_doc *d)
{
	if (d == NULL)
		return;
	node_free(d->root);
	free(d->name);
	free(d->dir);
	free(d);
}

struct pstate {
	yaml_parser_t p;
	const char *name;
	const uint8_t *buf;	/* the text, to turn a byte offset into a line */
	size_t len;
	size_t nodes;
};

/* Turn libyaml's parser error into our one-line error. */
static int
yaml_fail(struct pstate *ps)
{
	const char *what = ps->p.problem != NULL ? ps->p.problem : "syntax error";

	if (ps->p.error == YAML_READER_ERROR) {
		/* The reader (encoding) knows only a byte offset. */
		size_t i, line = 1;

		for (i = 0; i < ps->p.problem_offset && i < ps->len; i++)
			line += ps->buf[i] == '\n';
		return hsm_err(HSM_ECONFIG, "%s: %s at line %zu", ps->name, what, line);
	}
	if (ps->p.context != NULL)
		return hsm_err(HSM_ECONFIG, "%s: %s %s at line %zu", ps->name, ps->p.context,
		    what, ps->p.problem_mark.line + 1);
	return hsm_err(HSM_ECONFIG, "%s: %s at line %zu", ps->name, what,
	    ps->p.problem_mark.line + 1);
}

static int
next_event(struct pstate *ps, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&ps->p, ev)) {
		memset(ev, 0, sizeof(*ev));
		return yaml_fail(ps);
	}
	return 0;
}

/* A scalar's text as a C string; a NUL inside would silently cut it, so refuse it. */
static int
scalar_dup(struct pstate *ps, const yaml_event_t *ev, char **out)
{
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;

	*out = NULL;
	if (memchr(v, '\0', len) != NULL)
		return hsm_err(HSM_ECONFIG, "%s: value contains a NUL byte at line %zu", ps->name,
		    ev->start_mark.line + 1);
	if ((*out = strndup(v, len)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	return 0;
}

static int parse_node(struct pstate *ps, const yaml_event_t *ev, int depth,
    struct cfg_node **out);

/* Read entries until the closing event of a mapping or sequence starting at n. */
static int
parse_children(struct pstate *ps, struct cfg_node *n, int depth)
{
	struct cfg_node **tail = &n->child, *c, *child = NULL;
	yaml_event_t kev, vev;
	char *key = NULL;
	unsigned line;
	int r = 0, want_end = n->type == CFG_MAP ? YAML_MAPPING_END_EVENT :
	    YAML_SEQUENCE_END_EVENT;

	memset(&kev, 0, sizeof(kev));
	memset(&vev, 0, sizeof(vev));
	for (;;) {
		if ((r = next_event(ps, &kev)) != 0)
			goto out;
		if ((int)kev.type == want_end)
			break;
		line = (unsigned)kev.start_mark.line + 1;
		if (n->type == CFG_MAP) {
			if (kev.type != YAML_SCALAR_EVENT) {
				r = hsm_err(HSM_ECONFIG, "%s: a key must be a plain string at line %u",
				    ps->name, line);
				goto out;
			}
			if ((r = scalar_dup(ps, &kev, &key)) != 0)
				goto out;
			for (c = n->child; c != NULL; c = c->next) {
				if (strcmp(c->key, key) == 0) {
					r = hsm_err(HSM_ECONFIG, "%s: duplicate key '%s' at line %u",
					    ps->name, key, line);
					goto out;
				}
			}
			yaml_event_delete(&kev);
			memset(&kev, 0, sizeof(kev));
			if ((r = next_event(ps, &vev)) != 0)
				goto out;
			if ((r = parse_node(ps, &vev, depth + 1, &child)) != 0)
				goto out;
			yaml_event_delete(&vev);
			memset(&vev, 0, sizeof(vev));
			child->key = key;
			child->line = line;
			key = NULL;
		} else {
			if ((r = parse_node(ps, &kev, depth + 1, &child)) != 0)
				goto out;
			yaml_event_delete(&kev);
			memset(&kev, 0, sizeof(kev));
		}
		*tail = child;
		tail = &child->next;
		child = NULL;
	}
 out:
	yaml_event_delete(&kev);
	yaml_event_delete(&vev);
	free(key);
	node_free(child);
	return r;
}

/* Build the node whose first event is ev (not consumed: the caller deletes it). */
static int
parse_node(struct pstate *ps, const yaml_event_t *ev, int depth, struct cfg_node **out)
{
	struct cfg_node *n = NULL;
	unsigned line = (unsigned)ev->start_mark.line + 1;
	const char *v;
	size_t len;
	int r;

	*out = NULL;
	if (++ps->nodes > CFG_MAX_NODES)
		return hsm_err(HSM_ECONFIG, "%s: too many values at line %u", ps->name, line);
	if (depth > CFG_MAX_DEPTH)
		return hsm_err(HSM_ECONFIG, "%s: nested deeper than %d levels at line %u", ps->name,
		    CFG_MAX_DEPTH, line);
	if (ev->type == YAML_ALIAS_EVENT)
		return hsm_err(HSM_ECONFIG, "%s: aliases are not supported at line %u", ps->name,
		    line);
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	n->line = line;
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n->type = CFG_SCALAR;
		if ((r = scalar_dup(ps, ev, &n->value)) != 0)
			goto out;
		v = n->value;
		len = strlen(v);
		/* YAML's null: an unquoted empty value, ~ or null. */
		n->is_null = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		    (len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
		    strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0);
		break;
	case YAML_MAPPING_START_EVENT:
		n->type = CFG_MAP;
		if ((r = parse_children(ps, n, depth)) != 0)
			goto out;
		break;
	case YAML_SEQUENCE_START_EVENT:
		n->type = CFG_SEQ;
		if ((r = parse_children(ps, n, depth)) != 0)
			goto out;
		break;
	default:
		r = hsm_err(HSM_ECONFIG, "%s: unexpected YAML structure at line %u", ps->name, line);
		goto out;
	}
	*out = n;
	n = NULL;
	r = 0;
 out:
	node_free(n);
	return r;
}

/* Parse the whole stream: nothing, or exactly one document whose top is a mapping. */
static int
parse_stream(struct pstate *ps, struct cfg_node **out)
{
	struct cfg_node *root = NULL;
	yaml_event_t ev;
	int r;

	*out = NULL;
	memset(&ev, 0, sizeof(ev));
	if ((r = next_event(ps, &ev)) != 0)	/* STREAM-START */
		goto out;
	yaml_event_delete(&ev);
	if ((r = next_event(ps, &ev)) != 0)
		goto out;
	if (ev.type == YAML_DOCUMENT_START_EVENT) {
		yaml_event_delete(&ev);
		if ((r = next_event(ps, &ev)) != 0 || (r = parse_node(ps, &ev, 0, &root)) != 0)
			goto out;
		yaml_event_delete(&ev);
		if ((r = next_event(ps, &ev)) != 0)	/* DOCUMENT-END */
			goto out;
		yaml_event_delete(&ev);
		if ((r = next_event(ps, &ev)) != 0)
			goto out;
		if (ev.type != YAML_STREAM_END_EVENT) {
			r = hsm_err(HSM_ECONFIG, "%s: only one YAML document is allowed (line %zu)",
			    ps->name, ev.start_mark.line + 1);
			goto out;
		}
	}
	if (root != NULL && root->type == CFG_SCALAR && root->is_null) {
		node_free(root);
		root = NULL;
	}
	if (root == NULL && (root = calloc(1, sizeof(*root))) != NULL) {
		root->type = CFG_MAP;
		root->line = 1;
	}
	if (root == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if (root->type != CFG_MAP) {
		r = hsm_err(HSM_ECONFIG, "%s: the top level must be a mapping of keys at line %u",
		    ps->name, root->line);
		goto out;
	}
	*out = root;
	root = NULL;
	r = 0;
 out:
	yaml_event_delete(&ev);
	node_free(root);
	return r;
}

int
cfg_doc_parse(const char *name, const char *dir, const uint8_t *buf, size_t len,
    struct cfg_doc **out)
{
	struct cfg_doc *d = NULL;
	struct pstate ps;
	int r;

	*out = NULL;
	memset(&ps, 0, sizeof(ps));
	if ((d = calloc(1, sizeof(*d))) == NULL || (d->name = strdup(name)) == NULL ||
	    (d->dir = strdup(dir != NULL ? dir : ".")) == NULL) {
		cfg_doc_free(d);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	if (!yaml_parser_initialize(&ps.p)) {
		cfg_doc_free(d);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	ps.name = d->name;
	ps.buf = buf;
	ps.len = len;
	yaml_parser_set_input_string(&ps.p, buf, len);
	r = parse_stream(&ps, &d->root);
	yaml_parser_delete(&ps.p);
	if (r != 0) {
		cfg_doc_free(d);
		/* Out of memory stays itself; everything else is the file's fault. */
		return r == HSM_ENOMEM ? r : HSM_ECONFIG;
	}
	*out = d;
	return 0;
}

int
cfg_doc_load(const char *path, struct cfg_doc **out)
{
	char dirbuf[PATH_MAX], real[PATH_MAX], why[512];
	const char *slash;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r, n;

	*out = NULL;
	if ((r = hsm_read_file(path, CFG_MAX_FILE, &buf, &len)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return hsm_err(r == HSM_ENOMEM ? r : HSM_ECONFIG, "%s", why);
	}
	/* Relative paths inside the file mean "next to the file", wherever we run from. */
	if ((slash = strrchr(path, '/')) == NULL)
		n = snprintf(dirbuf, sizeof(dirbuf), ".");
	else if (slash == path)
		n = snprintf(dirbuf, sizeof(dirbuf), "/");
	else
		n = snprintf(dirbuf, sizeof(dirbuf), "%.*s", (int)(slash - path), path);
	if (n < 0 || (size_t)n >= sizeof(dirbuf) || realpath(dirbuf, real) == NULL) {
		free(buf);
		return hsm_err(HSM_ECONFIG, "%s: cannot resolve its directory", path);
	}
	r = cfg_doc_parse(path, real, buf, len, out);
	free(buf);
	return r;
}

/* ---- lookups and getters ---- */

/* Find the entry named by the first n bytes of part in map m. */
static const struct cfg_node *
map_get(const struct cfg_node *m, const char *part, size_t n)
{
	const struct cfg_node *c;

	if (m == NULL || m->type != CFG_MAP)
		return NULL;
	for (c = m->child; c != NULL; c = c->next)
		if (strlen(c->key) == n && strncmp(c->key, part, n) == 0)
			return c;
	return NULL;
}

/*
 * Walk a dotted key. *out is NULL when absent. A section on the way that
 * exists but is not a mapping is an error: "token: foo" must not read as
 * "token.module is missing".
 */
static int
lookup(const struct cfg_doc *d, const char *key, const struct cfg_node **out)
{
	const struct cfg_node *n = d->root;
	const char *p = key, *dot;
	size_t n_len;

	*out = NULL;
	for (;;) {
		dot = strchr(p, '.');
		n_len = dot != NULL ? (size_t)(dot - p) : strlen(p);
		if ((n = map_get(n, p, n_len)) == NULL)
			return 0;
		if (dot == NULL)
			break;
		if (n->type != CFG_MAP)
			return hsm_err(HSM_ECONFIG, "%s: '%.*s' must be a mapping of keys at line %u",
			    d->name, (int)(dot - key), key, n->line);
		p = dot + 1;
	}
	*out = n;
	return 0;
}

const struct cfg_node *
cfg_find(const struct cfg_doc *d, const char *key)
{
	const struct cfg_node *n;

	if (lookup(d, key, &n) != 0)
		return NULL;
	return n;
}

int
cfg_err(const struct cfg_doc *d, const char *key, const char *fmt, ...)
{
	const struct cfg_node *n;
	char msg[400];
	va_list ap;

	/* Format first: an argument may live in err.c's buffer, which cfg_find can rewrite. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = key != NULL ? cfg_find(d, key) : NULL;
	if (n != NULL)
		return hsm_err(HSM_ECONFIG, "%s: %s at line %u", d->name, msg, n->line);
	return hsm_err(HSM_ECONFIG, "%s: %s", d->name, msg);
}

int
cfg_node_err(const struct cfg_doc *d, const struct cfg_node *n, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return hsm_err(HSM_ECONFIG, "%s: %s at line %u", d->name, msg, n->line);
}

static int
is_known(const char *full, const char *const *known, int *section)
{
	size_t n = strlen(full);

	*section = 0;
	for (; *known != NULL; known++) {
		if (strcmp(*known, full) == 0)
			return 1;
		if (strncmp(*known, full, n) == 0 && (*known)[n] == '.')
			*section = 1;
	}
	return *section;
}

static int
check_map(const struct cfg_doc *d, const struct cfg_node *m, const char *prefix,
    const char *const *known)
{
	const struct cfg_node *c;
	char full[256];
	int n, r, section;

	for (c = m->child; c != NULL; c = c->next) {
		n = prefix != NULL ? snprintf(full, sizeof(full), "%s.%s", prefix, c->key) :
		    snprintf(full, sizeof(full), "%s", c->key);
		/* A literal dot in a key would alias a nested key in the dotted names. */
		if (n < 0 || (size_t)n >= sizeof(full) || strchr(c->key, '.') != NULL ||
		    !is_known(full, known, &section))
			return hsm_err(HSM_ECONFIG, "%s: unknown key '%.*s' at line %u", d->name,
			    n > 0 && n < 200 ? n : 200, full, c->line);
		if (section && c->type == CFG_MAP && (r = check_map(d, c, full, known)) != 0)
			return r;
	}
	return 0;
}

int
cfg_check_known(const struct cfg_doc *d, const char *const *known)
{
	return check_map(d, d->root, NULL, known);
}

static const char *
type_name(enum cfg_type t)
{
	return t == CFG_MAP ? "a mapping" : t == CFG_SEQ ? "a list" : "a string";
}

int
cfg_node_value(const struct cfg_doc *d, const struct cfg_node *n, const char *name,
    const char **out)
{
	*out = NULL;
	if (n->type != CFG_SCALAR)
		return cfg_node_err(d, n, "'%s' must be a single value, not %s", name,
		    type_name(n->type));
	if (n->is_null)
		return cfg_node_err(d, n, "'%s' has no value", name);
	if (n->value[0] == '\0')
		return cfg_node_err(d, n, "'%s' must not be empty", name);
	*out = n->value;
	return 0;
}

/* The scalar at key, or NULL when absent; wrong type, null and "" are errors. */
static int
get_scalar(const struct cfg_doc *d, const char *key, const struct cfg_node **out)
{
	const struct cfg_node *n;
	const char *v;
	int r;

	*out = NULL;
	if ((r = lookup(d, key, &n)) != 0)
		return r;
	if (n == NULL)
		return 0;
	if ((r = cfg_node_value(d, n, key, &v)) != 0)
		return r;
	*out = n;
	return 0;
}

int
cfg_require(const struct cfg_doc *d, const char *key)
{
	const struct cfg_node *n;
	const char *dot;
	int r;

	if ((r = lookup(d, key, &n)) != 0)
		return r;
	if (n != NULL)
		return 0;
	/* For a nested key, point at the section that lacks it. */
	if ((dot = strrchr(key, '.')) != NULL) {
		char sec[128];

		snprintf(sec, sizeof(sec), "%.*s", (int)(dot - key), key);
		if (lookup(d, sec, &n) == 0 && n != NULL)
			return hsm_err(HSM_ECONFIG, "%s: missing required key '%s' in section '%s' at line %u",
			    d->name, key, sec, n->line);
	}
	return hsm_err(HSM_ECONFIG, "%s: missing required key '%s'", d->name, key);
}

int
cfg_get_str(const struct cfg_doc *d, const char *key, const char *def, char **out)
{
	const struct cfg_node *n;
	const char *v;
	int r;

	*out = NULL;
	if ((r = get_scalar(d, key, &n)) != 0)
		return r;
	v = n != NULL ? n->value : def;
	if (v != NULL && (*out = strdup(v)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	return 0;
}

int
cfg_resolve_path(const char *dir, const char *path, char **out)
{
	size_t dl, pl;
	char *p;

	*out = NULL;
	if (path[0] == '/' || dir == NULL) {
		if ((*out = strdup(path)) == NULL)
			return hsm_err(HSM_ENOMEM, "out of memory");
		return 0;
	}
	dl = strlen(dir);
	pl = strlen(path);
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	if ((p = malloc(dl + 1 + pl + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	memcpy(p, dir, dl);
	if (!(dl == 1 && dir[0] == '/'))
		p[dl++] = '/';
	memcpy(p + dl, path, pl + 1);
	*out = p;
	return 0;
}

int
cfg_get_path(const struct cfg_doc *d, const char *key, const char *def, char **out)
{
	const struct cfg_node *n;
	const char *v;
	int r;

	*out = NULL;
	if ((r = get_scalar(d, key, &n)) != 0)
		return r;
	if ((v = n != NULL ? n->value : def) == NULL)
		return 0;
	if (strlen(v) >= PATH_MAX)
		return cfg_err(d, key, "'%s' is longer than %d bytes", key, PATH_MAX - 1);
	return cfg_resolve_path(d->dir, v, out);
}

int
cfg_get_duration(const struct cfg_doc *d, const char *key, const char *def, int64_t *out)
{
	const struct cfg_node *n;
	char why[256];
	int r;

	*out = 0;
	if ((r = get_scalar(d, key, &n)) != 0)
		return r;
	if (n == NULL && def == NULL)
		return 0;
	if ((r = hsm_parse_duration(n != NULL ? n->value : def, out)) != 0) {
		/* Copy the detail out of err.c's buffer before it is rewritten. */
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return cfg_err(d, key, "'%s': %s", key, why);
	}
	return 0;
}

int
cfg_get_uint(const struct cfg_doc *d, const char *key, unsigned long long def,
    unsigned long long min, unsigned long long max, unsigned long long *out)
{
	const struct cfg_node *n;
	unsigned long long v = 0, dig;
	const char *p;
	int r;

	*out = def;
	if ((r = get_scalar(d, key, &n)) != 0 || n == NULL)
		return r;
	/* Digits only (strtoull would take a sign and spaces, and wrap "-1" around); stop above max. */
	for (p = n->value; *p >= '0' && *p <= '9'; p++) {
		dig = (unsigned long long)(*p - '0');
		if (v > max / 10 || dig > max - v * 10)
			break;
		v = v * 10 + dig;
	}
	if (*p != '\0' || v < min)
		return cfg_err(d, key, "'%s' must be a whole number from %llu to %llu, not '%.40s'",
		    key, min, max, n->value);
	*out = v;
	return 0;
}

int
cfg_get_bool(const struct cfg_doc *d, const char *key, int def, int *out)
{
	const struct cfg_node *n;
	int r;

	*out = def;
	if ((r = get_scalar(d, key, &n)) != 0 || n == NULL)
		return r;
	if (strcasecmp(n->value, "true") == 0 || strcasecmp(n->value, "yes") == 0)
		*out = 1;
	else if (strcasecmp(n->value, "false") == 0 || strcasecmp(n->value, "no") == 0)
		*out = 0;
	else
		return cfg_err(d, key, "'%s' must be true or false, not '%.40s'", key, n->value);
	return 0;
}

/* ---- entries of lists ---- */

const struct cfg_node *
cfg_node_child(const struct cfg_node *m, const char *key)
{
	return map_get(m, key, strlen(key));
}

/* "label.key", or key alone at the top level. */
static void
node_name(const char *label, const char *key, char *buf, size_t cap)
{
	if (label != NULL)
		snprintf(buf, cap, "%s.%s", label, key);
	else
		snprintf(buf, cap, "%s", key);
}

int
cfg_node_check_known(const struct cfg_doc *d, const struct cfg_node *m, const char *label,
    const char *const *known)
{
	const struct cfg_node *c;
	const char *const *k;

	if (m->type != CFG_MAP)
		return cfg_node_err(d, m, "'%s' must be a mapping of keys, not %s", label,
		    type_name(m->type));
	for (c = m->child; c != NULL; c = c->next) {
		for (k = known; *k != NULL && strcmp(*k, c->key) != 0; k++)
			;
		if (*k == NULL)
			return cfg_node_err(d, c, "unknown key '%s.%.100s'", label, c->key);
	}
	return 0;
}

int
cfg_node_str(const struct cfg_doc *d, const struct cfg_node *m, const char *label,
    const char *key, int required, const char **out)
{
	const struct cfg_node *n = cfg_node_child(m, key);
	char name[256];

	*out = NULL;
	node_name(label, key, name, sizeof(name));
	if (n == NULL) {
		if (required)
			return cfg_node_err(d, m, "missing required key '%s'", name);
		return 0;
	}
	return cfg_node_value(d, n, name, out);
}

int
cfg_node_list(const struct cfg_doc *d, const struct cfg_node *m, const char *label,
    const char *key, const struct cfg_node **out)
{
	const struct cfg_node *n = cfg_node_child(m, key);
	char name[256];

	*out = NULL;
	if (n == NULL || (n->type == CFG_SCALAR && n->is_null))
		return 0;
	if (n->type != CFG_SEQ) {
		node_name(label, key, name, sizeof(name));
		return cfg_node_err(d, n, "'%s' must be a list, not %s", name, type_name(n->type));
	}
	*out = n;
	return 0;
}

/* ---- token section ---- */

void
cfg_token_clear(struct cfg_token *t)
{
	if (t == NULL)
		return;
	free(t->module);
	free(t->uri);
	free(t->pin_file);
	free(t->pin_env);
	memset(t, 0, sizeof(*t));
}

int
cfg_token_load(const struct cfg_doc *d, const char *section, struct cfg_token *t)
{
	char k_module[64], k_uri[64], k_file[64], k_env[64], k_delay[64], k_workers[64], why[400];
	char k_wmin[64], k_wmax[64];
	struct p11_uri u;
	unsigned long long delay, workers, wmin, wmax;
	const char *e;
	int r;

	memset(t, 0, sizeof(*t));
	snprintf(k_module, sizeof(k_module), "%s.module", section);
	snprintf(k_uri, sizeof(k_uri), "%s.uri", section);
	snprintf(k_file, sizeof(k_file), "%s.pin_file", section);
	snprintf(k_env, sizeof(k_env), "%s.pin_env", section);
	snprintf(k_delay, sizeof(k_delay), "%s.test_sign_delay_ms", section);
	snprintf(k_workers, sizeof(k_workers), "%s.workers", section);
	snprintf(k_wmin, sizeof(k_wmin), "%s.workers_min", section);
	snprintf(k_wmax, sizeof(k_wmax), "%s.workers_max", section);

	if ((r = cfg_require(d, section)) != 0 || (r = cfg_require(d, k_module)) != 0 ||
	    (r = cfg_require(d, k_uri)) != 0)
		goto fail;
	if ((r = cfg_get_path(d, k_module, NULL, &t->module)) != 0 ||
	    (r = cfg_get_str(d, k_uri, NULL, &t->uri)) != 0 ||
	    (r = cfg_get_path(d, k_file, NULL, &t->pin_file)) != 0 ||
	    (r = cfg_get_str(d, k_env, NULL, &t->pin_env)) != 0 ||
	    (r = cfg_get_uint(d, k_delay, 0, 0, 10000, &delay)) != 0 ||
	    (r = cfg_get_uint(d, k_workers, 0, 1, 64, &workers)) != 0 ||
	    (r = cfg_get_uint(d, k_wmin, 0, 1, 64, &wmin)) != 0 ||
	    (r = cfg_get_uint(d, k_wmax, 0, 1, 64, &wmax)) != 0)
		goto fail;
	t->sign_delay_ms = (unsigned)delay;
	t->workers = (unsigned)workers;
	t->workers_min = (unsigned)wmin;
	t->workers_max = (unsigned)wmax;
	/* workers fixes the size; the bounds are for a size that follows the token. */
	if (workers != 0 && (wmin != 0 || wmax != 0)) {
		r = cfg_err(d, wmin != 0 ? k_wmin : k_wmax, "'%s' fixes the token sessions: "
		    "give it or '%s'/'%s', not both", k_workers, k_wmin, k_wmax);
		goto fail;
	}
	if ((wmin != 0 ? wmin : 2) > (wmax != 0 ? wmax : 64)) {
		r = cfg_err(d, wmin != 0 ? k_wmin : k_wmax, "'%s' above '%s'", k_wmin, k_wmax);
		goto fail;
	}
	/* Parse the URI now: a typo should fail here, not inside the keyholder. */
	if (strncmp(t->uri, "pkcs11:", 7) != 0) {
		r = cfg_err(d, k_uri, "'%s' must be a pkcs11: URI", k_uri);
		goto fail;
	}
	if ((r = p11_uri_parse(t->uri, &u)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = cfg_err(d, k_uri, "'%s': %s", k_uri, why);
		goto fail;
	}
	if ((t->pin_file == NULL) == (t->pin_env == NULL)) {
		r = cfg_err(d, t->pin_file != NULL ? k_env : section,
		    "section '%s' needs exactly one of pin_file and pin_env", section);
		goto fail;
	}
	if (t->pin_env != NULL) {
		for (e = t->pin_env; *e != '\0'; e++) {
			if (!((*e >= 'A' && *e <= 'Z') || (*e >= 'a' && *e <= 'z') ||
			    (*e >= '0' && *e <= '9') || *e == '_')) {
				r = cfg_err(d, k_env, "'%s' is not an environment variable name", k_env);
				goto fail;
			}
		}
	}
	return 0;
 fail:
	cfg_token_clear(t);
	return r == HSM_ENOMEM ? r : HSM_ECONFIG;
}
