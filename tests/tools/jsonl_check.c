/*
 * jsonl_check.c - a TEST tool: is FILE JSON lines, every line one whole
 * JSON object, the last one ended by a newline? (tests/integration/
 * t_ca_fulldisk.sh reads the CA's audit log with it.) Never part of the
 * hsmesh binary.
 *
 *   jsonl_check FILE
 *
 * Prints "lines=N" and exits 0, or names the first bad line on stderr and
 * exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

int
main(int argc, char **argv)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long nr = 0;
	int bad = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: jsonl_check FILE\n");
		return 2;
	}
	if ((f = fopen(argv[1], "r")) == NULL) {
		perror(argv[1]);
		return 1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		enum json_tokener_error e = json_tokener_success;
		json_object *o;

		nr++;
		if (line[n - 1] != '\n') {
			fprintf(stderr, "%s: line %lu has no newline (a torn line)\n", argv[1], nr);
			bad = 1;
			break;
		}
		line[n - 1] = '\0';
		o = json_tokener_parse_verbose(line, &e);
		if (o == NULL || !json_object_is_type(o, json_type_object)) {
			fprintf(stderr, "%s: line %lu is not a JSON object (%s): %.120s\n", argv[1], nr,
			    o == NULL ? json_tokener_error_desc(e) : "another JSON type", line);
			json_object_put(o);
			bad = 1;
			break;
		}
		json_object_put(o);
	}
	free(line);
	fclose(f);
	if (!bad)
		printf("lines=%lu\n", nr);
	return bad;
}
