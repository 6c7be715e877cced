// SPDX-License-Identifier: GPL-2.0
//go:build ignore
/* Go net/http spans and W3C context propagation. Every uprobe sits on the
 * emulated PUSH RBP of its function.
 * Server (no uprobe hit per request; 1 for a program that may serve TLS):
 *   the read syscall that brings a      start: time, ids (from an incoming
 *   request's head (tracepoint)         traceparent or new), keyed by the
 *                                       goroutine in thread-local storage
 *   net/http.serverHandler.ServeHTTP    instead, in a program that may serve
 *                                       TLS: the same from the *Request
 *   syscall tracepoints, no trap        end: the serving goroutine's write
 *                                       under (*response).finishRequest
 *                                       (found by walking the frame
 *                                       pointers) reads request and status
 *                                       and emits; a response that finished
 *                                       inside the handler (sendfile, Flush)
 *                                       ends at its last output, emitted
 *                                       when the goroutine is back in its
 *                                       connection's loop
 * Client (2 hits per request in a server, 3 where ReadResponse is on):
 *   net/http.(*Transport).roundTrip     start: time, ids; parent = the server
 *                                       span of this goroutine or of the
 *                                       goroutine that started it
 *   net/http.(*persistConn).roundTrip   the connection is known: queue the
 *                                       traceparent for its socket; note the
 *                                       call waits on it
 *   the read of the response's status   end: status from its bytes; emit
 *   line (tracepoint, no trap)
 *   net/http.ReadResponse               instead, in a program that serves
 *                                       no HTTP (no syscall programs) or
 *                                       once it made a call the wire cannot
 *                                       end (TLS, not TCP): attached then
 * HTTP/2 (net/http's bundled http2 and golang.org/x/net/http2, the same
 * code under two packages; each hook a program per package):
 *   (*serverConn).runHandler            server start, on the request's own
 *                                       goroutine
 *   (*responseWriter).handlerDone       server end: status, stream closed?
 *   Transport.roundTrip (x/net used     client start
 *   alone: (*ClientConn).internalRoundTrip)
 *   (*ClientConn).writeHeaders          the call's stream; its traceparent
 *                                       for sk_msg over h2c (h2ctx.h)
 *   (*clientConnReadLoop).handleResponse  client end: :status
 *   (*http2ClientConn).roundTrip        only without the client's offsets:
 *                                       the call is forgotten (no span)
 * Propagation: sock_ops puts target processes' outgoing TCP connections in a
 * SOCKHASH; its sk_msg program inserts the queued traceparent header after
 * the request line of the next request written to that socket, or, on an
 * HTTP/2 connection, appends it to a new stream's header block. */
#include "common.h"
#include "chunk.h"
#include "gomap.h"
#include "goctx.h"
#include "httphead.h"
#include "sampling.h"
#include "sock.h"
#include "w3c.h"
#include "wirectx.h"
#include "h2ctx.h"

enum nethttp_const { BUFIO_WORDS = 8, OUTPUT_FUNCS = 4 };

/* Field offsets of one target process's Go version (from DWARF or the
 * per-version table), keyed by tgid. Presence in this map is also the filter:
 * uprobes are attached per executable file, so non-target processes running
 * the same file reach the probe and leave here. */
struct nethttp_offsets {
	struct gomap_offsets maps;
	struct g_offsets g;
	__u64 request_size; /* bytes of net/http.Request holding every field below */
	__u64 request_method;
	__u64 request_url;
	__u64 request_header;
	__u64 request_proto_major;
	__u64 request_proto_minor;
	__u64 request_host;
	__u64 request_remote_addr;
	__u64 request_tls;
	__u64 request_pattern; /* OFF_NONE before Go 1.23 */
	__u64 request_pat;     /* Go 1.22: *pattern; OFF_NONE before */
	__u64 pattern_str;
	__u64 url_size; /* bytes of net/url.URL holding the fields below */
	__u64 url_scheme;
	__u64 url_user;
	__u64 url_host;
	__u64 url_path;
	__u64 url_raw_query;
	__u64 response_req;    /* server side: net/http.response */
	__u64 response_status;
	__u64 bufio_buf;       /* bufio.Reader: buf, r, w (within BUFIO_WORDS words) */
	__u64 bufio_r;
	__u64 bufio_w;
	__u64 treq_request;    /* net/http.transportRequest's embedded *Request */
	__u64 pconn_conn;      /* net/http.persistConn.conn (net.Conn) */
	__u64 pconn_tls_state;
	__u64 conn_fd;         /* net.conn.fd (*net.TCPConn is a net.conn) */
	__u64 netfd_sysfd;     /* net.netFD.pfd.Sysfd */
	/* 1: leave this process's connections out of the socket map (no
	 * outgoing traceparent): on this kernel a socket in a SOCKHASH answers
	 * FIONREAD from the map's own queue, and the program may ask. */
	__u64 left_alone;
	/* This process's code addresses [lo, hi) of the functions that tell
	 * where a syscall of a serving goroutine is (see where()). */
	__u64 serve_http_lo, serve_http_hi; /* serverHandler.ServeHTTP */
	__u64 finish_lo, finish_hi;         /* (*response).finishRequest */
	__u64 conn_serve_lo, conn_serve_hi; /* (*conn).serve */
	/* The functions through which a handler's response output goes:
	 * (*chunkWriter).Write and .flush, (*response).FlushError and
	 * .ReadFrom (sendfile); [lo, hi), absent ones 0. */
	__u64 output[OUTPUT_FUNCS][2];
	/* 1: a request starts at the read that brings its head (no uprobe);
	 * 0: at serverHandler.ServeHTTP, for a program that may serve TLS
	 * (its heads are encrypted when read). */
	__u64 wire_start;
	__u64 conn_cur_req; /* net/http.conn.curReq: the *response being served */
	/* Ends kept in nethttp_ends for this process (the programs count;
	 * LRU evictions leave it high, which only costs time): while 0, a
	 * read that moved nothing has nothing to end. */
	__u64 kept_ends;
	/* 1: the ReadResponse uprobe is attached for this process (a program
	 * that serves no HTTP, or one that made a TLS call); else a plaintext
	 * call ends at the read of its response's status line. */
	__u64 read_response;
	/* HTTP/2 served by net/http's bundled http2 and by golang.org/x/net/http2
	 * (OFF_NONE when absent): responseWriter.rws, responseWriterState.status
	 * and .stream, stream.state. */
	__u64 h2_rws, h2_status, h2_stream, h2_state;
	__u64 xh2_rws, xh2_status, xh2_stream, xh2_state;
	/* HTTP/2 calls (net/http's bundled client; OFF_NONE: none traced):
	 * http2ClientConn.tconn and .tlsState, http2clientStream.cc and .ID,
	 * http2MetaHeadersFrame.Fields. */
	__u64 h2cc_tconn, h2cc_tls_state, h2cs_cc, h2cs_id, h2mhf_fields;
	/* The same in golang.org/x/net/http2 (ClientConn, clientStream,
	 * MetaHeadersFrame). */
	__u64 xh2cc_tconn, xh2cc_tls_state, xh2cs_cc, xh2cs_id, xh2mhf_fields;
};

const enum nethttp_const *__export_nethttp_const __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct nethttp_offsets);
} nethttp_procs SEC(".maps");

struct client_inflight {
	__u64 start_ns;
	struct span_ctx sc;
	__u64 request; /* *Request as sent (Transport may copy the caller's) */
	struct sock_tuple peer;
	__u8 has_peer;
	/* No span for it: its end cannot be told (a TLS call before
	 * ReadResponse is attached, a response after an interim one in the
	 * same read). */
	__u8 no_end;
	__u8 _pad[2];
	__u32 h2_stream; /* over HTTP/2: its stream, on connection h2_cc */
	__u64 h2_cc;
};

/* Client calls between Transport.roundTrip and their response, by the
 * calling goroutine; a call still here when that goroutine makes its next
 * call or its request ends got no response (transport error). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct goroutine_key);
	__type(value, struct client_inflight);
} nethttp_client_inflight SEC(".maps");

/* A call over HTTP/2 whose stream is known: its response is parsed on the
 * connection's read goroutine, which finds the caller by connection and
 * stream. */
struct h2_call_key {
	__u64 cc; /* *http2ClientConn */
	__u32 tgid;
	__u32 stream_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct h2_call_key);
	__type(value, struct goroutine_key);
} nethttp_h2_calls SEC(".maps");

struct request_key {
	__u64 request;
	__u32 tgid;
	__u32 _pad;
};

/* The response is parsed on the connection's read goroutine: it finds the
 * calling goroutine through the *Request. */
struct client_request {
	__u64 ts;
	struct goroutine_key caller;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct request_key);
	__type(value, struct client_request);
} nethttp_client_requests SEC(".maps");

struct pending_header {
	__u64 ts;
	char line[TRACEPARENT_HEADER_LEN];
	__u8 _pad[2];
};

