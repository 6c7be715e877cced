// SPDX-License-Identifier: GPL-2.0
/* The wire path: the bytes a target sends and receives on TCP sockets, from
 * syscall tracepoints (no kprobes needed), for user space to parse HTTP/1
 * and database protocols per connection, in any language.
 *
 * Only the exit of each read/write-family syscall has a program: it finds
 * the syscall's arguments in the registers the task saved at entry (the
 * syscall ABI leaves rdi, rsi untouched), and when the call moved bytes on
 * a TCP socket of a target, the first WIRE_CAP of them go to the ring with
 * the connection and the byte count (user space follows message boundaries
 * by counts). close(2) of a TCP socket ends its connection (at entry: the
 * descriptor is gone at exit). A process not in wire_procs costs one map
 * lookup per traced syscall, once.
 *
 * For outgoing context (sk_msg, in nethttp.c) the kernel also keeps, per
 * thread, the request it serves: a read that starts a request decides that
 * request's span context here, and a write that starts a response ends it;
 * the write that carried a traceparent reports it. */
#include "common.h"
#include "httphead.h"
#include "sampling.h"
#include "sock.h"
#include "wirectx.h"

enum wire_const { WIRE_CAP = HEAD_SCAN }; /* a power of 2: the masks below */
const enum wire_const *__export_wire_const __attribute__((unused));

/* How a syscall's buffer argument points to its bytes. */
enum wire_buf {
	BUF_PLAIN = 0, /* read, write, recvfrom, sendto: the bytes */
	BUF_IOV = 1,   /* readv, writev: an iovec array */
	BUF_MSG = 2,   /* recvmsg, sendmsg: a msghdr */
	BUF_NONE = 3,  /* sendfile: bytes counted, none to copy */
};

enum wire_dir {
	WIRE_IN = 1,    /* bytes received */
	WIRE_OUT = 2,   /* bytes sent */
	WIRE_CLOSE = 3, /* the connection's fd is closed */
};

/* What an event's ctx is. */
enum wire_ctx {
	CTX_NONE = 0,
	CTX_BEGUN = 1, /* a read that starts a request: its server span */
	CTX_SENT = 2,  /* a write whose request sk_msg gave this traceparent */
	CTX_PARENT = 3, /* a Go target's write on a goroutine serving this span */
};
const enum wire_ctx *__export_wire_ctx __attribute__((unused));

struct wire_event {
	struct span_ctx ctx; /* enum wire_ctx ctx_kind */
	__u64 ts;
	__s64 len; /* bytes the syscall moved */
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u16 dir;  /* enum wire_dir */
	__u16 size; /* bytes in data: the first of len, at most WIRE_CAP */
	struct sock_tuple conn;
	__u8 ctx_kind;
	__u8 go; /* a WIRE_GO target's: database connections only */
	__u8 _pad[6];
	__u8 data[3 * WIRE_CAP]; /* room for the verifier: only size are sent */
};
EXPORT_STRUCT(wire_event);

/* The event is built here: too big for the stack, and sent with only the
 * bytes it holds. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wire_event);
} wire_scratch SEC(".maps");

/* 1 MiB, as the HTTP probe's: the reader maps the whole ring, which counts
 * in the agent's resident memory (4 MiB cost it 8.5 MiB); it is woken when
 * a quarter is pending. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} wire_events SEC(".maps");

/* copy_bytes copies the first bytes the syscall moved (len in all) into
 * e->data, up to WIRE_CAP, and returns how many: from the buffer, or from the
 * first IOV_READ buffers of a vector (a header and a body are often two). */
#define IOV_READ 8
static __always_inline __u32 copy_bytes(struct wire_event *e, __u64 buf, __u32 kind, __u64 len)
{
	struct user_msghdr msg = {};
	struct iovec iov = {};
	__u64 vec = buf, k, pos;
	__u32 off = 0;

	switch (kind) {
	case BUF_PLAIN:
		k = len;
		if (k > WIRE_CAP)
			k = WIRE_CAP;
		if (bpf_probe_read_user(e->data, k, (void *)buf))
			goto failed;
		return k;
	case BUF_MSG:
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)buf))
			goto failed;
		vec = (__u64)msg.msg_iov;
		break;
	case BUF_IOV:
		break;
	default:
		return 0;
	}
	for (int i = 0; i < IOV_READ; i++) {
		if (off >= WIRE_CAP || off >= len)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(vec + i * sizeof(iov))))
			goto failed;
		k = iov.iov_len;
		if (k > WIRE_CAP - off)
			k = WIRE_CAP - off;
		if (k > len - off)
			k = len - off;
		/* data has room for 2 WIRE_CAP past any offset below WIRE_CAP; the
		 * masks, which clang would drop (the clamps above imply them),
		 * are what the verifier can follow. */
		pos = off;
		asm volatile("%[pos] &= 1023" : [pos] "+r"(pos));
		asm volatile("%[k] &= 2047" : [k] "+r"(k));
		if (bpf_probe_read_user(e->data + pos, k, iov.iov_base))
			goto failed;
		off += k;
	}
	return off;
failed:
	count(STAT_READ_FAILED);
	return 0;
}

/* begin_request: a read that starts a request (complete within the capture)
 * on a target's thread. Its server span's context is decided here, where
 * sk_msg can find it when the thread calls out: the incoming traceparent
 * continued, or a new trace; user space takes the same ids. */
