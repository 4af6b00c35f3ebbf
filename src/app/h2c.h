/*
 * h2c.h - `hsmesh app serve` over HTTP/2 with prior knowledge (h2c):
 * one connection's protocol over lib/h2.c, fed the bytes the app read
 * and asked for the bytes to write, so the app's event loop drives it
 * like an HTTP/1.1 connection. It answers what the HTTP/1.1 side does:
 *
 *   GET  /            200 "hello from NAME"
 *   GET  /whoami      200 "NAME"
 *   POST /echo        200 with the request body, streamed back
 *   GET  /bytes?n=N   200 with N bytes of 'x' (at most 1 GiB), streamed
 *   anything else     404, or with --echo the path echo (app_echo)
 *
 * and the path echo both sides share.
 */
#ifndef HSM_APP_H2C_ROOM_H
#define HSM_APP_H2C_ROOM_H

#include <stddef.h>
#include <stdint.h>

#define APP_H2C_PREFACE		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define APP_H2C_PREFACE_LEN	24

struct app_h2c;

struct app_h2c_opts {
	const char *name;	/* the app's --name */
	int echo;		/* --echo: any other path answers with the path echo */
};

/* A connection's HTTP/2 server (opts copied, name kept). 0 or HSM_ENOMEM. */
int app_h2c_new(const struct app_h2c_opts *opts, struct app_h2c **out);

/* Free it and its streams. Accepts NULL. */
void app_h2c_free(struct app_h2c *h);

/* The len bytes read from the client. 0, or -1: close the connection. */
int app_h2c_feed(struct app_h2c *h, const uint8_t *buf, size_t len);

/* Write what waits to fd: 1 all sent, 0 the socket is full, -1 close. */
int app_h2c_send(struct app_h2c *h, int fd);

/* 1 while the connection goes on (reads expected or bytes to send). */
int app_h2c_alive(const struct app_h2c *h);

/*
 * The path echo (--echo): into out (cap bytes) the body
 *   "METHOD PATH\n" then "x-forwarded-client-cert: VALUE\n" for each of
 *   the n values the request carried,
 * and one line on stderr, "hsmesh app: NAME: METHOD PATH from CALLER",
 * CALLER being the URI of the first value (the caller's SPIFFE ID, set
 * by the sidecar) or "-". *len is the body's length (cut at cap).
 * The status: 201 for POST (a created resource, as the SBI's creates
 * answer), 200 for the others.
 */
int app_echo(char *out, size_t cap, const char *name, const char *method, const char *path,
    const char *const *xfcc, size_t n, size_t *len);

#endif
