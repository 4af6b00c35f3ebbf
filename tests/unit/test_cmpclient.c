/*
 * test_cmpclient.c - the agent's CMP client (cmpclient.h) against real
 * servers: `hsmesh ca serve` ($HSMESH_EXE, its key in a throwaway SoftHSM2
 * token) and OpenSSL's mock CMP server (`openssl cmp -port 0`), with the
 * new keys in a keyholder on another token, as the agent has them.
 * Covered: ir with a join token, kur signed by the current certificate,
 * the CA's refusal (a join token used twice), a CA whose port is closed
 * (refused at once, as "Connection refused"), the next CA address tried
 * after that, a certificate for another key and one for another ID
 * refused in certConf, a key that cannot sign its proof of possession, and
 * genm (a MAC-protected one, and the attestation nonce a CA without
 * attestation does not give); a node's requests: its registration entries
 * by a genm its certificate signs (a workload's certificate gets none),
 * node-protected ir and kur of an entry's ID, and an ID no entry gives it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cert.h"
#include "cmpclient.h"
#include "entries.h"
#include "evtype.h"
#include "err.h"
#include "khclient.h"
#include "provider_core.h"
#include "provider_kh.h"
#include "svid.h"
#include "util.h"

#include "testproc.h"

#define ID "spiffe://example.org/web"
#define NODE "spiffe://example.org/node/n1"
#define MOCK_REF "ref1"
#define MOCK_SECRET "s3cret-join"

static char dir[64], exe[PATH_MAX];
static pid_t ca_pid = -1, kh_pid = -1, mock_pid = -1;
static struct kh_client *kh;
static X509 *ca_root;
static struct cmpc_server ca_srv, closed_srv, mock_srv;

/* A decimal port, or 0. */
static int
port_of(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return end != s && v > 0 && v < 65536 ? (int)v : 0;
}

static X509 *
read_cert(const char *path)
{
	X509 *x = NULL;
	STACK_OF(X509) *rest = NULL;

	if (svid_load_pem_file(path, &x, &rest) != 0)
		return NULL;
	svid_certs_free(rest);
	return x;
}

