/* SPDX-License-Identifier: GPL-2.0 */
/* Goroutines and the server spans they serve, shared by every probe: a
 * client span of any library (HTTP, SQL, gRPC) started on a goroutine takes
 * as parent the server span of that goroutine or of the goroutine that
 * started it. User space gives every probe's object the same map instance. */
#ifndef TRACEWIRE_GOCTX_H
#define TRACEWIRE_GOCTX_H

#include "common.h"
#include "sampling.h"

/* runtime.g field offsets of a target's Go version. */
struct g_offsets {
	__u64 goid;
	__u64 parent_goid; /* OFF_NONE before Go 1.21 */
};

/* A goroutine of a target: goids are never reused within a process. */
struct goroutine_key {
	__u64 goid;
	__u32 tgid;
	__u32 _pad;
};

enum server_flag {
	/* Its context is not decided yet (net/http, started from the wire:
	 * the head did not fit the read that began it): no parent for now. */
	SERVER_CTX_LATE = 1,
	/* Its head carries tracestate, read from the request when w is known. */
	SERVER_TRACESTATE = 2,
	/* net/http, started from the wire: its *response is found later. */
	SERVER_WIRE = 4,
	/* Served over HTTP/2 on a goroutine of its own: its handler's return
	 * ends it (nethttp.c, h2_done), not the syscalls. */
	SERVER_H2 = 8,
};

struct server_inflight {
	__u64 start_ns;
	struct span_ctx sc;
	struct go_string tracestate; /* the request's, still alive at its end */
	__u64 w; /* net/http: the *response, whose end the syscalls tell;
		  * HTTP/2: the address of its responseWriterState.status */
	__u64 flags; /* enum server_flag */
	__u64 req; /* HTTP/2: the *Request */
};

/* Server spans in flight, keyed by the goroutine serving them. Like every
 * per-request map it is a bounded hash whose values start with their
 * insertion time: user space evicts (and counts) entries that outlive any
 * request. An insert into a full map is counted too. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct goroutine_key);
	__type(value, struct server_inflight);
} go_server_spans SEC(".maps");

/* current_g returns the running goroutine's g at a syscall tracepoint (no
 * R14 there): Go keeps it in thread-local storage, at fs_base - 8 on amd64. */
static __always_inline void *current_g(void)
{
	/* A trusted pointer: a plain load, no helper call. */
	__u64 fsbase = bpf_get_current_task_btf()->thread.fsbase;
	void *g = 0;

	if (!fsbase || bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase - 8)))
		return 0;
	return g;
}

/* goroutine fills k with the goroutine running at a uprobe (g in R14). */
static __always_inline int goroutine(struct pt_regs *ctx, struct g_offsets *o, struct goroutine_key *k, __u32 tgid)
{
	k->goid = read_s64(GO_G(ctx) + o->goid);
	k->tgid = tgid;
	return k->goid != 0;
}

/* serving finds the server span that goroutine k (whose g is g) serves, or
 * that the goroutine that started it serves (fan-out); 0 when none. */
static __always_inline struct server_inflight *serving(void *g, struct g_offsets *o, struct goroutine_key *k)
{
	struct server_inflight *parent = bpf_map_lookup_elem(&go_server_spans, k);
	struct goroutine_key pk;

	if (!parent && o->parent_goid != OFF_NONE) {
		pk = *k;
		pk.goid = read_s64(g + o->parent_goid);
		parent = bpf_map_lookup_elem(&go_server_spans, &pk);
	}
	if (parent && parent->flags & SERVER_CTX_LATE)
		return 0;
	return parent;
}

/* child_span fills sc for a new client span on goroutine k: the child of
 * the request it serves (serving), else a new trace. */
static __always_inline void child_span(struct pt_regs *ctx, struct g_offsets *o, struct goroutine_key *k, struct span_ctx *sc)
{
	struct server_inflight *parent = serving(GO_G(ctx), o, k);

	if (!parent) {
		new_root_span(sc);
		return;
	}
	__builtin_memcpy(sc->trace_id, parent->sc.trace_id, 16);
	__builtin_memcpy(sc->parent_id, parent->sc.span_id, 8);
	sc->flags = parent->sc.flags;
	random_bytes(sc->span_id, 8);
}

#endif
