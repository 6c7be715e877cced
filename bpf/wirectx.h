/* SPDX-License-Identifier: GPL-2.0 */
/* What the wire path's syscall programs (wire.c) and the propagation
 * programs (nethttp.c: sock_ops, sk_msg) share, one instance for both
 * (probes.Shared): the targets, the request each of their threads serves,
 * the context sk_msg sent in the write in progress, and the endpoints
 * known to speak HTTP/1. */
#ifndef TRACEWIRE_WIRECTX_H
#define TRACEWIRE_WIRECTX_H

#include "common.h"
#include "goctx.h"
#include "sock.h"

enum wire_proc_flag {
	/* Its connections stay out of the socket map: it may ask FIONREAD,
	 * which this kernel answers wrongly for sockets in the map. */
	WIRE_LEAVE_ALONE = 1,
	/* A Go program whose database client has no Go probe (no
	 * database/sql): only its database connections are followed, and a
	 * call's parent is the server span of its goroutine (g). */
	WIRE_GO = 2,
};
const enum wire_proc_flag *__export_wire_proc_flag __attribute__((unused));

/* What a wire target needs; its presence is the syscall programs' filter. */
struct wire_proc {
	__u64 flags; /* enum wire_proc_flag */
	struct g_offsets g; /* WIRE_GO */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct wire_proc);
} wire_procs SEC(".maps");

/* The requests a thread of a wire target serves, as the kernel can count
 * them: one more at each read that starts a request, one less at each write
 * that starts a response. A call the thread makes belongs to server only
 * when it serves exactly one and has not served two since it served none. */
struct wire_thread {
	struct span_ctx server; /* the request it began last */
	__u32 inflight;
	__u32 unsure; /* 1 until inflight is 0 again */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct wire_thread);
} wire_threads SEC(".maps");

/* The context sk_msg put in a request, for the exit of the same write to
 * report (keyed by thread; the connection tells a stale entry apart). */
struct wire_sent {
	struct sock_tuple conn;
	struct span_ctx sc;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct wire_sent);
} wire_sent SEC(".maps");

/* Endpoints a target was seen sending HTTP/1 requests to (user space adds
 * them): only connections to these are put under sk_msg, so a connection
 * of any other protocol keeps every socket semantic (FIONREAD included). */
struct wire_peer {
	__u8 addr[16];
	__u16 port;
	__u16 family;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wire_peer);
	__type(value, __u64); /* when learned (ns) */
} wire_http_peers SEC(".maps");

#endif
