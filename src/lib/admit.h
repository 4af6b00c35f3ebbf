/*
 * admit.h - admission of connections by source address, for a server's
 * event loop: at most max_total connections at once, and at most
 * max_per_source from one address. A source is an IPv4 address or an IPv6
 * address (an IPv4-mapped IPv6 address counts as its IPv4 address); the
 * port never matters. One thread only (the loop that accepts and closes).
 */
#ifndef HSM_ADMIT_H
#define HSM_ADMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct admit;

/* Why a connection was not admitted. */
enum admit_why { ADMIT_OK = 0, ADMIT_TOTAL, ADMIT_SOURCE };

/*
 * A table for max_total (1..1048576) connections, max_per_source
 * (1..max_total) from one source. 0, HSM_EINVAL or HSM_ENOMEM.
 */
int admit_new(unsigned max_total, unsigned max_per_source, struct admit **out);
/* Free it. Accepts NULL. */
void admit_free(struct admit *a);

/*
 * Count a new connection from ss: ADMIT_OK (counted), or the limit it
 * would break (nothing counted). Every ADMIT_OK needs one admit_release.
 */
enum admit_why admit_take(struct admit *a, const struct sockaddr_storage *ss);
/* A connection admitted from ss has ended. */
void admit_release(struct admit *a, const struct sockaddr_storage *ss);
/* Connections counted now: from ss's source, and in all. */
unsigned admit_source_count(const struct admit *a, const struct sockaddr_storage *ss);
unsigned admit_total(const struct admit *a);

/*
 * A source as a key: an IPv4 address in addr[0..3] (v6 0; an IPv4-mapped
 * IPv6 address is its IPv4 address), or an IPv6 address (v6 1); the
 * unused bytes are 0.
 */
struct admit_src {
	uint8_t addr[16];
	uint8_t v6;
};

/* The source of ss in *src: 0, or -1 for another family (then *src is all 0). */
int admit_src_of(const struct sockaddr_storage *ss, struct admit_src *src);

/* src as text ("192.0.2.7", "2001:db8::1") in buf; returns buf. */
char *admit_src_str(const struct admit_src *src, char *buf, size_t cap);

/* The source of ss as text ("192.0.2.7", "2001:db8::1"; "?" otherwise) in buf; returns buf. */
char *admit_source_str(const struct sockaddr_storage *ss, char *buf, size_t cap);

#endif
