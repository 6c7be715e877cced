// SPDX-License-Identifier: GPL-2.0
//go:build ignore
/* Go net/http server spans: two uprobes per request, both on the emulated
 * PUSH RBP of their function.
 *   net/http.serverHandler.ServeHTTP   start: time, ids, keyed by *response
 *   net/http.(*response).finishRequest end: handler returned; read the
 *                                       request and status, emit one event */
#include "common.h"
#include "chunk.h"

/* Field offsets of one target process's Go version (from DWARF or the
 * per-version table), keyed by tgid. Presence in this map is also the filter:
 * uprobes are attached per executable file, so non-target processes running
 * the same file reach the probe and leave here. */
struct nethttp_offsets {
	__u64 g_goid;
	__u64 request_size; /* bytes of net/http.Request holding every field below */
	__u64 request_method;
	__u64 request_url;
	__u64 request_proto_major;
	__u64 request_proto_minor;
	__u64 request_host;
	__u64 request_remote_addr;
	__u64 request_tls;
	__u64 request_pattern; /* OFF_NONE before Go 1.23 */
	__u64 request_pat;     /* Go 1.22: *pattern; OFF_NONE before */
	__u64 pattern_str;
	__u64 url_path;
	__u64 response_req;
	__u64 response_status;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct nethttp_offsets);
} nethttp_procs SEC(".maps");

/* A goroutine of a target: goids are never reused within a process. */
struct goroutine_key {
	__u64 goid;
	__u32 tgid;
	__u32 _pad;
};

struct inflight {
	__u64 start_ns;
	struct span_ctx sc;
};

/* Requests being served, keyed by the goroutine serving them (conn.serve
 * calls both hooked functions). LRU: a request that never reaches
 * finishRequest (hijacked connection, HTTP/2) is evicted instead of leaking. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct goroutine_key);
	__type(value, struct inflight);
} nethttp_server_inflight SEC(".maps");

#define METHOD_MAX 16
#define PATH_MAX_ 128
#define PATTERN_MAX 128
#define HOST_MAX 64
#define REMOTE_MAX 64

/* One finished server request. The *_len fields hold the Go string's full
 * length; the text is cut at the array size. */
struct nethttp_server_event {
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
	__u32 pid;
	__u8 tls;
	__u8 _pad[3];
	char method[METHOD_MAX];
	char path[PATH_MAX_];
	char pattern[PATTERN_MAX];
	char host[HOST_MAX];
	char remote[REMOTE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} nethttp_events SEC(".maps");

EXPORT_STRUCT(nethttp_server_event);

static __always_inline int goroutine(struct pt_regs *ctx, struct nethttp_offsets *o, struct goroutine_key *k, __u32 tgid)
{
	k->goid = read_s64(GO_G(ctx) + o->g_goid);
	k->tgid = tgid;
	return k->goid != 0;
}

SEC("uprobe/net/http.serverHandler.ServeHTTP")
int uprobe_serverHandler_ServeHTTP(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct goroutine_key k = {};
	struct nethttp_offsets *o;
	struct inflight v = {};

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || !goroutine(ctx, o, &k, tgid))
		return 0;
	v.start_ns = bpf_ktime_get_ns();
	new_root_span(&v.sc);
	if (bpf_map_update_elem(&nethttp_server_inflight, &k, &v, BPF_ANY))
		count(STAT_START_FAILED);
	return 0;
}

SEC("uprobe/net/http.(*response).finishRequest")
int uprobe_response_finishRequest(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct nethttp_server_event *e;
	struct goroutine_key k = {};
	struct nethttp_offsets *o;
	struct inflight *in;
	struct chunk *req;
	void *w, *url, *pat;

	o = bpf_map_lookup_elem(&nethttp_procs, &tgid);
	if (!o || !goroutine(ctx, o, &k, tgid))
		return 0;
	in = bpf_map_lookup_elem(&nethttp_server_inflight, &k);
	if (!in) {
		count(STAT_NO_START);
		return 0;
	}
	e = bpf_ringbuf_reserve(&nethttp_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		bpf_map_delete_elem(&nethttp_server_inflight, &k);
		return 0;
	}
	e->end_ns = bpf_ktime_get_ns();
	e->start_ns = in->start_ns;
	e->sc = in->sc;
	bpf_map_delete_elem(&nethttp_server_inflight, &k);
	e->pid = tgid;

	/* func (w *response) finishRequest() */
	w = GO_ARG1(ctx);
	e->status = read_s64(w + o->response_status);
	req = read_chunk(read_ptr(w + o->response_req), o->request_size);
	if (!req) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
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
	submit(&nethttp_events, e);
	return 0;
}