static int
setup(void **state)
{
	char path[160], port[32];
	struct kh_spawn_opts ko = { 0 };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	int fd;

	if (tp_setup(exe, dir, sizeof(dir), "/tmp/hsmesh-cmpc.XXXXXX",
	    (const char *[]){ "ca", "node", NULL }) != 0)
		return -1;

	/* The CA. */
	if (tp_ca_start(exe, dir, "1h", &ca_pid, port, sizeof(port)) != 0)
		return -1;
	ca_srv = (struct cmpc_server){ strdup("127.0.0.1"), port_of(port),
	    strdup("/.well-known/cmp") };
	snprintf(path, sizeof(path), "%s/ca/root.pem", dir);
	if ((ca_root = read_cert(path)) == NULL)
		return -1;

	/* A port nobody listens on: bound, then closed. */
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) != 0)
		return -1;
	close(fd);
	closed_srv = (struct cmpc_server){ strdup("127.0.0.1"), ntohs(sin.sin_port),
	    strdup("/.well-known/cmp") };

	/* The node's keyholder. */
	if (hsm_provider_init() != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/pin", dir);
	ko.module = "/usr/lib/softhsm/libsofthsm2.so";
	ko.token_uri = "pkcs11:token=node";
	ko.pin_file = path;
	ko.exe = exe;
	if (kh_spawn(&ko, &kh, &kh_pid) != 0) {
		fprintf(stderr, "kh_spawn: %s\n", hsm_err_msg(HSM_ETOKEN));
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];
	int status;

	tp_stop(&mock_pid);
	tp_stop(&ca_pid);
	kh_client_free(kh);
	if (kh_pid > 0)
		waitpid(kh_pid, &status, 0);
	X509_free(ca_root);
	cmpc_server_clear(&ca_srv);
	cmpc_server_clear(&closed_srv);
	cmpc_server_clear(&mock_srv);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A new key in the node's token, as the agent makes one. */
struct key {
	uint8_t id[HSM_KEYID_LEN];
	uint8_t *spki;
	size_t spkilen;
	EVP_PKEY *pkey;
};

static void
new_key(struct key *k)
{
	int st;

	memset(k, 0, sizeof(*k));
	if ((st = kh_generate(kh, HSM_KEY_EC_P256, "hsmesh-test", 0, k->id, &k->spki,
	    &k->spkilen)) != 0)
		fail_msg("kh_generate: %s", hsm_err_msg(st));
	assert_int_equal(hsm_pkey_new(kh, k->id, k->spki, k->spkilen, 0, &k->pkey), 0);
}

static void
key_free(struct key *k)
{
	free(k->spki);
	EVP_PKEY_free(k->pkey);
}

/* A fresh one-time join token for ID from the CA: "REF:SECRET" in tok. */
static void
join_token(char *tok, size_t len)
{
	char out[160];
	FILE *f;

	snprintf(out, sizeof(out), "%s/token.out", dir);
	assert_int_equal(tp_ca_token(exe, dir, ID, out), 0);
	assert_non_null(f = fopen(out, "r"));
	assert_non_null(fgets(tok, (int)len, f));
	fclose(f);
	tok[strcspn(tok, "\r\n")] = '\0';
}

/* A request of type for ID with the new key k. */
static struct cmpc_certreq
req_for(enum cmpc_reqtype type, const struct key *k)
{
	return (struct cmpc_certreq){ .type = type, .spiffe_id = ID, .key = k->pkey,
	    .spki = k->spki, .spkilen = k->spkilen };
}

/* MAC protection from a REF:SECRET string (pointers into tok). */
static struct cmpc_protect
mac(const char *tok)
{
	const char *colon = strchr(tok, ':');

	assert_non_null(colon);
	return (struct cmpc_protect){ .kind = CMPC_MAC, .ref = (const uint8_t *)tok,
	    .reflen = (size_t)(colon - tok), .secret = (const uint8_t *)colon + 1,
	    .secretlen = strlen(colon + 1) };
}

/* An ir for a new key k, MAC-protected by a fresh join token (kept in tok). */
static struct cmpc_certreq
new_ir(struct key *k, char *tok, size_t toklen)
{
	struct cmpc_certreq rq;

	new_key(k);
	join_token(tok, toklen);
	rq = req_for(CMPC_IR, k);
	rq.prot = mac(tok);
	return rq;
}

static struct cmpc_ca
ca_at(const struct cmpc_server *srv, size_t n, X509 *root)
{
	return (struct cmpc_ca){ .servers = srv, .nservers = n, .root = root, .msg_timeout = 10 };
}

/* The certificate certifies k and carries exactly ID under root. */
static void
is_svid_for(X509 *cert, X509 *root, const struct key *k)
{
	assert_non_null(cert);
	assert_int_equal(svid_verify(root, ID, cert, NULL, k->spki, k->spkilen, NULL), 0);
}

static void
ir_then_kur(void **state)
{
	struct cmpc_ca ca = ca_at(&ca_srv, 1, ca_root);
	struct key k1, k2;
	char tok[256];
	struct cmpc_certreq rq = { .type = CMPC_IR, .spiffe_id = ID };
	enum cmpc_outcome how;
	X509 *cert = NULL, *cert2 = NULL;
	STACK_OF(X509) *chain = NULL;
	int st;

	rq = new_ir(&k1, tok, sizeof(tok));
	if ((st = cmpc_certreq(&ca, &rq, &how, &cert, &chain)) != 0)
		fail_msg("ir: %s", hsm_err_msg(st));
	assert_int_equal(how, CMPC_OK);
	is_svid_for(cert, ca_root, &k1);
	assert_non_null(chain);
	assert_int_equal(sk_X509_num(chain), 0);
	svid_certs_free(chain);

	/* The CA's refusal: the same token again. */
	new_key(&k2);
	rq = req_for(rq.type, &k2);
	rq.prot = mac(tok);
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert2, &chain), HSM_EPOLICY);
	assert_int_equal(how, CMPC_REFUSED);
	assert_null(cert2);
	assert_null(chain);
	assert_true(strncmp(hsm_err_msg(HSM_EPOLICY), "CA refused: ", 12) == 0);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "already used"));

	/* Renewal: kur for the new key, signed by the current certificate and key. */
	rq.type = CMPC_KUR;
	rq.oldcert = cert;
	rq.prot = (struct cmpc_protect){ .kind = CMPC_SIGNED, .cert = cert, .key = k1.pkey };
	if ((st = cmpc_certreq(&ca, &rq, &how, &cert2, &chain)) != 0)
		fail_msg("kur: %s", hsm_err_msg(st));
	is_svid_for(cert2, ca_root, &k2);
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(cert),
	    X509_get0_serialNumber(cert2)), 0);
	svid_certs_free(chain);
	X509_free(cert2);
	X509_free(cert);
	key_free(&k1);
	key_free(&k2);
}

