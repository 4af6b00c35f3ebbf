/*
 * scache.h - a per-thread cache of small memory blocks in front of malloc.
 *
 * The sidecar's HTTP paths allocate and free a few dozen small objects
 * per request (header fields, stream handles, nghttp2's frames and
 * streams), in bursts of a hundred requests at a time: more than glibc's
 * per-thread cache holds (7 blocks per size), so most of them took
 * malloc's slower paths, about a fifth of a sidecar's instructions per
 * request. A block of at most SCACHE_MAX bytes freed here goes to the
 * freeing thread's list for its size class (powers of two from 32 bytes)
 * and is handed out again by that thread; each list keeps a bounded
 * number of blocks, and what a thread keeps is given back to malloc when
 * it exits or calls sc_trim. Larger blocks go to malloc.
 *
 * Every block carries a 16-byte header (its class), so a block from
 * sc_malloc must be freed with sc_free and never with free(), and the
 * reverse. A block may be freed by another thread than the one that
 * allocated it.
 *
 * Built with AddressSanitizer the cache is off (every block goes to
 * malloc and free), so the sanitizer sees every use after free.
 */
#ifndef HSM_SCACHE_H
#define HSM_SCACHE_H

#include <stddef.h>

#define SCACHE_MAX 4096

/* malloc, calloc, realloc and free with the cache: the same contracts (NULL when out of memory). */
void *sc_malloc(size_t n);
void *sc_calloc(size_t nmemb, size_t size);
void *sc_realloc(void *p, size_t n);
void sc_free(void *p);

/* Give the calling thread's kept blocks back to malloc (after a burst, before malloc_trim). */
void sc_trim(void);

#endif
