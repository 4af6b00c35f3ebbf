/*
 * heap.h - keeping a long-running daemon's malloc heap small while idle
 * (the node agent and the keyholder; docs/ARCHITECTURE.md, "Memory").
 *
 * glibc gives each thread that allocates while another holds the heap
 * an arena of its own, up to 8 per CPU, and keeps the pages of freed
 * chunks: a daemon that enrolled, renewed or signed in bursts keeps
 * their high-water mark resident for the rest of its life.
 */
#ifndef HSM_HEAP_H
#define HSM_HEAP_H

/*
 * Before the process starts any thread: at most max_arenas malloc arenas
 * (the main heap counts as one); max_arenas <= 0 means one per online
 * CPU, for threads that do run at once. Threads beyond that share the
 * arenas; nothing else changes. Never fails (glibc refuses nothing here).
 */
void hsm_heap_lean(int max_arenas);

/*
 * Give the kernel back the free pages of every arena (malloc_trim(0):
 * brk and madvise(MADV_DONTNEED), both in every seccomp allow list of
 * sandbox.c). For quiet moments: after start-up and after a burst; it
 * walks the free chunks of every arena under their locks.
 */
void hsm_heap_trim(void);

#endif