static void
closed_port_reads_refused_and_the_next_address_is_tried(void **state)
{
	struct cmpc_server both[2] = { closed_srv, ca_srv };
	struct cmpc_ca ca = ca_at(&closed_srv, 1, ca_root);
	struct cmpc_certreq rq = { .type = CMPC_IR, .spiffe_id = ID };
	enum cmpc_outcome how;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	struct key k;
	char tok[256], want[96];
	uint8_t nonce[32];

	rq = new_ir(&k, tok, sizeof(tok));
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_EIO);
	assert_int_equal(how, CMPC_UNREACHABLE);
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%d: Connection refused", closed_srv.port);
	assert_string_equal(hsm_err_msg(HSM_EIO), want);
	assert_null(cert);
	/* The nonce exchange says the same. */
	assert_int_equal(cmpc_attest_nonce(&ca, ID, &how, nonce), HSM_EIO);
	assert_int_equal(how, CMPC_UNREACHABLE);
	snprintf(want, sizeof(want), "asking the CA for an attestation nonce: connect to "
	    "127.0.0.1:%d: Connection refused", closed_srv.port);
	assert_string_equal(hsm_err_msg(HSM_EIO), want);

	/* The closed address first, then the CA: the request goes to the CA. */
	ca = ca_at(both, 2, ca_root);
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), 0);
	is_svid_for(cert, ca_root, &k);
	svid_certs_free(chain);
	X509_free(cert);
	key_free(&k);
}

/* A name that does not resolve reads as such: not refused, not timed out. */
static void
unresolvable_name_reads_as_dns(void **state)
{
	struct cmpc_server bad = { "nosuch-ca.invalid", 8443, "/.well-known/cmp" };
	struct cmpc_ca ca = ca_at(&bad, 1, ca_root);
	struct cmpc_certreq rq;
	enum cmpc_outcome how;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	struct key k;
	char tok[256];
	uint64_t t0 = hsm_now_ms();

	rq = new_ir(&k, tok, sizeof(tok));
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_EIO);
	assert_int_equal(how, CMPC_UNREACHABLE);
	print_message("# %s\n", hsm_err_msg(HSM_EIO));
	assert_int_equal(strncmp(hsm_err_msg(HSM_EIO), "cannot resolve nosuch-ca.invalid: ", 34), 0);
	assert_null(strstr(hsm_err_msg(HSM_EIO), "timed out"));
	assert_null(strstr(hsm_err_msg(HSM_EIO), "refused"));
	/* No connect timeout was waited for. */
	assert_true(hsm_now_ms() - t0 < 9000);
	assert_null(cert);
	key_free(&k);
}

/*
 * A request that proves nothing (here: a wrong join-token secret) is
 * refused by the CA with an unprotected error, which costs it no
 * signature: the client reads its words, and it is a refusal, not an
 * unreachable CA.
 */
static void
unsigned_refusal_is_read(void **state)
{
	struct cmpc_ca ca = ca_at(&ca_srv, 1, ca_root);
	struct cmpc_certreq rq;
	enum cmpc_outcome how;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	struct key k;
	char tok[256], *colon;

	rq = new_ir(&k, tok, sizeof(tok));
	colon = strchr(tok, ':');
	assert_non_null(colon);
	colon[1] = colon[1] == '0' ? '1' : '0';	/* one digit of the secret wrong */
	rq.prot = mac(tok);
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_EPOLICY);
	assert_int_equal(how, CMPC_REFUSED);
	print_message("# %s\n", hsm_err_msg(HSM_EPOLICY));
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "MAC check failed"));
	assert_null(cert);
	key_free(&k);
}

static void
genm(void **state)
{
	struct cmpc_ca ca = ca_at(&ca_srv, 1, ca_root);
	struct cmpc_protect p;
	enum cmpc_outcome how;
	uint8_t *v = NULL, nonce[32];
	size_t len;
	char tok[256];

	/* A MAC-protected genm is answered (with the CA certificates, not what we asked). */
	join_token(tok, sizeof(tok));
	p = mac(tok);
	assert_int_equal(cmpc_genm(&ca, ID, &p, "2.25.1", &how, &v, &len, NULL), HSM_ENOENT);
	assert_int_equal(how, CMPC_REFUSED);
	assert_string_equal(hsm_err_msg(HSM_ENOENT), "the CA sent no 2.25.1");
	assert_null(v);
	/* A CA without attestation gives no nonce: its error answer. */
	assert_int_equal(cmpc_attest_nonce(&ca, ID, &how, nonce), HSM_EIO);
	assert_true(strncmp(hsm_err_msg(HSM_EIO), "asking the CA for an attestation nonce: ", 40) == 0);
}