/* The traceparent line for the next request written to a connection. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sock_tuple);
	__type(value, struct pending_header);
} nethttp_pending SEC(".maps");

/* Outgoing TCP connections of targets, under the sk_msg program. Filled by
 * sock_ops when a target connects, and by user space for connections that
 * existed before the agent started. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_tuple);
	__type(value, __u64);
} nethttp_sockets SEC(".maps");

/* Cookies of sockets a target is connecting (sock_ops sees the connect in
 * the process's context but the established state in softirq). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} nethttp_connecting SEC(".maps");

/* Plaintext calls waiting for their response, by connection, while
 * ReadResponse is not attached: the read that brings the status line ends
 * the call. */
struct client_sock {
	__u64 ts;
	struct goroutine_key caller;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sock_tuple);
	__type(value, struct client_sock);
} nethttp_client_socks SEC(".maps");

/* Processes that made a call the wire cannot end (over TLS, or not over
 * TCP) while ReadResponse is not attached: user space attaches it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} nethttp_need_read_response SEC(".maps");

#define METHOD_MAX 16
#define PATH_MAX_ 128
#define PATTERN_MAX 128
#define HOST_MAX 64
#define REMOTE_MAX 64
#define SCHEME_MAX 8
#define QUERY_MAX 128
#define TRACESTATE_MAX 128

enum event_kind {
	EVENT_SERVER = 1,
	EVENT_CLIENT = 2,
};

/* One finished server request. The *_len fields hold the Go string's full
 * length; the text is cut at the array size. */
struct nethttp_server_event {
	__u32 kind; /* EVENT_SERVER */
	__u32 pid;
	__u64 start_ns; /* CLOCK_MONOTONIC */
	__u64 end_ns;
	struct span_ctx sc;
	__s64 status;
	__s64 proto_major;
	__s64 proto_minor;
	__s64 method_len;
	__s64 path_len;
	__s64 pattern_len;
	__s64 host_len;
	__s64 remote_len;
	__s64 tracestate_len;
	__u8 tls;
	__u8 h2_reset; /* HTTP/2: the stream was closed before the handler returned */
	__u8 _pad[6];
	char method[METHOD_MAX];
	char path[PATH_MAX_];
	char pattern[PATTERN_MAX];
	char host[HOST_MAX];
	char remote[REMOTE_MAX];
	char tracestate[TRACESTATE_MAX];
};

/* One finished client call; status 0 means it got no response, -1 that
 * the status line was not yet buffered. */
struct nethttp_client_event {
	__u32 kind; /* EVENT_CLIENT */
	__u32 pid;
	__u64 start_ns;
	__u64 end_ns;
	struct span_ctx sc;
	struct sock_tuple peer;
	__s64 status;
	__s64 method_len;
	__s64 scheme_len;
	__s64 host_len;
	__s64 path_len;
	__s64 query_len;
	__u8 has_peer;
	__u8 has_user;
	__u8 h2; /* made over HTTP/2 */
	__u8 _pad[5];
	char method[METHOD_MAX];
	char scheme[SCHEME_MAX];
	char host[HOST_MAX];
	char path[PATH_MAX_];
	char query[QUERY_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} nethttp_events SEC(".maps");

EXPORT_STRUCT(nethttp_server_event);
EXPORT_STRUCT(nethttp_client_event);
const enum event_kind *__export_event_kind __attribute__((unused));

/* ---------------------------------------------------------------- server */

/* A zeroed event to insert into nethttp_ends (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nethttp_server_event);
} end_scratch SEC(".maps");

/* The bytes of a read that may start a request, for scan_head (room past
 * HEAD_SCAN for its slack and for the verifier's view of the copy). */
struct head_buf {
	__u8 b[2 * HEAD_SCAN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct head_buf);
} head_scratch SEC(".maps");

static __always_inline void flush_end(struct nethttp_offsets *o, struct goroutine_key *k);

/* Only in a program that may serve TLS (nethttp_offsets.wire_start 0). */
SEC("uprobe/net/http.serverHandler.ServeHTTP")
int uprobe_serverHandler_ServeHTTP(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct server_inflight v = {};
	struct goroutine_key k = {};
	struct nethttp_offsets *o;
	struct w3c_headers h = {};
	void *req;

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	v.start_ns = bpf_ktime_get_ns();
	/* func (sh serverHandler) ServeHTTP(rw ResponseWriter, req *Request):
	 * sh (1 word), rw (itab, data), req. */
	req = GO_ARG4(ctx);
	if (read_s64(req + o->request_proto_major) == 2) {
		/* runHandler starts it, where its package's offsets are known. */
		if (o->h2_rws == OFF_NONE)
			count(STAT_HTTP2_SKIPPED);
		return 0;
	}
	find_w3c_headers(read_ptr(req + o->request_header), &o->maps, &h);
	if (server_span(&v.sc, h.traceparent))
		v.tracestate = h.tracestate;
	v.w = (__u64)GO_ARG3(ctx); /* rw's data word: the *response */
	/* The previous request of this goroutine, if its end is still kept
	 * (nothing was read or closed in between: a buffered next request). */
	flush_end(o, &k);
	if (bpf_map_update_elem(&go_server_spans, &k, &v, BPF_ANY))
		count(STAT_MAP_FULL);
	return 0;
}

/* The start of a request head that came in a read too short to tell
 * (Go >= 1.24 with unencrypted HTTP/2 on reads 14 bytes first, to compare
 * them with the HTTP/2 preface), by goroutine: its next read goes on. */
#define PREFIX_MAX 64
struct head_prefix {
	__u32 len; /* < PREFIX_MAX */
	__u8 b[PREFIX_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct goroutine_key);
	__type(value, struct head_prefix);
} nethttp_prefixes SEC(".maps");

/* begin_request: a read of ret bytes at buf by goroutine k, which serves
 * nothing. When they start an HTTP/1 request head (after what its last
 * read kept, if that was too short to tell), k serves that request from
 * now. (net/http's background read may have taken the connection's first
 * byte: the rest still reads as a head.) Its context is decided here when
 * the whole head is in; else (SERVER_CTX_LATE) the request starts anew at
 * each read of the rest of its head, its context is decided at its first
 * output, and its calls until then have no parent (counted). A read that
 * brings a response's status line may end a client call instead
 * (client_response). 1: started. */
static __always_inline void client_response(struct nethttp_offsets *o, __u32 tgid, __u64 fd, const __u8 *b, __u32 n);

static __always_inline int begin_request(struct nethttp_offsets *o, struct goroutine_key *k, __u64 fd, __u64 buf, long ret)
{
	struct server_inflight v = {.flags = SERVER_WIRE};
	struct head_prefix *pre, keep = {};
	__u32 zero = 0, plen = 0, n;
	struct head_buf *hb = bpf_map_lookup_elem(&head_scratch, &zero);
	struct head_scan s;

	if (!hb)
		return 0;
	pre = bpf_map_lookup_elem(&nethttp_prefixes, k);
	if (pre) {
		__builtin_memcpy(hb->b, pre->b, PREFIX_MAX);
		plen = pre->len & (PREFIX_MAX - 1);
		bpf_map_delete_elem(&nethttp_prefixes, k);
	} else {
		/* The request line's start first: most reads are not one. */
		n = ret < 16 ? ret : 16;
		asm volatile("%[n] &= 31" : [n] "+r"(n));
		if (bpf_probe_read_user(hb->b, n, (void *)buf))
			return 0;
		if (!token_start(hb->b, n)) {
			if (!o->read_response)
				client_response(o, k->tgid, fd, hb->b, n);
			return 0;
		}
		if (!o->wire_start)
			return 0;
	}
	n = ret < HEAD_SCAN - PREFIX_MAX ? ret : HEAD_SCAN - PREFIX_MAX;
	asm volatile("%[n] &= 1023" : [n] "+r"(n)); /* for the verifier: n <= 960 */
	if (bpf_probe_read_user(hb->b + plen, n, (void *)buf))
		return 0;
	n += plen;
	scan_head(&s, hb->b, n, 0);
	if (!s.line_end && n < PREFIX_MAX) {
		if (token_start(hb->b, n)) {
			keep.len = n;
			__builtin_memcpy(keep.b, hb->b, PREFIX_MAX);
			bpf_map_update_elem(&nethttp_prefixes, k, &keep, BPF_ANY);
		}
		return 0;
	}
	/* A request line longer than the scan cannot show its version. */
	if (s.line_end ? !http1_line(&s) : !token_start(hb->b, 16))
		return 0;
	v.start_ns = bpf_ktime_get_ns();
	if (!s.head_end) {
		v.flags |= SERVER_CTX_LATE;
		count(STAT_CTX_LATE);
	} else if (head_span(&v.sc, &s, s.tp_first) && s.ts) {
		v.flags |= SERVER_TRACESTATE;
	}
	if (bpf_map_update_elem(&go_server_spans, k, &v, BPF_ANY)) {
		count(STAT_MAP_FULL);
		return 0;
	}
	return 1;
}

static __always_inline void client_failed(struct goroutine_key *k, __u64 now);

/* fill_request_event fills e from the request's start (in), its *Request
 * r and its end; e->status is the caller's. -1 when r cannot be read. */
static __always_inline int fill_request_event(struct nethttp_server_event *e, struct nethttp_offsets *o,
					      struct server_inflight *in, __u32 tgid, __u64 end, void *r)
{
	void *url, *pat;
	struct chunk *req;

