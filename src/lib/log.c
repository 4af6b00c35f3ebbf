/* log.c - see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

static const char *log_tag = "hsmesh";
static int log_level = HSM_LOG_INFO;

void
hsm_log_init(const char *tag, int level)
{
	log_tag = tag;
	log_level = level;
}

void
hsm_log(int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char msg[1024];
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One line, one write: concurrent writers do not interleave. */
	fprintf(stderr, "%s: %s: %s\n", log_tag, names[level], msg);
}