static void
key_that_cannot_sign(void **state)
{
	struct cmpc_ca ca = ca_at(&ca_srv, 1, ca_root);
	struct cmpc_certreq rq = { .type = CMPC_IR, .spiffe_id = ID };
	enum cmpc_outcome how;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	struct key k;
	char tok[256];

	rq = new_ir(&k, tok, sizeof(tok));
	assert_int_equal(kh_destroy(kh, k.id, 0), 0);
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_ECRYPTO);
	assert_int_equal(how, CMPC_BADKEY);
	assert_non_null(strstr(hsm_err_msg(HSM_ECRYPTO),
	    "signing the proof of possession through the keyholder"));
	key_free(&k);
}

/* Write x as PEM to dir/name; the path in out. */
static void
write_pem(X509 *x, const char *name, char *out, size_t len)
{
	FILE *f;

	snprintf(out, len, "%s/%s", dir, name);
	assert_non_null(f = fopen(out, "w"));
	assert_int_equal(PEM_write_X509(f, x), 1);
	assert_int_equal(fclose(f), 0);
}

/* OpenSSL's mock CMP server answering every request with leaf (MAC: MOCK_REF:MOCK_SECRET). */
static void
mock_start(const char *leaf, const char *root)
{
	char out[160], err[160], port[64];

	tp_stop(&mock_pid);
	snprintf(out, sizeof(out), "%s/mock.out", dir);
	snprintf(err, sizeof(err), "%s/mock.log", dir);
	unlink(out);
	mock_pid = tp_run(NULL, out, err, (const char *[]){ "openssl", "cmp", "-port", "0",
	    "-srv_ref", MOCK_REF, "-srv_secret", "pass:" MOCK_SECRET, "-rsp_cert", leaf,
	    "-rsp_capubs", root, NULL });
	/* "ACCEPT [::]:PORT PID=..." or "ACCEPT 0.0.0.0:PORT ..." */
	tp_wait_line(out, "ACCEPT ", port, sizeof(port));
	if (port[0] == '\0' || strrchr(port, ':') == NULL) {
		tp_dump(dir, "mock.log");
		fail_msg("the mock CMP server did not start");
	}
	cmpc_server_clear(&mock_srv);
	mock_srv = (struct cmpc_server){ strdup("127.0.0.1"), port_of(strrchr(port, ':') + 1),
	    strdup("/pkix/") };
}

static void
issued_certificate_checked_in_certconf(void **state)
{
	EVP_PKEY *rk = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256"), *pub;
	X509 *root = NULL, *leaf = NULL, *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	struct cmpc_certreq rq = { .type = CMPC_IR, .spiffe_id = ID };
	struct cmpc_ca ca;
	enum cmpc_outcome how;
	const unsigned char *p;
	struct key k;
	char rootpem[160], leafpem[160];

	assert_non_null(rk);
	assert_non_null(other);
	assert_int_equal(cert_make_root(rk, rk, "example.org", 86400, &root), 0);
	write_pem(root, "mockroot.pem", rootpem, sizeof(rootpem));
	new_key(&k);
	p = k.spki;
	assert_non_null(pub = d2i_PUBKEY(NULL, &p, (long)k.spkilen));
	rq = req_for(rq.type, &k);
	rq.prot = mac(MOCK_REF ":" MOCK_SECRET);

	/* A certificate for another key. */
	assert_int_equal(cert_issue_svid(root, rk, other, ID, 3600, &leaf), 0);
	write_pem(leaf, "other.pem", leafpem, sizeof(leafpem));
	X509_free(leaf);
	mock_start(leafpem, rootpem);
	ca = ca_at(&mock_srv, 1, root);
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_EPOLICY);
	assert_int_equal(how, CMPC_REJECTED);
	assert_string_equal(hsm_err_msg(HSM_EPOLICY),
	    "issued certificate refused: certificate does not certify our key");
	assert_null(cert);

	/* Our key, another ID. */
	assert_int_equal(cert_issue_svid(root, rk, pub, "spiffe://example.org/intruder", 3600,
	    &leaf), 0);
	write_pem(leaf, "wrongid.pem", leafpem, sizeof(leafpem));
	X509_free(leaf);
	mock_start(leafpem, rootpem);
	ca = ca_at(&mock_srv, 1, root);
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_EPOLICY);
	assert_int_equal(how, CMPC_REJECTED);
	assert_string_equal(hsm_err_msg(HSM_EPOLICY), "issued certificate refused: certificate "
	    "does not carry exactly the URI SAN " ID " (1 URI SANs)");

	/* Our key and ID: accepted, with the mock's MAC-protected answer. */
	assert_int_equal(cert_issue_svid(root, rk, pub, ID, 3600, &leaf), 0);
	write_pem(leaf, "good.pem", leafpem, sizeof(leafpem));
	mock_start(leafpem, rootpem);
	ca = ca_at(&mock_srv, 1, root);
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), 0);
	assert_int_equal(X509_cmp(cert, leaf), 0);
	/* The same answer is no SVID under another root. */
	svid_certs_free(chain);
	X509_free(cert);
	ca = ca_at(&mock_srv, 1, ca_root);
	assert_int_not_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), 0);
	assert_int_not_equal(how, CMPC_OK);
	assert_null(cert);
	tp_stop(&mock_pid);
	X509_free(leaf);
	X509_free(root);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(other);
	key_free(&k);
}

