/*
 * heap.c - a daemon's malloc heap kept small while idle (see heap.h).
 */
#include <malloc.h>
#include <unistd.h>

#include "heap.h"

void
hsm_heap_lean(int max_arenas)
{
	if (max_arenas <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		max_arenas = n > 0 && n < 1024 ? (int)n : 8;
	}
	(void)mallopt(M_ARENA_MAX, max_arenas);
}

void
hsm_heap_trim(void)
{
	(void)malloc_trim(0);
}
