// SPDX-License-Identifier: GPL-2.0
//go:build ignore
/* google.golang.org/grpc spans, unary and streaming: one per stream (server)
 * or per attempt (client). Every uprobe sits on the emulated PUSH RBP.
 * Server (2 hits per call):
 *   grpc.(*Server).handleStream          start on the goroutine that runs
 *                                        the handler: method, stream id,
 *                                        incoming traceparent (metadata)
 *   transport.(*http2Server).writeStatus end: status code, addresses
 *                                        (WriteStatus before v1.69)
 * Client (2 hits per attempt):
 *   grpc.(*clientStream).newAttemptLocked  start on the caller's goroutine
 *   grpc.(*csAttempt).finish               end (first call only): status
 *                                          from the error, stream id, addresses
 * HTTP/2 headers cannot be rewritten under lockdown, so a server span with
 * no incoming traceparent is marked FLAG_LINK_PENDING; user space joins it
 * with the client span of the same connection and stream id. */
#include "common.h"
#include "chunk.h"
#include "gomap.h"
#include "goctx.h"
#include "w3c.h"
#include "h2ctx.h"

struct grpc_offsets {
	struct gomap_offsets maps;
	struct g_offsets g;
	__u64 stream_indirect;  /* Server/ClientStream embeds *Stream (v1.69-v1.76) */
	__u64 stream_ctx;       /* transport.Stream.ctx (context.Context) */
	__u64 stream_method;
	__u64 stream_id;
	__u64 valuectx_val;     /* context.valueCtx.val: the incoming metadata.MD */
	__u64 h2s_peer;         /* http2Server.peer (peer.Peer) */
	__u64 peer_addr;        /* peer.Peer.Addr (net.Addr) */
	__u64 peer_local_addr;
	__u64 h2c_remote_addr;  /* http2Client.remoteAddr (net.Addr) */
	__u64 h2c_local_addr;
	__u64 tcpaddr_ip;       /* net.TCPAddr.IP ([]byte) */
	__u64 tcpaddr_port;
	__u64 status_s;         /* internal/status.Status.s (*spb.Status) */
	__u64 spb_code;         /* genproto rpc/status.Status.Code */
	__u64 spb_message;      /* genproto rpc/status.Status.Message */
	__u64 error_s;          /* internal/status.Error.s (*Status) */
	__u64 cs_callhdr;       /* grpc.clientStream.callHdr (*CallHdr) */
	__u64 callhdr_method;
	__u64 attempt_cs;       /* grpc.csAttempt.cs */
	__u64 attempt_transport; /* csAttempt.t / transport (ClientTransport) */
	__u64 attempt_stream;   /* csAttempt.s / transportStream */
	__u64 attempt_finished;
	/* Propagation: the loopy writer's hook finds the call whose stream it
	 * is about to open. */
	__u64 cs_ctx;            /* grpc.clientStream.ctx (context.Context) */
	__u64 hdr_stream_id;     /* headerFrame (clientHeaders since v1.83).streamID */
	__u64 hdr_hf;            /* .hf ([]hpack.HeaderField) */
	__u64 hdr_on_orphaned;   /* .onOrphaned: NewStream's cleanup, capturing only its stream */
	__u64 stream_ct;         /* the stream's transport: ClientStream.ct (v1.69+) or Stream.ct */
	__u64 stream_ct_iface;   /* Stream.ct is a ClientTransport interface (before v1.69) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct grpc_offsets);
} grpc_procs SEC(".maps");

struct ptr_key {
	__u64 ptr;
	__u32 tgid;
	__u32 _pad;
};

struct grpc_server_call {
	__u64 start_ns;
	struct span_ctx sc;
	struct go_string method;     /* alive as long as the stream */
	struct go_string tracestate;
	__u64 goid;                  /* the handler's goroutine */
};

/* Server streams by *Stream: writeStatus may run on another goroutine (a
 * streaming handler's sender). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ptr_key);
	__type(value, struct grpc_server_call);
} grpc_server_calls SEC(".maps");

struct grpc_client_call {
	__u64 start_ns;
	struct span_ctx sc;
	__u64 ctx; /* cs.ctx's data pointer: its key in grpc_call_ctxs */
};

