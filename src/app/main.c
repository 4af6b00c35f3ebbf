/*
 * main.c - `hsmesh app`: the subcommands serve and get (app.h), and the
 * option helpers they share.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cmds.h"
#include "app.h"

int
app_num_arg(const char *cmd, const char *opt, const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max) {
		fprintf(stderr, "hsmesh app %s: %s wants a number from %ld to %ld, not '%s'\n", cmd,
		    opt, min, max, s);
		return 2;
	}
	*out = v;
	return 0;
}

int
app_bad_option(const char *cmd, int ch, char **argv)
{
	fprintf(stderr, "hsmesh app %s: %s '%s' (try 'hsmesh app %s --help')\n", cmd,
	    ch == ':' ? "missing value for" : "unknown option", argv[optind - 1], cmd);
	return 2;
}

/* ---- dispatch ---- */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh app serve --listen HOST:PORT --name NAME [--port-file FILE] [--echo]\n"
	    "       hsmesh app get URL [--count N] [--interval MS] [--timeout MS]\n"
	    "                          [--expect-status CODE]\n"
	    "\n"
	    "The small HTTP application behind the sidecars: 'serve' is the workload,\n"
	    "'get' a client that keeps one connection open for all its requests.\n"
	    "Run 'hsmesh app serve --help' or 'hsmesh app get --help' for details.\n");
}

int
app_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return app_serve(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "get") == 0)
		return app_get(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "hsmesh app: %s (try 'hsmesh app --help')\n",
	    argc < 2 ? "missing subcommand 'serve' or 'get'" : "unknown subcommand");
	return 2;
}

