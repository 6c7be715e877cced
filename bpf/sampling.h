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

static __always_inline __u8 ratio_sampled(const __u8 *trace_id)
{
	__u64 x;

	__builtin_memcpy(&x, trace_id + 8, 8);
	return (bpf_be64_to_cpu(x) >> 1) < sampling_bound;
}

static __always_inline void new_root_span(struct span_ctx *sc)
{
	random_bytes(sc->trace_id, 16);
	random_bytes(sc->span_id, 8);
	__builtin_memset(sc->parent_id, 0, sizeof(sc->parent_id));
	sc->flags = ratio_sampled(sc->trace_id);
}

/* server_span fills sc for a server span: it continues the incoming
 * traceparent when that is valid (returns 1), else it starts a trace (0). */
static __always_inline int server_span(struct span_ctx *sc, struct go_string traceparent)
{
	if (read_traceparent(sc, traceparent)) {
		new_root_span(sc);
		return 0;
	}
	random_bytes(sc->span_id, 8);
	if (!sampling_parent_based)
		sc->flags = (sc->flags & ~1) | ratio_sampled(sc->trace_id);
	return 1;
}

#endif
