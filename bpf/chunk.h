/* SPDX-License-Identifier: GPL-2.0 */
#ifndef TRACEWIRE_CHUNK_H
#define TRACEWIRE_CHUNK_H

#include "common.h"

/* A copy of (the start of) a Go struct, so that its fields cost one user
 * read in total instead of one each. Per-CPU: programs do not nest on a CPU.
 * Slot 0 holds the probe's main struct, slot 1 map buckets. */
#define CHUNK_MAX 512

struct chunk {
	__u8 b[CHUNK_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct chunk);
} chunks SEC(".maps");

/* read_chunk copies size bytes (the struct's prefix that holds every field
 * the probe needs, computed by user space) from src. */
static __always_inline struct chunk *read_chunk(__u32 slot, void *src, __u64 size)
{
	struct chunk *c = bpf_map_lookup_elem(&chunks, &slot);

	if (!c || !src || size > CHUNK_MAX)
		return 0;
	if (bpf_probe_read_user(c->b, size, src)) {
		count(STAT_READ_FAILED);
		return 0;
	}
	return c;
}

static __always_inline __u64 chunk_u64(struct chunk *c, __u64 off)
{
	if (off > CHUNK_MAX - 8)
		return 0;
	return *(__u64 *)(c->b + off);
}

static __always_inline struct go_string chunk_string(struct chunk *c, __u64 off)
{
	struct go_string s = {};

	if (off > CHUNK_MAX - 16)
		return s;
	s.ptr = *(__u64 *)(c->b + off);
	s.len = *(__s64 *)(c->b + off + 8);
	return s;
}

#endif