	e->kind = EVENT_SERVER;
	e->pid = tgid;
	e->end_ns = end;
	e->start_ns = in->start_ns;
	e->sc = in->sc;
	e->h2_reset = 0;
	e->tracestate_len = read_str(e->tracestate, TRACESTATE_MAX, in->tracestate);
	req = read_chunk(0, r, o->request_size);
	if (!req)
		return -1;
	e->method_len = read_str(e->method, METHOD_MAX, chunk_string(req, o->request_method));
	e->host_len = read_str(e->host, HOST_MAX, chunk_string(req, o->request_host));
	e->remote_len = read_str(e->remote, REMOTE_MAX, chunk_string(req, o->request_remote_addr));
	e->proto_major = chunk_u64(req, o->request_proto_major);
	e->proto_minor = chunk_u64(req, o->request_proto_minor);
	e->tls = chunk_u64(req, o->request_tls) != 0;
	e->pattern_len = 0;
	if (o->request_pattern != OFF_NONE) {
		e->pattern_len = read_str(e->pattern, PATTERN_MAX, chunk_string(req, o->request_pattern));
	} else if (o->request_pat != OFF_NONE && o->pattern_str != OFF_NONE) {
		pat = (void *)chunk_u64(req, o->request_pat);
		if (pat)
			e->pattern_len = read_go_string(e->pattern, PATTERN_MAX, pat + o->pattern_str);
	}
	url = (void *)chunk_u64(req, o->request_url);
	e->path_len = 0;
	if (url)
		e->path_len = read_go_string(e->path, PATH_MAX_, url + o->url_path);
	return 0;
}

/* fill_server_event fills e from the request's start (in) and its response
 * w, ended at end; -1 when the request cannot be read. */
static __always_inline int fill_server_event(struct nethttp_server_event *e, struct nethttp_offsets *o,
					     struct server_inflight *in, __u32 tgid, __u64 end)
{
	void *w = (void *)in->w;

	e->status = read_s64(w + o->response_status);
	return fill_request_event(e, o, in, tgid, end, read_ptr(w + o->response_req));
}

/* A request's end as of its last output inside the handler, kept until
 * the goroutine shows the response is over: a response finished inside
 * the handler (sendfile, Flush) has nothing left to write at its finish. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct goroutine_key);
	__type(value, struct nethttp_server_event);
} nethttp_ends SEC(".maps");

/* When each goroutine's last request started from the wire ended, and its
 * *response: a response the goroutine serves next without a read in
 * between (no request started) was pipelined, and starts there. */
struct last_end {
	__u64 end_ns;
	__u64 w;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct goroutine_key);
	__type(value, struct last_end);
} nethttp_last SEC(".maps");

/* done forgets goroutine k's request; a call it made that never got its
 * response ends failed at now. */
static __always_inline void done(struct nethttp_offsets *o, struct goroutine_key *k, __u64 now)
{
	bpf_map_delete_elem(&go_server_spans, k);
	if (!bpf_map_delete_elem(&nethttp_ends, k))
		__sync_fetch_and_add(&o->kept_ends, -1);
	client_failed(k, now);
}

/* end_request emits goroutine k's request, ended now (its response's last
 * write, under finishRequest). */
static __always_inline void end_request(struct nethttp_offsets *o, struct goroutine_key *k, struct server_inflight *in)
{
	struct nethttp_server_event *e = bpf_ringbuf_reserve(&nethttp_events, sizeof(*e), 0);
	__u64 now = bpf_ktime_get_ns();
	struct last_end last = {.end_ns = now, .w = in->w};

	if (!e)
		count(STAT_RINGBUF_FULL);
	else if (fill_server_event(e, o, in, k->tgid, now))
		bpf_ringbuf_discard(e, 0);
	else
		submit(&nethttp_events, e);
	if (o->wire_start)
		bpf_map_update_elem(&nethttp_last, k, &last, BPF_ANY);
	done(o, k, now);
}

/* keep_end records goroutine k's request as ended now, by output inside
 * its handler; a later output replaces it. */
static __always_inline void keep_end(struct nethttp_offsets *o, struct goroutine_key *k, struct server_inflight *in)
{
	struct nethttp_server_event *e = bpf_map_lookup_elem(&nethttp_ends, k);

	if (!e) {
		__u32 zero = 0;
		struct nethttp_server_event *blank = bpf_map_lookup_elem(&end_scratch, &zero);

		if (!blank || bpf_map_update_elem(&nethttp_ends, k, blank, BPF_NOEXIST))
			return;
		__sync_fetch_and_add(&o->kept_ends, 1);
		e = bpf_map_lookup_elem(&nethttp_ends, k);
		if (!e)
			return;
	}
	fill_server_event(e, o, in, k->tgid, bpf_ktime_get_ns());
}

/* flush_end emits goroutine k's request from its kept end, if it has an
 * open request; one with no output at all is counted. */
static __always_inline void flush_end(struct nethttp_offsets *o, struct goroutine_key *k)
{
	struct nethttp_server_event *kept, *e;
	__u64 now = bpf_ktime_get_ns();

	if (!bpf_map_lookup_elem(&go_server_spans, k))
		return;
	kept = bpf_map_lookup_elem(&nethttp_ends, k);
	if (!kept) {
		count(STAT_NO_END);
	} else if ((e = bpf_ringbuf_reserve(&nethttp_events, sizeof(*e), 0))) {
		__builtin_memcpy(e, kept, sizeof(*e));
		submit(&nethttp_events, e);
	} else {
		count(STAT_RINGBUF_FULL);
	}
	done(o, k, now);
}

/* ------------------------------------------------------------- HTTP/2 */

/* What the HTTP/2 hooks read, in the package of the program that runs:
 * net/http's bundled http2 or golang.org/x/net/http2, the same code. */
struct h2_offsets {
	__u64 rws, status, stream, state;                 /* server */
	__u64 tconn, tls_state, cs_cc, cs_id, mhf_fields; /* client */
};

static __always_inline struct h2_offsets h2_bundled(struct nethttp_offsets *o)
{
	return (struct h2_offsets){o->h2_rws, o->h2_status, o->h2_stream, o->h2_state,
				   o->h2cc_tconn, o->h2cc_tls_state, o->h2cs_cc, o->h2cs_id, o->h2mhf_fields};
}

static __always_inline struct h2_offsets h2_xnet(struct nethttp_offsets *o)
{
	return (struct h2_offsets){o->xh2_rws, o->xh2_status, o->xh2_stream, o->xh2_state,
				   o->xh2cc_tconn, o->xh2cc_tls_state, o->xh2cs_cc, o->xh2cs_id, o->xh2mhf_fields};
}

/* H2_HOOK defines the two programs of one HTTP/2 hook, each calling fn with
 * its package's offsets. */
#define H2_HOOK(bundled_sec, bundled, xnet_sec, xnet, fn)                                   \
	SEC(bundled_sec)                                                                    \
	int bundled(struct pt_regs *ctx)                                                    \
	{                                                                                   \
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;                              \
		struct nethttp_offsets *o = bpf_map_lookup_elem(&nethttp_procs, &tgid);     \
		return o ? fn(ctx, o, tgid, h2_bundled(o)) : 0;                             \
	}                                                                                   \
	SEC(xnet_sec)                                                                       \
	int xnet(struct pt_regs *ctx)                                                       \
	{                                                                                   \
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;                              \
		struct nethttp_offsets *o = bpf_map_lookup_elem(&nethttp_procs, &tgid);     \
		return o ? fn(ctx, o, tgid, h2_xnet(o)) : 0;                                \
	}

/* h2_start starts the request a runHandler goroutine serves over HTTP/2:
 * func (sc *serverConn) runHandler(rw *responseWriter, req *Request,
 * handler func(ResponseWriter, *Request)). */
