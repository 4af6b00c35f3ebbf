/*
 * metrics.c - Prometheus registry: lock-free updates, locked registration;
 * and the small HTTP server every daemon's /metrics endpoint runs on.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "http.h"
#include "metrics.h"

#define MAX_BOUNDS 32

struct family;

struct metric {
	struct family *fam;
	char *labels;			/* rendered: a="x",b="y" (escaped); "" when none */
	_Atomic uint64_t v;		/* counter: the count; gauge: the bits of a double */
	_Atomic uint64_t sum;		/* histogram: bits of the double sum */
	/*
	 * histogram: per-bucket (not cumulative) counts, nb + 1 of them, the
	 * last for values above every bound. _count is their total, so it
	 * always equals the +Inf bucket, even while observations race a render.
	 */
	_Atomic uint64_t *buckets;
	struct metric *next;
};

struct family {
	char *name, *help;
	enum metric_type type;
	char **lnames;
	size_t nl;
	double bounds[MAX_BOUNDS];
	size_t nb;
	struct metric *first, **tail;
	struct family *next;
};

struct metrics {
	pthread_mutex_t mu;
	struct family *fams;
	size_t nseries;
};

int
metrics_new(struct metrics **out)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if ((*out = m) == NULL)
		return HSM_ENOMEM;
	pthread_mutex_init(&m->mu, NULL);
	return 0;
}

static void
family_free(struct family *f)
{
	struct metric *s, *n;

	for (s = f->first; s != NULL; s = n) {
		n = s->next;
		free(s->labels);
		free(s->buckets);
		free(s);
	}
	for (size_t i = 0; i < f->nl; i++)
		free(f->lnames[i]);
	free(f->lnames);
	free(f->name);
	free(f->help);
	free(f);
}

void
metrics_free(struct metrics *m)
{
	struct family *f, *n;

	if (m == NULL)
		return;
	for (f = m->fams; f != NULL; f = n) {
		n = f->next;
		family_free(f);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static int
valid_name(const char *s, int label)
{
	if (s == NULL || *s == '\0' || (label && strncmp(s, "__", 2) == 0))
		return 0;
	for (size_t i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		    (!label && c == ':') || (i > 0 && c >= '0' && c <= '9')))
			return 0;
	}
	return 1;
}

