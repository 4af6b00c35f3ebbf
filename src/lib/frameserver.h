/*
 * frameserver.h - the server side of hsmesh's framed Unix-socket
 * protocols: one piece of code for every process that serves frames (the
 * keyholder, khproto.h; the agent's local API, agentproto.h), as relayd's
 * proc.c/imsg serves all of its processes.
 *
 *   - Peers: accepted on a Unix listener (fsrv_listen, fsrv_accept) or a
 *     connected socket served as it is (fsrv_adopt: the keyholder's
 *     socketpair). The peer's SO_PEERCRED uid, gid and pid go to the
 *     owner's accept callback, which may refuse.
 *   - Frames: each starts with a u32 big-endian length of the bytes after
 *     it. A length that makes the frame shorter than min_frame or longer
 *     than max_frame, or the first bytes of a frame that the owner's check
 *     refuses, closes that peer only (FSRV_MALFORMED); so does an error
 *     returned by the frame callback (FSRV_REFUSED). A peer's input buffer
 *     is 2 x max_frame.
 *   - Replies: fsrv_send from any thread. What the socket does not take at
 *     once is kept, up to max_out bytes per peer; a peer that lets more
 *     pile up is dropped (it does not read its replies). Pending output is
 *     flushed when the socket drains: EPOLLOUT is watched only while output
 *     is pending, on the server's own epoll instance (fsrv_watch_fd), which
 *     the owner's loop polls for EPOLLIN and then calls fsrv_flush_ready.
 *   - Lifetime: connections are reference counted. The read side holds one
 *     reference until it ends; every request in flight (fsrv_begin) and
 *     every thread working on it hold one. A reply written after the peer
 *     went is dropped; the memory and the descriptor go with the last
 *     reference. The descriptor is closed only then, so its number is never
 *     reused while a reply may still be written to it.
 *
 * Threads. A connection's read side is registered EPOLLIN | EPOLLONESHOT in
 * the owner's epoll instance (read_ep), with data.ptr pointing at the
 * struct fsrv_conn: the thread that takes its event owns the read side
 * until fsrv_readable returns and re-arms it, so one thread or many may
 * serve reads (the keyholder's workers share one epoll). Only that owner
 * closes a connection (when it reads the end, a malformed frame, or its
 * frame callback refuses); any other thread makes a peer go with
 * fsrv_kill (the socket is shut down, and its owner then reads the end).
 * So an event already taken from read_ep never names freed memory.
 *
 * Lock order: the server's lock, then a connection's read lock, then its
 * write lock. Callbacks run with no lock of the server held, except
 * fsrv_foreach's.
 *
 * Limits (all optional, struct fsrv_ops): at most max_conns open peers and
 * max_conns_uid of one uid (root's peers count only against max_conns): a
 * peer beyond them is refused before the owner's accept callback sees it.
 * A peer with half a frame that does not complete it within frame_ms is
 * closed (FSRV_STALLED); so is one with nothing in flight, not kept
 * (fsrv_keep: e.g. a subscription) and silent for idle_ms (FSRV_IDLE).
 * A server with limits has a timer in its output epoll (fsrv_watch_fd), so
 * the owner's fsrv_flush_ready calls also run the timeouts, about four
 * times per shortest timeout and at least once a second.
 *
 * Refusals (by the limits or by the owner's accept callback, whose
 * hsm_err detail is the reason) and timeout closes are logged by the
 * server at warning level, "refused local client uid U pid P: REASON",
 * but at most log_per_sec lines a second: the others are counted per uid
 * and summarised every 10 s ("57 more refused connections from uid 1000
 * not logged"), and all are counted (fsrv_stats).
 */
#ifndef HSM_FRAMESERVER_H
#define HSM_FRAMESERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fsrv;
struct fsrv_conn;

/* Who is at the other end (SO_PEERCRED at connect time). */
struct fsrv_peer {
	uid_t uid;
	gid_t gid;
	pid_t pid;
};

/* Why a connection's read side ended (the closed callback's why). */
enum fsrv_why {
	FSRV_EOF = 1,		/* the peer closed, the socket failed, or fsrv_kill */
	FSRV_MALFORMED,		/* a length out of bounds, or a header the check refused */
	FSRV_REFUSED,		/* the frame callback returned an error */
	FSRV_SYSTEM,		/* the socket could not be watched any more (epoll) */
	FSRV_SHUTDOWN,		/* fsrv_free */
	FSRV_STALLED,		/* half a frame, then nothing for frame_ms */
	FSRV_IDLE,		/* nothing in flight, not kept, no frame for idle_ms */
};

