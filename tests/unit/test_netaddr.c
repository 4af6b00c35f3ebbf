/* test_netaddr.c - HOST:PORT parsing and listening sockets. */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "netaddr.h"

static void
parse_v4(void **state)
{
	struct sockaddr_storage ss;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	socklen_t len = 0;
	char buf[96];

	assert_int_equal(net_parse_addr("127.0.0.1:8443", 0, &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(sin->sin_port), 8443);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	assert_string_equal(net_addr_str(&ss, len, buf, sizeof(buf)), "127.0.0.1:8443");

	/* Every address, for listening. */
	assert_int_equal(net_parse_addr("0.0.0.0:65535", 1, &ss, &len), 0);
	assert_string_equal(net_addr_str(&ss, len, buf, sizeof(buf)), "0.0.0.0:65535");
	/* Port 0 (any free port) only for listening. */
	assert_int_equal(net_parse_addr("127.0.0.1:0", 1, &ss, &len), 0);
	assert_int_equal(net_parse_addr("127.0.0.1:0", 0, &ss, &len), HSM_ECONFIG);
	assert_non_null(strstr(hsm_err_detail(), "is not host:port"));
}

static void
parse_v6(void **state)
{
	struct sockaddr_storage ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
	socklen_t len = 0;
	char buf[96];

	assert_int_equal(net_parse_addr("[::1]:443", 0, &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	assert_memory_equal(&sin6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));
	assert_string_equal(net_addr_str(&ss, len, buf, sizeof(buf)), "[::1]:443");
	assert_int_equal(net_parse_addr("[::]:8443", 1, &ss, &len), 0);
	assert_string_equal(net_addr_str(&ss, len, buf, sizeof(buf)), "[::]:8443");

	/* Inside brackets, an IPv6 address only; without them, the colons are ambiguous. */
	assert_int_equal(net_parse_addr("[localhost]:443", 0, &ss, &len), HSM_ECONFIG);
	assert_int_equal(net_parse_addr("[127.0.0.1]:443", 0, &ss, &len), HSM_ECONFIG);
	assert_int_equal(net_parse_addr("::1:443", 0, &ss, &len), HSM_ECONFIG);
	assert_non_null(strstr(hsm_err_detail(), "[addr]:port"));
	assert_int_equal(net_parse_addr("[::1:443", 0, &ss, &len), HSM_ECONFIG);
	assert_int_equal(net_parse_addr("[]:443", 0, &ss, &len), HSM_ECONFIG);
}

static void
parse_localhost(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char buf[96];

	assert_int_equal(net_parse_addr("localhost:80", 0, &ss, &len), 0);
	assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
	net_addr_str(&ss, len, buf, sizeof(buf));
	assert_true(strcmp(buf, "127.0.0.1:80") == 0 || strcmp(buf, "[::1]:80") == 0);
	assert_int_equal(net_parse_addr("localhost:80", 1, &ss, &len), 0);
}

/* spec must be refused with a detail quoting it and containing word. */
static void
refuse(const char *spec, int passive, const char *word)
{
	struct sockaddr_storage ss;
	socklen_t len = 99;

	hsm_err_clear();
	if (net_parse_addr(spec, passive, &ss, &len) != HSM_ECONFIG)
		fail_msg("'%s' accepted", spec);
	assert_int_equal(len, 0);
	if (strstr(hsm_err_detail(), spec) == NULL || strstr(hsm_err_detail(), word) == NULL)
		fail_msg("'%s': detail '%s', want '%s'", spec, hsm_err_detail(), word);
}

static void
parse_bad(void **state)
{
	refuse("127.0.0.1", 1, "no port");
	refuse("localhost", 0, "no port");
	refuse(":8443", 1, "no host");
	refuse(":8443", 0, "no host");
	refuse("127.0.0.1:x", 1, "bad port");
	refuse("127.0.0.1:", 1, "bad port");
	refuse("127.0.0.1:70000", 1, "bad port");
	refuse("127.0.0.1:65536", 0, "bad port");
	refuse("127.0.0.1:-1", 1, "bad port");
	refuse("127.0.0.1:+80", 1, "bad port");
	refuse("127.0.0.1: 80", 1, "bad port");
	refuse("127.0.0.1:80 ", 1, "bad port");
	refuse("127.0.0.1:000080", 1, "bad port");
	refuse("", 1, "not host:port");
	/* A host the resolver does not know: its error, quoted with the spec. */
	refuse("no-such-host.invalid:80", 0, "no-such-host.invalid:80");
	refuse("300.1.1.1:80", 0, "300.1.1.1:80");
}

static void
listen_port_zero(void **state)
{
	struct sockaddr_storage ss, peer;
	socklen_t len = 0, plen = sizeof(peer);
	int fd = -1, c, a, port;

	assert_int_equal(net_parse_addr("127.0.0.1:0", 1, &ss, &len), 0);
	assert_int_equal(net_listen(&ss, len, 0, 0, 16, &fd), 0);
	assert_true(fd >= 0);
	port = net_local_port(fd);
	assert_true(port > 0 && port <= 65535);

	/* A connection to the port read back is accepted on fd. */
	((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	assert_true((c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&ss, len), 0);
	assert_true((a = accept(fd, (struct sockaddr *)&peer, &plen)) >= 0);
	close(a);
	close(c);

	/* The same port without SO_REUSEPORT on either side: in use, said in one line. */
	assert_int_equal(net_listen(&ss, len, 0, 1, 16, &c), HSM_EIO);
	assert_int_equal(c, -1);
	assert_non_null(strstr(hsm_err_detail(), "cannot listen on 127.0.0.1:"));
	close(fd);
	assert_int_equal(net_local_port(-1), -1);
}

static void
listen_reuseport(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	int a = -1, b = -1, port;

	assert_int_equal(net_parse_addr("127.0.0.1:0", 1, &ss, &len), 0);
	assert_int_equal(net_listen(&ss, len, 1, 1, 16, &a), 0);
	port = net_local_port(a);
	assert_true(port > 0);
	((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	assert_int_equal(net_listen(&ss, len, 1, 1, 16, &b), 0);
	assert_int_equal(net_local_port(b), port);
	close(a);
	close(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_v4),
		cmocka_unit_test(parse_v6),
		cmocka_unit_test(parse_localhost),
		cmocka_unit_test(parse_bad),
		cmocka_unit_test(listen_port_zero),
		cmocka_unit_test(listen_reuseport),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
