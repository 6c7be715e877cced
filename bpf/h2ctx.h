/* SPDX-License-Identifier: GPL-2.0 */
/* The context sk_msg (nethttp.c) adds to a new HTTP/2 stream's HEADERS, as a
 * uprobe decided it before the frame is written (grpc.c: the loopy writer
 * taking the stream's headers), one instance for both objects
 * (probes.Shared). */
#ifndef TRACEWIRE_H2CTX_H
#define TRACEWIRE_H2CTX_H

#include "common.h"
#include "sock.h"

/* A stream of one connection of one process: sk_msg sees the writer's tgid
 * and the socket's ports and peer, the uprobe the transport's addresses.
 * (Two connections may share a local port when their peers differ.) */
struct h2_stream_key {
	__u32 tgid;
	__u32 stream_id;
	__u16 lport;
	__u16 rport;
	__u32 _pad;
	__u8 peer[16]; /* IPv4 (also v4-mapped IPv6) in the first 4 bytes */
};

/* h2_peer writes the n-byte address ip (4 or 16) into key's peer, an IPv4
 * address mapped into IPv6 as IPv4: Go's net.IP holds IPv4 in 16 bytes,
 * and a dual-stack socket has it mapped. */
static __always_inline void h2_peer(struct h2_stream_key *key, const __u8 *ip, __u32 n)
{
	const __u8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	int v4 = n == 4;

	if (n == 16) {
		v4 = 1;
		for (int i = 0; i < 12; i++)
			if (ip[i] != mapped[i])
				v4 = 0;
	}
	__builtin_memset(key->peer, 0, sizeof(key->peer));
	if (v4)
		__builtin_memcpy(key->peer, ip + (n == 16 ? 12 : 0), 4);
	else if (n == 16)
		__builtin_memcpy(key->peer, ip, 16);
}

/* h2_tuple_peer is h2_peer for a sock_tuple's remote address. */
#define h2_tuple_peer(key, t) h2_peer((key), (t)->remote, (t)->family == 2 ? 4 : 16)

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
