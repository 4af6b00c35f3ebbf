/*
 * demo.c - `hsmesh demo`: a whole mesh on this machine, step by step.
 *
 * The demo is an orchestrator: it runs the real commands as child
 * processes, exactly as an operator would: two throwaway SoftHSM2 tokens
 * (the CA's and the node's), `hsmesh ca init` and `ca serve`, registration
 * entries and one node join token, `hsmesh agent` (its node identity, then
 * the workloads its entries name), the built-in app (`hsmesh app serve`) behind an inbound
 * sidecar and two outbound sidecars (`hsmesh proxy`), one for an identity
 * the backend allows and one for an identity it does not; a compromised
 * workload asking the agent to sign a CMP request, refused; and then a 5G
 * core on a second node: NFs over HTTP/2 behind `protocol: http` sidecars
 * with per-route SPIFFE policy (sbi_step). It never loads
 * the PKCS#11 module itself. Everything it starts is stopped, and
 * everything it creates lives in one temporary directory removed, on exit
 * or Ctrl-C.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cmds.h"
#include "err.h"
#include "keytypes.h"
#include "util.h"

#define DEMO_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define DEMO_TD "demo.hsmesh.test"
#define ID_FRONT "spiffe://" DEMO_TD "/ns/shop/sa/frontend"
#define ID_BACK "spiffe://" DEMO_TD "/ns/shop/sa/backend"
#define ID_INTRUDER "spiffe://" DEMO_TD "/ns/guest/sa/intruder"
#define ID_NODE "spiffe://" DEMO_TD "/node/demo-node"
/* the 5G core of the SBI step: a second node and its network functions */
#define ID_CORE "spiffe://" DEMO_TD "/node/core-node"
#define ID_AMF "spiffe://" DEMO_TD "/ns/5gc/sa/amf"
#define ID_SMF "spiffe://" DEMO_TD "/ns/5gc/sa/smf"
#define ID_NRF "spiffe://" DEMO_TD "/ns/5gc/sa/nrf"
#define ID_PCF "spiffe://" DEMO_TD "/ns/5gc/sa/pcf"
#define MAX_DAEMONS 16

static char tmpdir[64];
static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	interrupted = 1;
}

static void
cleanup_dir(void)
{
	pid_t p;

	if (tmpdir[0] == '\0')
		return;
	/* rm -rf through a child: the tree holds token files of unknown depth. */
	if ((p = fork()) == 0) {
		execlp("rm", "rm", "-rf", tmpdir, (char *)NULL);
		_exit(127);
	}
	if (p > 0)
		waitpid(p, NULL, 0);
	tmpdir[0] = '\0';
}

static void
step(int n, const char *what)
{
	printf("\n\033[1m== step %d: %s\033[0m\n", n, what);
	fflush(stdout);
}

/*
 * Run argv; stdout goes to out_path when given (else inherited), stderr to
 * err_path when given. Output is indented on the terminal for readability.
 * Returns the exit status, or -1 when it could not run.
 */
