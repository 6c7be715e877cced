/* SPDX-License-Identifier: GPL-2.0 */
/* Trace sampling, decided in the kernel where a trace starts or enters the
 * process, so that the traceparent sent to the next hop carries the same
 * sampled flag as the spans (user space drops the unsampled ones). */
#ifndef TRACEWIRE_SAMPLING_H
#define TRACEWIRE_SAMPLING_H

#include "common.h"
#include "w3c.h"

/* The sampler (internal/sampling), set by user space before load
 * (probes.Shared); read-only, so the verifier drops the branches it rules
 * out. A trace id is sampled when its last 8 bytes, big endian and shifted
 * right by one, are below sampling_bound (OpenTelemetry's TraceIDRatioBased:
 * 1<<63 samples all, 0 none). */
const volatile __u64 sampling_bound = 0;
/* When set, a valid incoming traceparent's sampled flag decides instead. */
const volatile __u8 sampling_parent_based = 0;
/* At most this many roots sampled per second on the node; 0: no limit. */
const volatile __u32 sampling_rate_limit = 0;

static __always_inline __u8 ratio_sampled(const __u8 *trace_id)
{
	__u64 x;

	__builtin_memcpy(&x, trace_id + 8, 8);
	return (bpf_be64_to_cpu(x) >> 1) < sampling_bound;
}

/* The rate limit's window, one for the node: every probe's object gets the
 * same map (probes.Shared). One word, so that a single compare-and-swap
 * both moves the window and takes from its budget: the second (ktime) in
 * the high 32 bits, the roots sampled in it in the low 32. Two words would
 * let a root counted by one CPU be wiped by another's window reset. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sampling_window SEC(".maps");

/* Tries before giving up on a contended window; each failure means another
 * CPU took a root meanwhile, so this many are far more than two sampled
 * roots racing on the same nanoseconds ever need. */
#define RATE_TRIES 8

/* rate_admits takes one root from the current second's budget; 0 when it
 * is spent (or, never seen, still contended after RATE_TRIES): the limit
 * is never exceeded. */
static __always_inline int rate_admits(void)
{
	__u32 k = 0;
	__u64 *w = bpf_map_lookup_elem(&sampling_window, &k);
	__u64 now = (bpf_ktime_get_ns() / 1000000000) << 32;

	if (!w)
		return 0;
#pragma unroll
	for (int i = 0; i < RATE_TRIES; i++) {
		__u64 old = *(volatile __u64 *)w;
		__u64 next = now | 1;

		if ((old & ~0xffffffffULL) == now) {
			if ((old & 0xffffffff) >= sampling_rate_limit)
				return 0;
			next = old + 1;
		}
		if (__sync_val_compare_and_swap(w, old, next) == old)
			return 1;
	}
	return 0;
}

/* root_sampled decides for a trace started here: the sampler, then the
 * rate limit, whose budget only the roots the sampler keeps spend. Traces
 * continued from an incoming traceparent are not limited. */
static __always_inline __u8 root_sampled(const __u8 *trace_id)
{
	if (!ratio_sampled(trace_id))
		return 0;
	if (sampling_rate_limit && !rate_admits()) {
		count(STAT_RATE_LIMITED);
		return 0;
	}
	return 1;
}

static __always_inline void new_root_span(struct span_ctx *sc)
{
	random_bytes(sc->trace_id, 16);
	random_bytes(sc->span_id, 8);
	__builtin_memset(sc->parent_id, 0, sizeof(sc->parent_id));
	sc->flags = root_sampled(sc->trace_id);
}

/* continue_span completes sc, parsed from an incoming traceparent, as the
 * context of the server span that continues it. */
static __always_inline void continue_span(struct span_ctx *sc)
{
	random_bytes(sc->span_id, 8);
	if (!sampling_parent_based)
		sc->flags = (sc->flags & ~1) | ratio_sampled(sc->trace_id);
}

/* server_span fills sc for a server span: it continues the incoming
 * traceparent when that is valid (returns 1), else it starts a trace (0). */
static __always_inline int server_span(struct span_ctx *sc, struct go_string traceparent)
{
	if (read_traceparent(sc, traceparent)) {
		new_root_span(sc);
		return 0;
	}
	continue_span(sc);
	return 1;
}

#endif
