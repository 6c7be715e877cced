// SPDX-License-Identifier: GPL-2.0
//go:build ignore
/* Process lifecycle for target discovery: every exec (user space matches the
 * name) and the exit of tracked processes. */
#include "common.h"

enum procscan_kind {
	PROCSCAN_EXEC = 1,
	PROCSCAN_EXIT = 2,
};

struct procscan_event {
	__u32 kind;
	__u32 pid; /* tgid */
	char comm[16];
	char filename[128]; /* exec only: path as passed to execve */
};

/* tgids of processes the agent traces; only their exits are reported. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} procscan_tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} procscan_events SEC(".maps");

EXPORT_STRUCT(procscan_event);

SEC("tracepoint/sched/sched_process_exec")
int tp_sched_process_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct procscan_event *e;
	__u32 off = ctx->__data_loc_filename & 0xFFFF;

	e = bpf_ringbuf_reserve(&procscan_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		return 0;
	}
	e->kind = PROCSCAN_EXEC;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + off);
	/* Wake at once: the sooner the probes are attached, the fewer of the
	 * target's first requests are missed. Execs are rare. */
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tp_sched_process_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct procscan_event *e;

	if (!ctx->group_dead || !bpf_map_lookup_elem(&procscan_tracked, &pid))
		return 0;
	e = bpf_ringbuf_reserve(&procscan_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		return 0;
	}
	e->kind = PROCSCAN_EXIT;
	e->pid = pid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->filename[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
