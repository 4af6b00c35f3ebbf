/* util.h - small helpers shared by every process. */
#ifndef HSM_UTIL_H
#define HSM_UTIL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parse a duration: an integer followed by an optional unit s, m, h, d
 * ("90s", "15m", "1h", "30d"; bare number = seconds). Rejects zero,
 * negative, overflow and trailing garbage. 0 or HSM_EINVAL.
 */
int hsm_parse_duration(const char *s, int64_t *seconds);

/* Lower-case hex of len bytes into out (2*len+1 bytes). Returns out. */
char *hsm_hex(const uint8_t *buf, size_t len, char *out);

/*
 * Copy untrusted text s into buf (len >= 8 bytes) for an error message or
 * a log line: control and non-ASCII bytes, quotes and backslashes as
 * \xNN, long input cut with "...". Returns buf.
 */
const char *hsm_quote(const char *s, char *buf, size_t len);

/* The value of one hex digit (either case), or -1. */
int hsm_hexval(int c);

/*
 * Decode exactly slen hex digits (slen even) into out (slen/2 bytes).
 * No sign, space or prefix is accepted. 0 or HSM_EINVAL.
 */
int hsm_unhex(const char *s, size_t slen, uint8_t *out);

/* Big-endian integers of the wire formats (keyholder, agent API). */
static inline uint16_t
hsm_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t
hsm_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Little-endian integers of Intel's formats (SGX quotes and reports). */
static inline uint16_t
hsm_getle16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t
hsm_getle32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void
hsm_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
hsm_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Read a secret (PIN, token) from a file (first line, trailing CR/LF
 * stripped) into a malloc'd buffer that is mlock'ed where possible. The
 * caller wipes and frees it with hsm_secret_free(). Refuses files larger
 * than 4 KiB and empty secrets. 0, HSM_ENOENT, HSM_EIO or HSM_EINVAL.
 */
int hsm_secret_read_file(const char *path, char **out, size_t *len);
/* Same from an environment variable's value. */
int hsm_secret_read_env(const char *name, char **out, size_t *len);
/* Wipe and free a secret. Accepts NULL. */
void hsm_secret_free(char *s, size_t len);
/*
 * Take a secret out of this process's environment: read name's value as
 * hsm_secret_read_env does, then scrub it (hsm_env_scrub_self), so that
 * neither getenv() nor /proc/PID/environ shows it any more. The variable
 * is scrubbed even when its value is refused (empty, too long).
 */
int hsm_secret_take_env(const char *name, char **out, size_t *len);
/*
 * Read a secret from fd (a pipe) until end of file: every byte is the
 * secret (no line handling), at most 4 KiB, not empty, no NUL. fd is left
 * open. 0, HSM_EIO or HSM_EINVAL.
 */
int hsm_secret_read_fd(int fd, char **out, size_t *len);

/*
 * Remove every "name=..." entry from envp (a NULL-terminated environment
 * array, changed in place: later entries move up) and overwrite with
 * zeros the bytes of each removed string that lie in [lo, hi) -- the
 * process's initial environment block, which /proc/PID/environ shows and
 * which unsetenv() leaves untouched. Strings outside it (from setenv) are
 * only unlinked: the C library may still own them. Returns how many
 * entries were removed. Pure: no system call.
 */
size_t hsm_env_scrub(char **envp, const char *name, char *lo, char *hi);
/*
 * hsm_env_scrub on this process's environ, with the bounds of its initial
 * environment block from /proc/self/stat (without them, entries are only
 * unlinked). Not thread-safe, like setenv(): call it during start-up.
 * Returns how many entries were removed.
 */
size_t hsm_env_scrub_self(const char *name);

/* Copy len bytes (at most 4 KiB) into fresh secret memory. 0, HSM_EINVAL or HSM_ENOMEM. */
int hsm_secret_dup(const char *src, size_t len, char **out, size_t *outlen);

/*
 * The path of this user's private directory for lock files:
 * "$TMPDIR/hsmesh-EUID" ($TMPDIR when absolute, else /tmp) into buf.
 * 0 or HSM_EINVAL (too long).
 */
int hsm_lock_dir_path(char *buf, size_t cap);
/*
 * A private directory for lock files: path is created (mode 0700) when
 * missing, opened without following a link, and accepted only when it is
 * a directory owned by the effective uid that no one else may write to.
 * 0 with *dfd a descriptor of the directory (close it), or HSM_EIO /
 * HSM_EPERM with a one-line detail.
 */
int hsm_private_dir_open(const char *path, int *dfd);
/*
 * Open (creating, mode 0600) the lock file name in the directory dfd
 * without following a link and without blocking (a FIFO planted there
 * cannot hang us), and keep it only when it is a regular file owned by
 * the effective uid. 0 with *fd (close-on-exec), or HSM_EIO / HSM_EPERM.
 */
int hsm_lockfile_open(int dfd, const char *name, int *fd);

/*
 * Read a whole file (at most max bytes) into a malloc'd buffer, with a NUL
 * after the last byte (not counted in *len) so text parsers can take it.
 */
int hsm_read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* Write a file atomically (temp + fsync + rename) with mode. */
int hsm_write_file_atomic(const char *path, const void *buf, size_t len, unsigned mode);

/* Monotonic clock in milliseconds. */
uint64_t hsm_now_ms(void);

/*
 * send(2) all len bytes to a stream socket, retrying on EINTR, never raising
 * SIGPIPE. 0, or -1 with errno set (a peer that closed reads as EPIPE).
 */
int hsm_send_all(int fd, const void *buf, size_t len);

/*
 * mkdir -p: create each missing component of path with mode (an existing
 * directory is kept as it is). 0, HSM_EINVAL (empty or too long) or HSM_EIO
 * (a component could not be made, or path is not a directory).
 */
int hsm_mkdir_p(const char *path, unsigned mode);

/* Unix seconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC) in out; "@N" if out of range. Returns out. */
#define HSM_TIME_STR 32
char *hsm_fmt_time(int64_t t, char out[HSM_TIME_STR]);

#endif
