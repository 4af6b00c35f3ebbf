/*
 * config.h - daemon configuration files (YAML).
 *
 * Two layers. The generic one reads a YAML file into a small tree
 * (mappings, sequences, scalars, each with its line number) and offers
 * typed getters addressed by dotted keys ("token.module") plus a check
 * against the list of keys a daemon knows, so every daemon's file gets the
 * same strictness and the same one-line errors:
 *
 *   ca.yaml: unknown key 'foo' at line 3
 *   ca.yaml: 'svid_ttl' bad duration '1x': unit must be s, m, h or d at line 7
 *
 * The typed layers (caconf.h for ca.yaml, proxyconf.h, the agent's) turn
 * one file into one struct with the tree, the getters and struct cfg_token.
 *
 * Every error is HSM_ECONFIG with a one-line hsm_err() detail naming the
 * file and, where the key exists, its line. Secrets are never read here:
 * a PIN is named by a file path or an environment variable name, and only
 * the keyholder reads it.
 */
#ifndef HSM_CONFIG_H
#define HSM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "keytypes.h"

/* ---- generic YAML tree ---- */

enum cfg_type { CFG_SCALAR = 1, CFG_MAP = 2, CFG_SEQ = 3 };

struct cfg_node {
	enum cfg_type type;
	char *key;		/* entry of a mapping: its key; otherwise NULL */
	char *value;		/* CFG_SCALAR: the text */
	int is_null;		/* scalar written as nothing, ~ or null (unquoted) */
	unsigned line;		/* 1-based; for a mapping entry, the key's line */
	struct cfg_node *child;	/* CFG_MAP/CFG_SEQ: first entry */
	struct cfg_node *next;	/* next entry of the parent */
};

struct cfg_doc {
	char *name;		/* file name as given, for messages */
	char *dir;		/* absolute directory relative paths resolve against */
	struct cfg_node *root;	/* always a CFG_MAP (empty for an empty file) */
};

/*
 * Read and parse the YAML file at path. The top level must be a mapping;
 * keys are strings and unique; aliases and multiple documents are
 * refused (tags are ignored: every scalar is text to the getters). Caller
 * frees *out with cfg_doc_free(). 0 or HSM_ECONFIG.
 */
int cfg_doc_load(const char *path, struct cfg_doc **out);

/*
 * Parse len bytes of YAML text. name is used in messages, dir (may be
 * NULL: the current directory) for relative paths. 0 or HSM_ECONFIG.
 */
int cfg_doc_parse(const char *name, const char *dir, const uint8_t *buf, size_t len,
    struct cfg_doc **out);

/* Free a document. Accepts NULL. */
void cfg_doc_free(struct cfg_doc *d);

/*
 * Refuse any key not in known (NULL-terminated list of dotted keys;
 * listing "token.module" makes "token" a known section). Sequences are
 * leaves. 0 or HSM_ECONFIG "NAME: unknown key 'token.foo' at line 5".
 */
int cfg_check_known(const struct cfg_doc *d, const char *const *known);

/* The node at a dotted key, or NULL when any part is absent or not a mapping. */
const struct cfg_node *cfg_find(const struct cfg_doc *d, const char *key);

/*
 * Record an HSM_ECONFIG error about key: "NAME: MSG at line N", the line
 * being key's (no line part when key is NULL or absent). Returns HSM_ECONFIG.
 */