static __always_inline void begin_request(struct wire_event *e, __u32 n, __u64 id)
{
	struct wire_thread fresh = {}, *th;
	struct head_scan s;

	if (n < 16 || !method_token(e->data) || scan_head(&s, e->data, n, 0))
		return;
	head_span(&e->ctx, &s, s.tp);
	e->ctx_kind = CTX_BEGUN;
	th = bpf_map_lookup_elem(&wire_threads, &id);
	if (!th) {
		if (bpf_map_update_elem(&wire_threads, &id, &fresh, BPF_ANY))
			return;
		th = bpf_map_lookup_elem(&wire_threads, &id);
		if (!th)
			return;
	}
	if (th->inflight)
		th->unsure = 1; /* two at once: which one a call is for is unknown */
	th->inflight++;
	th->server = e->ctx;
}

/* begin_response: a write that starts a response on a target's thread. */
static __always_inline void begin_response(struct wire_event *e, __u64 id)
{
	struct wire_thread *th;
	const char v[] = "HTTP/1.";

	for (int i = 0; i < sizeof(v) - 1; i++)
		if (e->data[i] != v[i])
			return;
	th = bpf_map_lookup_elem(&wire_threads, &id);
	if (!th || !th->inflight)
		return;
	if (--th->inflight == 0)
		th->unsure = 0;
}

/* sent_context reports the traceparent sk_msg put in this write. */
static __always_inline void sent_context(struct wire_event *e, __u64 id)
{
	struct wire_sent *ws = bpf_map_lookup_elem(&wire_sent, &id);

	if (!ws)
		return;
	if (ws->conn.lport == e->conn.lport && ws->conn.rport == e->conn.rport) {
		e->ctx = ws->sc;
		e->ctx_kind = CTX_SENT;
	}
	bpf_map_delete_elem(&wire_sent, &id);
}

/* go_parent gives a Go target's write the server span its goroutine serves. */
static __always_inline void go_parent(struct wire_event *e, struct wire_proc *wp, __u32 tgid)
{
	struct goroutine_key k = {.tgid = tgid};
	struct server_inflight *p;
	void *g = current_g();

	if (!g)
		return;
	k.goid = read_s64(g + wp->g.goid);
	p = k.goid ? serving(g, &wp->g, &k) : 0;
	if (!p)
		return;
	__builtin_memcpy(e->ctx.trace_id, p->sc.trace_id, 16);
	__builtin_memcpy(e->ctx.span_id, p->sc.span_id, 8);
	e->ctx.flags = p->sc.flags;
	e->ctx_kind = CTX_PARENT;
}

static __always_inline int leave(struct trace_event_raw_sys_exit *ctx, __u32 kind, __u16 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, zero = 0, n;
	struct wire_event *e;
	struct pt_regs *regs;
	__u64 fd, buf;

	struct wire_proc *wp;

	if (ctx->ret <= 0 || !(wp = bpf_map_lookup_elem(&wire_procs, &tgid)))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	e = bpf_map_lookup_elem(&wire_scratch, &zero);
	if (!regs || !e)
		return 0;
	fd = regs->di;
	buf = regs->si;
	if (socket_tuple(fd, &e->conn))
		return 0;
	n = kind == BUF_NONE ? 0 : copy_bytes(e, buf, kind, ctx->ret);
	e->ctx_kind = CTX_NONE;
	e->go = wp->flags & WIRE_GO ? 1 : 0;
	if (e->go) {
		if (dir == WIRE_OUT)
			go_parent(e, wp, tgid);
	} else if (dir == WIRE_IN) {
		begin_request(e, n, id);
	} else {
		if (n >= 8)
			begin_response(e, id);
		sent_context(e, id);
	}
	e->ts = bpf_ktime_get_ns();
	e->len = ctx->ret;
	e->pid = tgid;
	e->tid = id;
	e->fd = fd;
	e->dir = dir;
	if (n > WIRE_CAP)
		n = WIRE_CAP;
	e->size = n;
	asm volatile("%[n] &= 2047" : [n] "+r"(n)); /* for the verifier, as above */
	output(&wire_events, e, offsetof(struct wire_event, data) + n);
	return 0;
}

#define WIRE_SYSCALL(name, kind, dir)                                              \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                 \
	int wire_exit_##name(struct trace_event_raw_sys_exit *ctx)                 \
	{                                                                          \
		return leave(ctx, kind, dir);                                      \
	}

WIRE_SYSCALL(read, BUF_PLAIN, WIRE_IN)
WIRE_SYSCALL(recvfrom, BUF_PLAIN, WIRE_IN)
WIRE_SYSCALL(readv, BUF_IOV, WIRE_IN)
WIRE_SYSCALL(recvmsg, BUF_MSG, WIRE_IN)
WIRE_SYSCALL(write, BUF_PLAIN, WIRE_OUT)
WIRE_SYSCALL(sendto, BUF_PLAIN, WIRE_OUT)
WIRE_SYSCALL(writev, BUF_IOV, WIRE_OUT)
WIRE_SYSCALL(sendmsg, BUF_MSG, WIRE_OUT)
WIRE_SYSCALL(sendfile64, BUF_NONE, WIRE_OUT) /* out_fd first: the socket */

SEC("tracepoint/syscalls/sys_enter_close")
int wire_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, zero = 0;
	struct wire_event *e;

	if (!bpf_map_lookup_elem(&wire_procs, &tgid))
		return 0;
	e = bpf_map_lookup_elem(&wire_scratch, &zero);
	if (!e || socket_tuple(ctx->args[0], &e->conn))
		return 0;
	e->ts = bpf_ktime_get_ns();
	e->len = 0;
	e->pid = tgid;
	e->tid = id;
	e->fd = ctx->args[0];
	e->dir = WIRE_CLOSE;
	e->size = 0;
	e->ctx_kind = CTX_NONE;
	e->go = 0;
	output(&wire_events, e, offsetof(struct wire_event, data));
	return 0;
}