static int
run(char *const argv[], const char *out_path, const char *err_path)
{
	int status;
	pid_t p;

	fflush(stdout);
	if ((p = fork()) < 0)
		return -1;
	if (p == 0) {
		int fd;

		if (out_path != NULL) {
			if ((fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
				_exit(127);
			dup2(fd, 1);
			close(fd);
		}
		if (err_path != NULL) {
			if ((fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
				_exit(127);
			dup2(fd, 2);
			close(fd);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(p, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (interrupted)
		return -1;	/* Ctrl-C: every later step fails and the directory is removed */
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
show_file(const char *path, const char *indent)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		printf("%s%s", indent, line);
	fclose(f);
}

static int
write_text(const char *path, const char *text, unsigned mode)
{
	return hsm_write_file_atomic(path, text, strlen(text), mode);
}

static int
fail(const char *what)
{
	fprintf(stderr, "hsmesh demo: %s\n", what);
	return 1;
}

/* The hex id (SHA-256 of SPKI) of a PEM certificate's key. */
static int
cert_keyid(const char *path, char hex[2 * HSM_KEYID_LEN + 1])
{
	FILE *f = fopen(path, "r");
	X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL, md[SHA256_DIGEST_LENGTH];
	int n;

	if (f != NULL)
		fclose(f);
	if (x == NULL || (n = i2d_PUBKEY(X509_get0_pubkey(x), &der)) <= 0) {
		X509_free(x);
		return -1;
	}
	SHA256(der, (size_t)n, md);
	hsm_hex(md, sizeof(md), hex);
	OPENSSL_free(der);
	X509_free(x);
	return 0;
}

static int
verify_chain(const char *root_path, const char *leaf_path)
{
	FILE *f;
	X509 *root = NULL, *leaf = NULL;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = 0;

	if ((f = fopen(root_path, "r")) != NULL) {
		root = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if ((f = fopen(leaf_path, "r")) != NULL) {
		leaf = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (root != NULL && leaf != NULL && store != NULL && ctx != NULL &&
	    X509_STORE_add_cert(store, root) && X509_STORE_CTX_init(ctx, store, leaf, NULL)) {
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
		X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
		ok = X509_verify_cert(ctx) == 1;
		if (ok) {
			X509_STORE_CTX_cleanup(ctx);
			X509_STORE_CTX_init(ctx, store, leaf, NULL);
			X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
			X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
			ok = X509_verify_cert(ctx) == 1;
		}
		if (!ok)
			printf("   verification error: %s\n",
			    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(root);
	X509_free(leaf);
	return ok;
}

/* ---- background daemons ---- */

static pid_t daemons[MAX_DAEMONS];
static int ndaemons;

/* Start argv in the background, stdout and stderr appended to log_path. */
static int
spawn(char *const argv[], const char *log_path)
{
	pid_t p;

	if (ndaemons == MAX_DAEMONS)
		return -1;
	fflush(stdout);
	if ((p = fork()) < 0)
		return -1;
	if (p == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDONLY);

		if (fd < 0 || nul < 0)
			_exit(127);
		/* its own process group: Ctrl-C reaches the demo, which stops it in order */
		setpgid(0, 0);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
		close(nul);
		execv(argv[0], argv);
		_exit(127);
	}
	daemons[ndaemons++] = p;
	return 0;
}

/* SIGTERM every daemon, last started first; SIGKILL what is still there after 5 s. */
static void
stop_all(void)
{
	for (int i = ndaemons - 1; i >= 0; i--) {
		int waited = 0;

		kill(daemons[i], SIGTERM);
		while (waitpid(daemons[i], NULL, WNOHANG) == 0 && waited < 500) {
			usleep(10000);
			waited++;
		}
		if (waited == 500) {
			kill(daemons[i], SIGKILL);
			waitpid(daemons[i], NULL, 0);
		}
	}
	ndaemons = 0;
}

/* Non-zero when a daemon started by spawn() has exited. */
static int
daemon_died(void)
{
	for (int i = 0; i < ndaemons; i++)
		if (waitpid(daemons[i], NULL, WNOHANG) == daemons[i]) {
			daemons[i] = daemons[--ndaemons];
			return 1;
		}
	return 0;
}

/* Occurrences of needle in the file at path. */
static int
count_in_file(const char *path, const char *needle)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int n = 0;

	if (hsm_read_file(path, 64 << 20, &buf, &len) != 0)
		return 0;
	for (char *p = (char *)buf; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(buf);
	return n;
}

/* Wait up to secs for needle to appear n times in path; 0 when it did. */
static int
wait_for(const char *path, const char *needle, int n, int secs)
{
	for (int i = 0; i < secs * 10; i++) {
		if (count_in_file(path, needle) >= n)
			return 0;
		if (interrupted || daemon_died())
			return -1;
		usleep(100000);
	}
	return -1;
}

/* Print the lines of path that contain needle, indented. */
static void
show_lines(const char *path, const char *needle, int max)
{
	char line[1024];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	while (max > 0 && fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, needle) != NULL) {
			printf("     %s", line);
			max--;
		}
	fclose(f);
}

/* The port a --ports-file (or --port-file, name NULL) holds for name; 0 if none. */
static int
read_port(const char *path, const char *name)
{
	char line[256], key[128];
	int port = 0, p;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (name == NULL && sscanf(line, "%d", &p) == 1)
			port = p;
		else if (name != NULL && sscanf(line, "%127s %d", key, &p) == 2 &&
		    strcmp(key, name) == 0)
			port = p;
	}
	fclose(f);
	return port;
}

/* GET http://127.0.0.1:port/path into buf (NUL-terminated, headers included). */
static int
http_get(int port, const char *path, char *buf, size_t cap)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct pollfd pfd;
	char req[256];
	size_t have = 0;
	ssize_t n;
	int fd, rc = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
	    path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto out;
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	while (have + 1 < cap && poll(&pfd, 1, 3000) == 1 &&
	    (n = read(fd, buf + have, cap - 1 - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	rc = have > 0 ? 0 : -1;
 out:
	close(fd);
	return rc;
}

/* Metric lines of text whose name starts with one of prefixes, indented. */
static void
show_metrics(const char *text, const char *const *prefixes)
{
	const char *p = strstr(text, "\r\n\r\n");

	for (p = p != NULL ? p + 4 : text; *p != '\0';) {
		const char *e = strchr(p, '\n');
		size_t l = e != NULL ? (size_t)(e - p) : strlen(p);

		for (int i = 0; prefixes[i] != NULL; i++)
			if (*p != '#' && strncmp(p, prefixes[i], strlen(prefixes[i])) == 0) {
				printf("     %.*s\n", (int)l, p);
				break;
			}
		p += l + (e != NULL);
	}
}

/* softhsm2-util --init-token with random PINs; the user PIN goes to pin_path (0600). */
static int
new_token(const char *label, const char *pin_path, const char *err_path)
{
	uint8_t rnd[8];
	char pin[17], so[17];
	int st;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -1;
	hsm_hex(rnd, sizeof(rnd), pin);
	RAND_bytes(rnd, sizeof(rnd));
	hsm_hex(rnd, sizeof(rnd), so);
	if (write_text(pin_path, pin, 0600) != 0)
		return -1;
	/* softhsm2-util takes PINs only as arguments: these throwaway ones are random. */
	st = run((char *const[]){ "softhsm2-util", "--init-token", "--free", "--label",
	    (char *)label, "--pin", pin, "--so-pin", so, NULL }, "/dev/null", err_path);
	OPENSSL_cleanse(pin, sizeof(pin));
	OPENSSL_cleanse(so, sizeof(so));
	return st;
}

/* ---- the SBI step (issue 18): HTTP/2 with per-route SPIFFE policy ---- */

/* A file of the demo's directory: tmpdir/name into out. */
static const char *
path_of(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmpdir, name);
	return out;
}

/* Start a sidecar with config text yaml (written to NAME.yaml); wait until it is ready. */
static int
sbi_proxy(const char *self, const char *name, const char *yaml)
{
	char y[160], l[160], pf[160];

	snprintf(y, sizeof(y), "%s/proxy-%s.yaml", tmpdir, name);
	snprintf(l, sizeof(l), "%s/proxy-%s.log", tmpdir, name);
	snprintf(pf, sizeof(pf), "%s/proxy-%s.ports", tmpdir, name);
	if (write_text(y, yaml, 0644) != 0 || spawn((char *const[]){ (char *)self, "proxy", "-c",
	    y, "--ports-file", pf, NULL }, l) != 0 || wait_for(l, "ready: serving", 1, 20) != 0) {
		show_file(l, "   ");
		return fail("a 5G core sidecar did not start");
	}
	return 0;
}

/* Start `hsmesh app serve --echo` named name; its port, or 0. */
static int
sbi_app(const char *self, const char *name)
{
	char pf[160], l[160];
	int i, port = 0;

	snprintf(pf, sizeof(pf), "%s/app-%s.port", tmpdir, name);
	snprintf(l, sizeof(l), "%s/app-%s.log", tmpdir, name);
	if (spawn((char *const[]){ (char *)self, "app", "serve", "--listen", "127.0.0.1:0", "--name",
	    (char *)name, "--echo", "--port-file", pf, NULL }, l) != 0)
		return 0;
	for (i = 0; i < 100 && (port = read_port(pf, NULL)) == 0; i++)
		usleep(50000);
	return port;
}

/*
 * One call of an NF through its outbound sidecar, as its application
 * would make it: curl over h2c. "STATUS" and the body into out.
 */
static int
sbi_call(const char *method, int port, const char *path, const char *body, const char *out,
    const char *err)
{
	char url[256];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	if (body != NULL)
		return run((char *const[]){ "curl", "-s", "--max-time", "10",
		    "--http2-prior-knowledge", "-X", (char *)method, "-H",
		    "content-type: application/json", "-d", (char *)body, "-w", "%{http_code}\n",
		    url, NULL }, out, err);
	return run((char *const[]){ "curl", "-s", "--max-time", "10", "--http2-prior-knowledge",
	    "-X", (char *)method, "-w", "%{http_code}\n", url, NULL }, out, err);
}

/* The last line of a file holds the status curl printed: 1 when it is want. */
static int
sbi_status(const char *path, const char *want)
{
	char line[256], last[256] = "";
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		snprintf(last, sizeof(last), "%s", line);
	fclose(f);
	return strncmp(last, want, strlen(want)) == 0;
}

/*
 * Step n: a 5G core on a second node (its own token, node join token,
 * registration entries and agent), the SMF and the NRF (`hsmesh app
 * serve --echo`) behind HTTP sidecars with per-route SPIFFE policy, and
 * the AMF and a PCF calling them over HTTP/2 through outbound sidecars:
 * the AMF may create an SM context, the PCF is refused 403 but may
 * discover NFs at the NRF; the SMF reads its caller's SPIFFE ID from
 * x-forwarded-client-cert; the AMF's sidecar multiplexes its calls over
 * one upstream connection.
 */
static int
sbi_step(int n, const char *self, const char *ca_yaml, const char *root, int capt,
    const char *sel_uid, const char *sel_path)
{
	static const char *const nfs[4] = { ID_AMF, ID_SMF, ID_NRF, ID_PCF };
	static const char *const sms = "{\"supi\":\"imsi-001010000000001\",\"pduSessionId\":5}";
	char pin[160], join[160], ay[160], al[160], sock[160], out[160], err[160], f[160],
	    buf[1 << 15];
	int smf, nrf, smfp, nrfp, amf_smf, amf_nrf, pcf_smf, pcf_nrf, amet, i, ok;

	step(n, "a 5G core's service-based interface: HTTP/2 with per-route SPIFFE policy");
	path_of(pin, sizeof(pin), "core.pin");
	path_of(join, sizeof(join), "core.join");
	path_of(ay, sizeof(ay), "agent-core.yaml");
	path_of(al, sizeof(al), "agent-core.log");
	path_of(sock, sizeof(sock), "core.sock");
	path_of(out, sizeof(out), "sbi.out");
	path_of(err, sizeof(err), "sbi.err");
	printf("   a second node, the 5G core, with a token of its own and four network functions:\n"
	    "   the AMF, the SMF, the NRF and a PCF\n");
	if (new_token("demo-core", pin, err) != 0)
		return fail("softhsm2-util could not create the core's token");
	for (i = 0; i < 4; i++) {
		printf("   $ hsmesh ca entry add -c ca.yaml --node %s --id %s ...\n", ID_CORE, nfs[i]);
		if (run((char *const[]){ (char *)self, "ca", "entry", "add", "-c", (char *)ca_yaml,
		    "--node", ID_CORE, "--id", (char *)nfs[i], "--selector", (char *)sel_uid,
		    "--selector", (char *)sel_path, NULL }, "/dev/null", err) != 0) {
			show_file(err, "   ");
			return fail("ca entry add failed");
		}
	}
	if (run((char *const[]){ (char *)self, "ca", "token", "-c", (char *)ca_yaml, "--node",
	    "--id", ID_CORE, NULL }, join, err) != 0) {
		show_file(err, "   ");
		return fail("ca token --node failed");
	}
	snprintf(buf, sizeof(buf), "token:\n  module: %s\n  uri: \"pkcs11:token=demo-core\"\n"
	    "  pin_file: %s\nca:\n  url: http://127.0.0.1:%d/.well-known/cmp\n  root: %s\n"
	    "state_dir: %s/agent-core\nsocket: %s\nnode:\n  id: %s\n  join_token_file: %s\n",
	    DEMO_MODULE, pin, capt, root, tmpdir, sock, ID_CORE, join);
	printf("   $ hsmesh agent -c agent-core.yaml &   (node: %s)\n", ID_CORE);
	if (write_text(ay, buf, 0644) != 0 ||
	    spawn((char *const[]){ (char *)self, "agent", "-c", ay, NULL }, al) != 0)
		return -1;
	for (i = 0, ok = 0; i < 4; i++) {
		char needle[192];

		snprintf(needle, sizeof(needle), "%s: enrolled", nfs[i]);
		ok += wait_for(al, needle, 1, 30) == 0;
	}
	if (ok != 4) {
		show_file(al, "   ");
		return fail("the core's agent did not enroll its network functions");
	}
	printf("     -> the core's node and its four NFs enrolled, keys in the core's token\n");

	if ((smf = sbi_app(self, "smf")) == 0 || (nrf = sbi_app(self, "nrf")) == 0)
		return fail("the SMF or NRF application did not start");
	snprintf(buf, sizeof(buf),
	    "agent: { socket: %s, id: \"%s\" }\n"
	    "inbound:\n"
	    "  - name: smf\n"
	    "    listen: 127.0.0.1:0\n"
	    "    forward_to: 127.0.0.1:%d\n"
	    "    protocol: http                 # HTTP/2 (ALPN h2) from other NFs' sidecars\n"
	    "    allow: [\"spiffe://%s/ns/5gc/*\"]\n"
	    "    routes:                        # the first that matches decides\n"
	    "      - name: create-sm-context\n"
	    "        path: /nsmf-pdusession/v1/sm-contexts\n"
	    "        methods: [POST]\n"
	    "        allow: [\"%s\"]\n"
	    "access_log: %s/smf-access.log\n", sock, ID_SMF, smf, DEMO_TD, ID_AMF, tmpdir);
	printf("   the SMF's sidecar, proxy-smf.yaml:\n");
	if (sbi_proxy(self, "smf", buf) != 0)
		return -1;
	show_file(path_of(f, sizeof(f), "proxy-smf.yaml"), "   | ");
	snprintf(buf, sizeof(buf),
	    "agent: { socket: %s, id: \"%s\" }\n"
	    "inbound:\n"
	    "  - name: nrf\n"
	    "    listen: 127.0.0.1:0\n"
	    "    forward_to: 127.0.0.1:%d\n"
	    "    protocol: http\n"
	    "    allow: [\"spiffe://%s/ns/5gc/*\"]\n"
	    "    routes:\n"
	    "      - name: nf-discovery\n"
	    "        path_prefix: /nnrf-nfm/v1/\n"
	    "        methods: [GET]\n"
	    "        allow: [\"spiffe://%s/ns/5gc/*\"]\n", sock, ID_NRF, nrf, DEMO_TD, DEMO_TD);
	if (sbi_proxy(self, "nrf", buf) != 0)
		return -1;
	printf("   the NRF's sidecar: the same, with one route: GET /nnrf-nfm/v1/... for any NF\n");
	smfp = read_port(path_of(f, sizeof(f), "proxy-smf.ports"), "smf");
	nrfp = read_port(path_of(f, sizeof(f), "proxy-nrf.ports"), "nrf");
	for (i = 0; i < 2; i++) {
		snprintf(buf, sizeof(buf),
		    "agent: { socket: %s, id: \"%s\" }\n"
		    "outbound:\n"
		    "  - { name: to-smf, listen: 127.0.0.1:0, connect: 127.0.0.1:%d, expect_id: \"%s\", protocol: http }\n"
		    "  - { name: to-nrf, listen: 127.0.0.1:0, connect: 127.0.0.1:%d, expect_id: \"%s\", protocol: http }\n"
		    "metrics: { listen: 127.0.0.1:0 }\n", sock, i == 0 ? ID_AMF : ID_PCF, smfp, ID_SMF,
		    nrfp, ID_NRF);
		if (sbi_proxy(self, i == 0 ? "amf" : "pcf", buf) != 0)
			return -1;
	}
	printf("   the AMF's and the PCF's sidecars (outbound to-smf and to-nrf, protocol: http), up\n");
	path_of(f, sizeof(f), "proxy-amf.ports");
	amf_smf = read_port(f, "to-smf");
	amf_nrf = read_port(f, "to-nrf");
	amet = read_port(f, "metrics");
	path_of(f, sizeof(f), "proxy-pcf.ports");
	pcf_smf = read_port(f, "to-smf");
	pcf_nrf = read_port(f, "to-nrf");

	printf("\n   AMF -> SMF: create an SM context (its application speaks h2c to its sidecar)\n"
	    "   $ curl --http2-prior-knowledge -X POST -d '%s' \\\n"
	    "       http://127.0.0.1:%d/nsmf-pdusession/v1/sm-contexts\n", sms, amf_smf);
	sbi_call("POST", amf_smf, "/nsmf-pdusession/v1/sm-contexts", sms, out, err);
	show_file(out, "     ");
	if (!sbi_status(out, "201"))
		return fail("the AMF's call was not answered 201");
	printf("   the SMF application reads its caller from x-forwarded-client-cert (set by its\n"
	    "   sidecar, any the client sent removed first):\n");
	path_of(f, sizeof(f), "app-smf.log");
	if (wait_for(f, "from " ID_AMF, 1, 5) != 0)
		return fail("the SMF did not see the AMF's identity");
	show_lines(f, "sm-contexts from", 1);

	printf("\n   PCF -> SMF: the same call from another NF\n");
	sbi_call("POST", pcf_smf, "/nsmf-pdusession/v1/sm-contexts", sms, out, err);
	show_file(out, "     ");
	if (!sbi_status(out, "403"))
		return fail("the PCF's call was not refused 403");
	printf("   refused by the route, and the SMF's sidecar logs which one:\n");
	path_of(f, sizeof(f), "smf-access.log");
	wait_for(f, "\"status\":\"403\"", 1, 5);
	show_lines(f, "\"status\":\"403\"", 1);

	printf("\n   PCF -> NRF: NF discovery, which every NF of the core may do\n"
	    "   $ curl --http2-prior-knowledge http://127.0.0.1:%d/nnrf-nfm/v1/nf-instances?nf-type=SMF\n",
	    pcf_nrf);
	sbi_call("GET", pcf_nrf, "/nnrf-nfm/v1/nf-instances?nf-type=SMF", NULL, out, err);
	show_file(out, "     ");
	if (!sbi_status(out, "200"))
		return fail("the PCF's discovery was not answered 200");

	printf("\n   20 more discoveries by the AMF, each a new connection from its application:\n");
	for (i = 0; i < 20; i++)
		sbi_call("GET", amf_nrf, "/nnrf-nfm/v1/nf-instances?nf-type=SMF", NULL, out, err);
	if (http_get(amet, "/metrics", buf, sizeof(buf)) != 0)
		return fail("no answer from the AMF sidecar's metrics");
	show_metrics(buf, (const char *const[]){ "hsmesh_proxy_connections_total{listener=\"to-nrf\"",
	    "hsmesh_proxy_handshakes_total{listener=\"to-nrf\"",
	    "hsmesh_proxy_http_requests_total{listener=\"to-nrf\",route=\"-\",class=\"2xx\"", NULL });
	printf("     -> the application's connections share the sidecar's pool of HTTP/2 connections\n"
	    "        to the NRF: a handful of mutual-TLS handshakes, not one per connection\n");
	return 0;
}

#define P(name) snprintf(name, sizeof(name), "%s/%s", tmpdir, #name)

/*
 * The step "a compromised workload asks the agent to sign a CMP request":
 * code with the frontend's uid makes a kur for a key in a file with
 * `openssl cmp` and hands it to the agent to sign with the frontend's
 * key. The agent signs TLS handshake inputs only: refused. 0 when it was.
 */
static int
demo_refused_signature(const char *self, const char *agent_sock, const char *agent_log,
    const char *cert, const char *err)
{
	static const char sh_sign[] = "exec \"$0\" agent client --socket \"$1\" sign \"$2\" <\"$3\"";
	char key[128], kur[128], certout[128], cmpout[128];
	int r;

	snprintf(key, sizeof(key), "%s/file.key", tmpdir);
	snprintf(kur, sizeof(kur), "%s/kur.der", tmpdir);
	snprintf(certout, sizeof(certout), "%s/never.pem", tmpdir);
	snprintf(cmpout, sizeof(cmpout), "%s/cmp.out", tmpdir);
	printf("   code running as the frontend's uid (no key, no token) tries to make its\n"
	    "   identity portable: a renewal (CMP kur) for a key of its own in a file,\n"
	    "   to be signed with the frontend's key by the agent\n");
	printf("   $ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out file.key\n");
	if (run((char *const[]){ "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
	    "ec_paramgen_curve:P-256", "-out", key, NULL }, NULL, err) != 0)
		return fail("openssl genpkey failed");
	printf("   $ openssl cmp -cmd kur -oldcert frontend.pem -newkey file.key -reqout kur.der ...\n");
	/* Nobody listens on port 1: the request is written, never sent. */
	(void)run((char *const[]){ "openssl", "cmp", "-cmd", "kur", "-server", "127.0.0.1:1",
	    "-oldcert", (char *)cert, "-newkey", key, "-subject", "/CN=frontend",
	    "-unprotected_requests", "-recipient", "/CN=ca", "-reqout", kur, "-certout", certout,
	    NULL }, cmpout, err);
	if (access(kur, F_OK) != 0)
		return fail("openssl cmp wrote no request");
	printf("   $ hsmesh agent client --socket agent.sock sign %s < kur.der\n", ID_FRONT);
	r = run((char *const[]){ "sh", "-c", (char *)sh_sign, (char *)self, (char *)agent_sock,
	    ID_FRONT, kur, NULL }, NULL, err);
	show_file(err, "     ");
	printf("   the agent logs:\n");
	if (wait_for(agent_log, "refused to sign for", 1, 5) == 0)
		show_lines(agent_log, "refused to sign for", 1);
	printf("     -> %s\n", r != 0 ? "refused: the agent signs TLS handshake inputs only" :
	    "SIGNED (unexpected)");
	return r != 0 ? 0 : -1;
}

static int
demo(const char *self)
{
	char ca_yaml[128], ca_pin[128], node_pin[128], root[128], err[128], shconf[128],
	    ca_log[128], ca_port[128], agent_yaml[128], agent_log[128], agent_sock[128],
	    app_log[128], app_port[128], b_yaml[128], b_log[128], b_ports[128], a_yaml[128],
	    a_log[128], a_ports[128], x_yaml[128], x_log[128], x_ports[128], out[128], cert[160],
	    node_join[128], copy[160], sel_uid[32], sel_path[4200], buf[1 << 16], url[128],
	    hex[2 * HSM_KEYID_LEN + 1], cnt[16];
	static const char *const ids[3] = { ID_FRONT, ID_BACK, ID_INTRUDER };
	int capt, appp, bport, aport, xport, bmet, rc = 1, i, na, nb;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hsmesh-demo.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return fail("cannot create a temporary directory");
	P(ca_yaml); P(ca_pin); P(node_pin); P(err); P(shconf); P(ca_log); P(ca_port);
	P(agent_yaml); P(agent_log); P(agent_sock); P(app_log); P(app_port); P(b_yaml); P(b_log);
	P(b_ports); P(a_yaml); P(a_log); P(a_ports); P(x_yaml); P(x_log); P(x_ports); P(out);
	P(node_join);
	snprintf(root, sizeof(root), "%s/ca/root.pem", tmpdir);

	printf("hsmesh demo: a service mesh on this machine whose private keys are generated\n"
	    "inside PKCS#11 tokens and never leave them.\n"
	    "Working directory (removed on exit): %s\n", tmpdir);

	step(1, "two throwaway SoftHSM2 tokens: the CA's and the node's");
	snprintf(buf, sizeof(buf), "directories.tokendir = %s\nobjectstore.backend = file\n"
	    "log.level = ERROR\n", tmpdir);
	if (write_text(shconf, buf, 0600) != 0)
		goto out;
	setenv("SOFTHSM2_CONF", shconf, 1);
	if (new_token("demo-ca", ca_pin, err) != 0 || new_token("demo-node", node_pin, err) != 0) {
		show_file(err, "   ");
		fail("softhsm2-util could not create the tokens (is softhsm2 installed? run make)");
		goto out;
	}
	printf("   tokens 'demo-ca' and 'demo-node' created; random user PINs in 0600 files\n");

	step(2, "the CA: its key is generated inside the token (hsmesh ca init)");
	snprintf(buf, sizeof(buf),
	    "trust_domain: %s\n"
	    "token:\n"
	    "  module: %s\n"
	    "  uri: \"pkcs11:token=demo-ca\"\n"
	    "  pin_file: %s\n"
	    "key:\n"
	    "  type: ec-p256\n"
	    "state_dir: %s/ca\n"
	    "listen: 127.0.0.1:0\n"
	    "svid_ttl: 20s            # short, so that you see a rotation\n"
	    "max_ttl: 24h\n"
	    "database: %s/ca/ledger.db\n", DEMO_TD, DEMO_MODULE, ca_pin, tmpdir, tmpdir);
	if (write_text(ca_yaml, buf, 0644) != 0)
		goto out;
	show_file(ca_yaml, "   | ");
	printf("   $ hsmesh ca init -c ca.yaml\n");
	if (run((char *const[]){ (char *)self, "ca", "init", "-c", ca_yaml, NULL }, NULL, NULL) != 0) {
		fail("ca init failed");
		goto out;
	}
	if (cert_keyid(root, hex) != 0) {
		fail("cannot read root.pem");
		goto out;
	}
	printf("   the CA key, as the token reports it:\n");
	if (run((char *const[]){ (char *)self, "keyholder", "--module", DEMO_MODULE, "--token",
	    "pkcs11:token=demo-ca", "--pin-file", ca_pin, "--describe", hex, NULL }, NULL, NULL) != 0) {
		fail("cannot describe the CA key");
		goto out;
	}
	printf("   $ hsmesh ca serve -c ca.yaml &\n");
	if (spawn((char *const[]){ (char *)self, "ca", "serve", "-c", ca_yaml, "--port-file",
	    ca_port, NULL }, ca_log) != 0)
		goto out;
	for (i = 0; i < 100 && (capt = read_port(ca_port, NULL)) == 0; i++)
		usleep(50000);
	if (capt == 0) {
		show_file(ca_log, "   ");
		fail("the CA did not start");
		goto out;
	}
	printf("   CMP issuer on http://127.0.0.1:%d/.well-known/cmp\n", capt);

	step(3, "registration entries: which node may hold which identity, for which processes");
	/* The sidecars are this very binary, run by this uid: that is what the entries select. */
	snprintf(sel_uid, sizeof(sel_uid), "uid:%u", (unsigned)getuid());
	snprintf(sel_path, sizeof(sel_path), "path:%s", self);
	for (i = 0; i < 3; i++) {
		printf("   $ hsmesh ca entry add -c ca.yaml --node %s --id %s --selector %s "
		    "--selector %s\n", ID_NODE, ids[i], sel_uid, sel_path);
		if (run((char *const[]){ (char *)self, "ca", "entry", "add", "-c", ca_yaml, "--node",
		    ID_NODE, "--id", (char *)ids[i], "--selector", sel_uid, "--selector", sel_path,
		    NULL }, "/dev/null", err) != 0) {
			show_file(err, "   ");
			fail("ca entry add failed");
			goto out;
		}
	}
	printf("   $ hsmesh ca entry list -c ca.yaml\n");
	if (run((char *const[]){ (char *)self, "ca", "entry", "list", "-c", ca_yaml, NULL }, out,
	    err) != 0) {
		fail("ca entry list failed");
		goto out;
	}
	show_file(out, "   | ");
	printf("   one join token for the NODE (none per workload):\n"
	    "   $ hsmesh ca token -c ca.yaml --node --id %s > node.join\n", ID_NODE);
	if (run((char *const[]){ (char *)self, "ca", "token", "-c", ca_yaml, "--node", "--id",
	    ID_NODE, NULL }, node_join, err) != 0) {
		show_file(err, "   ");
		fail("ca token --node failed");
		goto out;
	}

	step(4, "the node agent: its node identity first, then the workloads its entries name");
	snprintf(buf, sizeof(buf),
	    "token:\n"
	    "  module: %s\n"
	    "  uri: \"pkcs11:token=demo-node\"\n"
	    "  pin_file: %s\n"
	    "ca:\n"
	    "  url: http://127.0.0.1:%d/.well-known/cmp\n"
	    "  root: %s\n"
	    "state_dir: %s/agent\n"
	    "socket: %s\n"
	    "node:\n"
	    "  id: %s\n"
	    "  join_token_file: %s\n", DEMO_MODULE, node_pin, capt, root, tmpdir, agent_sock,
	    ID_NODE, node_join);
	if (write_text(agent_yaml, buf, 0644) != 0)
		goto out;
	show_file(agent_yaml, "   | ");
	printf("   $ hsmesh agent -c agent.yaml &\n");
	if (spawn((char *const[]){ (char *)self, "agent", "-c", agent_yaml, NULL }, agent_log) != 0)
		goto out;
	if (wait_for(agent_log, ID_NODE ": enrolled", 1, 20) != 0) {
		show_file(agent_log, "   ");
		fail("the agent did not enroll its node");
		goto out;
	}
	for (i = 0; i < 3; i++) {
		char needle[192];

		snprintf(needle, sizeof(needle), "%s: enrolled", ids[i]);
		if (wait_for(agent_log, needle, 1, 20) != 0) {
			show_file(agent_log, "   ");
			fail("the agent did not enroll");
			goto out;
		}
	}
	printf("   the node enrolled with its token; each workload's ir is signed by the node's key\n"
	    "   (in the token), and each new key proves possession itself:\n");
	show_lines(agent_log, ": enrolled certificate", 4);
	snprintf(cert, sizeof(cert), "%s/agent/%s+ns+shop+sa+frontend/cert.pem", tmpdir, DEMO_TD);
	printf("   chain check of frontend's SVID (X.509 strict, client and server): %s\n",
	    verify_chain(root, cert) ? "OK" : "FAILED");
	if (cert_keyid(cert, hex) != 0)
		goto out;
	printf("   frontend's key in the node token:\n");
	if (run((char *const[]){ (char *)self, "keyholder", "--module", DEMO_MODULE, "--token",
	    "pkcs11:token=demo-node", "--pin-file", node_pin, "--describe", hex, NULL }, NULL,
	    NULL) != 0) {
		fail("cannot describe the workload key");
		goto out;
	}
	/* The selectors at work: the same uid, another executable. */
	snprintf(copy, sizeof(copy), "%s/not-the-sidecar", tmpdir);
	printf("   the agent serves an identity only to the processes its entry selects; a copy of\n"
	    "   the binary at another path, run by the same uid, is refused:\n"
	    "   $ cp hsmesh not-the-sidecar; ./not-the-sidecar agent client get %s\n", ID_FRONT);
	if (run((char *const[]){ "cp", (char *)self, copy, NULL }, "/dev/null", err) != 0 ||
	    (i = run((char *const[]){ copy, "agent", "client", "--socket", agent_sock, "get",
	    ID_FRONT, NULL }, out, err)) == 0) {
		fail("a process the selectors do not select got an identity");
		goto out;
	}
	show_file(err, "     ");
	printf("   the agent says why:\n");
	if (wait_for(agent_log, "refused local client", 1, 5) == 0)
		show_lines(agent_log, "refused local client", 1);

	step(5, "the backend app and three sidecars (hsmesh proxy)");
	if (spawn((char *const[]){ (char *)self, "app", "serve", "--listen", "127.0.0.1:0",
	    "--name", "backend", "--port-file", app_port, NULL }, app_log) != 0)
		goto out;
	for (i = 0; i < 100 && (appp = read_port(app_port, NULL)) == 0; i++)
		usleep(50000);
	if (appp == 0) {
		fail("the app did not start");
		goto out;
	}
	snprintf(buf, sizeof(buf),
	    "agent:\n"
	    "  socket: %s\n"
	    "  id: %s\n"
	    "inbound:\n"
	    "  - name: backend\n"
	    "    listen: 127.0.0.1:0\n"
	    "    forward_to: 127.0.0.1:%d      # the backend app, plaintext\n"
	    "    allow:\n"
	    "      - spiffe://%s/ns/shop/*\n"
	    "metrics:\n"
	    "  listen: 127.0.0.1:0\n"
	    "access_log: %s/backend-access.log\n", agent_sock, ID_BACK, appp, DEMO_TD, tmpdir);
	if (write_text(b_yaml, buf, 0644) != 0)
		goto out;
	printf("   backend's sidecar, proxy-backend.yaml:\n");
	show_file(b_yaml, "   | ");
	if (spawn((char *const[]){ (char *)self, "proxy", "-c", b_yaml, "--ports-file", b_ports,
	    NULL }, b_log) != 0 || wait_for(b_log, "ready: serving", 1, 20) != 0) {
		show_file(b_log, "   ");
		fail("the backend's sidecar did not start");
		goto out;
	}
	bport = read_port(b_ports, "backend");
	bmet = read_port(b_ports, "metrics");
	for (i = 0; i < 2; i++) {
		const char *yaml = i == 0 ? a_yaml : x_yaml, *log = i == 0 ? a_log : x_log,
		    *ports = i == 0 ? a_ports : x_ports;

		snprintf(buf, sizeof(buf),
		    "agent:\n"
		    "  socket: %s\n"
		    "  id: %s\n"
		    "outbound:\n"
		    "  - name: to-backend\n"
		    "    listen: 127.0.0.1:0          # the app talks plaintext here\n"
		    "    connect: 127.0.0.1:%d        # the backend's sidecar, mTLS\n"
		    "    expect_id: %s\n", agent_sock, i == 0 ? ID_FRONT : ID_INTRUDER, bport,
		    ID_BACK);
		if (write_text(yaml, buf, 0644) != 0)
			goto out;
		if (i == 0) {
			printf("   frontend's sidecar, proxy-frontend.yaml:\n");
			show_file(yaml, "   | ");
		}
		if (spawn((char *const[]){ (char *)self, "proxy", "-c", (char *)yaml, "--ports-file",
		    (char *)ports, NULL }, log) != 0 || wait_for(log, "ready: serving", 1, 20) != 0) {
			show_file(log, "   ");
			fail("a sidecar did not start");
			goto out;
		}
	}
	aport = read_port(a_ports, "to-backend");
	xport = read_port(x_ports, "to-backend");
	show_lines(b_log, "ready:", 1);
	show_lines(a_log, "ready:", 1);
	show_lines(x_log, "ready:", 1);
	printf("   the sidecars hold certificates only: no key, no PKCS#11 module, no PIN\n");

	step(6, "frontend -> backend: an authorised call over mutual TLS");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", aport);
	printf("   $ hsmesh app get %s      (frontend's sidecar)\n", url);
	i = run((char *const[]){ (char *)self, "app", "get", url, NULL }, out, err);
	show_file(out, "     ");
	show_file(err, "     ");
	printf("     -> %s\n", i == 0 ? "answered by the backend, caller authenticated as "
	    ID_FRONT : "FAILED");
	if (i != 0)
		goto out;

	step(7, "intruder -> backend: an identity the backend does not allow");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", xport);
	printf("   $ hsmesh app get %s      (intruder's sidecar)\n", url);
	i = run((char *const[]){ (char *)self, "app", "get", url, "--timeout", "5000", NULL }, out, err);
	show_file(err, "     ");
	if (wait_for(b_log, "refused: not_allowed", 1, 5) != 0)
		i = 0;
	printf("   the backend's sidecar says:\n");
	show_lines(b_log, "refused: not_allowed", 1);
	printf("     -> %s\n", i != 0 ? "refused" : "NOT REFUSED (unexpected)");
	if (i == 0)
		goto out;

	step(8, "a compromised workload asks the agent to sign a CMP request");
	snprintf(cert, sizeof(cert), "%s/agent/%s+ns+shop+sa+frontend/cert.pem", tmpdir, DEMO_TD);
	if (demo_refused_signature(self, agent_sock, agent_log, cert, err) != 0)
		goto out;

	step(9, "certificate rotation while one connection stays open");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", aport);
	na = count_in_file(a_log, "rotated:");
	nb = count_in_file(b_log, "rotated:");
	printf("   $ hsmesh app get %s --count 40 --interval 500   (one keep-alive connection, 20 s)\n",
	    url);
	{
		pid_t p;
		int status = -1;

		fflush(stdout);
		if ((p = fork()) == 0) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);

			if (fd < 0)
				_exit(127);
			dup2(fd, 1);
			dup2(fd, 2);
			execv(self, (char *const[]){ (char *)self, "app", "get", url, "--count", "40",
			    "--interval", "500", NULL });
			_exit(127);
		}
		if (p < 0)
			goto out;
		printf("   the agent renews every SVID at half its 20 s life, with a NEW key in the token;\n"
		    "   the sidecars take the new certificate for new handshakes:\n");
		if (wait_for(b_log, "rotated:", nb + 1, 30) == 0)
			show_lines(b_log, "rotated:", nb + 1);
		if (wait_for(a_log, "rotated:", na + 1, 30) == 0)
			show_lines(a_log, "rotated:", na + 1);
		/* Ctrl-C meanwhile: the client is stopped too, not waited for */
		while (waitpid(p, &status, WNOHANG) == 0) {
			if (interrupted)
				kill(p, SIGTERM);
			usleep(100000);
		}
		snprintf(cnt, sizeof(cnt), "%d", count_in_file(out, "200 hello from backend"));
		printf("   %s of 40 requests answered on the connection opened before the rotation\n",
		    cnt);
		printf("     -> %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
		    count_in_file(b_log, "rotated:") > nb ? "rotated, connection kept" : "FAILED");
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
		    count_in_file(b_log, "rotated:") <= nb)
			goto out;
	}

	step(10, "the backend sidecar's metrics (Prometheus, http://127.0.0.1:PORT/metrics)");
	if (http_get(bmet, "/metrics", buf, sizeof(buf)) != 0) {
		fail("no answer from the metrics endpoint");
		goto out;
	}
	show_metrics(buf, (const char *const[]){ "hsmesh_proxy_handshakes_total",
	    "hsmesh_proxy_handshake_failures_total", "hsmesh_proxy_key_operation_seconds_count",
	    "hsmesh_proxy_key_operation_seconds_sum", "hsmesh_proxy_certificate_rotations_total",
	    "hsmesh_proxy_bytes_total", NULL });
	printf("   and one JSON line per connection in the access log:\n");
	snprintf(cert, sizeof(cert), "%s/backend-access.log", tmpdir);
	show_lines(cert, "\"decision\":\"deny\"", 1);

	if (sbi_step(11, self, ca_yaml, root, capt, sel_uid, sel_path) != 0)
		goto out;

	step(12, "done");
	printf("   Every private key (the CA's, the node's, and each workload's at every rotation) was\n"
	    "   generated inside a token and used only through signing requests; the sidecars never\n"
	    "   held one, and no workload needed a join token of its own.\n");
	rc = interrupted ? 1 : 0;
 out:
	if (rc != 0 && interrupted)
		printf("\ninterrupted: stopping everything\n");
	stop_all();
	cleanup_dir();
	return rc;
}

int
demo_main(int argc, char **argv)
{
	char self[4096];
	ssize_t n;
	struct sigaction sa;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: hsmesh demo\n\nRuns a whole mesh on this machine, step by step: a CA "
		    "and a node agent on\nthrowaway SoftHSM2 tokens, an app behind a sidecar, two "
		    "client sidecars (one\nallowed, one refused), a compromised workload's request "
		    "to sign a CMP message\n(refused), a certificate rotation under an open "
		    "connection, the metrics, and\na 5G core's NFs calling each other over HTTP/2 "
		    "with per-route SPIFFE policy.\nStops and removes everything it started on exit "
		    "or Ctrl-C.\n");
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: hsmesh demo\n");
		return 2;
	}
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		return fail("cannot find the hsmesh binary");
	self[n] = '\0';
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return demo(self);
}