static void
bad_requests(void **state)
{
	struct cmpc_ca ca = ca_at(&ca_srv, 1, ca_root);
	struct cmpc_certreq rq = { .type = CMPC_KUR, .spiffe_id = ID };
	enum cmpc_outcome how;
	X509 *cert = (X509 *)1;
	STACK_OF(X509) *chain = (STACK_OF(X509) *)1;

	/* No key, or a kur without the certificate it renews: nothing is sent. */
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_EINVAL);
	assert_null(cert);
	assert_null(chain);
	assert_int_equal(how, CMPC_FAILED);
	ca.nservers = 0;
	rq.type = CMPC_IR;
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &cert, &chain), HSM_EINVAL);
	assert_null(cmpc_subject("not an id"));
	assert_null(cmpc_subject("spiffe://example.org"));
}

/* `hsmesh ca ARGS... -c ca.yaml` of the test's CA (its stdout into out, or discarded). 0 or -1. */
static int
ca_cmd(const char *out, const char *const *args)
{
	char cayaml[128], caerr[128];
	const char *argv[16] = { "hsmesh", "ca" };
	size_t n = 2;

	snprintf(cayaml, sizeof(cayaml), "%s/ca.yaml", dir);
	snprintf(caerr, sizeof(caerr), "%s/ca.log", dir);
	for (size_t i = 0; args[i] != NULL && n < 13; i++)
		argv[n++] = args[i];
	argv[n++] = "-c";
	argv[n++] = cayaml;
	argv[n] = NULL;
	return tp_run_wait(exe, out, caerr, argv);
}