/* Growable string. */
struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void
sb_addn(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap == 0 ? 1024 : b->cap;
		char *np;

		while (b->len + n + 1 > cap)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_add(struct sbuf *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

/* s with backslash and newline escaped (and the double quote when quote). */
static void
sb_escaped(struct sbuf *b, const char *s, int quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			sb_add(b, "\\\\");
		else if (*s == '\n')
			sb_add(b, "\\n");
		else if (*s == '"' && quote)
			sb_add(b, "\\\"");
		else
			sb_addn(b, s, 1);
	}
}

#define NUMLEN 32

/* A sample value or bound as Prometheus spells it; whole numbers without an exponent. */
static const char *
fmt_num(char n[NUMLEN], double v)
{
	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		snprintf(n, NUMLEN, "%lld", (long long)v);
	else
		snprintf(n, NUMLEN, "%.9g", v);
	return n;
}

/* Counts stay exact past 2^53. */
static const char *
fmt_count(char n[NUMLEN], uint64_t v)
{
	snprintf(n, NUMLEN, "%" PRIu64, v);
	return n;
}

static double
bits_double(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

static uint64_t
double_bits(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

/*
 * Find the family, or make one that *made says is not yet in the registry:
 * the caller links it only once its first series exists, so a refused
 * series leaves nothing behind. Caller holds m->mu.
 */
static int
family_get(struct metrics *m, enum metric_type type, const char *name, const char *help,
    const char *const *labels, const double *bounds, size_t nb, struct family **out, int *made)
{
	struct family *f;
	size_t nl = 0, i;

	*made = 0;
	for (i = 0; labels != NULL && labels[i] != NULL; i += 2) {
		if (labels[i + 1] == NULL || !valid_name(labels[i], 1))
			return hsm_err(HSM_EINVAL, "metrics: bad label on %s", name);
		/* "le" is the bucket label a histogram adds itself. */
		if (type == METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0)
			return hsm_err(HSM_EINVAL, "metrics: histogram %s: label \"le\" is reserved",
			    name);
		for (size_t j = 0; j < i; j += 2)
			if (strcmp(labels[j], labels[i]) == 0)
				return hsm_err(HSM_EINVAL, "metrics: %s: label %s given twice", name,
				    labels[i]);
		nl++;
	}
	for (f = m->fams; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0)
			break;
	if (f != NULL) {
		if (f->type != type || f->nl != nl)
			return hsm_err(HSM_EINVAL, "metrics: %s registered with another type or labels",
			    name);
		for (i = 0; i < nl; i++)
			if (strcmp(f->lnames[i], labels[2 * i]) != 0)
				return hsm_err(HSM_EINVAL, "metrics: %s has other label names", name);
		*out = f;
		return 0;
	}
	if (!valid_name(name, 0))
		return hsm_err(HSM_EINVAL, "metrics: bad metric name '%s'", name);
	if (type == METRIC_HISTOGRAM) {
		if (bounds == NULL || nb == 0 || nb > MAX_BOUNDS)
			return hsm_err(HSM_EINVAL, "metrics: histogram %s needs 1..%d bounds", name,
			    MAX_BOUNDS);
		for (i = 0; i < nb; i++)
			if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
				return hsm_err(HSM_EINVAL, "metrics: histogram %s: bounds must be "
				    "finite and increasing", name);
	}
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return HSM_ENOMEM;
	f->tail = &f->first;
	if ((f->name = strdup(name)) == NULL ||
	    (f->help = strdup(help != NULL ? help : "")) == NULL ||
	    (nl > 0 && (f->lnames = calloc(nl, sizeof(char *))) == NULL))
		goto oom;
	f->nl = nl;
	for (i = 0; i < nl; i++)
		if ((f->lnames[i] = strdup(labels[2 * i])) == NULL)
			goto oom;
	f->type = type;
	if (type == METRIC_HISTOGRAM) {
		memcpy(f->bounds, bounds, nb * sizeof(double));
		f->nb = nb;
	}
	*out = f;
	*made = 1;
	return 0;
 oom:
	family_free(f);
	return HSM_ENOMEM;
}

static int
series_get(struct metrics *m, enum metric_type type, const char *name, const char *help,
    const char *const *labels, const double *bounds, size_t nb, struct metric **out)
{
	struct sbuf key = { 0 };
	struct family *f = NULL;
	struct metric *s;
	int st, made = 0;

	*out = NULL;
	if (m == NULL || name == NULL)
		return HSM_EINVAL;
	for (size_t i = 0; labels != NULL && labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
		if (i > 0)
			sb_add(&key, ",");
		sb_add(&key, labels[i]);
		sb_add(&key, "=\"");
		sb_escaped(&key, labels[i + 1], 1);
		sb_add(&key, "\"");
	}
	sb_add(&key, "");
	if (key.oom)
		return HSM_ENOMEM;
	pthread_mutex_lock(&m->mu);
	if ((st = family_get(m, type, name, help, labels, bounds, nb, &f, &made)) != 0)
		goto out;
	for (s = f->first; s != NULL; s = s->next)
		if (strcmp(s->labels, key.p) == 0)
			break;
	if (s == NULL) {
		if (m->nseries >= METRICS_MAX_SERIES) {
			st = hsm_err(HSM_EBUSY, "metrics: more than %d series", METRICS_MAX_SERIES);
			goto out;
		}
		if ((s = calloc(1, sizeof(*s))) == NULL || (type == METRIC_HISTOGRAM &&
		    (s->buckets = calloc(f->nb + 1, sizeof(*s->buckets))) == NULL)) {
			free(s);
			st = HSM_ENOMEM;
			goto out;
		}
		s->fam = f;
		s->labels = key.p;
		key.p = NULL;
		if (type == METRIC_GAUGE)
			atomic_init(&s->v, double_bits(0.0));
		*f->tail = s;
		f->tail = &s->next;
		m->nseries++;
		if (made) {
			f->next = m->fams;
			m->fams = f;
			made = 0;
		}
	}
	*out = s;
 out:
	pthread_mutex_unlock(&m->mu);
	if (made)
		family_free(f);
	free(key.p);
	return st;
}

int
metrics_get(struct metrics *m, enum metric_type type, const char *name, const char *help,
    const char *const *labels, struct metric **out)
{
	if (type == METRIC_HISTOGRAM) {
		struct family *f = NULL;

		/* only an existing histogram family: bounds come from it */
		if (m != NULL && name != NULL) {
			pthread_mutex_lock(&m->mu);
			for (f = m->fams; f != NULL && strcmp(f->name, name) != 0; f = f->next)
				;
			pthread_mutex_unlock(&m->mu);
		}
		if (f == NULL || f->type != METRIC_HISTOGRAM) {
			*out = NULL;
			return hsm_err(HSM_EINVAL, "metrics: %s is not a histogram", name);
		}
		return series_get(m, type, name, help, labels, f->bounds, f->nb, out);
	}
	if (type != METRIC_COUNTER && type != METRIC_GAUGE) {
		*out = NULL;
		return HSM_EINVAL;
	}
	return series_get(m, type, name, help, labels, NULL, 0, out);
}

int
metrics_histogram(struct metrics *m, const char *name, const char *help, const double *bounds,
    size_t nbounds, const char *const *labels, struct metric **out)
{
	return series_get(m, METRIC_HISTOGRAM, name, help, labels, bounds, nbounds, out);
}

void
metric_add(struct metric *s, uint64_t n)
{
	if (s != NULL && s->fam->type == METRIC_COUNTER)
		atomic_fetch_add_explicit(&s->v, n, memory_order_relaxed);
}

static void
atomic_double_add(_Atomic uint64_t *p, double d)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(p, &old, double_bits(bits_double(old) + d),
	    memory_order_relaxed, memory_order_relaxed))
		;
}

void
metric_inc(struct metric *s)
{
	if (s == NULL)
		return;
	if (s->fam->type == METRIC_COUNTER)
		atomic_fetch_add_explicit(&s->v, 1, memory_order_relaxed);
	else if (s->fam->type == METRIC_GAUGE)
		atomic_double_add(&s->v, 1.0);
}

void
metric_gauge_set(struct metric *s, double v)
{
	if (s != NULL && s->fam->type == METRIC_GAUGE)
		atomic_store_explicit(&s->v, double_bits(v), memory_order_relaxed);
}

void
metric_gauge_add(struct metric *s, int64_t d)
{
	if (s != NULL && s->fam->type == METRIC_GAUGE)
		atomic_double_add(&s->v, (double)d);
}

void
metric_observe(struct metric *s, double v)
{
	size_t i;

	if (s == NULL || s->fam->type != METRIC_HISTOGRAM || isnan(v))
		return;
	/* A value equal to a bound belongs to that bound's bucket (le). */
	for (i = 0; i < s->fam->nb && v > s->fam->bounds[i]; i++)
		;
	atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
	atomic_double_add(&s->sum, v);
}

/* name{labels[,extra]} value\n */
static void
sample(struct sbuf *b, const char *name, const char *suffix, const char *labels,
    const char *extra, const char *value)
{
	sb_add(b, name);
	sb_add(b, suffix);
	if (labels[0] != '\0' || extra != NULL) {
		sb_add(b, "{");
		sb_add(b, labels);
		if (extra != NULL) {
			if (labels[0] != '\0')
				sb_add(b, ",");
			sb_add(b, extra);
		}
		sb_add(b, "}");
	}
	sb_add(b, " ");
	sb_add(b, value);
	sb_add(b, "\n");
}

static int
fam_cmp(const void *a, const void *b)
{
	return strcmp((*(struct family *const *)a)->name, (*(struct family *const *)b)->name);
}

int
metrics_render(struct metrics *m, char **out, size_t *len)
{
	static const char *const tname[] = { "", "counter", "gauge", "histogram" };
	struct sbuf b = { 0 };
	struct family **fv = NULL, *f;
	size_t nf = 0, i, k;
	char le[NUMLEN + 8], n[NUMLEN];

	*out = NULL;
	*len = 0;
	pthread_mutex_lock(&m->mu);
	for (f = m->fams; f != NULL; f = f->next)
		nf++;
	if (nf > 0 && (fv = calloc(nf, sizeof(*fv))) == NULL) {
		pthread_mutex_unlock(&m->mu);
		return HSM_ENOMEM;
	}
	for (i = 0, f = m->fams; f != NULL; f = f->next)
		fv[i++] = f;
	if (nf > 1)
		qsort(fv, nf, sizeof(*fv), fam_cmp);
	sb_add(&b, "");
	for (i = 0; i < nf; i++) {
		f = fv[i];
		sb_add(&b, "# HELP ");
		sb_add(&b, f->name);
		sb_add(&b, " ");
		sb_escaped(&b, f->help, 0);
		sb_add(&b, "\n# TYPE ");
		sb_add(&b, f->name);
		sb_add(&b, " ");
		sb_add(&b, tname[f->type]);
		sb_add(&b, "\n");
		for (struct metric *s = f->first; s != NULL; s = s->next) {
			uint64_t v = atomic_load_explicit(&s->v, memory_order_relaxed), cum = 0;

			if (f->type == METRIC_COUNTER) {
				sample(&b, f->name, "", s->labels, NULL, fmt_count(n, v));
				continue;
			}
			if (f->type == METRIC_GAUGE) {
				sample(&b, f->name, "", s->labels, NULL, fmt_num(n, bits_double(v)));
				continue;
			}
			for (k = 0; k < f->nb; k++) {
				cum += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
				snprintf(le, sizeof(le), "le=\"%s\"", fmt_num(n, f->bounds[k]));
				sample(&b, f->name, "_bucket", s->labels, le, fmt_count(n, cum));
			}
			cum += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
			sample(&b, f->name, "_bucket", s->labels, "le=\"+Inf\"", fmt_count(n, cum));
			sample(&b, f->name, "_sum", s->labels, NULL,
			    fmt_num(n, bits_double(atomic_load_explicit(&s->sum, memory_order_relaxed))));
			sample(&b, f->name, "_count", s->labels, NULL, fmt_count(n, cum));
		}
	}
	pthread_mutex_unlock(&m->mu);
	free(fv);
	if (b.oom) {
		free(b.p);
		return HSM_ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

int
metrics_http_answer(struct metrics *m, const uint8_t *buf, size_t len, uint8_t **resp,
    size_t *resplen)
{
	static const char ctype[] = "text/plain; version=0.0.4; charset=utf-8";
	struct http_req req;
	const char *body = "";
	char *text = NULL;
	size_t blen = 0;
	int status, head = 0, n, st;

	*resp = NULL;
	*resplen = 0;
	if ((n = http_parse(buf, len, 0, &req)) == 0)
		return HSM_EAGAIN;
	if (n < 0) {
		status = req.status;
	} else if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "HEAD") != 0) {
		status = 405;
	} else if (strcmp(req.target, "/metrics") == 0) {
		if ((st = metrics_render(m, &text, &blen)) != 0)
			return st;
		body = text;
		status = 200;
	} else if (strcmp(req.target, "/healthz") == 0) {
		body = "ok\n";
		blen = 3;
		status = 200;
	} else {
		status = 404;
	}
	head = n > 0 && strcmp(req.method, "HEAD") == 0;
	if (status != 200) {
		body = http_reason(status) != NULL ? http_reason(status) : "error";
		blen = strlen(body);
	}
	if ((*resp = malloc(blen + HTTP_RESPONSE_OVERHEAD)) == NULL) {
		free(text);
		return HSM_ENOMEM;
	}
	st = http_response_allow(*resp, blen + HTTP_RESPONSE_OVERHEAD, status,
	    status == 200 && body == text ? ctype : "text/plain; charset=utf-8",
	    (const uint8_t *)body, blen, "GET, HEAD", resplen);
	free(text);
	if (st != 0) {
		free(*resp);
		*resp = NULL;
		return st;
	}
	if (head)	/* HEAD: the same head, no body */
		*resplen -= blen;
	return 0;
}

/* ---- the /metrics server ---- */

struct mconn {
	int fd;				/* -1: a free slot */
	size_t len;
	uint64_t deadline;
	uint8_t buf[HTTP_MAX_HEAD];
};

struct metrics_srv {
	struct metrics *m;
	int lfd, ep;
	struct mconn c[METRICS_SRV_CONNS];
};

int
metrics_srv_new(struct metrics *m, int lfd, struct metrics_srv **out)
{
	struct metrics_srv *s;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return HSM_ENOMEM;
	s->m = m;
	s->lfd = -1;
	for (size_t i = 0; i < METRICS_SRV_CONNS; i++)
		s->c[i].fd = -1;
	if ((s->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		free(s);
		return hsm_err(HSM_EIO, "metrics server: epoll: %s", strerror(errno));
	}
	if (lfd >= 0 && epoll_ctl(s->ep, EPOLL_CTL_ADD, lfd, &ev) != 0) {
		close(s->ep);
		free(s);
		return hsm_err(HSM_EIO, "metrics server: epoll_ctl: %s", strerror(errno));
	}
	s->lfd = lfd;
	*out = s;
	return 0;
}

int
metrics_srv_fd(const struct metrics_srv *s)
{
	return s->ep;
}

static void
mconn_close(struct metrics_srv *s, struct mconn *mc)
{
	epoll_ctl(s->ep, EPOLL_CTL_DEL, mc->fd, NULL);
	close(mc->fd);
	mc->fd = -1;
}

int
metrics_srv_adopt(struct metrics_srv *s, int fd, uint64_t now)
{
	struct epoll_event ev = { .events = EPOLLIN };
	size_t i;

	for (i = 0; i < METRICS_SRV_CONNS && s->c[i].fd >= 0; i++)
		;
	if (i == METRICS_SRV_CONNS) {
		close(fd);
		return hsm_err(HSM_EBUSY, "metrics server: %d clients already", METRICS_SRV_CONNS);
	}
	ev.data.ptr = &s->c[i];
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		return hsm_err(HSM_EIO, "metrics server: epoll_ctl: %s", strerror(errno));
	}
	s->c[i].fd = fd;
	s->c[i].len = 0;
	s->c[i].deadline = now + METRICS_SRV_TIMEOUT_MS;
	return 0;
}

/* Read what the client sent; answer and close once the request is complete or too big. */
static void
mconn_read(struct metrics_srv *s, struct mconn *mc)
{
	uint8_t *resp = NULL;
	size_t rlen = 0;
	ssize_t n;
	int st;

	n = read(mc->fd, mc->buf + mc->len, sizeof(mc->buf) - mc->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		mconn_close(s, mc);
		return;
	}
	mc->len += (size_t)n;
	st = metrics_http_answer(s->m, mc->buf, mc->len, &resp, &rlen);
	if (st == HSM_EAGAIN && mc->len < sizeof(mc->buf))
		return;
	if (st == 0)
		http_write_all(mc->fd, resp, rlen, METRICS_SRV_WRITE_MS);
	free(resp);
	mconn_close(s, mc);
}

void
metrics_srv_run(struct metrics_srv *s, uint64_t now)
{
	struct epoll_event evs[METRICS_SRV_CONNS + 1];
	int n, fd;

	n = epoll_wait(s->ep, evs, METRICS_SRV_CONNS + 1, 0);
	for (int i = 0; i < n; i++) {
		struct mconn *mc = evs[i].data.ptr;

		if (mc != NULL) {
			if (mc->fd >= 0)
				mconn_read(s, mc);
			continue;
		}
		while ((fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
			metrics_srv_adopt(s, fd, now);
	}
	metrics_srv_expire(s, now);
}

void
metrics_srv_expire(struct metrics_srv *s, uint64_t now)
{
	for (size_t i = 0; i < METRICS_SRV_CONNS; i++)
		if (s->c[i].fd >= 0 && now >= s->c[i].deadline)
			mconn_close(s, &s->c[i]);
}

void
metrics_srv_free(struct metrics_srv *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < METRICS_SRV_CONNS; i++)
		if (s->c[i].fd >= 0)
			close(s->c[i].fd);
	if (s->lfd >= 0)
		close(s->lfd);
	close(s->ep);
	free(s);
}