int cfg_err(const struct cfg_doc *d, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Typed getters for scalars. When key is absent the default applies and 0
 * is returned; a present key that is not a scalar, has no value or is an
 * empty string is an error, as is a section on the way to it that is not
 * a mapping. Strings are malloc'd; the caller frees them.
 */
/* A string; absent -> copy of def, or NULL when def is NULL. */
int cfg_get_str(const struct cfg_doc *d, const char *key, const char *def, char **out);
/* A path; relative ones resolved against d->dir. Absent -> def resolved likewise, or NULL. */
int cfg_get_path(const struct cfg_doc *d, const char *key, const char *def, char **out);
/* A duration (hsm_parse_duration syntax); absent -> def parsed. */
int cfg_get_duration(const struct cfg_doc *d, const char *key, const char *def, int64_t *out);
/* A present key or HSM_ECONFIG "NAME: missing required key 'key'". */
int cfg_require(const struct cfg_doc *d, const char *key);
/* Join dir and a path unless it is absolute. Caller frees *out. 0 or HSM_ENOMEM. */
int cfg_resolve_path(const char *dir, const char *path, char **out);

/*
 * A whole number from min to max (decimal digits only); absent -> def.
 * Out of range: "NAME: 'workers' must be a whole number from 1 to 64, not '0' at line N".
 */
int cfg_get_uint(const struct cfg_doc *d, const char *key, unsigned long long def,
    unsigned long long min, unsigned long long max, unsigned long long *out);
/* A boolean: true/false or yes/no, any case; absent -> def. */
int cfg_get_bool(const struct cfg_doc *d, const char *key, int def, int *out);

/*
 * Entries of lists ("inbound: [{name: web, ...}, ...]"), which dotted keys
 * cannot address. These take the node itself and a label naming it in
 * messages, e.g. "inbound[1]", so errors read like the getters':
 *
 *   proxy.yaml: unknown key 'inbound[1].lisen' at line 14
 */
/* Record "NAME: MSG at line N" with n's line. Returns HSM_ECONFIG. */
int cfg_node_err(const struct cfg_doc *d, const struct cfg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The entry named key of mapping m, or NULL (also when m is not a mapping). */
const struct cfg_node *cfg_node_child(const struct cfg_node *m, const char *key);
/*
 * m (named label) must be a mapping whose keys are all in known
 * (NULL-terminated plain names). 0 or HSM_ECONFIG.
 */
int cfg_node_check_known(const struct cfg_doc *d, const struct cfg_node *m, const char *label,
    const char *const *known);
/*
 * n (named name in messages) must be a scalar with a value: *out its text.
 * A list, a mapping, null or "" is an error as for cfg_get_str.
 */
int cfg_node_value(const struct cfg_doc *d, const struct cfg_node *n, const char *name,
    const char **out);
/*
 * The text of scalar key in mapping m (*out points into the tree): NULL when
 * absent, which is "missing required key 'label.key'" at m's line when
 * required; a list, a mapping, null or "" is an error as for cfg_get_str.
 * label NULL names the key alone (m is the top level).
 */
int cfg_node_str(const struct cfg_doc *d, const struct cfg_node *m, const char *label,
    const char *key, int required, const char **out);
/*
 * The list at key in mapping m: *out the CFG_SEQ node (possibly without
 * entries), or NULL when absent or written as nothing. Anything but a list
 * is an error. label as for cfg_node_str.
 */
int cfg_node_list(const struct cfg_doc *d, const struct cfg_node *m, const char *label,
    const char *key, const struct cfg_node **out);

/* ---- typed configurations ---- */

/* A "token:" section: which PKCS#11 token a keyholder opens and how it finds the PIN. */
struct cfg_token {
	char *module;		/* PKCS#11 module path */
	char *uri;		/* pkcs11: URI naming the token */
	char *pin_file;		/* exactly one of pin_file / pin_env */
	char *pin_env;
	/* TEST SETTING <section>.test_sign_delay_ms: the keyholder adds this
	 * many ms to every signature (a slow-token model for benchmarks). */
	unsigned sign_delay_ms;
	/* <section>.workers: token sessions the keyholder signs on in parallel,
	 * fixed (0: sized to the token between workers_min and workers_max,
	 * 0 for either: the keyholder's 2 and 64) */
	unsigned workers, workers_min, workers_max;
};

/* Read section (e.g. "token") of d into *t (cleared first). 0 or HSM_ECONFIG. */
int cfg_token_load(const struct cfg_doc *d, const char *section, struct cfg_token *t);
/* Free what cfg_token_load allocated and clear *t. Accepts NULL. */
void cfg_token_clear(struct cfg_token *t);

/*
 * A daemon's confinement (ca.yaml and agent.yaml; docs/ARCHITECTURE.md
 * "Confinement"): user, seccomp.mode, seccomp.allow, seccomp.keyholder_allow.
 * proxy.yaml takes user, seccomp.mode and seccomp.allow (it has no keyholder:
 * its cfg_check_known list refuses seccomp.keyholder_allow).
 */
struct cfg_confine {
	char *user;		/* user: become this user after binding (as root), or NULL */
	char *mode;		/* seccomp.mode: enforce (NULL), log, kill, off */
	char *allow;		/* seccomp.allow: extra system calls of the daemon, or NULL */
	char *kh_allow;		/* seccomp.keyholder_allow: extra calls of its keyholder */
};

/* The keys of struct cfg_confine, for a cfg_check_known list. */
#define CFG_CONFINE_KEYS "user", "seccomp.mode", "seccomp.allow", "seccomp.keyholder_allow"

/*
 * Read the confinement keys of d into *c (cleared first), checking the
 * mode's name and each system call's. 0 or HSM_ECONFIG / HSM_ENOMEM.
 */
int cfg_confine_load(const struct cfg_doc *d, struct cfg_confine *c);
/* Free what cfg_confine_load allocated and clear *c. Accepts NULL. */
void cfg_confine_clear(struct cfg_confine *c);

#endif
