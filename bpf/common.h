/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by every probe: Go amd64 ABI access, bounded user reads,
 * the drop/error counters, and ring-buffer submission without wakeups. */
#ifndef TRACEWIRE_COMMON_H
#define TRACEWIRE_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

/* Go >= 1.17 amd64 register ABI: integer arguments in RAX, RBX, RCX, RDI, RSI,
 * R8..R11; the running goroutine's g in R14. Our uprobes sit on an emulated
 * prologue instruction (PUSH RBP or the stack-check JBE), where these still
 * hold the arguments. */
#define GO_ARG1(r) ((void *)(r)->ax)
#define GO_ARG2(r) ((void *)(r)->bx)
#define GO_ARG3(r) ((void *)(r)->cx)
#define GO_ARG4(r) ((void *)(r)->di)
#define GO_G(r) ((void *)(r)->r14)

/* Offsets of fields the agent could not find for a binary (e.g.
 * net/http.Request.Pattern before Go 1.22). */
#define OFF_NONE ((__u64)-1)

/* Counters read by user space; indexes shared with Go via the tw_stat enum. */
enum tw_stat {
	STAT_RINGBUF_FULL = 0,  /* event dropped: ring buffer full */
	STAT_READ_FAILED = 1,   /* bpf_probe_read_user of a target field failed */
	STAT_NO_START = 2,      /* end without start: start evicted or missed */
	STAT_MAP_FULL = 3,      /* a bounded map was full: state not recorded */
	STAT_SOCKET_BUSY = 4,   /* socket already under another sk_msg program */
	STAT_INJECTED = 5,      /* traceparent inserted into an outgoing request */
	STAT_NOT_INJECTED = 6,  /* pending traceparent dropped: not a request / no room */
	STAT_HTTP2_SKIPPED = 7, /* HTTP/2 call or request served, not traced */
	STAT_LEFT_ALONE = 8,    /* connection not put under sk_msg: it would change FIONREAD */
	STAT_RATE_LIMITED = 9,  /* root kept by the sampler, refused by the rate limit */
	STAT_NO_END = 10,       /* a request whose response no syscall showed: no span */
	STAT_CTX_LATE = 11,     /* a request whose context was known only at its end: its calls have no parent */
	STAT_MAX = 12,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(enum tw_stat s)
{
	__u32 k = s;
	__u64 *v = bpf_map_lookup_elem(&stats, &k);

	if (v)
		(*v)++;
}

/* Wake the reader only when a quarter of the ring is pending: user space
 * polls anyway, and a wakeup per event costs more than the probe itself. */
static __always_inline void submit(void *rb, void *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(rb, BPF_RB_RING_SIZE) / 4)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/* output copies size bytes of data into the ring, waking the reader as
 * submit does; a full ring is counted. */
static __always_inline void output(void *rb, void *data, __u64 size)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(rb, BPF_RB_RING_SIZE) / 4)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(rb, data, size, flags))
		count(STAT_RINGBUF_FULL);
}

/* A Go string header. */
struct go_string {
	__u64 ptr;
	__s64 len;
};

/* read_str copies up to size bytes of the Go string s into dst and returns
 * the string's full length (so user space can tell that it was cut), or -1
 * when the bytes cannot be read. */
static __always_inline __s64 read_str(char *dst, __u32 size, struct go_string s)
{
	__u64 n = s.len;

	if (n > size)
		n = size;
	if (n && bpf_probe_read_user(dst, n, (void *)s.ptr)) {
		count(STAT_READ_FAILED);
		return -1;
	}
	return s.len;
}

/* read_go_string is read_str for a string header at hdr in user memory. */
static __always_inline __s64 read_go_string(char *dst, __u32 size, void *hdr)
{
	struct go_string s;

	if (bpf_probe_read_user(&s, sizeof(s), hdr)) {
		count(STAT_READ_FAILED);
		return -1;
	}
	return read_str(dst, size, s);
}

static __always_inline void *read_ptr(void *addr)
{
	void *p = 0;

	if (bpf_probe_read_user(&p, sizeof(p), addr))
		count(STAT_READ_FAILED);
	return p;
}

static __always_inline __s64 read_s64(void *addr)
{
	__s64 v = 0;

	if (bpf_probe_read_user(&v, sizeof(v), addr))
		count(STAT_READ_FAILED);
	return v;
}

/* Span context chosen in the kernel where a span starts, so that later
 * probes (children, outgoing propagation) can use the same ids. */
struct span_ctx {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 parent_id[8];
	__u8 flags;
	__u8 _pad[7];
};

/* A span_ctx flag bit of the agent's own, never sent or exported: the trace
 * id is provisional. A gRPC server span whose client may be traced by this
 * agent too gets it (user space then joins the two and rewrites the server
 * side's trace id), and children inherit it with the trace id. */
enum tw_flag { FLAG_LINK_PENDING = 0x80 };

static __always_inline void random_bytes(__u8 *dst, int n)
{
	for (int i = 0; i < n; i += 4) {
		__u32 r = bpf_get_prandom_u32();

		__builtin_memcpy(dst + i, &r, 4);
	}
}

/* Keeps a type in the object's BTF so bpf2go -type can generate its Go twin. */
#define EXPORT_STRUCT(name) const struct name *__export_##name __attribute__((unused))

const enum tw_stat *__export_tw_stat __attribute__((unused));
const enum tw_flag *__export_tw_flag __attribute__((unused));

char LICENSE[] SEC("license") = "GPL";

#endif
