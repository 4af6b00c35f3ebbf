/* httptok.c - shared HTTP/1.1 character classes and list parsing (see httptok.h). */
#include <string.h>

#include "httptok.h"

int
http_tchar(uint8_t c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

uint8_t
http_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

int
http_ieq(const uint8_t *p, size_t n, const char *s)
{
	size_t i;

	if (strlen(s) != n)
		return 0;
	for (i = 0; i < n; i++)
		if (http_lower(p[i]) != (uint8_t)s[i])
			return 0;
	return 1;
}

int
http_digits(const uint8_t *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	size_t i;

	*out = 0;
	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (x > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

int
http_list_next(const uint8_t *v, size_t n, size_t *pos, const uint8_t **tok, size_t *tlen)
{
	size_t i = *pos, s, e;

	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s) {
			*pos = i;
			*tok = v + s;
			*tlen = e - s;
			return 1;
		}
	}
	*pos = n;
	return 0;
}

int
http_field_split(const uint8_t *l, size_t n, size_t *nlen, const uint8_t **v, size_t *vn)
{
	size_t i = 0;

	*nlen = *vn = 0;
	*v = NULL;
	if (n > 0 && (l[0] == ' ' || l[0] == '\t'))
		return -1;
	while (i < n && http_tchar(l[i]))
		i++;
	if (i == 0 || i >= n || l[i] != ':')
		return -2;
	*nlen = i;
	*v = l + i + 1;
	*vn = n - i - 1;
	while (*vn > 0 && ((*v)[0] == ' ' || (*v)[0] == '\t')) {
		(*v)++;
		(*vn)--;
	}
	while (*vn > 0 && ((*v)[*vn - 1] == ' ' || (*v)[*vn - 1] == '\t'))
		(*vn)--;
	return 0;
}

int
http_version(const uint8_t *v, size_t n, int *minor)
{
	if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
	    v[7] < '0' || v[7] > '9')
		return -1;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return -2;
	*minor = v[7] - '0';
	return 0;
}

enum http_line
http_line_end(const uint8_t *buf, size_t len, size_t from, size_t limit, size_t *eol)
{
	size_t end = len < limit ? len : limit, i;

	*eol = 0;
	for (i = from; i < end; i++) {
		uint8_t c = buf[i];

		if (c < 0x20 ? c != '\t' : c == 0x7f)
			break;
	}
	if (i == end)
		return len < limit ? HTTP_LINE_MORE : HTTP_LINE_BIG;
	if (buf[i] == '\n')
		return HTTP_LINE_BARE_LF;
	if (buf[i] != '\r')
		return HTTP_LINE_CTL;
	if (i + 2 > limit)
		return HTTP_LINE_BIG;
	if (i + 1 >= len)
		return HTTP_LINE_MORE;
	if (buf[i + 1] != '\n')
		return HTTP_LINE_LONE_CR;
	*eol = i;
	return HTTP_LINE_OK;
}
