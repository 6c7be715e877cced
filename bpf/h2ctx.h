/* SPDX-License-Identifier: GPL-2.0 */
/* The context sk_msg (nethttp.c) adds to a new HTTP/2 stream's HEADERS, as a
 * uprobe decided it before the frame is written (grpc.c: the loopy writer
 * taking the stream's headers), one instance for both objects
 * (probes.Shared). */
#ifndef TRACEWIRE_H2CTX_H
#define TRACEWIRE_H2CTX_H

#include "common.h"

/* A stream of one connection of one process: sk_msg sees the writer's tgid
 * and the socket's ports, the uprobe the transport's addresses. */
struct h2_stream_key {
	__u32 tgid;
	__u32 stream_id;
	__u16 lport;
	__u16 rport;
	__u32 _pad;
};

struct h2_stream_ctx {
	__u64 when; /* ktime: stale entries are swept */
	struct span_ctx sc;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct h2_stream_key);
	__type(value, struct h2_stream_ctx);
} h2_streams SEC(".maps");

#endif
