/* SPDX-License-Identifier: GPL-2.0 */
/* HTTP/1 request heads in captured bytes, for the kernel's own decisions
 * (user space parses them fully): where the request line and the head end,
 * and where the last traceparent field's value is. The scan runs under
 * bpf_loop so that the verifier checks one step, not one per byte. */
#ifndef TRACEWIRE_HTTPHEAD_H
#define TRACEWIRE_HTTPHEAD_H

#include "common.h"
#include "w3c.h"

/* Bytes scanned at most; a power of 2 (the masks). The buffer scanned must
 * have HEAD_SLACK readable bytes past any offset below HEAD_SCAN. */
#define HEAD_SCAN 1024
#define HEAD_SLACK (TRACEPARENT_LEN + 16)

struct head_scan {
	const __u8 *buf;
	__u32 n;        /* captured bytes in buf */
	__u32 line_end; /* after the request line's CRLF; 0: not within n */
	__u32 head_end; /* after the empty line; 0: not within n */
	__u32 tp;       /* where traceparent's value starts; 0: no such field */
	__u32 line_only; /* stop at the request line's end */
};

static __always_inline int lower_is(__u8 c, char want) { return (c | 0x20) == want; }

static long head_step(__u64 i, void *ctx)
{
	struct head_scan *s = ctx;
	const __u8 *b = s->buf;
	__u32 k;

	if (i + 1 >= s->n)
		return 1;
	i &= HEAD_SCAN - 1;
	if (b[i] != '\n')
		return 0;
	if (!s->line_end) {
		s->line_end = i + 1;
		if (s->line_only)
			return 1;
	}
	if (b[i + 1] == '\r') {
		s->head_end = i + 3;
		return 1;
	}
	/* "traceparent:" (the name in any case), then optional blanks. */
	if (!lower_is(b[i + 1], 't') || !lower_is(b[i + 2], 'r') || !lower_is(b[i + 3], 'a') ||
	    !lower_is(b[i + 4], 'c') || !lower_is(b[i + 5], 'e') || !lower_is(b[i + 6], 'p') ||
	    !lower_is(b[i + 7], 'a') || !lower_is(b[i + 8], 'r') || !lower_is(b[i + 9], 'e') ||
	    !lower_is(b[i + 10], 'n') || !lower_is(b[i + 11], 't') || b[i + 12] != ':')
		return 0;
	k = i + 13;
	if (b[k] == ' ' || b[k] == '\t')
		k++;
	s->tp = k; /* the last one counts, as in user space */
	return 0;
}

/* scan_head scans the n bytes of buf; 0 when they start with a request
 * line whose head (or, line_only, the line) ends within them. */
static __always_inline int scan_head(struct head_scan *s, const __u8 *buf, __u32 n, int line_only)
{
	s->buf = buf;
	s->line_only = line_only;
	s->n = n < HEAD_SCAN ? n : HEAD_SCAN;
	s->line_end = s->head_end = s->tp = 0;
	/* "METHOD SP": upper-case letters, then a space. */
	if (s->n < 16 || buf[0] < 'A' || buf[0] > 'Z')
		return -1;
	for (int i = 1; i < 16; i++) {
		if (buf[i] == ' ')
			break;
		if (buf[i] < 'A' || buf[i] > 'Z' || i == 15)
			return -1;
	}
	bpf_loop(HEAD_SCAN, head_step, s, 0);
	return s->line_end && (line_only || s->head_end) ? 0 : -1;
}

/* head_traceparent parses the traceparent a scanned head carries into sc;
 * 0 when there is a valid one. */
static __always_inline int head_traceparent(struct span_ctx *sc, const struct head_scan *s)
{
	__u32 at = s->tp;
	const __u8 *v;
	__s64 len = TRACEPARENT_LEN;

	if (!at || at + TRACEPARENT_LEN + 1 > s->n)
		return -1;
	v = s->buf + (at & (HEAD_SCAN - 1));
	/* A value longer than version 00's (a later version) goes on with '-'. */
	if (v[TRACEPARENT_LEN] != '\r' && v[TRACEPARENT_LEN] != ' ' && v[TRACEPARENT_LEN] != '\t')
		len++;
	return parse_traceparent(sc, (const char *)v, len);
}

#endif
