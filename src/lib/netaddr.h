/*
 * netaddr.h - TCP addresses written "HOST:PORT" in configuration files
 * ("127.0.0.1:8443", "[::1]:443", "localhost:80") and listening sockets.
 *
 * One implementation for every daemon (ca serve, proxy listeners, metrics),
 * so each reads an address the same way and fails with the same words.
 */
#ifndef HSM_NETADDR_H
#define HSM_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * Resolve spec with getaddrinfo (decimal port, the first result). The host
 * is a name, an IPv4 address or an IPv6 address in brackets; it is never
 * empty (write 0.0.0.0 or [::] for every address). passive: for a listening
 * socket (AI_PASSIVE), where port 0 (any free port) is allowed; otherwise
 * the port is 1..65535. *ss and *len are set on success. 0, or HSM_ECONFIG
 * with a one-line detail "'SPEC' is not host:port" (with the reason in
 * parentheses) or "'SPEC': <resolver error>".
 */
int net_parse_addr(const char *spec, int passive, struct sockaddr_storage *ss, socklen_t *len);

/*
 * A listening TCP socket bound to ss: close-on-exec, SO_REUSEADDR, and
 * SO_REUSEPORT when reuseport (several sockets of one uid share the port,
 * the kernel spreads connections over them), non-blocking when nonblock.
 * 0 with *fd set (the caller closes it), or HSM_EIO "cannot listen on
 * ADDR: <errno text>" with *fd -1.
 */
int net_listen(const struct sockaddr_storage *ss, socklen_t len, int reuseport, int nonblock,
    int backlog, int *fd);

/* ss as "127.0.0.1:8443" or "[::1]:443" in buf (cap bytes, "?" when not an IP address); returns buf. */
char *net_addr_str(const struct sockaddr_storage *ss, socklen_t len, char *buf, size_t cap);

/* The local port a socket is bound to (getsockname), or -1. */
int net_local_port(int fd);

#endif
