/*
 * rpc.h - the request/reply core under khclient.c (keyholder) and
 * agclient.c (agent): one stream socket, many requests in flight named by
 * 32-bit ids, and one reader thread per connection that matches replies
 * to requests, enforces every request's deadline and, when the peer goes,
 * ends everything still pending. So a request always ends, even when the
 * peer hangs or dies.
 *
 * Requests and the connection are reference counted: a request may
 * outlive the client that made it (an OpenSSL async job still holding
 * it), and then only reads its own result. A client embeds struct
 * rpc_conn first in its own struct, and struct rpc_req first in its
 * request structs; the frames are the client's (its rpc_ops).
 */
#ifndef HSM_RPC_H
#define HSM_RPC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RPC_MAX_ERRTEXT 255

struct rpc_conn;

struct rpc_req {
	struct rpc_conn	*c;
	struct rpc_req	*next;		/* pending list, under the lock */
	uint32_t	 id;
	uint8_t		 type;
	uint64_t	 deadline;	/* monotonic ms */
	int		 refs;		/* owner + pending list, under the lock */
	atomic_int	 done;
	int		 status;
	char		 errtext[RPC_MAX_ERRTEXT + 1];
	int		 notify_fd;
	int		 wake;		/* its deadline is sooner than the reader's wait */
	/*
	 * Optional, set by the client before rpc_req_queue: called once when
	 * r ends by reply, deadline or close, on the reader thread, lock not
	 * held, instead of the cond/notify_fd wake-ups (the reader itself
	 * is awake, so completing costs no thread another wake-up). Not
	 * called for a request withdrawn by rpc_req_cancel (never sent).
	 */
	void		(*done_cb)(struct rpc_req *r);
	struct rpc_req	*cnext;		/* completed list, under the lock */
	pthread_cond_t	 cv;
};

struct rpc_ops {
	const char	*peer;		/* in messages: "keyholder", "the agent" */
	size_t		 bufsize;	/* the reader's buffer: holds any whole frame */
	/*
	 * Handle the frame at the start of buf (len bytes read so far): its
	 * length, 0 when it is not complete yet, < 0 when malformed (the
	 * connection ends). Reader thread, lock not held.
	 */
	int		(*frame)(struct rpc_conn *c, const uint8_t *buf, size_t len);
	/*
	 * Optional: deadlines of the client's own (a subscription). Reader
	 * thread, lock not held, before each wait: ms to the next one or -1.
	 */
	int		(*tick)(struct rpc_conn *c, uint64_t now);
	/* Optional: the connection ended (reader thread, lock not held). */
	void		(*closed)(struct rpc_conn *c, const char *why);
	/* Free a request with whatever it holds (lock held). */
	void		(*req_free)(struct rpc_req *r);
	/* Free the client around the connection when the last reference goes. */
	void		(*conn_free)(struct rpc_conn *c);
};

struct rpc_conn {
	const struct rpc_ops *ops;
	int		 fd;
	int		 wake[2];	/* wakes the reader: new deadline or shutdown */
	pthread_t	 reader;
	pthread_mutex_t	 mu;		/* everything below and every rpc_req field */
	pthread_mutex_t	 wmu;		/* serialises writes to fd */
	int		 refs;		/* creator + one per live request */
	int		 closed;
	int		 has_reader;	/* reader started and not joined yet */
	char		 gone[64];	/* why requests fail while closed (rpc_conn_set_gone) */
	uint32_t	 next_id;
	struct rpc_req	*pending;
	struct rpc_req	*completed;	/* ended with a done_cb still to call (reader) */
	/*
	 * When the reader's wait ends at the latest (monotonic ms; UINT64_MAX:
	 * none). A request due later needs no wake-up: the reader looks at
	 * the pending list again before every wait.
	 */
	uint64_t	 wait_until;
};

/*
 * A client of size bytes (its struct, struct rpc_conn first), zeroed,
 * adopting connected fd on success, its reader started. Freed through
 * ops->conn_free once closed and unreferenced.
 */
int rpc_conn_new(size_t size, int fd, const struct rpc_ops *ops, struct rpc_conn **out);
/* The same on a new connection to the Unix socket at path. */
int rpc_conn_connect(const char *path, size_t size, const struct rpc_ops *ops,
    struct rpc_conn **out);
/*
 * Close: shut the socket, fail pending requests with HSM_ECLOSED, join
 * the reader, drop the creator's reference. Requests still held keep the
 * memory until they are freed.
 */
void rpc_conn_close(struct rpc_conn *c);
/*
 * Move c onto a new connected fd (a restarted peer): the old socket is
 * shut down, its reader joined (which ends every request still pending
 * with HSM_ECLOSED) and closed, and a new reader starts on fd; requests
 * made from then on go to fd. Requests and their owners keep their
 * pointers to c. Not concurrently with rpc_conn_close. 0, or HSM_EIO
 * when no reader could start (fd is then closed and c stays closed).
 */
int rpc_conn_reset(struct rpc_conn *c, int fd);
/*
 * While c is closed, new requests fail with HSM_ECLOSED "<peer> is gone
 * (<why>)", e.g. "(restarting)"; NULL or "" clears it. Thread-safe.
 */
void rpc_conn_set_gone(struct rpc_conn *c, const char *why);

void rpc_lock(struct rpc_conn *c);
void rpc_unlock(struct rpc_conn *c);
/* A fresh request id, never 0; lock held. */
uint32_t rpc_next_id_locked(struct rpc_conn *c);

/*
 * Queue r (allocated zeroed by the client, with room for its payload)
 * with a deadline timeout_ms from now: r->id is then set, for the
 * client's frame. 0, or HSM_ECLOSED (r is then the caller's to free with
 * its own means; nothing was queued).
 */
int rpc_req_queue(struct rpc_conn *c, struct rpc_req *r, uint8_t type, unsigned timeout_ms,
    int notify_fd);
/*
 * Send r's frame. On failure r is ended with HSM_ECLOSED and the caller's
 * reference dropped (r is gone); returns the status with the detail set.
 */
int rpc_req_send(struct rpc_req *r, const uint8_t *frame, size_t len);
/*
 * Send the frame of r, queued with a done_cb, and drop the caller's
 * reference in every case. 0: the callback will be called (once, maybe
 * already now with the failure); else the status, and it never is.
 */
int rpc_req_send_cb(struct rpc_req *r, const uint8_t *frame, size_t len);
/* Withdraw a queued request that could not be sent (r is gone). */
void rpc_req_cancel(struct rpc_req *r);
/* Send a frame that is no request (a subscription's); 0 or HSM_ECLOSED. */
int rpc_send(struct rpc_conn *c, const uint8_t *frame, size_t len);

/* The pending request with this id, or NULL; lock held. */
struct rpc_req *rpc_req_find_locked(struct rpc_conn *c, uint32_t id);
/*
 * End a pending request with status and, for a failure, text (printable
 * bytes kept); unlink it and drop the list's reference. Lock held.
 */
void rpc_req_end_locked(struct rpc_req *r, int status, const char *text, size_t textlen);

int rpc_req_done(struct rpc_req *r);
/* Wait until r ends; its status, with the detail recorded for this thread. */
int rpc_req_wait(struct rpc_req *r);
/* The status of an ended request, with the detail recorded for this thread. */
int rpc_req_status(const struct rpc_req *r);
/* Drop the owner's reference; a pending request is detached. Accepts NULL. */
void rpc_req_free(struct rpc_req *r);

#endif