struct fsrv_ops {
	size_t min_frame;	/* whole frame, length field included (>= 4) */
	size_t max_frame;	/* whole frame, length field included */
	size_t max_out;		/* output kept for a peer beyond what the socket takes */
	unsigned read_batch;	/* reads per readiness before the peer is re-armed (>= 1) */
	/* Limits, 0 = none (see the top of this file). */
	int max_conns;		/* open peers */
	int max_conns_uid;	/* open peers of one uid, root's not counted */
	unsigned frame_ms;	/* an incomplete frame must be completed within */
	unsigned idle_ms;	/* a peer with nothing in flight, not kept, is closed after */
	unsigned log_per_sec;	/* refusal and timeout lines logged per second (0: 5) */
	const char *what;	/* how log lines name a peer ("local client"; NULL: "peer") */
	/*
	 * Optional: look at the first len bytes (4 <= len < the frame's length)
	 * of an incomplete frame; < 0 closes the peer as malformed, so garbage
	 * is refused before a whole frame of it arrived.
	 */
	int (*check)(const uint8_t *buf, size_t len);
	/*
	 * A peer connected within the limits: 0 accepts it, an HSM_E* code
	 * refuses it (its socket is closed, and the server logs the detail
	 * recorded with hsm_err for that code as the reason, throttled). Never
	 * called for a peer whose credentials could not be read (refused).
	 * Called on the thread that called fsrv_accept or fsrv_adopt; it may
	 * attach the owner's data (fsrv_set_udata) when it accepts.
	 */
	int (*accept)(void *ctx, struct fsrv_conn *c, const struct fsrv_peer *peer);
	/*
	 * One whole frame (buf, len: length field included), on the thread that
	 * owns the read side; turn is fsrv_readable's. 0 goes on; < 0 closes the
	 * peer (FSRV_REFUSED) after the frames before it were handled.
	 */
	int (*frame)(void *ctx, struct fsrv_conn *c, void *turn, const uint8_t *buf, size_t len);
	/*
	 * Optional: the read side of an accepted peer ended (once per peer),
	 * on the thread that ended it; the owner frees its data here. The
	 * connection may live on while references are held.
	 */
	void (*closed)(void *ctx, struct fsrv_conn *c, enum fsrv_why why);
	/*
	 * Optional: the server's timer is due (fsrv_flush_ready's thread, at
	 * least once a second; a server with a tick has a timer): the owner's
	 * periodic work, e.g. its own log summaries. No lock of the server held.
	 */
	void (*tick)(void *ctx, uint64_t now_ms);
};

/*
 * A server whose callbacks get ctx and whose peers' read sides go into the
 * epoll instance read_ep (owned by the caller). The ops are copied.
 * Caller frees *out with fsrv_free(). 0, HSM_EINVAL (bounds) or HSM_EIO.
 */
int fsrv_new(const struct fsrv_ops *ops, void *ctx, int read_ep, struct fsrv **out);

/*
 * Stop serving: close the listener (and remove its path), end every
 * peer's read side (closed callback with FSRV_SHUTDOWN) and drop pending
 * output. Call it when no thread is in fsrv_readable, fsrv_accept or
 * fsrv_flush_ready of this server; other threads may still hold
 * connections and call fsrv_send, fsrv_kill and fsrv_end on them (the
 * server's memory goes with the last one). Accepts NULL.
 */
void fsrv_free(struct fsrv *s);

/*
 * Listen on a Unix stream socket at path with mode (e.g. 0666). A stale
 * socket there is replaced; anything else is HSM_EEXIST. 0, HSM_EINVAL
 * (path too long), HSM_EEXIST or HSM_EIO ("cannot listen on PATH: ...").
 * The owner polls fsrv_listen_fd for EPOLLIN and then calls fsrv_accept.
 */
int fsrv_listen(struct fsrv *s, const char *path, unsigned mode);
/* The listening socket, or -1. */
int fsrv_listen_fd(const struct fsrv *s);
/* Accept the peers waiting on the listener (a bounded number per call). */
void fsrv_accept(struct fsrv *s);
/*
 * Serve the connected stream socket fd (made non-blocking and
 * close-on-exec): the limits and the accept callback decide as for a
 * listener's peer. 0 when accepted; else the socket is closed and
 * HSM_EBUSY (beyond a limit), HSM_EPERM (refused by the callback or no
 * credentials), HSM_ENOMEM or HSM_EIO is returned.
 */
