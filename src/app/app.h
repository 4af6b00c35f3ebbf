/*
 * app.h - the rooms of `hsmesh app` (private to src/app/): the small HTTP
 * application that the demo, the tests and the benchmarks run behind the
 * sidecars.
 *
 *   main.c   app_main: the subcommands, and the option helpers they share;
 *   serve.c  serve: a plaintext HTTP/1.1 server, the workload behind an
 *            inbound sidecar: one epoll loop, non-blocking sockets,
 *            keep-alive and pipelining, at most APP_MAX_CONNS connections;
 *            a connection that starts with the h2c preface goes to
 *   h2c.c    HTTP/2 with prior knowledge on lib/h2.c (h2c.h), and the path
 *            echo both protocols answer with (--echo);
 *   get.c    get: a client that sends N GETs on ONE keep-alive connection
 *            and prints a line per response, so the demo can show one
 *            connection carrying traffic across certificate rotations in
 *            the sidecars.
 *
 * No TLS here: the sidecars provide mutual TLS. Requests are parsed by
 * http_parse (http.h), responses by httpresp (httpresp.h); both are fuzzed.
 * Neither side trusts the other: the server bounds what one connection may
 * make it buffer, the client what one response may make it hold.
 */
#ifndef HSM_APP_H
#define HSM_APP_H

#define APP_MAX_MS	3600000	/* the largest time an option takes (ms): an hour */

/* `hsmesh app serve` (serve.c): argv[0] is "serve". The exit status. */
int app_serve(int argc, char **argv);

/* `hsmesh app get` (get.c): argv[0] is "get". The exit status. */
int app_get(int argc, char **argv);

/*
 * The value of option opt of `hsmesh app cmd`, a decimal number s in
 * [min, max], into *out: 0, or 2 (the usage status) after one line on
 * stderr.
 */
int app_num_arg(const char *cmd, const char *opt, const char *s, long min, long max, long *out);

/*
 * getopt_long's ch ('?' an unknown option, ':' a missing value) for
 * `hsmesh app cmd`: one line on stderr naming argv[optind - 1]; returns 2.
 */
int app_bad_option(const char *cmd, int ch, char **argv);

#endif
