/* SPDX-License-Identifier: GPL-2.0 */
/* W3C trace context: parse an incoming traceparent, format an outgoing one. */
#ifndef TRACEWIRE_W3C_H
#define TRACEWIRE_W3C_H

#include "common.h"

#define TRACEPARENT_LEN 55 /* 00-<32 hex>-<16 hex>-<2 hex> */

static __always_inline int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case is invalid in traceparent */
}

static __always_inline int parse_hex(__u8 *dst, const char *src, int n)
{
	int nonzero = 0;

	for (int i = 0; i < n; i++) {
		int hi = unhex(src[2 * i]), lo = unhex(src[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		dst[i] = hi << 4 | lo;
		nonzero |= dst[i];
	}
	return nonzero ? 0 : -1; /* all-zero ids are invalid */
}

/* parse_traceparent fills trace id, parent id (the caller's span) and flags
 * from a header of len bytes whose first TRACEPARENT_LEN (and one more when
 * it is longer) are in tp; 0 when valid. Versions other than 00 are read as
 * 00 when they are long enough, as the specification asks; ff is invalid. */
static __always_inline int parse_traceparent(struct span_ctx *sc, const char *tp, __s64 len)
{
	if (len < TRACEPARENT_LEN || (len > TRACEPARENT_LEN && tp[0] == '0' && tp[1] == '0'))
		return -1;
	if (len > TRACEPARENT_LEN && tp[TRACEPARENT_LEN] != '-')
		return -1;
	if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || (tp[0] == 'f' && tp[1] == 'f'))
		return -1;
	if (unhex(tp[0]) < 0 || unhex(tp[1]) < 0)
		return -1;
	if (parse_hex(sc->trace_id, tp + 3, 16) || parse_hex(sc->parent_id, tp + 36, 8))
		return -1;
	int hi = unhex(tp[53]), lo = unhex(tp[54]);

	if (hi < 0 || lo < 0)
		return -1;
	/* The top bit is the agent's own (FLAG_LINK_PENDING): not taken from
	 * outside. */
	sc->flags = (hi << 4 | lo) & ~FLAG_LINK_PENDING;
	return 0;
}

/* read_traceparent reads the header value s from user memory and parses it;
 * 0 when valid. A longer one (a later version may append fields) is read one
 * byte further: the '-' that must follow the fields of version 00. */
static __always_inline int read_traceparent(struct span_ctx *sc, struct go_string s)
{
	char tp[TRACEPARENT_LEN + 1];
	__u32 n = s.len > TRACEPARENT_LEN ? sizeof(tp) : TRACEPARENT_LEN;

	if (s.len < TRACEPARENT_LEN || bpf_probe_read_user(tp, n, (void *)s.ptr))
		return -1;
	return parse_traceparent(sc, tp, s.len);
}

#define TRACEPARENT_HEADER_LEN 70 /* "traceparent: " + 55 + CRLF */

static __always_inline void put_hex(char *dst, const __u8 *src, int n)
{
	const char digits[] = "0123456789abcdef";

	for (int i = 0; i < n; i++) {
		dst[2 * i] = digits[src[i] >> 4];
		dst[2 * i + 1] = digits[src[i] & 0xf];
	}
}

/* format_traceparent_header writes the header line that carries sc's trace
 * and span id to the next hop. */
static __always_inline void format_traceparent_header(char *dst, const struct span_ctx *sc)
{
	const char prefix[] = "traceparent: 00-";

	__builtin_memcpy(dst, prefix, 16);
	put_hex(dst + 16, sc->trace_id, 16);
	dst[48] = '-';
	put_hex(dst + 49, sc->span_id, 8);
	dst[65] = '-';
	__u8 flags = sc->flags & ~FLAG_LINK_PENDING;

	put_hex(dst + 66, &flags, 1);
	dst[68] = '\r';
	dst[69] = '\n';
}

#endif
