/*
 * evidence.h - attestation evidence producers of the agent: given the
 * 64 bytes of report data the CA requires (SHA-256 of the new key's
 * SubjectPublicKeyInfo || the CA's nonce, attest.h), produce an SGX DCAP
 * quote over them.
 *
 *   gramine  Gramine's /dev/attestation interface (path: the directory,
 *            default /dev/attestation): write user_report_data, read
 *            quote. Needs the agent to run inside a Gramine SGX enclave
 *            with DCAP remote attestation enabled; not runnable here.
 *   command  Run a program (argv list, PATH searched): the report data
 *            goes to its stdin as one line of 128 hex digits, the binary
 *            quote comes back on its stdout, exit status 0. Fits a site's
 *            own quoting tool (e.g. around Intel's DCAP quote library
 *            sgx_qe_get_quote, or the Crypto API Toolkit's quote
 *            generation), and the test tool tests/tools/sgx_testpki.
 *   file     A fixed quote read from a file: never bound to a fresh key,
 *            so a CA refuses it; for tests of that refusal only.
 */
#ifndef HSM_EVIDENCE_H
#define HSM_EVIDENCE_H

#include <stddef.h>
#include <stdint.h>

struct cfg_doc;

enum evidence_kind { EVIDENCE_NONE = 0, EVIDENCE_GRAMINE, EVIDENCE_COMMAND, EVIDENCE_FILE };

struct evidence_conf {
	enum evidence_kind kind;
	char		*path;		/* gramine: directory; file: the quote file */
	char		**argv;		/* command: NULL-terminated */
	unsigned	 timeout_ms;	/* command: kill after this long */
	/*
	 * command: when set, the command is started by this spawner (program
	 * 0, spawner.h; evidence_spawner makes it) instead of posix_spawn: a
	 * confined agent cannot fork or exec.
	 */
	struct spawner	*sp;
};

/*
 * For a command producer: fork a spawner (spawner.h) that runs e's
 * command, into e->sp (freed by evidence_conf_clear). Other producers:
 * nothing. 0 or the spawner's error.
 */
int evidence_spawner(struct evidence_conf *e);

/*
 * Read section (e.g. "attestation") of an agent.yaml: producer (gramine,
 * command, file), path, command (a list), timeout (duration, default 30s).
 * Absent section: kind EVIDENCE_NONE. 0 or HSM_ECONFIG.
 */
int evidence_conf_load(const struct cfg_doc *d, const char *section, struct evidence_conf *e);
void evidence_conf_clear(struct evidence_conf *e);
const char *evidence_kind_name(enum evidence_kind k);

/*
 * Produce a quote over report_data. *quote is malloc'd (at most
 * ATTEST_QUOTE_MAX bytes). 0, or HSM_EIO / HSM_ETIMEDOUT / HSM_EPROTO
 * with a one-line detail.
 */
int evidence_quote(const struct evidence_conf *e, const uint8_t report_data[64],
    uint8_t **quote, size_t *len);

#endif