/* Client attempts by *clientStream: the end may run on grpc's watcher
 * goroutine when the call's context ends. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ptr_key);
	__type(value, struct grpc_client_call);
} grpc_client_calls SEC(".maps");

/* Client calls by their context (cs.ctx, a *cancelCtx made for the call):
 * the stream's context derives from it, and the loopy writer sees only the
 * stream. */
struct grpc_call_ctx {
	__u64 when;
	__u64 cs;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ptr_key);
	__type(value, struct grpc_call_ctx);
} grpc_call_ctxs SEC(".maps");

enum grpc_kind {
	GRPC_SERVER = 1,
	GRPC_CLIENT = 2,
};

#define METHOD_MAX 128
#define TRACESTATE_MAX 128
#define MESSAGE_MAX 128

/* An endpoint of the call's TCP connection (a net.TCPAddr). */
struct endpoint {
	__u8 ip[16];
	__u16 port;
	__u8 ip_len; /* 4 or 16; 0: unknown */
	__u8 _pad[5];
};

struct grpc_event {
	__u32 kind; /* enum grpc_kind */
	__u32 pid;
	__u64 start_ns; /* CLOCK_MONOTONIC */
	__u64 end_ns;
	struct span_ctx sc;
	struct endpoint local;
	struct endpoint remote;
	__s64 code;       /* grpc status code */
	__u32 stream_id;  /* HTTP/2 stream id: with the addresses, joins client and server */
	__u32 _pad;
	__s64 method_len;
	__s64 tracestate_len;
	__s64 message_len; /* the status message */
	char method[METHOD_MAX];
	char tracestate[TRACESTATE_MAX];
	char message[MESSAGE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* Calls are rarer than HTTP requests; every ring's pages stay resident. */
	__uint(max_entries, 1 << 18);
} grpc_events SEC(".maps");

EXPORT_STRUCT(grpc_event);
const enum grpc_kind *__export_grpc_kind __attribute__((unused));

/* The *Stream behind a server or client stream pointer. */
static __always_inline void *stream_base(struct grpc_offsets *o, void *s)
{
	return o->stream_indirect ? read_ptr(s) : s;
}

static __always_inline __u32 stream_id(struct grpc_offsets *o, void *s)
{
	__u32 id = 0;

	if (s && bpf_probe_read_user(&id, sizeof(id), stream_base(o, s) + o->stream_id))
		count(STAT_READ_FAILED);
	return id;
}

/* read_endpoint reads the *net.TCPAddr in the net.Addr interface at iface. */
static __always_inline void read_endpoint(struct grpc_offsets *o, void *iface, struct endpoint *ep)
{
	void *addr = read_ptr(iface + 8);
	struct go_string ip; /* []byte: pointer and length first */

	if (!addr || bpf_probe_read_user(&ip, sizeof(ip), addr + o->tcpaddr_ip))
		return;
	if (ip.len != 4 && ip.len != 16)
		return; /* not a TCP address (a unix socket) */
	if (bpf_probe_read_user(ep->ip, ip.len & 31, (void *)ip.ptr))
		return;
	ep->ip_len = ip.len;
	ep->port = read_s64(addr + o->tcpaddr_port);
}

/* read_status fills the code and message of a *status.Status (nil: OK). */
static __always_inline void read_status(struct grpc_offsets *o, void *st, struct grpc_event *e)
{
	void *spb;
	__s32 code = 0;

	e->code = 0;
	e->message_len = 0;
	if (!st)
		return;
	spb = read_ptr(st + o->status_s);
	if (!spb)
		return;
	if (bpf_probe_read_user(&code, sizeof(code), spb + o->spb_code))
		count(STAT_READ_FAILED);
	e->code = code;
	e->message_len = read_go_string(e->message, MESSAGE_MAX, spb + o->spb_message);
}

/* ---------------------------------------------------------------- server */

/* func (s *Server) handleStream(t transport.ServerTransport, stream *Stream) */
SEC("uprobe/google.golang.org/grpc.(*Server).handleStream")
int uprobe_Server_handleStream(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ptr_key sk = {.tgid = tgid};
	struct grpc_server_call c = {};
	struct server_inflight si = {};
	struct goroutine_key k = {};
	struct w3c_headers h = {};
	struct grpc_offsets *o;
	void *base, *vctx;

	o = bpf_map_lookup_elem(&grpc_procs, &tgid);
	if (!o || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	c.start_ns = bpf_ktime_get_ns();
	c.goid = k.goid;
	sk.ptr = (__u64)GO_ARG4(ctx);
	base = stream_base(o, (void *)sk.ptr);
	if (base && bpf_probe_read_user(&c.method, sizeof(c.method), base + o->stream_method))
		count(STAT_READ_FAILED);
	/* The stream's context is the incoming metadata's valueCtx. */
	vctx = base ? read_ptr(base + o->stream_ctx + 8) : 0;
	if (vctx)
		find_w3c_headers(read_ptr(vctx + o->valuectx_val + 8), &o->maps, &h);
	if (server_span(&c.sc, h.traceparent))
		c.tracestate = h.tracestate;
	else
		c.sc.flags |= FLAG_LINK_PENDING;
	if (bpf_map_update_elem(&grpc_server_calls, &sk, &c, BPF_ANY))
		count(STAT_MAP_FULL);
	/* Calls the handler makes are its children. */
	si.start_ns = c.start_ns;
	si.sc = c.sc;
	if (bpf_map_update_elem(&go_server_spans, &k, &si, BPF_ANY))
		count(STAT_MAP_FULL);
	return 0;
}

/* func (t *http2Server) writeStatus(s *Stream, st *status.Status) error */
SEC("uprobe/google.golang.org/grpc/internal/transport.(*http2Server).writeStatus")
int uprobe_http2Server_writeStatus(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ptr_key sk = {.tgid = tgid, .ptr = (__u64)GO_ARG2(ctx)};
	struct goroutine_key k = {.tgid = tgid};
	struct grpc_server_call *c;
	struct grpc_offsets *o;
	struct grpc_event *e;
	void *peer;

	o = bpf_map_lookup_elem(&grpc_procs, &tgid);
	if (!o)
		return 0;
	c = bpf_map_lookup_elem(&grpc_server_calls, &sk);
	if (!c)
		return 0; /* a second status for the stream: grpc drops it too */
	k.goid = c->goid;
	bpf_map_delete_elem(&go_server_spans, &k);
	e = bpf_ringbuf_reserve(&grpc_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		bpf_map_delete_elem(&grpc_server_calls, &sk);
		return 0;
	}
	__builtin_memset(&e->local, 0, sizeof(e->local));
	__builtin_memset(&e->remote, 0, sizeof(e->remote));
	e->kind = GRPC_SERVER;
	e->pid = tgid;
	e->start_ns = c->start_ns;
	e->end_ns = bpf_ktime_get_ns();
	e->sc = c->sc;
	read_status(o, GO_ARG3(ctx), e);
	e->stream_id = stream_id(o, (void *)sk.ptr);
	e->method_len = read_str(e->method, METHOD_MAX, c->method);
	e->tracestate_len = read_str(e->tracestate, TRACESTATE_MAX, c->tracestate);
	bpf_map_delete_elem(&grpc_server_calls, &sk);
	/* func (t *http2Server): RAX is certainly the HTTP/2 transport here. */
	peer = GO_ARG1(ctx) + o->h2s_peer;
	read_endpoint(o, peer + o->peer_addr, &e->remote);
	read_endpoint(o, peer + o->peer_local_addr, &e->local);
	submit(&grpc_events, e);
	return 0;
}

/* ---------------------------------------------------------------- client */

/* func (cs *clientStream) newAttemptLocked(isTransparent bool) */
SEC("uprobe/google.golang.org/grpc.(*clientStream).newAttemptLocked")
int uprobe_clientStream_newAttemptLocked(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ptr_key ck = {.tgid = tgid, .ptr = (__u64)GO_ARG1(ctx)};
	struct grpc_client_call c = {};
	struct goroutine_key k = {};
	struct grpc_offsets *o;

	o = bpf_map_lookup_elem(&grpc_procs, &tgid);
	if (!o || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	c.start_ns = bpf_ktime_get_ns();
	child_span(ctx, &o->g, &k, &c.sc);
	c.ctx = (__u64)read_ptr((void *)ck.ptr + o->cs_ctx + 8);
	if (bpf_map_update_elem(&grpc_client_calls, &ck, &c, BPF_ANY))
		count(STAT_MAP_FULL);
	if (c.ctx) {
		struct ptr_key xk = {.tgid = tgid, .ptr = c.ctx};
		struct grpc_call_ctx x = {.when = c.start_ns, .cs = ck.ptr};

		bpf_map_update_elem(&grpc_call_ctxs, &xk, &x, BPF_ANY);
	}
	return 0;
}

/* func (a *csAttempt) finish(err error): the first call ends the attempt. */
SEC("uprobe/google.golang.org/grpc.(*csAttempt).finish")
int uprobe_csAttempt_finish(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ptr_key ck = {.tgid = tgid};
	struct grpc_client_call *c;
	struct grpc_offsets *o;
	struct grpc_event *e;
	void *a = GO_ARG1(ctx), *err_data = GO_ARG3(ctx), *h2c, *hdr;
	__u8 finished = 1;

	o = bpf_map_lookup_elem(&grpc_procs, &tgid);
	if (!o)
		return 0;
	if (bpf_probe_read_user(&finished, 1, a + o->attempt_finished) || finished)
		return 0;
	ck.ptr = (__u64)read_ptr(a + o->attempt_cs);
	c = bpf_map_lookup_elem(&grpc_client_calls, &ck);
	if (!c)
		return 0;
	e = bpf_ringbuf_reserve(&grpc_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		bpf_map_delete_elem(&grpc_client_calls, &ck);
		return 0;
	}
	__builtin_memset(&e->local, 0, sizeof(e->local));
	__builtin_memset(&e->remote, 0, sizeof(e->remote));
	e->kind = GRPC_CLIENT;
	e->pid = tgid;
	e->start_ns = c->start_ns;
	e->end_ns = bpf_ktime_get_ns();
	e->sc = c->sc;
	e->tracestate_len = 0;
	if (c->ctx) {
		struct ptr_key xk = {.tgid = tgid, .ptr = c->ctx};

		bpf_map_delete_elem(&grpc_call_ctxs, &xk);
	}
	bpf_map_delete_elem(&grpc_client_calls, &ck);
	/* err is nil or a *status.Error (user space checks the code's range). */
	read_status(o, 0, e);
	if (GO_ARG2(ctx) && err_data)
		read_status(o, read_ptr(err_data + o->error_s), e);
	else if (GO_ARG2(ctx))
		e->code = -1;
	e->stream_id = stream_id(o, read_ptr(a + o->attempt_stream));
	hdr = read_ptr((void *)ck.ptr + o->cs_callhdr);
	e->method_len = hdr ? read_go_string(e->method, METHOD_MAX, hdr + o->callhdr_method) : 0;
	h2c = read_ptr(a + o->attempt_transport + 8);
	if (h2c) {
		read_endpoint(o, h2c + o->h2c_local_addr, &e->local);
		read_endpoint(o, h2c + o->h2c_remote_addr, &e->remote);
	}
	submit(&grpc_events, e);
	return 0;
}

/* -------------------------------------------------------- propagation */

#define HF_MAX 32 /* header fields looked through for one already there */

/* hf_has_traceparent tells whether the stream's own header fields (a
 * []hpack.HeaderField: Name, Value, Sensitive) carry traceparent. */
static __always_inline int hf_has_traceparent(void *hdr, struct grpc_offsets *o)
{
	struct go_string hf; /* the slice's pointer and length */
	struct {
		__u64 w;   /* "traceparent"'s first 8 bytes, little-endian */
		__u8 e[3]; /* "ent" */
	} __attribute__((packed)) name;

	if (bpf_probe_read_user(&hf, sizeof(hf), hdr + o->hdr_hf))
		return 1; /* cannot tell: leave the stream alone */
	for (int i = 0; i < HF_MAX && i < hf.len; i++) {
		struct go_string n;

		if (bpf_probe_read_user(&n, sizeof(n), (void *)hf.ptr + i * 40))
			return 1;
		if (n.len != sizeof(name))
			continue;
		if (bpf_probe_read_user(&name, sizeof(name), (void *)n.ptr))
			return 1;
		if (name.w == 0x7261706563617274ULL && name.e[0] == 'e' && name.e[1] == 'n' && name.e[2] == 't')
			return 1;
	}
	return hf.len > HF_MAX;
}

/* The context chain from a stream's context up to its call's: each of Go's
 * context types embeds its parent Context first. */
#define CTX_DEPTH 8

/* stream_opening notes the context of the client call whose stream the
 * loopy writer is about to open (hdr: its *headerFrame / *clientHeaders),
 * for sk_msg to add to the stream's HEADERS frame. */
static __always_inline int stream_opening(struct pt_regs *ctx, void *hdr)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct h2_stream_key sk = {.tgid = tgid};
	struct h2_stream_ctx v = {};
	struct grpc_client_call *c;
	struct grpc_call_ctx *x;
	struct grpc_offsets *o;
	struct ptr_key ck = {.tgid = tgid};
	struct endpoint local = {}, remote = {};
	void *s, *t, *cctx;

	o = bpf_map_lookup_elem(&grpc_procs, &tgid);
	if (!o || o->hdr_on_orphaned == OFF_NONE)
		return 0;
	if (bpf_probe_read_user(&sk.stream_id, sizeof(sk.stream_id), hdr + o->hdr_stream_id))
		return 0;
	/* NewStream's cleanup closure captures the stream alone: it is the
	 * word after the closure's code pointer, checked by its id. */
	s = read_ptr(read_ptr(hdr + o->hdr_on_orphaned) + 8);
	if (!s || stream_id(o, s) != sk.stream_id)
		return 0;
	if (hf_has_traceparent(hdr, o))
		return 0;
	cctx = read_ptr(stream_base(o, s) + o->stream_ctx + 8);
	x = 0;
	for (int i = 0; i < CTX_DEPTH && cctx; i++) {
		ck.ptr = (__u64)cctx;
		x = bpf_map_lookup_elem(&grpc_call_ctxs, &ck);
		if (x)
			break;
		cctx = read_ptr(cctx + 8);
	}
	if (!x)
		return 0;
	ck.ptr = x->cs;
	c = bpf_map_lookup_elem(&grpc_client_calls, &ck);
	if (!c)
		return 0;
	t = read_ptr(s + o->stream_ct + (o->stream_ct_iface ? 8 : 0));
	if (!t)
		return 0;
	read_endpoint(o, t + o->h2c_local_addr, &local);
	read_endpoint(o, t + o->h2c_remote_addr, &remote);
	if (!local.ip_len || !remote.ip_len)
		return 0;
	sk.lport = local.port;
	sk.rport = remote.port;
	h2_peer(&sk, remote.ip, remote.ip_len);
	v.when = bpf_ktime_get_ns();
	v.sc = c->sc;
	if (bpf_map_update_elem(&h2_streams, &sk, &v, BPF_ANY))
		count(STAT_MAP_FULL);
	return 0;
}

/* func (l *loopyWriter) originateStream(str *outStream, hdr *headerFrame) error (until v1.82) */
SEC("uprobe/google.golang.org/grpc/internal/transport.(*loopyWriter).originateStream")
int uprobe_loopyWriter_originateStream(struct pt_regs *ctx)
{
	return stream_opening(ctx, GO_ARG3(ctx));
}

/* func (l *loopyWriter) clientHeaderHandler(hdr *clientHeaders) error (since v1.83) */
SEC("uprobe/google.golang.org/grpc/internal/transport.(*loopyWriter).clientHeaderHandler")
int uprobe_loopyWriter_clientHeaderHandler(struct pt_regs *ctx)
{
	return stream_opening(ctx, GO_ARG2(ctx));
}