int fsrv_adopt(struct fsrv *s, int fd);

/*
 * The owner's loop took c's event from read_ep: read what is there (at
 * most read_batch reads), hand each whole frame to the frame callback with
 * turn, then re-arm c, or close it (closed callback) when it ended. c may
 * be gone when this returns unless the caller holds a reference.
 */
void fsrv_readable(struct fsrv_conn *c, void *turn);

/* The server's epoll instance for pending output: the owner polls it for EPOLLIN. */
int fsrv_watch_fd(const struct fsrv *s);
/*
 * fsrv_watch_fd is readable: write pending output to the peers whose
 * sockets drained, and keep watching those that still have some; when the
 * server's timer is due, close the peers past a timeout and log the
 * summaries of refusals not logged. Returns the number of peers served.
 */
int fsrv_flush_ready(struct fsrv *s);

/*
 * Send one frame to c, from any thread: written at once as far as the
 * socket takes it, the rest kept and flushed later (frames stay in
 * order). 0; HSM_ECLOSED (c is going: nothing sent, no detail); or the
 * peer is dropped now (fsrv_kill) and HSM_EBUSY ("peer does not read its
 * replies": max_out exceeded), HSM_ENOMEM ("out of memory") or HSM_EIO
 * ("cannot watch the socket").
 */
int fsrv_send(struct fsrv_conn *c, const uint8_t *buf, size_t len);
/* Make c go, from any thread: no more output, the socket shut down. */
void fsrv_kill(struct fsrv_conn *c);

/*
 * A request in flight on c: counts it against max and takes a reference.
 * 0, or HSM_EBUSY (max already in flight: nothing taken). Any thread.
 */
int fsrv_begin(struct fsrv_conn *c, int max);
/* The request ended (after its reply was sent): the count and the reference go. */
void fsrv_end(struct fsrv_conn *c);
/* Requests in flight on c. */
int fsrv_inflight(const struct fsrv_conn *c);
/* c may stay silent (on != 0: it holds a subscription): no idle timeout for it. Any thread. */
void fsrv_keep(struct fsrv_conn *c, int on);

void fsrv_ref(struct fsrv_conn *c);
/* Drop a reference; the last one closes the socket and frees c. */
void fsrv_unref(struct fsrv_conn *c);

const struct fsrv_peer *fsrv_peer(const struct fsrv_conn *c);
/*
 * c's socket, to ask the kernel more about the peer (SO_PEERPIDFD) from the
 * accept callback. Never read, write or close it.
 */
int fsrv_conn_fd(const struct fsrv_conn *c);
void fsrv_set_udata(struct fsrv_conn *c, void *udata);
void *fsrv_udata(const struct fsrv_conn *c);

/*
 * Monotonic ms: connected, last whole frame (0: none yet), first byte of
 * the incomplete frame (0: none), last activity (connected, a whole frame,
 * or a request's end).
 */
struct fsrv_times {
	uint64_t accepted;
	uint64_t last_frame;
	uint64_t partial_since;
	uint64_t active;
};
/* c's times. Any thread. */
void fsrv_conn_times(const struct fsrv_conn *c, struct fsrv_times *t);

/* What the server refused and closed, since it began. */
struct fsrv_stats {
	unsigned long refused_limit;	/* beyond max_conns or max_conns_uid */
	unsigned long refused_owner;	/* by the accept callback, or without credentials */
	unsigned long closed_stalled;	/* FSRV_STALLED */
	unsigned long closed_idle;	/* FSRV_IDLE */
	unsigned long log_suppressed;	/* lines about them not logged (in summaries instead) */
};
/* Any thread. */
void fsrv_stats(struct fsrv *s, struct fsrv_stats *st);

/* Peers whose read side is open; of them, those of uid. Any thread. */
int fsrv_count(struct fsrv *s);
int fsrv_count_uid(struct fsrv *s, uid_t uid);
/* Requests in flight over the open peers. Any thread. */
int fsrv_inflight_total(struct fsrv *s);
/*
 * fn(arg, c) for every open peer, with the server's lock held: fn may
 * send to and kill peers, nothing else of this server. For a server read
 * by one thread, from that thread (the owner's data is then stable).
 */
void fsrv_foreach(struct fsrv *s, void (*fn)(void *arg, struct fsrv_conn *c), void *arg);

#endif
