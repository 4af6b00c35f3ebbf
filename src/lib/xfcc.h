/*
 * xfcc.h - the caller's identity for the application: the
 * x-forwarded-client-cert header in Envoy's format,
 *
 *   By=<our SPIFFE ID>;Hash=<hex SHA-256 of the peer's certificate (DER)>;URI=<peer's SPIFFE ID>
 *
 * Keys are as Envoy writes them; a value holding ',', ';', '=' or '"'
 * is double-quoted, with each '"' written as '\"'. The sidecar sets the
 * header on every request it forwards to the application after removing
 * any the client sent (every spelling: names are compared ignoring case,
 * with '_' taken as '-'), so the application can trust it to name the
 * authenticated peer and nothing else.
 */
#ifndef HSM_XFCC_H
#define HSM_XFCC_H

#include <stddef.h>
#include <stdint.h>

#include "hmsg.h"

#define XFCC_NAME "x-forwarded-client-cert"

/*
 * The header value for peer peer_id whose certificate is the der_len
 * bytes at der, forwarded by own_id: *out malloc'd, NUL-terminated.
 * 0, HSM_EINVAL (an ID with a control character or a backslash, which
 * no quoting makes unambiguous), HSM_ECRYPTO or HSM_ENOMEM.
 */
int xfcc_value(const char *own_id, const uint8_t *der, size_t der_len, const char *peer_id,
    char **out);

/*
 * Remove every x-forwarded-client-cert field of m (hmsg_del), then
 * append value (made once per connection by xfcc_value). *removed (may
 * be NULL): how many the client had sent. 0 or HSM_ENOMEM.
 */
int xfcc_set(struct hmsg *m, const char *value, size_t *removed);

/*
 * Remove every x-forwarded-client-cert field of m (hmsg_del), then
 * append ours (xfcc_value). *removed (may be NULL): how many the client
 * had sent. 0 or as xfcc_value (the client's fields are gone even then).
 */
int xfcc_apply(struct hmsg *m, const char *own_id, const uint8_t *der, size_t der_len,
    const char *peer_id, size_t *removed);

/*
 * The URI of the first element of x-forwarded-client-cert value v (what
 * an application behind the sidecar reads: the caller's SPIFFE ID):
 * elements are separated by ',', key=value pairs by ';', a value may be
 * double-quoted with '\"' for a quote inside. Copied unquoted into out
 * (cap bytes, NUL-terminated). 0, HSM_ENOENT (no URI pair), HSM_EPROTO
 * (a pair without '=', an unterminated quote, a control character) or
 * HSM_EINVAL (out too small).
 */
int xfcc_uri(const char *v, char *out, size_t cap);

#endif
