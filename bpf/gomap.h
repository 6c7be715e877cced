/* SPDX-License-Identifier: GPL-2.0 */
/* Finding the W3C headers in a Go http.Header or gRPC metadata.MD (both
 * map[string][]string) without
 * hashing: scan a bounded number of buckets (Go <= 1.23 hash maps) or groups
 * (Go >= 1.24 swiss tables) and compare key lengths first. Typical request
 * header maps fit in the first buckets; bigger ones are scanned in part. */
#ifndef TRACEWIRE_GOMAP_H
#define TRACEWIRE_GOMAP_H

#include "chunk.h"

/* Layout of map[string][]string storage, fixed by the compiler for this
 * key/value pair: 8 slots per bucket or group. */
#define HMAP_BUCKET_SIZE 336 /* tophash[8], keys[8]string, elems[8][]string, overflow */
#define HMAP_KEYS 8
#define HMAP_ELEMS 136
#define HMAP_MIN_TOPHASH 5
#define SWISS_GROUP_SIZE 328 /* ctrl uint64, 8 x {string, []string} */
#define SWISS_SLOT 40
#define MAP_SCAN_MAX 4       /* buckets or groups scanned per map */

/* Offsets of the runtime's map headers, per Go version. */
struct gomap_offsets {
	__u64 swiss;          /* Go >= 1.24 */
	__u64 hmap_b;         /* hmap.B (uint8) */
	__u64 hmap_buckets;
	__u64 swiss_dir_ptr;  /* maps.Map.dirPtr */
	__u64 swiss_dir_len;
	__u64 table_groups;   /* maps.table.groups.data */
	__u64 table_mask;     /* maps.table.groups.lengthMask */
};

struct w3c_headers {
	struct go_string traceparent;
	struct go_string tracestate;
};

/* key_is compares a key with want (lower case) ignoring case: http.Header
 * keys are canonical ("Traceparent"), gRPC metadata keys lower case. */
static __always_inline int key_is(struct chunk *c, __u64 off, const char *want, int n)
{
	struct go_string k = chunk_string(c, off);
	char buf[16] = {};

	if (k.len != n || bpf_probe_read_user(buf, n & 15, (void *)k.ptr))
		return 0;
	for (int i = 0; i < n; i++)
		if ((buf[i] | 0x20) != want[i])
			return 0;
	return 1;
}

/* slot looks at one map slot (key at koff, []string value at voff). */
static __always_inline void slot(struct chunk *c, __u64 koff, __u64 voff, struct w3c_headers *h)
{
	struct go_string k = chunk_string(c, koff);
	void *first;

	if (k.len != 11 && k.len != 10)
		return;
	first = (void *)chunk_u64(c, voff); /* &value[0] */
	if (!first || chunk_u64(c, voff + 8) == 0)
		return;
	if (k.len == 11 && key_is(c, koff, "traceparent", 11))
		bpf_probe_read_user(&h->traceparent, sizeof(h->traceparent), first);
	else if (k.len == 10 && key_is(c, koff, "tracestate", 10))
		bpf_probe_read_user(&h->tracestate, sizeof(h->tracestate), first);
}

static __always_inline void scan_bucket(void *b, struct w3c_headers *h)
{
	struct chunk *c = read_chunk(1, b, HMAP_BUCKET_SIZE);

	if (!c)
		return;
	for (int i = 0; i < 8; i++)
		if (c->b[i] >= HMAP_MIN_TOPHASH)
			slot(c, HMAP_KEYS + 16 * i, HMAP_ELEMS + 24 * i, h);
}

static __always_inline void scan_group(void *g, struct w3c_headers *h)
{
	struct chunk *c = read_chunk(1, g, SWISS_GROUP_SIZE);

	if (!c)
		return;
	for (int i = 0; i < 8; i++)
		if (!(c->b[i] & 0x80)) /* full slots have the top bit clear */
			slot(c, 8 + SWISS_SLOT * i, 8 + SWISS_SLOT * i + 16, h);
}

/* find_w3c_headers looks for Traceparent and Tracestate in the Go map m. */
static __always_inline void find_w3c_headers(void *m, struct gomap_offsets *o, struct w3c_headers *h)
{
	if (!m)
		return;
	if (!o->swiss) {
		__u8 B = 0;
		void *buckets;

		bpf_probe_read_user(&B, 1, m + o->hmap_b);
		buckets = read_ptr(m + o->hmap_buckets);
		if (!buckets)
			return;
		for (int i = 0; i < MAP_SCAN_MAX; i++) {
			if (i >= (1 << (B & 7)))
				break;
			scan_bucket(buckets + i * HMAP_BUCKET_SIZE, h);
		}
		return;
	}
	void *dir = read_ptr(m + o->swiss_dir_ptr);
	__s64 dirlen = read_s64(m + o->swiss_dir_len);

	if (!dir)
		return;
	if (dirlen == 0) { /* small map: dir is the only group */
		scan_group(dir, h);
		return;
	}
	/* first table only: header maps this large are rare */
	void *table = read_ptr(dir);
	void *groups;
	__u64 mask;

	if (!table)
		return;
	groups = read_ptr(table + o->table_groups);
	mask = read_s64(table + o->table_mask);
	if (!groups)
		return;
	for (int i = 0; i < MAP_SCAN_MAX; i++) {
		if (i > mask)
			break;
		scan_group(groups + i * SWISS_GROUP_SIZE, h);
	}
}

#endif