static __always_inline int h2_start(struct pt_regs *ctx, struct nethttp_offsets *o, __u32 tgid, struct h2_offsets x)
{
	struct server_inflight v = {.flags = SERVER_H2};
	struct goroutine_key k = {};
	struct w3c_headers h = {};
	void *req = GO_ARG3(ctx), *rws;

	if (x.rws == OFF_NONE || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	v.start_ns = bpf_ktime_get_ns();
	rws = read_ptr(GO_ARG2(ctx) + x.rws);
	if (!rws || !req)
		return 0;
	find_w3c_headers(read_ptr(req + o->request_header), &o->maps, &h);
	if (server_span(&v.sc, h.traceparent))
		v.tracestate = h.tracestate;
	v.w = (__u64)rws;
	v.req = (__u64)req;
	if (bpf_map_update_elem(&go_server_spans, &k, &v, BPF_ANY))
		count(STAT_MAP_FULL);
	return 0;
}

#define H2_STATE_CLOSED 4 /* stateClosed in both packages' streamState */

/* h2_done ends the request of the goroutine whose handler returned:
 * func (w *responseWriter) handlerDone(), deferred by runHandler. Status 0:
 * nothing written yet, net/http now sends 200 unless the stream is gone
 * (closed before the handler returned: reset by the client, or the
 * connection lost). */
static __always_inline int h2_done(struct pt_regs *ctx, struct nethttp_offsets *o, __u32 tgid, struct h2_offsets x)
{
	struct goroutine_key k = {};
	struct server_inflight *in;
	struct nethttp_server_event *e;
	__u64 now = bpf_ktime_get_ns();
	void *rws;

	if (x.rws == OFF_NONE || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	in = bpf_map_lookup_elem(&go_server_spans, &k);
	if (!in || !(in->flags & SERVER_H2))
		return 0;
	e = bpf_ringbuf_reserve(&nethttp_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
	} else if (fill_request_event(e, o, in, tgid, now, (void *)in->req)) {
		bpf_ringbuf_discard(e, 0);
	} else {
		rws = (void *)in->w;
		e->status = read_s64(rws + x.status);
		e->h2_reset = read_s64(read_ptr(rws + x.stream) + x.state) == H2_STATE_CLOSED;
		submit(&nethttp_events, e);
	}
	done(o, &k, now);
	return 0;
}

H2_HOOK("uprobe/net/http.(*http2serverConn).runHandler", uprobe_http2serverConn_runHandler,
	"uprobe/golang.org/x/net/http2.(*serverConn).runHandler", uprobe_xhttp2_serverConn_runHandler, h2_start)

H2_HOOK("uprobe/net/http.(*http2responseWriter).handlerDone", uprobe_http2responseWriter_handlerDone,
	"uprobe/golang.org/x/net/http2.(*responseWriter).handlerDone", uprobe_xhttp2_responseWriter_handlerDone, h2_done)

/* resolve gives a request started from the wire its *response, the one its
 * connection serves now (c.curReq), found at its first output; and decides
 * a context its head did not give, from the request's headers. -1: w is
 * not known. */
static __always_inline int resolve(struct nethttp_offsets *o, struct server_inflight *in, __u64 conn)
{
	struct w3c_headers h = {};

	if (!in->w && (!conn || !(in->w = (__u64)read_ptr((void *)conn + o->conn_cur_req))))
		return -1;
	if (!(in->flags & (SERVER_CTX_LATE | SERVER_TRACESTATE)))
		return 0;
	find_w3c_headers(read_ptr(read_ptr((void *)in->w + o->response_req) + o->request_header), &o->maps, &h);
	if (!(in->flags & SERVER_CTX_LATE) || server_span(&in->sc, h.traceparent))
		in->tracestate = h.tracestate;
	in->flags = SERVER_WIRE;
	return 0;
}

enum where {
	WHERE_UNKNOWN = 0,
	WHERE_HANDLER = 1, /* under serverHandler.ServeHTTP, not the response's output */
	WHERE_FINISH = 2,  /* under (*response).finishRequest */
	WHERE_CONN = 3,    /* in the connection's loop, between requests */
	WHERE_OUTPUT = 4,  /* the handler's response output (Write, Flush, sendfile) */
};

#define FRAMES_MAX 24 /* deeper handler code is WHERE_UNKNOWN: no end from it */
#define STACK_SNAP 2048 /* a power of 2: the masks below */

/* The stack above a syscall's frame pointer, copied at once: one copy costs
 * less than the frames it holds read one by one. */
struct stack_snap {
	__u8 b[STACK_SNAP + 16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_snap);
} stack_scratch SEC(".maps");

/* stack_word reads the 8 bytes at address at of the stack: from snap (a
 * copy of the stack from base) when it holds them. */
static __always_inline __u64 stack_word(struct stack_snap *snap, __u64 base, __u64 at)
{
	__u64 v = 0, i = at - base;

	if (snap && i < STACK_SNAP) {
		asm volatile("%[i] &= 2047" : [i] "+r"(i)); /* for the verifier */
		__builtin_memcpy(&v, snap->b + i, 8);
	} else if (bpf_probe_read_user(&v, 8, (void *)at)) {
		return 0;
	}
	return v;
}

/* where walks the frame pointers (Go keeps them on amd64) from the
 * syscall up to the first return address in one of the functions that say
 * where a serving goroutine is. Given conn, a finishRequest or output
 * syscall walks on to (*conn).serve for its receiver c: live across every
 * call serve makes, so kept in its spill slot, 16 bytes above serve's frame
 * pointer. */
static __always_inline int where(struct nethttp_offsets *o, struct pt_regs *regs, __u64 *conn)
{
	__u64 base = regs->bp, fp = base, ret;
	struct stack_snap *snap;
	int at = WHERE_UNKNOWN;
	__u32 zero = 0;

	snap = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (snap && bpf_probe_read_user(snap->b, STACK_SNAP, (void *)base))
		snap = 0; /* the stack ends closer: frame by frame */
	for (int i = 0; i < FRAMES_MAX; i++) {
		if (!fp || !(ret = stack_word(snap, base, fp + 8)))
			return at;
		if (ret >= o->conn_serve_lo && ret < o->conn_serve_hi) {
			if (conn)
				*conn = stack_word(snap, base, stack_word(snap, base, fp) + 16);
			return at ? at : WHERE_CONN;
		}
		if (!at) {
			if (ret >= o->finish_lo && ret < o->finish_hi)
				at = WHERE_FINISH;
			for (int j = 0; j < OUTPUT_FUNCS; j++)
				if (ret >= o->output[j][0] && ret < o->output[j][1])
					at = WHERE_OUTPUT;
			if (ret >= o->serve_http_lo && ret < o->serve_http_hi)
				return WHERE_HANDLER;
			if (at && !conn)
				return at;
		}
		fp = stack_word(snap, base, fp);
	}
	return at;
}

#define EAGAIN_ 11

enum io { IO_READ, IO_WRITE, IO_CLOSE };

/* pipelined: goroutine k, serving nothing, writes under finishRequest or
 * the handler's output (at) for a response other than the last one it
 * ended: a request pipelined behind that one, read with it. It starts where
 * that one ended, with its context from its headers; its calls had no
 * parent (counted). */
static __always_inline struct server_inflight *pipelined(struct nethttp_offsets *o, struct goroutine_key *k,
							 struct last_end *last, int at, __u64 conn)
{
	struct server_inflight v = {.start_ns = last->end_ns, .flags = SERVER_WIRE | SERVER_CTX_LATE};

	if ((at != WHERE_FINISH && at != WHERE_OUTPUT) || !conn)
		return 0;
	v.w = (__u64)read_ptr((void *)conn + o->conn_cur_req);
	if (!v.w || v.w == last->w)
		return 0; /* more of the ended response */
	count(STAT_CTX_LATE);
	if (bpf_map_update_elem(&go_server_spans, k, &v, BPF_ANY)) {
		count(STAT_MAP_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&go_server_spans, k);
}

/* serving_io follows a syscall of a goroutine serving an HTTP/1 request:
 * output under finishRequest ends it; the handler's response output is
 * kept as its end so far, or ends it when it failed (the peer is gone:
 * net/http writes nothing more); its other I/O (a database) is none of the
 * response's; any syscall back in the connection's loop ends it with what
 * was kept. A read by a goroutine serving nothing may start a request
 * (begin_request). ret: what the syscall returned. */
static __always_inline int serving_io(enum io io, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct goroutine_key k = {.tgid = tgid};
	struct server_inflight *in;
	struct nethttp_offsets *o;
	struct last_end *last = 0;
	struct pt_regs *regs;
	__u64 conn = 0;
	int at;
	void *g;

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || !o->finish_hi)
		return 0;
	/* A read that moved nothing (net/http's next read after a response,
	 * mostly) only matters to an end kept. */
	if (io == IO_READ && ret <= 0 && !o->kept_ends)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs || !(g = current_g()))
		return 0;
	k.goid = read_s64(g + o->g.goid);
	in = bpf_map_lookup_elem(&go_server_spans, &k);
	if (in && in->flags & SERVER_H2)
		return 0; /* its handler's return ends it */
	if (io == IO_READ) {
		if (in && in->flags & SERVER_CTX_LATE && !in->w) {
			/* More of its head (not the handler reading the body). */
			if (ret > 0 && where(o, regs, 0) == WHERE_CONN)
				in->start_ns = bpf_ktime_get_ns();
			return 0;
		}
		/* While serving, a read matters only with an end kept and the
		 * goroutine back in its connection's loop. */
		if (in) {
			if (!bpf_map_lookup_elem(&nethttp_ends, &k) || where(o, regs, 0) != WHERE_CONN)
				return 0;
			flush_end(o, &k);
		}
		if (ret > 0 && (o->wire_start || !o->read_response) && !begin_request(o, &k, regs->di, regs->si, ret))
			bpf_map_delete_elem(&nethttp_last, &k); /* a read: nothing pipelined */
		return 0;
	}
	if (!in) {
		if (io != IO_WRITE || !o->wire_start || !(last = bpf_map_lookup_elem(&nethttp_last, &k)))
			return 0;
	} else if (!(in->w || in->flags & SERVER_WIRE)) {
		return 0; /* not net/http's (gRPC's) */
	}
	at = where(o, regs, in && in->w ? 0 : &conn);
	if (at == WHERE_CONN)
		flush_end(o, &k);
	if (io != IO_WRITE || (at != WHERE_FINISH && at != WHERE_OUTPUT))
		return 0;
	if (!in && !(in = pipelined(o, &k, last, at, conn)))
		return 0;
	if (resolve(o, in, conn))
		return 0;
	if (at == WHERE_FINISH || (ret < 0 && ret != -EAGAIN_))
		end_request(o, &k, in);
	else
		keep_end(o, &k, in);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_write")
int nethttp_exit_write(struct trace_event_raw_sys_exit *ctx) { return serving_io(IO_WRITE, ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_writev")
int nethttp_exit_writev(struct trace_event_raw_sys_exit *ctx) { return serving_io(IO_WRITE, ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int nethttp_exit_sendfile64(struct trace_event_raw_sys_exit *ctx) { return serving_io(IO_WRITE, ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_read")
int nethttp_exit_read(struct trace_event_raw_sys_exit *ctx) { return serving_io(IO_READ, ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_close")
int nethttp_enter_close(struct trace_event_raw_sys_enter *ctx) { return serving_io(IO_CLOSE, 0); }

/* ---------------------------------------------------------------- client */

/* emit_client sends the span of call c; req is the request as sent (its
 * fields are read now), status 0 when there was no response. */
static __always_inline void emit_client(__u32 tgid, struct nethttp_offsets *o, struct client_inflight *c, __s64 status, __u64 end)
{
	struct nethttp_client_event *e;
	struct chunk *url;
	void *req = (void *)c->request;

	e = bpf_ringbuf_reserve(&nethttp_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		return;
	}
	e->kind = EVENT_CLIENT;
	e->pid = tgid;
	e->start_ns = c->start_ns;
	e->end_ns = end;
	e->sc = c->sc;
	e->peer = c->peer;
	e->has_peer = c->has_peer;
	e->h2 = c->h2_cc != 0;
	e->status = status;
	e->method_len = read_go_string(e->method, METHOD_MAX, req + o->request_method);
	url = read_chunk(0, read_ptr(req + o->request_url), o->url_size);
	if (!url) {
		bpf_ringbuf_discard(e, 0);
		return;
	}
	e->scheme_len = read_str(e->scheme, SCHEME_MAX, chunk_string(url, o->url_scheme));
	e->host_len = read_str(e->host, HOST_MAX, chunk_string(url, o->url_host));
	e->path_len = read_str(e->path, PATH_MAX_, chunk_string(url, o->url_path));
	e->query_len = read_str(e->query, QUERY_MAX, chunk_string(url, o->url_raw_query));
	e->has_user = chunk_u64(url, o->url_user) != 0;
	submit(&nethttp_events, e);
}

static __always_inline void client_failed(struct goroutine_key *k, __u64 now)
{
	struct client_inflight *c = bpf_map_lookup_elem(&nethttp_client_inflight, k);
	struct nethttp_offsets *o;

	if (!c)
		return;
	if (c->has_peer)
		bpf_map_delete_elem(&nethttp_client_socks, &c->peer);
	if (c->h2_cc) {
		struct h2_call_key ck = {.cc = c->h2_cc, .tgid = k->tgid, .stream_id = c->h2_stream};

		bpf_map_delete_elem(&nethttp_h2_calls, &ck);
	}
	o = bpf_map_lookup_elem(&nethttp_procs, &k->tgid);
	if (c->no_end)
		count(STAT_NO_END);
	else if (o)
		emit_client(k->tgid, o, c, 0, now);
	bpf_map_delete_elem(&nethttp_client_inflight, k);
}

/* client_response: a read whose first n bytes (16 at most, at b) may be a
 * status line, on descriptor fd: when a plaintext call waits on that
 * connection (nethttp_client_socks), it ends now with that status. After an
 * interim response (1xx but 101) the final one may be in the same read,
 * unseen: the call ends with no span unless a later read shows it. */
static __always_inline void client_response(struct nethttp_offsets *o, __u32 tgid, __u64 fd, const __u8 *b, __u32 n)
{
	const char v[] = "HTTP/1.";
	struct sock_tuple t = {};
	struct client_inflight *c;
	struct client_sock *cs;
	__s64 status;

	if (n < 12)
		return;
	for (int i = 0; i < sizeof(v) - 1; i++)
		if (b[i] != v[i])
			return;
	if (b[8] != ' ' || b[9] < '1' || b[9] > '5' || b[10] < '0' || b[10] > '9' || b[11] < '0' || b[11] > '9')
		return;
	if (socket_tuple(fd, &t) || !(cs = bpf_map_lookup_elem(&nethttp_client_socks, &t)))
		return;
	status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
	c = bpf_map_lookup_elem(&nethttp_client_inflight, &cs->caller);
	if (status < 200 && status != 101) {
		if (c)
			c->no_end = 1;
		return;
	}
	if (c) {
		emit_client(tgid, o, c, status, bpf_ktime_get_ns());
		bpf_map_delete_elem(&nethttp_client_inflight, &cs->caller);
	}
	bpf_map_delete_elem(&nethttp_client_socks, &t);
}

/* start_call starts goroutine k's call of *Request req, now. */
static __always_inline void start_call(struct pt_regs *ctx, struct nethttp_offsets *o, struct goroutine_key *k, void *req, __u64 now)
{
	struct client_inflight c = {.start_ns = now, .request = (__u64)req};

	child_span(ctx, &o->g, k, &c.sc);
	if (bpf_map_update_elem(&nethttp_client_inflight, k, &c, BPF_ANY))
		count(STAT_MAP_FULL);
}

/* func (t *Transport) roundTrip(req *Request) */
SEC("uprobe/net/http.(*Transport).roundTrip")
int uprobe_Transport_roundTrip(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct goroutine_key k = {};
	struct nethttp_offsets *o;
	__u64 now;

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	now = bpf_ktime_get_ns();
	client_failed(&k, now);
	start_call(ctx, o, &k, GO_ARG2(ctx), now);
	return 0;
}

SEC("uprobe/net/http.(*persistConn).roundTrip")
int uprobe_persistConn_roundTrip(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct request_key rk = {.tgid = tgid};
	struct goroutine_key k = {};
	struct nethttp_offsets *o;
	struct client_inflight *c;
	struct pending_header ph;
	struct client_request cr;
	struct w3c_headers h = {};
	void *pc, *conn, *fd;

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	c = bpf_map_lookup_elem(&nethttp_client_inflight, &k);
	if (!c)
		return 0;
	/* func (pc *persistConn) roundTrip(req *transportRequest) */
	pc = GO_ARG1(ctx);
	c->request = (__u64)read_ptr(GO_ARG2(ctx) + o->treq_request);
	cr.ts = bpf_ktime_get_ns();
	if (o->read_response) {
		rk.request = c->request;
		cr.caller = k;
		if (bpf_map_update_elem(&nethttp_client_requests, &rk, &cr, BPF_ANY))
			count(STAT_MAP_FULL);
	}

	/* Plain TCP only: a TLS connection's bytes cannot be edited, nor
	 * read. The socket is looked up on every call: caching it per
	 * *persistConn would go stale when a new connection reuses a freed
	 * one's address. */
	if (!read_ptr(pc + o->pconn_tls_state)) {
		conn = read_ptr(pc + o->pconn_conn + 8); /* net.Conn's data word: *net.TCPConn */
		fd = conn ? read_ptr(conn + o->conn_fd) : 0;
		if (fd && !socket_tuple(read_s64(fd + o->netfd_sysfd), &c->peer))
			c->has_peer = 1;
	}
	if (!o->read_response) {
		struct client_sock cs = {.ts = cr.ts, .caller = k};

		if (!c->has_peer) {
			/* Its response cannot be read from the wire. */
			c->no_end = 1;
			bpf_map_update_elem(&nethttp_need_read_response, &tgid, &cr.ts, BPF_ANY);
			return 0;
		}
		if (bpf_map_update_elem(&nethttp_client_socks, &c->peer, &cs, BPF_ANY))
			count(STAT_MAP_FULL);
	}
	if (!c->has_peer)
		return 0;
	if (o->left_alone)
		return 0;
	/* An application that sets traceparent itself keeps its own. */
	find_w3c_headers(read_ptr((void *)c->request + o->request_header), &o->maps, &h);
	if (h.traceparent.len)
		return 0;
	ph.ts = cr.ts;
	format_traceparent_header(ph.line, &c->sc);
	if (bpf_map_update_elem(&nethttp_pending, &c->peer, &ph, BPF_ANY))
		count(STAT_MAP_FULL);
	return 0;
}

SEC("uprobe/net/http.ReadResponse")
int uprobe_ReadResponse(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct request_key rk = {.tgid = tgid};
	struct nethttp_offsets *o;
	struct client_inflight *c;
	struct client_request *cr;
	__u64 br[BUFIO_WORDS];
	char line[12];
	__s64 status = -1; /* unknown */

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o)
		return 0;
	/* func ReadResponse(r *bufio.Reader, req *Request): only clients call
	 * it, when the response's first bytes are in r's buffer (the caller
	 * peeked). The status line is read from there: "HTTP/1.1 200". */
	rk.request = (__u64)GO_ARG2(ctx);
	cr = bpf_map_lookup_elem(&nethttp_client_requests, &rk);
	if (!cr)
		return 0;
	if (!bpf_probe_read_user(br, sizeof(br), GO_ARG1(ctx))) {
		__u64 buf = br[o->bufio_buf / 8 % BUFIO_WORDS];
		__s64 r = br[o->bufio_r / 8 % BUFIO_WORDS], w = br[o->bufio_w / 8 % BUFIO_WORDS];

		if (w - r >= (__s64)sizeof(line) && !bpf_probe_read_user(line, sizeof(line), (void *)buf + r) &&
		    line[0] == 'H' && line[8] == ' ' && line[9] >= '1' && line[9] <= '5' &&
		    line[10] >= '0' && line[10] <= '9' && line[11] >= '0' && line[11] <= '9')
			status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	}
	if (status >= 100 && status < 200 && status != 101)
		return 0; /* interim response: the final one follows */
	c = bpf_map_lookup_elem(&nethttp_client_inflight, &cr->caller);
	if (c) {
		emit_client(tgid, o, c, status, bpf_ktime_get_ns());
		bpf_map_delete_elem(&nethttp_client_inflight, &cr->caller);
	}
	bpf_map_delete_elem(&nethttp_client_requests, &rk);
	return 0;
}

/* HTTP/2 calls are not traced yet: forget the call here, so that it is not
 * reported as failed when its goroutine moves on. */
/* Without the offsets of the HTTP/2 client, a call over HTTP/2 gives no
 * span (its end cannot be told), never a failed one. */
SEC("uprobe/net/http.(*http2ClientConn).roundTrip")
int uprobe_http2ClientConn_roundTrip(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct goroutine_key k = {};
	struct nethttp_offsets *o;

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || o->h2cc_tconn != OFF_NONE || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	if (!bpf_map_delete_elem(&nethttp_client_inflight, &k))
		count(STAT_HTTP2_SKIPPED);
	return 0;
}

/* func (cc *ClientConn) writeHeaders(streamID uint32, endStream bool,
 * maxFrameSize int, hdrs []byte) error: the request's stream is known, on
 * the goroutine writing it (the caller's, or one it started). Notes the
 * stream for the response, and for a plaintext connection leaves the
 * call's context for sk_msg to add to the HEADERS frame (h2ctx.h). */
static __always_inline int h2_headers_written(struct pt_regs *ctx, struct nethttp_offsets *o, __u32 tgid, struct h2_offsets x)
{
	struct h2_call_key ck = {.tgid = tgid};
	struct goroutine_key k = {};
	struct w3c_headers h = {};
	struct client_inflight *c;
	struct sock_tuple t = {};
	void *cc = GO_ARG1(ctx), *conn, *fd, *g = GO_G(ctx);

	if (x.tconn == OFF_NONE || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	c = bpf_map_lookup_elem(&nethttp_client_inflight, &k);
	if (!c && o->g.parent_goid != OFF_NONE) {
		k.goid = read_s64(g + o->g.parent_goid);
		c = bpf_map_lookup_elem(&nethttp_client_inflight, &k);
	}
	if (!c || c->h2_cc)
		return 0;
	ck.cc = (__u64)cc;
	ck.stream_id = (__u32)(__u64)GO_ARG2(ctx);
	c->h2_cc = ck.cc;
	c->h2_stream = ck.stream_id;
	if (bpf_map_update_elem(&nethttp_h2_calls, &ck, &k, BPF_ANY))
		count(STAT_MAP_FULL);
	if (o->left_alone || read_ptr(cc + x.tls_state))
		return 0; /* its bytes cannot be edited */
	conn = read_ptr(cc + x.tconn + 8); /* net.Conn's data word: *net.TCPConn */
	fd = conn ? read_ptr(conn + o->conn_fd) : 0;
	if (!fd || socket_tuple(read_s64(fd + o->netfd_sysfd), &t))
		return 0;
	/* An application that sets traceparent itself keeps its own. */
	find_w3c_headers(read_ptr((void *)c->request + o->request_header), &o->maps, &h);
	if (h.traceparent.len)
		return 0;
	struct h2_stream_key sk = {.tgid = tgid, .stream_id = ck.stream_id, .lport = t.lport, .rport = t.rport};
	struct h2_stream_ctx v = {.when = bpf_ktime_get_ns(), .sc = c->sc};

	h2_tuple_peer(&sk, &t);
	if (bpf_map_update_elem(&h2_streams, &sk, &v, BPF_ANY))
		count(STAT_MAP_FULL);
	return 0;
}

H2_HOOK("uprobe/net/http.(*http2ClientConn).writeHeaders", uprobe_http2ClientConn_writeHeaders,
	"uprobe/golang.org/x/net/http2.(*ClientConn).writeHeaders", uprobe_xhttp2_ClientConn_writeHeaders, h2_headers_written)

/* func (rl *clientConnReadLoop) handleResponse(cs *clientStream,
 * f *MetaHeadersFrame) (*Response, error), on the connection's read
 * goroutine: the response's head is in; :status is its first field. */
static __always_inline int h2_response(struct pt_regs *ctx, struct nethttp_offsets *o, __u32 tgid, struct h2_offsets x)
{
	struct h2_call_key ck = {.tgid = tgid};
	struct goroutine_key *caller, k;
	struct client_inflight *c;
	struct go_string fields, name, value;
	void *cs = GO_ARG2(ctx);
	char d[3];
	__s64 status;

	if (x.tconn == OFF_NONE)
		return 0;
	ck.cc = (__u64)read_ptr(cs + x.cs_cc);
	if (bpf_probe_read_user(&ck.stream_id, sizeof(ck.stream_id), cs + x.cs_id))
		return 0;
	caller = bpf_map_lookup_elem(&nethttp_h2_calls, &ck);
	if (!caller)
		return 0;
	k = *caller;
	if (bpf_probe_read_user(&fields, sizeof(fields), GO_ARG3(ctx) + x.mhf_fields) || fields.len < 1 ||
	    bpf_probe_read_user(&name, sizeof(name), (void *)fields.ptr) ||
	    bpf_probe_read_user(&value, sizeof(value), (void *)fields.ptr + 16) ||
	    name.len != 7 || value.len != 3 || bpf_probe_read_user(d, 3, (void *)value.ptr))
		return 0; /* refused by the client: the call fails, ended with its caller's request */
	status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
	if (status < 200)
		return 0; /* interim: the final response follows */
	bpf_map_delete_elem(&nethttp_h2_calls, &ck);
	c = bpf_map_lookup_elem(&nethttp_client_inflight, &k);
	/* The caller's call now must be that stream's (not a later one). */
	if (!c || c->h2_cc != ck.cc || c->h2_stream != ck.stream_id)
		return 0;
	emit_client(tgid, o, c, status, bpf_ktime_get_ns());
	bpf_map_delete_elem(&nethttp_client_inflight, &k);
	return 0;
}

H2_HOOK("uprobe/net/http.(*http2clientConnReadLoop).handleResponse", uprobe_http2clientConnReadLoop_handleResponse,
	"uprobe/golang.org/x/net/http2.(*clientConnReadLoop).handleResponse", uprobe_xhttp2_clientConnReadLoop_handleResponse,
	h2_response)

/* func (cc *ClientConn) internalRoundTrip(req *http.Request, ...) (or
 * roundTrip, RoundTrip: the first not inlined) of x/net's client used on
 * its own (http2.Transport): a call that net/http's Transport.roundTrip did
 * not start starts here, on the caller's goroutine. */
SEC("uprobe/golang.org/x/net/http2.(*ClientConn).internalRoundTrip")
int uprobe_xhttp2_ClientConn_roundTrip(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct goroutine_key k = {};
	struct nethttp_offsets *o;

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || o->xh2cc_tconn == OFF_NONE || !goroutine(ctx, &o->g, &k, tgid))
		return 0;
	if (bpf_map_lookup_elem(&nethttp_client_inflight, &k))
		return 0; /* net/http's Transport started it */
	start_call(ctx, o, &k, GO_ARG2(ctx), bpf_ktime_get_ns());
	return 0;
}

/* ----------------------------------------------------------- propagation */

/* TUPLE_FROM_CTX fills a sock_tuple from a bpf_sock_ops or an sk_msg_md: both
 * name the connection's fields alike (remote port in network order, shifted
 * into the upper half of the word). */
#define TUPLE_FROM_CTX(t, c)                                                              \
	do {                                                                              \
		(t)->family = (c)->family;                                                \
		(t)->lport = (c)->local_port;                                             \
		(t)->rport = bpf_ntohl((c)->remote_port);                                 \
		if ((t)->family == 2) {                                                   \
			__u32 l4 = (c)->local_ip4, r4 = (c)->remote_ip4;                  \
			__builtin_memcpy((t)->local, &l4, 4);                             \
			__builtin_memcpy((t)->remote, &r4, 4);                            \
		} else {                                                                  \
			__u32 l6[4] = {(c)->local_ip6[0], (c)->local_ip6[1], (c)->local_ip6[2], (c)->local_ip6[3]};     \
			__u32 r6[4] = {(c)->remote_ip6[0], (c)->remote_ip6[1], (c)->remote_ip6[2], (c)->remote_ip6[3]}; \
			__builtin_memcpy((t)->local, l6, 16);                             \
			__builtin_memcpy((t)->remote, r6, 16);                            \
		}                                                                         \
	} while (0)

/* ------------------------------------------------------------ HTTP/2 */

/* A Go client connection under sk_msg, followed frame by frame across its
 * writes from the client preface on, so that a new stream's header block
 * can get traceparent (h2_streams says which streams, and their context). */
enum h2_state {
	H2_NEW = 0,    /* made at connect: the first write tells */
	H2_FRAMES = 1, /* framing followed */
};

struct h2_conn {
	__u32 skip;  /* payload bytes of the current frame still to come */
	__u32 cont;  /* a stream whose header block goes on in CONTINUATION frames */
	__u8 state;  /* enum h2_state */
	__u8 have;   /* bytes of a frame header cut by the end of the last write */
	__u8 hb[16]; /* those bytes (9 used; room for the verifier's mask) */
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sock_tuple);
	__type(value, struct h2_conn);
} h2_conns SEC(".maps");

/* wire_admits tells whether a connection a wire target is opening goes
 * under sk_msg: only to an endpoint seen speaking HTTP/1, and only for a
 * target that does not ask FIONREAD. */
static __always_inline int wire_admits(struct bpf_sock_ops *skops, __u32 tgid)
{
	struct wire_proc *wp = bpf_map_lookup_elem(&wire_procs, &tgid);
	struct wire_peer p = {};
	__u32 a[4];

	if (!wp)
		return 0;
	p.family = skops->family;
	p.port = bpf_ntohl(skops->remote_port);
	if (p.family == 2) {
		a[0] = skops->remote_ip4;
		__builtin_memcpy(p.addr, a, 4);
	} else {
		a[0] = skops->remote_ip6[0];
		a[1] = skops->remote_ip6[1];
		a[2] = skops->remote_ip6[2];
		a[3] = skops->remote_ip6[3];
		__builtin_memcpy(p.addr, a, 16);
	}
	if (!bpf_map_lookup_elem(&wire_http_peers, &p))
		return 0;
	if (wp->flags & WIRE_LEAVE_ALONE) {
		count(STAT_LEFT_ALONE);
		return 0;
	}
	return 1;
}

SEC("sockops")
int sockops_track_connect(struct bpf_sock_ops *skops)
{
	__u64 cookie, now;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: {
		/* Runs in the connecting process: is it a target? */
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		struct nethttp_offsets *o = bpf_map_lookup_elem(&nethttp_procs, &tgid);

		if (!o) {
			if (!wire_admits(skops, tgid))
				return 1;
		} else if (o->left_alone) {
			count(STAT_LEFT_ALONE);
			return 1;
		}
		cookie = bpf_get_socket_cookie(skops);
		now = bpf_ktime_get_ns();
		if (bpf_map_update_elem(&nethttp_connecting, &cookie, &now, BPF_ANY))
			count(STAT_MAP_FULL);
		return 1;
	}
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: {
		struct sock_tuple t = {};

		cookie = bpf_get_socket_cookie(skops);
		if (!bpf_map_lookup_elem(&nethttp_connecting, &cookie))
			return 1;
		bpf_map_delete_elem(&nethttp_connecting, &cookie);
		TUPLE_FROM_CTX(&t, skops);
		/* A header queued for an earlier connection with the same
		 * addresses and ports (a failed call) must not reach this one. */
		bpf_map_delete_elem(&nethttp_pending, &t);
		if (bpf_sock_hash_update(skops, &nethttp_sockets, &t, BPF_NOEXIST)) {
			count(STAT_SOCKET_BUSY);
			return 1;
		}
		/* Its first write tells whether it speaks HTTP/2 (h2_message). */
		struct h2_conn fresh = {};

		bpf_map_update_elem(&h2_conns, &t, &fresh, BPF_ANY);
		return 1;
	}
	}
	return 1;
}

#define H2_HEADERS 1
#define H2_CONTINUATION 9
#define H2_END_HEADERS 0x4
#define H2_PADDED 0x8
/* The smallest SETTINGS_MAX_FRAME_SIZE a peer may set. */
#define H2_MAX_FRAME 16384
/* A header field as an HPACK literal without indexing, new name (RFC 7541
 * 6.2.2): neither side's dynamic table changes. 0x00, name length 11,
 * "traceparent", value length 55, the value. */
#define H2_TP_LEN (1 + 1 + 11 + 1 + TRACEPARENT_LEN)
/* Context left by a uprobe is used only this soon: it runs just before
 * its stream's frame is written. */
#define H2_FRESH_NS 1000000000ULL

/* The client connection preface (RFC 9113 3.4), "PRI * HTTP/2.0\r\n\r\nSM
 * \r\n\r\n", as three little-endian words. */
#define H2_PREFACE0 0x5448202a20495250ULL
#define H2_PREFACE1 0x0a0d302e322f5054ULL
#define H2_PREFACE2 0x0a0d0a0d4d530a0dULL

struct h2_walk {
	struct sk_msg_md *msg;
	struct h2_conn *c;
	__u32 off;  /* the next frame header's offset in the message */
	__u32 size; /* the message's size, grown by what was added */
	__u32 lost; /* the framing cannot be followed further */
	__u32 _pad;
	struct h2_stream_key key;
	struct sock_tuple t;
	__u8 lit[H2_TP_LEN + 1];
};

/* h2_fresh returns the context a uprobe left for stream sid of w's
 * connection, if it is fresh. */
static __always_inline struct h2_stream_ctx *h2_fresh(struct h2_walk *w, __u32 sid)
{
	struct h2_stream_ctx *v;

	w->key.stream_id = sid;
	v = bpf_map_lookup_elem(&h2_streams, &w->key);
	if (v && bpf_ktime_get_ns() - v->when > H2_FRESH_NS) {
		bpf_map_delete_elem(&h2_streams, &w->key);
		return 0;
	}
	return v;
}

/* h2_add appends traceparent to the header block of the frame at off (its
 * payload len, the last pad bytes padding), ending at end; 0 when added. */
static __always_inline int h2_add(struct h2_walk *w, struct h2_stream_ctx *v, __u32 off, __u32 len, __u32 pad, __u32 end)
{
	struct sk_msg_md *msg = w->msg;
	__u32 at = end - pad, nlen = len + H2_TP_LEN;
	__u8 flags = v->sc.flags & ~FLAG_LINK_PENDING;
	__u8 *d;

	if (end > w->size || nlen > H2_MAX_FRAME || pad > len)
		return -1;
	w->lit[0] = 0;
	w->lit[1] = 11;
	__builtin_memcpy(w->lit + 2, "traceparent", 11);
	w->lit[13] = TRACEPARENT_LEN;
	__builtin_memcpy(w->lit + 14, "00-", 3);
	put_hex((char *)w->lit + 17, v->sc.trace_id, 16);
	w->lit[49] = '-';
	put_hex((char *)w->lit + 50, v->sc.span_id, 8);
	w->lit[66] = '-';
	put_hex((char *)w->lit + 67, &flags, 1);
	if (bpf_msg_push_data(msg, at, H2_TP_LEN, 0))
		return -1;
	w->size += H2_TP_LEN;
	/* The room is made: fill it, or the framing is lost. */
	if (bpf_msg_pull_data(msg, at, at + H2_TP_LEN, 0))
		goto lost;
	d = msg->data;
	if (d + H2_TP_LEN > (__u8 *)msg->data_end)
		goto lost;
	__builtin_memcpy(d, w->lit, H2_TP_LEN);
	if (bpf_msg_pull_data(msg, off, off + 3, 0))
		goto lost;
	d = msg->data;
	if (d + 3 > (__u8 *)msg->data_end)
		goto lost;
	d[0] = nlen >> 16;
	d[1] = nlen >> 8;
	d[2] = nlen;
	return 0;
lost:
	w->lost = 1;
	return -1;
}

/* h2_frame handles the frame whose header is h, at off (whole: the header
 * is in this message), and moves w past it. */
static __always_inline void h2_frame(struct h2_walk *w, const __u8 *h, __u32 off, int whole)
{
	__u32 len = (__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2];
	__u32 sid = ((__u32)h[5] << 24 | (__u32)h[6] << 16 | (__u32)h[7] << 8 | h[8]) & 0x7fffffff;
	__u32 end = off + 9 + len, pad = 0;
	struct h2_stream_ctx *v = 0;
	__u8 type = h[3], flags = h[4];

	if (type == H2_HEADERS && (v = h2_fresh(w, sid))) {
		if (!(flags & H2_END_HEADERS)) {
			w->c->cont = sid; /* added to at the block's last frame */
			v = 0;
		} else if (flags & H2_PADDED) {
			__u8 *d;

			if (!whole || end > w->size || bpf_msg_pull_data(w->msg, off + 9, off + 10, 0))
				goto failed;
			d = w->msg->data;
			if (d + 1 > (__u8 *)w->msg->data_end)
				goto failed;
			pad = d[0];
		}
	} else if (type == H2_CONTINUATION && sid && sid == w->c->cont && (flags & H2_END_HEADERS)) {
		w->c->cont = 0;
		v = h2_fresh(w, sid);
	}
	if (v) {
		if (!whole || h2_add(w, v, off, len, pad, end))
			goto failed;
		count(STAT_INJECTED);
		bpf_map_delete_elem(&h2_streams, &w->key);
		end += H2_TP_LEN;
	}
	w->off = end;
	return;
failed:
	count(STAT_NOT_INJECTED);
	bpf_map_delete_elem(&h2_streams, &w->key);
	w->off = end;
}

/* h2_step handles the frame at w->off (bpf_loop callback); 1 stops. */
static long h2_step(__u32 i, void *ctx)
{
	struct h2_walk *w = ctx;
	__u8 h[9], *d;
	__u32 n;

	if (w->lost || w->off >= w->size)
		return 1;
	n = w->size - w->off;
	if (n < 9) {
		/* A frame header cut by the write's end: kept for the next. */
		if (bpf_msg_pull_data(w->msg, w->off, w->size, 0))
			goto lost;
		d = w->msg->data;
		for (int j = 0; j < 8; j++) {
			if (j >= n)
				break;
			if (d + j + 1 > (__u8 *)w->msg->data_end)
				goto lost;
			w->c->hb[j] = d[j];
		}
		w->c->have = n;
		w->off = w->size;
		return 1;
	}
	if (bpf_msg_pull_data(w->msg, w->off, w->off + 9, 0))
		goto lost;
	d = w->msg->data;
	if (d + 9 > (__u8 *)w->msg->data_end)
		goto lost;
	__builtin_memcpy(h, d, 9);
	h2_frame(w, h, w->off, 1);
	return w->lost;
lost:
	w->lost = 1;
	return 1;
}

/* h2_message follows the frames of one write to a connection in h2_conns,
 * adding traceparent to the header blocks of the streams a uprobe left a
 * context for. */
static __noinline int h2_message(struct sk_msg_md *msg, struct h2_conn *c, struct h2_walk *w)
{
	__u64 p[3];
	__u32 have, need;
	__u8 *d;

	w->msg = msg;
	w->c = c;
	w->size = msg->size;
	w->key.tgid = bpf_get_current_pid_tgid() >> 32;
	w->key.lport = w->t.lport;
	w->key.rport = w->t.rport;
	h2_tuple_peer(&w->key, &w->t);
	if (c->state == H2_NEW) {
		if (w->size < 24 || bpf_msg_pull_data(msg, 0, 24, 0))
			goto let_go;
		d = msg->data;
		if (d + 24 > (__u8 *)msg->data_end)
			goto let_go;
		__builtin_memcpy(p, d, 24);
		if (p[0] != H2_PREFACE0 || p[1] != H2_PREFACE1 || p[2] != H2_PREFACE2)
			goto let_go; /* not HTTP/2 with prior knowledge */
		c->state = H2_FRAMES;
		w->off = 24;
	} else if ((have = c->have)) {
		/* The frame header the last write cut: its length field is
		 * there, so nothing can be added to this frame. */
		__u8 h[9];

		if (have > 8)
			goto let_go;
		need = 9 - have;
		if (w->size < need || bpf_msg_pull_data(msg, 0, need, 0))
			goto let_go;
		d = msg->data;
		for (int j = 0; j < 9; j++) {
			if (j >= need)
				break;
			if (d + j + 1 > (__u8 *)msg->data_end)
				goto let_go;
			__u32 at = have + j;

			if (at > 8)
				break;
			asm volatile("%[at] &= 15" : [at] "+r"(at));
			c->hb[at] = d[j];
		}
		__builtin_memcpy(h, c->hb, 9);
		c->have = 0;
		h2_frame(w, h, -have, 0);
	} else {
		w->off = c->skip;
	}
	c->skip = 0;
	bpf_loop(1024, h2_step, w, 0);
	if (w->lost || w->off < w->size)
		goto let_go; /* more frames than the loop takes */
	c->skip = w->off - w->size;
	return 1;
let_go:
	bpf_map_delete_elem(&h2_conns, &w->t);
	return c->state == H2_FRAMES;
}

/* What sk_msg works in: the request's first bytes and the header line. */
struct msg_scratch {
	__u8 head[HEAD_SCAN + HEAD_SLACK];
	char line[TRACEPARENT_HEADER_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct msg_scratch);
} msg_scratch SEC(".maps");

/* wire_context gives the context of a request a wire target's thread is
 * writing while it serves exactly one request: that request's child. */
static __always_inline int wire_context(struct wire_sent *ws)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct wire_thread *th;

	if (!bpf_map_lookup_elem(&wire_procs, &tgid))
		return -1;
	th = bpf_map_lookup_elem(&wire_threads, &id);
	if (!th || th->inflight != 1 || th->unsure)
		return -1;
	__builtin_memcpy(ws->sc.trace_id, th->server.trace_id, 16);
	__builtin_memcpy(ws->sc.parent_id, th->server.span_id, 8);
	random_bytes(ws->sc.span_id, 8);
	ws->sc.flags = th->server.flags;
	return 0;
}

/* Inserts a traceparent header line after the request line of a request
 * written to a socket in the map: the one a Go client queued for this
 * connection (nethttp_pending), or, for a wire target, its serving
 * thread's child context. A wire request that already carries traceparent,
 * or whose head does not end within what sk_msg sees, is left alone. */
SEC("sk_msg")
int sk_msg_traceparent(struct sk_msg_md *msg)
{
	struct wire_sent ws = {};
	struct sock_tuple t = {};
	struct pending_header *ph;
	struct msg_scratch *sc;
	struct h2_conn *h2;
	struct head_scan s;
	__u32 zero = 0, n, off;
	int wire = 0;
	char *d;

	TUPLE_FROM_CTX(&t, msg);
	h2 = bpf_map_lookup_elem(&h2_conns, &t);
	if (h2) {
		struct h2_walk w = {.t = t};

		if (h2_message(msg, h2, &w))
			return SK_PASS;
	}
	ph = bpf_map_lookup_elem(&nethttp_pending, &t);
	if (!ph) {
		if (wire_context(&ws))
			return SK_PASS;
		wire = 1;
	}
	sc = bpf_map_lookup_elem(&msg_scratch, &zero);
	if (!sc)
		return SK_PASS;
	n = msg->size < HEAD_SCAN ? msg->size : HEAD_SCAN;
	if (n < 16 || bpf_msg_pull_data(msg, 0, n, 0))
		goto skip;
	d = msg->data;
	if ((long)((char *)msg->data_end - d) < (long)n)
		goto skip;
	asm volatile("%[n] &= 1023" : [n] "+r"(n)); /* for the verifier: n <= HEAD_SCAN */
	if (bpf_probe_read_kernel(sc->head, n, d))
		goto skip;
	/* The Go path needs only the request line (the uprobe saw the
	 * headers); a wire request, its whole head. */
	if (!method_token(sc->head) || scan_head(&s, sc->head, n, !wire))
		goto skip;
	if (wire && s.tp)
		goto skip; /* the application propagates by itself */
	if (wire)
		format_traceparent_header(sc->line, &ws.sc);
	else
		__builtin_memcpy(sc->line, ph->line, TRACEPARENT_HEADER_LEN);
	off = s.line_end;
	if (bpf_msg_push_data(msg, off, TRACEPARENT_HEADER_LEN, 0) ||
	    bpf_msg_pull_data(msg, off, off + TRACEPARENT_HEADER_LEN, 0))
		goto skip;
	d = msg->data;
	if (d + TRACEPARENT_HEADER_LEN > (char *)msg->data_end)
		goto skip;
	__builtin_memcpy(d, sc->line, TRACEPARENT_HEADER_LEN);
	count(STAT_INJECTED);
	if (wire) {
		__u64 id = bpf_get_current_pid_tgid();

		ws.conn = t;
		if (bpf_map_update_elem(&wire_sent, &id, &ws, BPF_ANY))
			count(STAT_MAP_FULL);
	} else {
		bpf_map_delete_elem(&nethttp_pending, &t);
	}
	return SK_PASS;
skip:
	/* Not a request line within reach, or no room: leave the bytes alone.
	 * (For a wire target most such writes are bodies: not counted.) */
	if (!wire) {
		count(STAT_NOT_INJECTED);
		bpf_map_delete_elem(&nethttp_pending, &t);
	}
	return SK_PASS;
}
