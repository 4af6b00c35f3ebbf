/*
 * khsize.c - the keyholder's token session count from measured latency
 * and demand (see khsize.h for the rules).
 */
#include "khsize.h"

#include <string.h>

#include "err.h"

/* 1..limit in decimal digits, the whole of s[0..len). */
static int
parse_count(const char *s, size_t len, int limit, int *out)
{
	long v = 0;

	if (len == 0 || len > 4)
		return HSM_EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return HSM_EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > limit)
		return HSM_EINVAL;
	*out = (int)v;
	return 0;
}

int
khsize_parse(const char *s, int limit, struct khsize_conf *c)
{
	const char *dash = strchr(s, '-');
	int lo, hi;

	if (dash == NULL) {
		if (parse_count(s, strlen(s), limit, &lo) != 0)
			return HSM_EINVAL;
		c->min = c->max = lo;
		return 0;
	}
	if (parse_count(s, (size_t)(dash - s), limit, &lo) != 0 ||
	    parse_count(dash + 1, strlen(dash + 1), limit, &hi) != 0 || hi < lo)
		return HSM_EINVAL;
	c->min = lo;
	c->max = hi;
	return 0;
}

void
khsize_init(struct khsize *s, const struct khsize_conf *conf, uint64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	s->c = *conf;
	if (s->c.min < 1)
		s->c.min = 1;
	if (s->c.max < s->c.min)
		s->c.max = s->c.min;
	if (s->c.shrink_ms == 0)
		s->c.shrink_ms = KHSIZE_SHRINK_MS;
	if (s->c.reprobe_ms == 0)
		s->c.reprobe_ms = KHSIZE_REPROBE_MS;
	s->cur = s->c.min;
	s->last = now_ms;
}

/* x / 1000 rounded up */
static uint64_t
ceil_milli(uint64_t x)
{
	return (x + 999) / 1000;
}

/*
 * Serial token: busy sessions L (x1000) at latency w against the base.
 * Returns the token's useful concurrency (X x base, at least min), or 0
 * when the latency does not show the token queueing inside.
 */
static int
serial_cap(const struct khsize *s, uint64_t busy_milli, uint64_t w)
{
	uint64_t useful;

	if (busy_milli < 2000 || s->base_us == 0 || w < 2 * s->base_us)
		return 0;
	useful = ceil_milli(busy_milli * s->base_us / w);
	if (useful < (uint64_t)s->c.min)
		useful = (uint64_t)s->c.min;
	if (useful > (uint64_t)s->c.max)
		useful = (uint64_t)s->c.max;
	return (int)useful;
}

int
khsize_tick(struct khsize *s, const struct khsize_sample *m, uint64_t now_ms)
{
	uint64_t t_us, demand, target, w, hi;
	int cap;

	s->why = KHSIZE_SAME;
	if (now_ms <= s->last || s->c.min == s->c.max)
		return s->cur;
	t_us = (now_ms - s->last) * 1000;
	s->last = now_ms;
	if (s->cap != 0 && now_ms >= s->cap_until) {
		/* Measure the token again from where it stands. */
		s->cap = 0;
		s->base_us = 0;
		s->strikes = 0;
		s->why = KHSIZE_REPROBE;
	}
	if (m->n > 0) {
		w = m->service_us / m->n;
		if (w == 0)
			w = 1;
		s->w_us = w;
		s->busy_milli = (uint32_t)(m->service_us * 1000 / t_us);
		s->demand_milli = (uint32_t)(m->sojourn_us * 1000 / t_us);
		demand = s->demand_milli;
		/* Nearly alone on the token: its latency now is its base, whichever way it moved. */
		if (s->base_us == 0 || w < s->base_us || s->busy_milli <= 1500)
			s->base_us = w;
		/*
		 * Capped, and the latency stays high at the useful concurrency:
		 * it is the token's own now (a slower network, a busier HSM),
		 * not a queue inside it. Relearn the base and size again.
		 */
		if (s->cap != 0 && w >= 2 * s->base_us) {
			if (++s->strikes >= 3) {
				s->cap = 0;
				s->base_us = w;
				s->strikes = 0;
				s->why = KHSIZE_REPROBE;
			}
		} else {
			s->strikes = 0;
		}
		if (s->cap == 0 && (cap = serial_cap(s, s->busy_milli, w)) != 0) {
			s->cap = cap;
			s->strikes = 0;
			s->cap_until = now_ms + s->c.reprobe_ms;
			s->why = KHSIZE_SERIAL;
		}
	} else {
		/* Nothing completed: what waits is the demand (an idle keyholder: none). */
		demand = m->outstanding > 0 ? (uint64_t)m->outstanding * 1000 : 0;
	}
	hi = (uint64_t)s->c.max;
	if (s->cap != 0 && (uint64_t)s->cap < hi)
		hi = (uint64_t)s->cap;
	if ((uint64_t)s->cur > hi) {
		/* A serial token: the sessions above its useful concurrency only queue. */
		s->cur = (int)hi;
		s->quiet_since = 0;
		return s->cur;
	}
	/* Little's law plus a quarter of headroom, at least one session more. */
	target = 0;
	if (demand > 0) {
		target = ceil_milli(demand);
		target += target / 4 > 0 ? target / 4 : 1;
	}
	if (target < (uint64_t)s->c.min)
		target = (uint64_t)s->c.min;
	if (target > hi)
		target = hi;
	if (target > (uint64_t)s->cur) {
		/* At most quadruple per tick: a serial token shows itself after one step. */
		if (target > 4 * (uint64_t)s->cur)
			target = 4 * (uint64_t)s->cur;
		s->cur = (int)target;
		s->quiet_since = 0;
		s->why = KHSIZE_GROW;
	} else if (target < (uint64_t)s->cur) {
		if (s->quiet_since == 0) {
			s->quiet_since = now_ms;
			s->quiet_peak = (int)target;
		} else if ((int)target > s->quiet_peak) {
			s->quiet_peak = (int)target;
		}
		if (now_ms - s->quiet_since >= s->c.shrink_ms) {
			s->cur = s->quiet_peak;
			s->quiet_since = 0;
			s->why = KHSIZE_SHRINK;
		}
	} else {
		s->quiet_since = 0;
	}
	return s->cur;
}

void
khsize_restart(struct khsize *s, uint64_t now_ms)
{
	if (now_ms > s->last)
		s->last = now_ms;
}

const char *
khsize_why_name(enum khsize_why why)
{
	switch (why) {
	case KHSIZE_GROW: return "grow";
	case KHSIZE_SHRINK: return "shrink";
	case KHSIZE_SERIAL: return "serial";
	case KHSIZE_REPROBE: return "reprobe";
	default: return "same";
	}
}