static void
node_requests(void **state)
{
	struct cmpc_ca ca = ca_at(&ca_srv, 1, ca_root);
	struct cmpc_certreq rq;
	struct cmpc_protect node;
	struct entry_list *l = NULL;
	enum cmpc_outcome how;
	struct key kn, k1, k2, k3;
	X509 *ncert = NULL, *cert = NULL, *cert2 = NULL, *x = NULL;
	STACK_OF(X509) *chain = NULL;
	uint8_t *v = NULL;
	size_t len = 0;
	int64_t hint = -1;
	char tok[256], out[160];
	FILE *f;
	int st;

	/* The node: a node token and an entry giving it ID. */
	snprintf(out, sizeof(out), "%s/node.tok", dir);
	assert_int_equal(ca_cmd(out, (const char *const[]){ "token", "--node", "--id", NODE, NULL }), 0);
	assert_int_equal(ca_cmd(NULL, (const char *const[]){ "entry", "add", "--node", NODE, "--id",
	    "spiffe://example.org/db", "--selector", "uid:1000", NULL }), 0);
	assert_non_null(f = fopen(out, "r"));
	assert_non_null(fgets(tok, (int)sizeof(tok), f));
	fclose(f);
	tok[strcspn(tok, "\r\n")] = '\0';
	new_key(&kn);
	rq = (struct cmpc_certreq){ .type = CMPC_IR, .spiffe_id = NODE, .key = kn.pkey,
	    .spki = kn.spki, .spkilen = kn.spkilen, .prot = mac(tok) };
	if ((st = cmpc_certreq(&ca, &rq, &how, &ncert, &chain)) != 0)
		fail_msg("node ir: %s", hsm_err_msg(st));
	svid_certs_free(chain);
	node = (struct cmpc_protect){ .kind = CMPC_SIGNED, .cert = ncert, .key = kn.pkey };

	/* Its entries, for a genm its certificate signs. */
	if ((st = cmpc_genm(&ca, NODE, &node, HSM_OID_ENTRIES, &how, &v, &len, &hint)) != 0)
		fail_msg("entries genm: %s", hsm_err_msg(st));
	assert_int_equal(hint, 0);	/* the CA's revocation sequence: nothing revoked yet */
	assert_int_equal(entries_decode(v, len, &l), 0);
	assert_string_equal(l->node, NODE);
	assert_int_equal(l->n, 1);
	assert_string_equal(l->v[0].spiffe_id, "spiffe://example.org/db");
	assert_int_equal(l->refresh, 30);
	entries_free(l);
	free(v);
	v = NULL;

	/* A node-protected ir of the entry's ID, then a kur naming that certificate. */
	new_key(&k1);
	rq = (struct cmpc_certreq){ .type = CMPC_IR, .spiffe_id = "spiffe://example.org/db",
	    .key = k1.pkey, .spki = k1.spki, .spkilen = k1.spkilen, .prot = node };
	if ((st = cmpc_certreq(&ca, &rq, &how, &cert, &chain)) != 0)
		fail_msg("node-protected ir: %s", hsm_err_msg(st));
	svid_certs_free(chain);
	new_key(&k2);
	rq = (struct cmpc_certreq){ .type = CMPC_KUR, .spiffe_id = "spiffe://example.org/db",
	    .key = k2.pkey, .spki = k2.spki, .spkilen = k2.spkilen, .oldcert = cert, .prot = node };
	if ((st = cmpc_certreq(&ca, &rq, &how, &cert2, &chain)) != 0)
		fail_msg("node-protected kur: %s", hsm_err_msg(st));
	assert_int_equal(svid_verify(ca_root, "spiffe://example.org/db", cert2, NULL, k2.spki,
	    k2.spkilen, NULL), 0);
	svid_certs_free(chain);

	/* The workload's own certificate gets no entries... */
	node = (struct cmpc_protect){ .kind = CMPC_SIGNED, .cert = cert2, .key = k2.pkey };
	assert_int_not_equal(cmpc_genm(&ca, NODE, &node, HSM_OID_ENTRIES, &how, &v, &len, NULL), 0);
	assert_null(v);
	/* ... nor renews itself: the ID is node-managed. */
	new_key(&k3);
	rq = (struct cmpc_certreq){ .type = CMPC_KUR, .spiffe_id = "spiffe://example.org/db",
	    .key = k3.pkey, .spki = k3.spki, .spkilen = k3.spkilen, .oldcert = cert2, .prot = node };
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &x, &chain), HSM_EPOLICY);
	assert_int_equal(how, CMPC_REFUSED);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "ID is node-managed"));
	/* An ID no entry gives the node. */
	node = (struct cmpc_protect){ .kind = CMPC_SIGNED, .cert = ncert, .key = kn.pkey };
	rq = (struct cmpc_certreq){ .type = CMPC_IR, .spiffe_id = "spiffe://example.org/other",
	    .key = k3.pkey, .spki = k3.spki, .spkilen = k3.spkilen, .prot = node };
	assert_int_equal(cmpc_certreq(&ca, &rq, &how, &x, &chain), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY),
	    "no registration entry authorises node " NODE " for spiffe://example.org/other"));
	assert_null(x);
	X509_free(ncert);
	X509_free(cert);
	X509_free(cert2);
	key_free(&kn);
	key_free(&k1);
	key_free(&k2);
	key_free(&k3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ir_then_kur),
		cmocka_unit_test(closed_port_reads_refused_and_the_next_address_is_tried),
		cmocka_unit_test(unresolvable_name_reads_as_dns),
		cmocka_unit_test(unsigned_refusal_is_read),
		cmocka_unit_test(genm),
		cmocka_unit_test(key_that_cannot_sign),
		cmocka_unit_test(issued_certificate_checked_in_certconf),
		cmocka_unit_test(bad_requests),
		cmocka_unit_test(node_requests),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
