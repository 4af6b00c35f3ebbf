/* test_config.c - the YAML tree, its getters and ca.yaml. */
#include <sys/stat.h>

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "caconf.h"
#include "config.h"
#include "err.h"
#include "keytypes.h"

#define TOKEN \
	"token:\n" \
	"  module: /usr/lib/softhsm/libsofthsm2.so\n" \
	"  uri: \"pkcs11:token=ca\"\n" \
	"  pin_file: /etc/hsmesh/pin\n"

static int
parse(const char *text, struct ca_config **c)
{
	return ca_config_parse("ca.yaml", "/etc/hsmesh", (const uint8_t *)text, strlen(text), c);
}

/* Parsing text must fail with HSM_ECONFIG and exactly this one-line detail. */
static void
refuse(const char *text, const char *detail)
{
	struct ca_config *c = (struct ca_config *)1;

	hsm_err_clear();
	assert_int_equal(parse(text, &c), HSM_ECONFIG);
	assert_null(c);
	if (strcmp(hsm_err_detail(), detail) != 0)
		fail_msg("detail '%s', want '%s'", hsm_err_detail(), detail);
}

static void
good_defaults(void **state)
{
	struct ca_config *c = NULL;

	assert_int_equal(parse("trust_domain: example.org\n" TOKEN "state_dir: /var/lib/ca\n", &c), 0);
	assert_string_equal(c->trust_domain, "example.org");
	assert_string_equal(c->token.module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(c->token.uri, "pkcs11:token=ca");
	assert_string_equal(c->token.pin_file, "/etc/hsmesh/pin");
	assert_null(c->token.pin_env);
	assert_int_equal(c->key_type, HSM_KEY_EC_P256);
	assert_string_equal(c->key_label, "hsmesh-ca");
	assert_string_equal(c->state_dir, "/var/lib/ca");
	assert_string_equal(c->listen, "127.0.0.1:8443");
	assert_int_equal(c->svid_ttl, 3600);
	assert_int_equal(c->max_ttl, 86400);
	assert_int_equal(c->ca_ttl, 3650LL * 86400);
	assert_string_equal(c->max_ttl_text, "24h");
	assert_string_equal(c->database, "/var/lib/ca/ledger.db");
	assert_string_equal(c->audit_log, "/var/lib/ca/audit.log");
	ca_config_free(c);
	ca_config_free(NULL);
}

static void
good_full(void **state)
{
	struct ca_config *c = NULL;
	const char *y =
	    "# the CA\n"
	    "trust_domain: prod.example.org\n"
	    "token:\n"
	    "  module: lib/softhsm2.so\n"
	    "  uri: 'pkcs11:token=ca;manufacturer=SoftHSM%20project'\n"
	    "  pin_env: CA_PIN\n"
	    "  workers: 8\n"
	    "key:\n"
	    "  type: rsa-3072\n"
	    "  label: my-ca\n"
	    "state_dir: state\n"
	    "listen: \"[::1]:9443\"\n"
	    "svid_ttl: 30m\n"
	    "max_ttl: 2d\n"
	    "ca_ttl: 365d\n"
	    "database: /srv/ledger.db\n"
	    "audit_log: logs/audit.log\n";

	assert_int_equal(parse(y, &c), 0);
	assert_int_equal(c->key_type, HSM_KEY_RSA_3072);
	assert_string_equal(c->key_label, "my-ca");
	assert_string_equal(c->token.pin_env, "CA_PIN");
	assert_null(c->token.pin_file);
	assert_int_equal(c->token.workers, 8);
	/* Relative paths are next to the file. */
	assert_string_equal(c->token.module, "/etc/hsmesh/lib/softhsm2.so");
	assert_string_equal(c->state_dir, "/etc/hsmesh/state");
	assert_string_equal(c->database, "/srv/ledger.db");
	assert_string_equal(c->audit_log, "/etc/hsmesh/logs/audit.log");
	assert_string_equal(c->listen, "[::1]:9443");
	assert_int_equal(c->svid_ttl, 1800);
	assert_int_equal(c->max_ttl, 2 * 86400);
	assert_int_equal(c->ca_ttl, 365 * 86400);
	ca_config_free(c);
}

/* database: a libpq URI is kept as written, a relative path resolves next to the file. */
static void
database_uri_or_path(void **state)
{
	struct ca_config *c = NULL;
	const char *head = "trust_domain: example.org\ntoken:\n  module: /m.so\n"
	    "  uri: pkcs11:token=ca\n  pin_file: /p\nstate_dir: /s\n";
	const char *uri = "postgresql://ca@db.example.org:5433/hsmesh?sslmode=verify-full";
	char y[512];

	snprintf(y, sizeof(y), "%sdatabase: \"%s\"\n", head, uri);
	assert_int_equal(parse(y, &c), 0);
	assert_string_equal(c->database, uri);
	ca_config_free(c);
	snprintf(y, sizeof(y), "%sdatabase: postgresql:///hsmesh?host=/run/postgresql\n", head);
	assert_int_equal(parse(y, &c), 0);
	assert_string_equal(c->database, "postgresql:///hsmesh?host=/run/postgresql");
	ca_config_free(c);
	snprintf(y, sizeof(y), "%sdatabase: db/ledger.db\n", head);
	assert_int_equal(parse(y, &c), 0);
	assert_string_equal(c->database, "/etc/hsmesh/db/ledger.db");
	ca_config_free(c);
}

static void
unknown_keys(void **state)
{
	refuse("trust_domain: example.org\n" TOKEN "foo: 1\nstate_dir: /s\n",
	    "ca.yaml: unknown key 'foo' at line 6");
	refuse("trust_domain: example.org\n"
	    "token:\n"
	    "  module: /m.so\n"
	    "  pin: 1234\n",
	    "ca.yaml: unknown key 'token.pin' at line 4");
	refuse("trust_domain: example.org\nkey:\n  size: 4096\n",
	    "ca.yaml: unknown key 'key.size' at line 3");
	/* A dotted key is not a shortcut for a section. */
	refuse("trust_domain: example.org\ntoken.module: /m.so\n",
	    "ca.yaml: unknown key 'token.module' at line 2");
	/* Unknown keys are reported before missing ones: a typo is the likelier cause. */
	refuse("trust_domian: example.org\n", "ca.yaml: unknown key 'trust_domian' at line 1");
}

static void
missing_keys(void **state)
{
	refuse(TOKEN "state_dir: /s\n", "ca.yaml: missing required key 'trust_domain'");
	refuse("trust_domain: example.org\nstate_dir: /s\n",
	    "ca.yaml: missing required key 'token'");
	refuse("trust_domain: example.org\ntoken:\n  module: /m.so\nstate_dir: /s\n",
	    "ca.yaml: missing required key 'token.uri' in section 'token' at line 2");
	refuse("trust_domain: example.org\n" TOKEN,
	    "ca.yaml: missing required key 'state_dir'");
	refuse("", "ca.yaml: missing required key 'trust_domain'");
	refuse("trust_domain: example.org\n" TOKEN "  workers: 65\nstate_dir: /s\n",
	    "ca.yaml: 'token.workers' must be a whole number from 1 to 64, not '65' at line 6");
}

static void
token_workers_bounds(void **state)
{
	struct ca_config *c = NULL;

	/* Sized to the token: the bounds, or the keyholder's default (0 = 2 and 64). */
	assert_int_equal(parse("trust_domain: example.org\n" TOKEN "  workers_min: 3\n  workers_max: 12\n"
	    "state_dir: /s\n", &c), 0);
	assert_int_equal(c->token.workers, 0);
	assert_int_equal(c->token.workers_min, 3);
	assert_int_equal(c->token.workers_max, 12);
	ca_config_free(c);
	c = NULL;
	assert_int_equal(parse("trust_domain: example.org\n" TOKEN "state_dir: /s\n", &c), 0);
	assert_int_equal(c->token.workers_min, 0);
	assert_int_equal(c->token.workers_max, 0);
	ca_config_free(c);
	refuse("trust_domain: example.org\n" TOKEN "  workers: 4\n  workers_max: 8\nstate_dir: /s\n",
	    "ca.yaml: 'token.workers' fixes the token sessions: give it or 'token.workers_min'/"
	    "'token.workers_max', not both at line 7");
	refuse("trust_domain: example.org\n" TOKEN "  workers_min: 9\n  workers_max: 8\nstate_dir: /s\n",
	    "ca.yaml: 'token.workers_min' above 'token.workers_max' at line 6");
	refuse("trust_domain: example.org\n" TOKEN "  workers_max: 1\nstate_dir: /s\n",
	    "ca.yaml: 'token.workers_min' above 'token.workers_max' at line 6");
	refuse("trust_domain: example.org\n" TOKEN "  workers_max: 0\nstate_dir: /s\n",
	    "ca.yaml: 'token.workers_max' must be a whole number from 1 to 64, not '0' at line 6");
}

static void
bad_values(void **state)
{
	refuse("trust_domain: example.org\n" TOKEN "state_dir: /s\nsvid_ttl: 1x\n",
	    "ca.yaml: 'svid_ttl': bad duration '1x': unit must be s, m, h or d at line 7");
	refuse("trust_domain: example.org\n" TOKEN "state_dir: /s\nmax_ttl: 0\n",
	    "ca.yaml: 'max_ttl': duration '0' must be positive at line 7");
	refuse("trust_domain: example.org\n" TOKEN "state_dir: /s\nsvid_ttl: 2d\n",
	    "ca.yaml: svid_ttl 2d exceeds max_ttl 24h at line 7");
	refuse("trust_domain: Example.org\n" TOKEN "state_dir: /s\n",
	    "ca.yaml: invalid trust domain 'Example.org': trust domain must be lowercase at line 1");
	refuse("trust_domain: example.org\n" TOKEN "key:\n  type: ed25519\nstate_dir: /s\n",
	    "ca.yaml: 'key.type': unknown key type 'ed25519' (use ec-p256, ec-p384 or rsa-3072) at line 7");
	refuse("trust_domain: example.org\n" TOKEN "state_dir: /s\nlisten: localhost\n",
	    "ca.yaml: 'listen' must be HOST:PORT, not 'localhost' at line 7");
	refuse("trust_domain: example.org\ntoken:\n  module: /m.so\n  uri: token=ca\n"
	    "  pin_file: p\nstate_dir: /s\n",
	    "ca.yaml: 'token.uri' must be a pkcs11: URI at line 4");
}

static void
pin_sources(void **state)
{
	refuse("trust_domain: example.org\n" TOKEN "  pin_env: PIN\nstate_dir: /s\n",
	    "ca.yaml: section 'token' needs exactly one of pin_file and pin_env at line 6");
	refuse("trust_domain: example.org\ntoken:\n  module: /m.so\n  uri: pkcs11:token=a\n"
	    "state_dir: /s\n",
	    "ca.yaml: section 'token' needs exactly one of pin_file and pin_env at line 2");
	refuse("trust_domain: example.org\ntoken:\n  module: /m.so\n  uri: pkcs11:token=a\n"
	    "  pin_env: 'A=B'\nstate_dir: /s\n",
	    "ca.yaml: 'token.pin_env' is not an environment variable name at line 5");
}

static void
wrong_types(void **state)
{
	refuse("trust_domain: [a, b]\n", "ca.yaml: 'trust_domain' must be a single value, not a list at line 1");
	refuse("trust_domain: example.org\ntoken: softhsm\n",
	    "ca.yaml: 'token' must be a mapping of keys at line 2");
	refuse("trust_domain:\n  x: 1\n", "ca.yaml: 'trust_domain' must be a single value, not a mapping at line 1");
	refuse("trust_domain:\n" TOKEN, "ca.yaml: 'trust_domain' has no value at line 1");
	refuse("trust_domain: ''\n" TOKEN, "ca.yaml: 'trust_domain' must not be empty at line 1");
	refuse("- a\n- b\n", "ca.yaml: the top level must be a mapping of keys at line 1");
}

static void
yaml_errors(void **state)
{
	refuse("trust_domain: a\ntrust_domain: b\n", "ca.yaml: duplicate key 'trust_domain' at line 2");
	refuse("trust_domain: &x example.org\nstate_dir: *x\n",
	    "ca.yaml: aliases are not supported at line 2");
	refuse("a: b\n---\nc: d\n", "ca.yaml: only one YAML document is allowed (line 2)");
	refuse("? [a]\n: b\n", "ca.yaml: a key must be a plain string at line 1");
	refuse("trust_domain: \"\\0\"\n", "ca.yaml: value contains a NUL byte at line 1");
	refuse("a: b\nc: \xff\n", "ca.yaml: invalid leading UTF-8 octet at line 2");

	/* libyaml's own reason, with the line. */
	struct ca_config *c = NULL;

	assert_int_equal(parse("trust_domain: example.org\ntoken: [\n", &c), HSM_ECONFIG);
	assert_non_null(strstr(hsm_err_detail(), "ca.yaml: "));
	assert_non_null(strstr(hsm_err_detail(), " at line "));
	assert_null(strchr(hsm_err_detail(), '\n'));
}

static void
deep_nesting(void **state)
{
	char buf[400];
	size_t n = 0;

	for (int i = 0; i < 100; i++)
		buf[n++] = '[';
	buf[n] = '\0';
	refuse(buf, "ca.yaml: nested deeper than 32 levels at line 1");
}

/* The generic layer, as agent.yaml and proxy.yaml will use it. */
static void
generic_tree(void **state)
{
	static const char *const known[] = { "a.b.c", "list", "n", NULL };
	const char *y = "a:\n  b:\n    c: deep\nlist:\n  - x\n  - y\nn: 42\n";
	const struct cfg_node *n;
	struct cfg_doc *d = NULL;
	char *s = NULL;
	int64_t v;

	assert_int_equal(cfg_doc_parse("t.yaml", "/base", (const uint8_t *)y, strlen(y), &d), 0);
	assert_int_equal(cfg_check_known(d, known), 0);
	assert_int_equal(cfg_get_str(d, "a.b.c", NULL, &s), 0);
	assert_string_equal(s, "deep");
	free(s);
	assert_int_equal(cfg_get_str(d, "a.b.missing", "dflt", &s), 0);
	assert_string_equal(s, "dflt");
	free(s);
	assert_int_equal(cfg_get_str(d, "nothere", NULL, &s), 0);
	assert_null(s);
	assert_int_equal(cfg_get_path(d, "a.b.c", NULL, &s), 0);
	assert_string_equal(s, "/base/deep");
	free(s);
	assert_int_equal(cfg_get_duration(d, "n", NULL, &v), 0);
	assert_int_equal(v, 42);
	n = cfg_find(d, "list");
	assert_non_null(n);
	assert_int_equal(n->type, CFG_SEQ);
	assert_string_equal(n->child->value, "x");
	assert_string_equal(n->child->next->value, "y");
	assert_int_equal(n->child->next->line, 6);
	assert_int_equal(cfg_get_str(d, "list", NULL, &s), HSM_ECONFIG);
	assert_string_equal(hsm_err_detail(), "t.yaml: 'list' must be a single value, not a list at line 4");
	assert_int_equal(cfg_require(d, "a.b.zz"), HSM_ECONFIG);
	assert_string_equal(hsm_err_detail(),
	    "t.yaml: missing required key 'a.b.zz' in section 'a.b' at line 2");
	cfg_doc_free(d);
	cfg_doc_free(NULL);

	assert_int_equal(cfg_resolve_path("/", "x", &s), 0);
	assert_string_equal(s, "/x");
	free(s);
	assert_int_equal(cfg_resolve_path("/a/", "x/y", &s), 0);
	assert_string_equal(s, "/a/x/y");
	free(s);
	assert_int_equal(cfg_resolve_path("/a", "/abs", &s), 0);
	assert_string_equal(s, "/abs");
	free(s);
}

/* A real file: relative paths resolve against its directory, not the cwd. */
static void
load_file(void **state)
{
	char dir[] = "/tmp/hsmesh-test-config-XXXXXX", sub[256], path[512];
	char cmd[600], rel[512], cwd[PATH_MAX];
	struct ca_config *c = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/etc", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/ca.yaml", sub);
	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "trust_domain: example.org\ntoken:\n  module: ../lib/p11.so\n"
	    "  uri: pkcs11:token=ca\n  pin_file: pin\nstate_dir: state\n");
	fclose(f);

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(ca_config_load("etc/ca.yaml", &c), 0);
	assert_int_equal(chdir(cwd), 0);
	snprintf(rel, sizeof(rel), "%s/etc/state", dir);
	assert_string_equal(c->state_dir, rel);
	snprintf(rel, sizeof(rel), "%s/etc/pin", dir);
	assert_string_equal(c->token.pin_file, rel);
	snprintf(rel, sizeof(rel), "%s/etc/../lib/p11.so", dir);
	assert_string_equal(c->token.module, rel);
	snprintf(rel, sizeof(rel), "%s/etc/state/ledger.db", dir);
	assert_string_equal(c->database, rel);
	assert_string_equal(c->path, "etc/ca.yaml");
	ca_config_free(c);

	/* Missing file: HSM_ECONFIG naming it. */
	snprintf(path, sizeof(path), "%s/absent.yaml", dir);
	c = (struct ca_config *)1;
	assert_int_equal(ca_config_load(path, &c), HSM_ECONFIG);
	assert_null(c);
	assert_non_null(strstr(hsm_err_detail(), "absent.yaml"));

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_defaults),
		cmocka_unit_test(good_full),
		cmocka_unit_test(database_uri_or_path),
		cmocka_unit_test(unknown_keys),
		cmocka_unit_test(missing_keys),
		cmocka_unit_test(token_workers_bounds),
		cmocka_unit_test(bad_values),
		cmocka_unit_test(pin_sources),
		cmocka_unit_test(wrong_types),
		cmocka_unit_test(yaml_errors),
		cmocka_unit_test(deep_nesting),
		cmocka_unit_test(generic_tree),
		cmocka_unit_test(load_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
