/* sgxpck.c - the SGX extension of a PCK certificate (see sgxpck.h). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "sgxpck.h"

#define SGX_EXT_OID	"1.2.840.113741.1.13.1"

/* ---- a minimal DER reader ---- */

struct der {
	const uint8_t	*p;
	size_t		 left;
};

/* Read one TLV; val/vlen is its content. */
static int
der_next(struct der *d, int *tag, const uint8_t **val, size_t *vlen)
{
	size_t n, l = 0;

	*tag = -1;
	*val = NULL;
	*vlen = 0;
	if (d->left < 2)
		return -1;
	*tag = d->p[0];
	n = d->p[1];
	d->p += 2;
	d->left -= 2;
	if (n & 0x80) {
		n &= 0x7f;
		if (n == 0 || n > 3 || n > d->left)
			return -1;
		for (size_t i = 0; i < n; i++)
			l = l << 8 | d->p[i];
		d->p += n;
		d->left -= n;
	} else
		l = n;
	if (l > d->left)
		return -1;
	*val = d->p;
	*vlen = l;
	d->p += l;
	d->left -= l;
	return 0;
}

/* Small non-negative INTEGER. */
static int
der_uint(const uint8_t *v, size_t n, unsigned *out)
{
	*out = 0;
	if (n == 0 || n > 3 || (v[0] & 0x80))
		return -1;
	for (size_t i = 0; i < n; i++)
		*out = *out << 8 | v[i];
	return 0;
}

/* The last arc of a DER OID body under 1.2.840.113741.1.13.1. */
static int
oid_arcs(const uint8_t *v, size_t n, const uint8_t *base, size_t bl,
    unsigned *arc)
{
	*arc = 0;
	if (n != bl + 1 || memcmp(v, base, bl) != 0 || (v[bl] & 0x80))
		return -1;
	*arc = v[bl];
	return 0;
}

int
sgx_pck_tcb_parse(X509 *leaf, struct sgx_pck_tcb *pt)
{
	/* DER body of OID 1.2.840.113741.1.13.1 */
	static const uint8_t base[] = { 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d,
	    0x01, 0x0d, 0x01 };
	static const uint8_t tcbbase[] = { 0x2a, 0x86, 0x48, 0x86, 0xf8,
	    0x4d, 0x01, 0x0d, 0x01, 0x02 };
	ASN1_OBJECT *obj = NULL;
	const ASN1_OCTET_STRING *os;
	X509_EXTENSION *ext;
	struct der top, seq, item, tcb, comp;
	const uint8_t *v, *ov, *iv;
	size_t vl, ol, il;
	unsigned arc, n;
	int tag, idx, rc = HSM_EPROTO;

	memset(pt, 0, sizeof(*pt));
	if ((obj = OBJ_txt2obj(SGX_EXT_OID, 1)) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "pck: OID");
	idx = X509_get_ext_by_OBJ(leaf, obj, -1);
	ASN1_OBJECT_free(obj);
	if (idx < 0 || (ext = X509_get_ext(leaf, idx)) == NULL ||
	    (os = X509_EXTENSION_get_data(ext)) == NULL)
		return hsm_err(HSM_EPROTO, "pck: no SGX extension");
	top.p = ASN1_STRING_get0_data(os);
	top.left = (size_t)ASN1_STRING_length(os);
	if (der_next(&top, &tag, &v, &vl) != 0 || tag != 0x30)
		goto bad;
	seq.p = v;
	seq.left = vl;
	while (seq.left > 0) {
		if (der_next(&seq, &tag, &v, &vl) != 0 || tag != 0x30)
			goto bad;
		item.p = v;
		item.left = vl;
		if (der_next(&item, &tag, &ov, &ol) != 0 || tag != 0x06 ||
		    der_next(&item, &tag, &iv, &il) != 0)
			goto bad;
		if (oid_arcs(ov, ol, base, sizeof(base), &arc) != 0)
			continue;
		if (arc == 2 && tag == 0x30) {
			tcb.p = iv;
			tcb.left = il;
			while (tcb.left > 0) {
				if (der_next(&tcb, &tag, &v, &vl) != 0 ||
				    tag != 0x30)
					goto bad;
				comp.p = v;
				comp.left = vl;
				if (der_next(&comp, &tag, &ov, &ol) != 0 ||
				    tag != 0x06 ||
				    oid_arcs(ov, ol, tcbbase, sizeof(tcbbase),
				    &arc) != 0 ||
				    der_next(&comp, &tag, &iv, &il) != 0)
					goto bad;
				if (arc >= 1 && arc <= 17) {
					if (tag != 0x02 ||
					    der_uint(iv, il, &n) != 0)
						goto bad;
					if (arc == 17)
						pt->pcesvn = n;
					else
						pt->comp[arc - 1] = n;
				}
			}
			pt->have |= 1;
		} else if (arc == 3 && tag == 0x04 && il == 2) {
			memcpy(pt->pceid, iv, 2);
			pt->have |= 4;
		} else if (arc == 4 && tag == 0x04 && il == 6) {
			memcpy(pt->fmspc, iv, 6);
			pt->have |= 2;
		}
	}
	if (pt->have != 7)
		goto bad;
	return 0;
 bad:
	rc = hsm_err(HSM_EPROTO, "pck: malformed SGX extension");
	memset(pt, 0, sizeof(*pt));
	return rc;
}

