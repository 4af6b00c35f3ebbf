/* netaddr.c - "HOST:PORT" addresses and listening sockets (see netaddr.h). */
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "netaddr.h"

#define NET_HOST_MAX 255	/* a DNS name is at most 253 bytes */

/* A decimal port of at most 5 digits, nothing else (no sign, space or 0x). -1 when not. */
static long
parse_port(const char *s)
{
	long port = 0;
	size_t n;

	for (n = 0; s[n] >= '0' && s[n] <= '9'; n++)
		port = port * 10 + (s[n] - '0');
	if (n == 0 || n > 5 || s[n] != '\0' || port > 65535)
		return -1;
	return port;
}

int
net_parse_addr(const char *spec, int passive, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	const char *colon, *why = NULL;
	char host[NET_HOST_MAX + 1];
	size_t hl = 0;
	long port = -1;
	int rc;

	memset(ss, 0, sizeof(*ss));
	*len = 0;
	if (spec == NULL)
		spec = "";
	if ((colon = strrchr(spec, ':')) == NULL)
		why = "no port";
	else if ((hl = (size_t)(colon - spec)) == 0)
		why = "no host";
	else if (hl > NET_HOST_MAX)
		why = "host too long";
	else if ((port = parse_port(colon + 1)) < 0)
		why = "bad port";
	else if (port == 0 && !passive)
		why = "port 0";
	if (why != NULL)
		return hsm_err(HSM_ECONFIG, "'%.300s' is not host:port (%s)", spec, why);
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (host[0] == '[') {
		/* "[v6]": the brackets only hide the address's colons; inside, a number only. */
		if (hl < 3 || host[hl - 1] != ']' || memchr(host + 1, ']', hl - 2) != NULL)
			return hsm_err(HSM_ECONFIG, "'%.300s' is not host:port (bad [address])", spec);
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
		hints.ai_flags |= AI_NUMERICHOST;
		hints.ai_family = AF_INET6;
	} else if (strchr(host, ':') != NULL) {
		return hsm_err(HSM_ECONFIG, "'%.300s' is not host:port (write IPv6 as [addr]:port)",
		    spec);
	}
	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	if ((rc = getaddrinfo(host, colon + 1, &hints, &res)) != 0)
		return hsm_err(HSM_ECONFIG, "'%.300s': %s", spec,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	if (res == NULL || res->ai_addrlen > sizeof(*ss)) {
		freeaddrinfo(res);
		return hsm_err(HSM_ECONFIG, "'%.300s': unsupported address", spec);
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

char *
net_addr_str(const struct sockaddr_storage *ss, socklen_t len, char *buf, size_t cap)
{
	char h[INET6_ADDRSTRLEN + IF_NAMESIZE + 1], p[8];

	if (cap == 0)
		return buf;
	if ((ss->ss_family != AF_INET && ss->ss_family != AF_INET6) ||
	    getnameinfo((const struct sockaddr *)ss, len, h, sizeof(h), p, sizeof(p),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(buf, cap, "?");
	else
		snprintf(buf, cap, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
	return buf;
}

int
net_listen(const struct sockaddr_storage *ss, socklen_t len, int reuseport, int nonblock,
    int backlog, int *fd)
{
	char addr[INET6_ADDRSTRLEN + IF_NAMESIZE + 16];
	int s, one = 1, e;

	*fd = -1;
	s = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport && setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    bind(s, (const struct sockaddr *)ss, len) != 0 || listen(s, backlog) != 0) {
		e = errno;
		if (s >= 0)
			close(s);
		return hsm_err(HSM_EIO, "cannot listen on %s: %s",
		    net_addr_str(ss, len, addr, sizeof(addr)), strerror(e));
	}
	*fd = s;
	return 0;
}

int
net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}
