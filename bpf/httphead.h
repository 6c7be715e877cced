/* SPDX-License-Identifier: GPL-2.0 */
/* HTTP/1 request heads in captured bytes, for the kernel's own decisions
 * (user space parses them fully): where the request line and the head end,
 * and where the last traceparent field's value is. The scan runs under
 * bpf_loop so that the verifier checks one step, not one per byte. */
#ifndef TRACEWIRE_HTTPHEAD_H
#define TRACEWIRE_HTTPHEAD_H

#include "common.h"
#include "sampling.h"
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
	__u32 tp;       /* where the last traceparent's value starts; 0: none */
	__u32 tp_first; /* where the first one's does */
	__u32 ts;       /* 1: a tracestate field */
	__u32 line_only; /* stop at the request line's end */
};

static __always_inline int lower_is(__u8 c, char want) { return (c | 0x20) == want; }

/* newline notes what the line after the '\n' at i says; 1: stop. */
static __always_inline int newline(struct head_scan *s, __u32 i)
{
	const __u8 *b = s->buf;
	__u32 k;

	if (i + 1 >= s->n)
		return 1;
	i &= HEAD_SCAN - 1;
	if (!s->line_end) {
		s->line_end = i + 1;
		if (s->line_only)
			return 1;
	}
	if (b[i + 1] == '\r') {
		s->head_end = i + 3;
		return 1;
	}
	/* "traceparent:" (the name in any case), then optional blanks;
	 * "tracestate:" is only noted. */
	if (!lower_is(b[i + 1], 't') || !lower_is(b[i + 2], 'r') || !lower_is(b[i + 3], 'a') ||
	    !lower_is(b[i + 4], 'c') || !lower_is(b[i + 5], 'e'))
		return 0;
	if (lower_is(b[i + 6], 's') && lower_is(b[i + 7], 't') && lower_is(b[i + 8], 'a') &&
	    lower_is(b[i + 9], 't') && lower_is(b[i + 10], 'e') && b[i + 11] == ':') {
		s->ts = 1;
		return 0;
	}
	if (!lower_is(b[i + 6], 'p') || !lower_is(b[i + 7], 'a') || !lower_is(b[i + 8], 'r') ||
	    !lower_is(b[i + 9], 'e') || !lower_is(b[i + 10], 'n') || !lower_is(b[i + 11], 't') ||
	    b[i + 12] != ':')
		return 0;
	k = i + 13;
	if (b[k] == ' ' || b[k] == '\t')
		k++;
	s->tp = k; /* the last one counts, as in the wire path's user space */
	if (!s->tp_first)
		s->tp_first = k; /* Go's Header.Get takes the first */
	return 0;
}

#define ONES 0x0101010101010101ULL

/* head_step looks at 8 bytes at once (one bpf_loop call each: the call is
 * what costs here), byte by byte only when one of them may be a '\n'. */
static long head_step(__u64 w, void *ctx)
{
	struct head_scan *s = ctx;
	const __u8 *b = s->buf;
	__u32 at = w * 8;
	__u64 x;

	if (at + 1 >= s->n)
		return 1;
	at &= HEAD_SCAN - 1;
	__builtin_memcpy(&x, b + at, 8);
	x ^= ONES * '\n';
	if (!((x - ONES) & ~x & ONES * 0x80))
		return 0; /* no zero byte: no '\n' */
#pragma unroll
	for (int j = 0; j < 8; j++)
		if (b[at + j] == '\n' && newline(s, at + j))
			return 1;
	return 0;
}

/* method_token: the 16 bytes at buf start with "METHOD SP" (upper-case
 * letters, then a space), as a request line does. */
static __always_inline int method_token(const __u8 *buf)
{
	if (buf[0] < 'A' || buf[0] > 'Z')
		return 0;
	for (int i = 1; i < 16; i++) {
		if (buf[i] == ' ')
			return 1;
		if (buf[i] < 'A' || buf[i] > 'Z')
			return 0;
	}
	return 0;
}

/* is_tchar: c may be in a method (RFC 9110 token). */
static __always_inline int is_tchar(__u8 c)
{
	if (c <= ' ' || c >= 0x7f)
		return 0;
	switch (c) {
	case '"': case '(': case ')': case ',': case '/': case ':': case ';': case '<':
	case '=': case '>': case '?': case '@': case '[': case '\\': case ']': case '{': case '}':
		return 0;
	}
	return 1;
}

/* token_start: the n bytes at b (16 at most looked at) can begin a request
 * line of any method a server accepts: token characters up to a space or to
 * their end. */
static __always_inline int token_start(const __u8 *b, __u32 n)
{
	if (!n || !is_tchar(b[0]))
		return 0;
	for (int i = 1; i < 16 && i < n; i++) {
		if (b[i] == ' ')
			return 1;
		if (!is_tchar(b[i]))
			return 0;
	}
	return 1;
}

/* scan_head scans the n bytes of buf (the caller checked how they start);
 * 0 when they hold a line whose head (or, line_only, the line) ends within
 * them. */
static __always_inline int scan_head(struct head_scan *s, const __u8 *buf, __u32 n, int line_only)
{
	s->buf = buf;
	s->line_only = line_only;
	s->n = n < HEAD_SCAN ? n : HEAD_SCAN;
	s->line_end = s->head_end = s->tp = s->tp_first = s->ts = 0;
	if (s->n < 16)
		return -1;
	bpf_loop(HEAD_SCAN / 8, head_step, s, 0);
	return s->line_end && (line_only || s->head_end) ? 0 : -1;
}

/* head_traceparent parses the traceparent value at offset at (tp or
 * tp_first) of a scanned head into sc; 0 when there is a valid one. */
static __always_inline int head_traceparent(struct span_ctx *sc, const struct head_scan *s, __u32 at)
{
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

/* head_span fills sc for the server span of a scanned head: the incoming
 * traceparent at offset at continued (returns 1), else a new trace (0). */
static __always_inline int head_span(struct span_ctx *sc, const struct head_scan *s, __u32 at)
{
	if (head_traceparent(sc, s, at)) {
		new_root_span(sc);
		return 0;
	}
	continue_span(sc);
	return 1;
}

/* http1_line: the scanned request line ends in " HTTP/1.x" (not an HTTP/2
 * preface, nor another protocol that looks alike). */
static __always_inline int http1_line(const struct head_scan *s)
{
	const char v[] = " HTTP/1.";
	const __u8 *b;

	if (s->line_end < 16)
		return 0;
	b = s->buf + ((s->line_end - 11) & (HEAD_SCAN - 1));
	for (int i = 0; i < sizeof(v) - 1; i++)
		if (b[i] != v[i])
			return 0;
	return 1;
}

#endif
