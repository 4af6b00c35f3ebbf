/*
 * fuzz_frameserver.c - the frame server's loop over a peer's bytes
 * (frameserver.h), as the agent's local API runs it: the input goes over a
 * real socketpair in chunks (the first byte picks the chunk size: 1..32
 * bytes, or 256..8192 for the longer frames SIGN_TBS carries), and the
 * server splits it with the agent's bounds and header check. Every frame
 * handed on must lie within the bounds, carry its own length and, all of
 * them together, be exactly a prefix of what was sent.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentproto.h"
#include "frameserver.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQ AG_MAX_REQUEST

static const uint8_t *sent;
static size_t nsent, seen;
static int closed;

static int
check(const uint8_t *buf, size_t len)
{
	struct ag_frame f;

	return ag_frame_parse(buf, len, &f) < 0 ? -1 : 0;
}

static int
accept_all(void *ctx, struct fsrv_conn *c, const struct fsrv_peer *p)
{
	return 0;
}

static int
frame(void *ctx, struct fsrv_conn *c, void *turn, const uint8_t *buf, size_t len)
{
	struct ag_frame f;
	struct ag_request rq;

	if (len < AG_HDR_LEN || len > MAX_REQ || hsm_get32(buf) + 4 != len ||
	    seen + len > nsent || memcmp(buf, sent + seen, len) != 0)
		abort();
	seen += len;
	if (ag_frame_parse(buf, len, &f) != (int)len || ag_request_decode(&f, &rq) != 0)
		return -1;
	return 0;
}

static void
closed_cb(void *ctx, struct fsrv_conn *c, enum fsrv_why why)
{
	closed = 1;
}

static const struct fsrv_ops ops = {
	.min_frame = AG_HDR_LEN,
	.max_frame = MAX_REQ,
	.max_out = 1 << 20,
	.read_batch = 1,
	.check = check,
	.accept = accept_all,
	.frame = frame,
	.closed = closed_cb,
};

/* Serve whatever is ready. */
static void
pump(int ep)
{
	struct epoll_event evs[4];
	int n = epoll_wait(ep, evs, 4, 0);

	for (int i = 0; i < n; i++)
		fsrv_readable(evs[i].data.ptr, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ep = -1;
	struct fsrv *s = NULL;
	size_t off = 1, chunk;
	int sv[2];

	if (size < 1 || size > 64 * 1024)
		return 0;
	if (ep < 0 && (ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		abort();
	if (fsrv_new(&ops, NULL, ep, &s) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	sent = data + 1;
	nsent = size - 1;
	seen = 0;
	closed = 0;
	if (fsrv_adopt(s, sv[1]) != 0)
		abort();
	chunk = ((size_t)data[0] % 32 + 1) * (data[0] >= 128 ? 256 : 1);
	while (off < size && !closed) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (send(sv[0], data + off, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
		off += n;
		pump(ep);
	}
	/* The peer goes: the read side ends and the connection is freed. */
	close(sv[0]);
	for (int i = 0; i < 100 && !closed; i++)
		pump(ep);
	if (!closed)
		abort();
	fsrv_free(s);
	return 0;
}
