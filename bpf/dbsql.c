// SPDX-License-Identifier: GPL-2.0
//go:build ignore
/* Go database/sql client spans, for any driver. Every uprobe sits on the
 * emulated PUSH RBP of its function; a call costs one start and one end hit.
 * Start, on the calling goroutine:
 *   (*DB).queryDC                  Query, QueryRow on a DB, Tx or Conn
 *   (*DB).execDC                   Exec on a DB, Tx or Conn
 *   (*Stmt).QueryContext, (*Stmt).ExecContext   prepared statements
 *   (*DB).beginDC                  BEGIN
 *   (*Tx).Commit, (*Tx).rollback   COMMIT, ROLLBACK (not of a finished Tx)
 * End, on the same goroutine:
 *   (*Rows).initContextClose       a query returned its rows
 *   (*DB).putConn                  the connection goes back to the pool,
 *                                  with the call's error
 *   (*Tx).closemuRUnlockRelease    the same inside a transaction
 *   (*Conn).closemuRUnlockCondReleaseConn   the same on a sql.Conn
 *   (*Tx).awaitDone                BEGIN succeeded: runs on the goroutine
 *                                  beginDC started
 * Peer: the call's first write(2) to a TCP socket (syscall tracepoint, the
 * driver writes the query on the calling goroutine). */
#include "common.h"
#include "goctx.h"
#include "sock.h"

struct dbsql_offsets {
	struct g_offsets g;
	__u64 stmt_query; /* database/sql.Stmt.query */
	__u64 tx_dc;      /* Tx.dc (*driverConn) */
	__u64 tx_done;    /* Tx.done (atomic.Bool: its uint32) */
	__u64 rows_dc;    /* Rows.dc */
	__u64 conn_dc;    /* Conn.dc */
	__u64 dc_ci;      /* driverConn.ci (driver.Conn) */
};

/* Per-process offsets; presence is also the filter (see nethttp_procs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct dbsql_offsets);
} dbsql_procs SEC(".maps");

/* An error type of a target: its Error method's address. */
struct errtype_key {
	__u64 fn;
	__u32 tgid;
	__u32 _pad;
};

/* Where an error type keeps its message, for the types user space knows:
 * a string field of the struct the error points to, or, for a wrapper, an
 * error field to follow (e.g. pgx's PrepareError around the server's
 * PgError). */
struct errtype {
	__u64 off;
	__u32 wrapper; /* off is an error (interface), not a string */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct errtype_key);
	__type(value, struct errtype);
} dbsql_errtypes SEC(".maps");

#define UNWRAP_MAX 4

enum dbsql_op {
	DB_QUERY = 1,
	DB_EXEC = 2,
	DB_BEGIN = 3,
	DB_COMMIT = 4,
	DB_ROLLBACK = 5,
};

#define QUERY_MAX 1024
#define ERR_MAX 256

struct dbsql_call {
	__u64 start_ns;
	struct span_ctx sc;
	struct sock_tuple peer;
	__u64 driver_fn; /* see dbsql_event */
	__u32 op;
	__u8 has_peer;
	__u8 _pad[3];
	__s64 query_len;
	char query[QUERY_MAX]; /* copied at the start: the string may die before the end */
};

/* Calls in flight by calling goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct goroutine_key);
	__type(value, struct dbsql_call);
} dbsql_calls SEC(".maps");

/* A dbsql_call is too big for the BPF stack: built here. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dbsql_call);
} dbsql_scratch SEC(".maps");

enum dbsql_end {
	END_RETURNED = 0, /* an end hook saw the call finish */
	END_UNSEEN = 1,   /* the goroutine started its next call first */
};

/* One finished call. query_len and err_len hold the Go string's full
 * length; the text is cut at the array size. */
struct dbsql_event {
	__u32 op;
	__u32 pid;
	__u64 start_ns; /* CLOCK_MONOTONIC */
	__u64 end_ns;
	struct span_ctx sc;
	struct sock_tuple peer;
	__u64 driver_fn; /* the driver.Conn's Begin method: names the driver */
	__u64 err_fn;    /* the error's Error method; 0: no error */
	__s64 query_len;
	__s64 err_len;   /* 0 when the error type's message is unknown */
	__u32 end;       /* enum dbsql_end */
	__u8 has_peer;
	__u8 _pad[3];
	char query[QUERY_MAX];
	char err[ERR_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* Calls are rarer than HTTP requests; every ring's pages stay resident. */
	__uint(max_entries, 1 << 18);
} dbsql_events SEC(".maps");

EXPORT_STRUCT(dbsql_event);
const enum dbsql_op *__export_dbsql_op __attribute__((unused));
const enum dbsql_end *__export_dbsql_end __attribute__((unused));

/* Word 3 of an itab is its first method: Begin for a driver.Conn (methods
 * sorted by name), Error for an error. */
#define ITAB_FUN0 24

static __always_inline __u64 driver_fn(struct dbsql_offsets *o, void *dc)
{
	void *itab = dc ? read_ptr(dc + o->dc_ci) : 0;

	return itab ? (__u64)read_ptr(itab + ITAB_FUN0) : 0;
}

/* emit sends call c of goroutine k; err is the error interface the call
 * ended with (itab, data), dc the connection if the end hook knows it. */
static __always_inline void emit(struct dbsql_offsets *o, struct goroutine_key *k, struct dbsql_call *c,
				 __u64 now, __u32 end, void *err_itab, void *err_data, void *dc)
{
	struct errtype_key ek = {.tgid = k->tgid};
	struct dbsql_event *e;
	struct errtype *et;
	void *iface[2];

	e = bpf_ringbuf_reserve(&dbsql_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		return;
	}
	e->op = c->op;
	e->pid = k->tgid;
	e->start_ns = c->start_ns;
	e->end_ns = now;
	e->sc = c->sc;
	e->peer = c->peer;
	e->has_peer = c->has_peer;
	e->end = end;
	e->driver_fn = driver_fn(o, dc);
	if (!e->driver_fn)
		e->driver_fn = c->driver_fn;
	e->query_len = c->query_len;
	if (bpf_probe_read_kernel(e->query, sizeof(e->query), c->query))
		e->query_len = 0;
	e->err_fn = 0;
	e->err_len = 0;
	if (err_itab)
		e->err_fn = (__u64)read_ptr(err_itab + ITAB_FUN0);
	for (int i = 0; i < UNWRAP_MAX && err_itab && err_data; i++) {
		ek.fn = i ? (__u64)read_ptr(err_itab + ITAB_FUN0) : e->err_fn;
		et = bpf_map_lookup_elem(&dbsql_errtypes, &ek);
		if (!et)
			break;
		if (!et->wrapper) {
			e->err_len = read_go_string(e->err, ERR_MAX, err_data + et->off);
			break;
		}
		if (bpf_probe_read_user(iface, sizeof(iface), err_data + et->off))
			break;
		err_itab = iface[0];
		err_data = iface[1];
	}
	submit(&dbsql_events, e);
}

/* target returns the offsets of the current process, if it is a target. */
static __always_inline struct dbsql_offsets *target(__u32 *tgid)
{
	*tgid = bpf_get_current_pid_tgid() >> 32;
	return bpf_map_lookup_elem(&dbsql_procs, tgid);
}

/* start records a call of the current goroutine. A call of it still in
 * flight never got an end hook: a BEGIN that succeeded (awaitDone did not
 * run yet) or a call that ended where no hook sees it. */
static __always_inline void start(struct pt_regs *ctx, struct dbsql_offsets *o, __u32 tgid, __u32 op,
				  struct go_string q, void *dc)
{
	struct goroutine_key k = {};
	struct dbsql_call *c;
	__u32 zero = 0;
	__u64 now;

	if (!goroutine(ctx, &o->g, &k, tgid))
		return;
	now = bpf_ktime_get_ns();
	c = bpf_map_lookup_elem(&dbsql_calls, &k);
	if (c) {
		emit(o, &k, c, now, c->op == DB_BEGIN ? END_RETURNED : END_UNSEEN, 0, 0, 0);
		bpf_map_delete_elem(&dbsql_calls, &k);
	}
	c = bpf_map_lookup_elem(&dbsql_scratch, &zero);
	if (!c)
		return;
	c->start_ns = now;
	child_span(ctx, &o->g, &k, &c->sc);
	__builtin_memset(&c->peer, 0, sizeof(c->peer));
	c->has_peer = 0;
	c->op = op;
	c->driver_fn = driver_fn(o, dc);
	c->query_len = read_str(c->query, QUERY_MAX, q);
	if (bpf_map_update_elem(&dbsql_calls, &k, c, BPF_ANY))
		count(STAT_MAP_FULL);
}

/* finish ends the call of the current goroutine, if any. */
static __always_inline void finish(struct pt_regs *ctx, struct dbsql_offsets *o, __u32 tgid, void *err_itab,
				   void *err_data, void *dc)
{
	struct goroutine_key k = {};
	struct dbsql_call *c;

	if (!goroutine(ctx, &o->g, &k, tgid))
		return;
	c = bpf_map_lookup_elem(&dbsql_calls, &k);
	if (!c)
		return; /* a release outside any call, e.g. Rows.Close */
	emit(o, &k, c, bpf_ktime_get_ns(), END_RETURNED, err_itab, err_data, dc);
	bpf_map_delete_elem(&dbsql_calls, &k);
}

static __always_inline void *field_ptr(void *base, __u64 off)
{
	return base ? read_ptr(base + off) : 0;
}

static const struct go_string no_query;

/* ------------------------------------------------------------ starts */

/* func (db *DB) queryDC(ctx, txctx context.Context, dc *driverConn,
 *	releaseConn func(error), query string, args []any) */
SEC("uprobe/database/sql.(*DB).queryDC")
int uprobe_DB_queryDC(struct pt_regs *ctx)
{
	struct go_string q = {.ptr = ctx->r10, .len = ctx->r11};
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);

	if (o)
		start(ctx, o, tgid, DB_QUERY, q, (void *)ctx->r8);
	return 0;
}

/* func (db *DB) execDC(ctx context.Context, dc *driverConn,
 *	release func(error), query string, args []any) */
SEC("uprobe/database/sql.(*DB).execDC")
int uprobe_DB_execDC(struct pt_regs *ctx)
{
	struct go_string q = {.ptr = ctx->r8, .len = ctx->r9};
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);

	if (o)
		start(ctx, o, tgid, DB_EXEC, q, GO_ARG4(ctx));
	return 0;
}

static __always_inline int stmt_start(struct pt_regs *ctx, __u32 op)
{
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);
	struct go_string q = {};

	if (!o)
		return 0;
	/* func (s *Stmt) QueryContext/ExecContext(ctx, args ...any) */
	if (bpf_probe_read_user(&q, sizeof(q), GO_ARG1(ctx) + o->stmt_query))
		count(STAT_READ_FAILED);
	start(ctx, o, tgid, op, q, 0);
	return 0;
}

SEC("uprobe/database/sql.(*Stmt).QueryContext")
int uprobe_Stmt_QueryContext(struct pt_regs *ctx)
{
	return stmt_start(ctx, DB_QUERY);
}

SEC("uprobe/database/sql.(*Stmt).ExecContext")
int uprobe_Stmt_ExecContext(struct pt_regs *ctx)
{
	return stmt_start(ctx, DB_EXEC);
}

/* func (db *DB) beginDC(ctx context.Context, dc *driverConn,
 *	release func(error), opts *TxOptions) */
SEC("uprobe/database/sql.(*DB).beginDC")
int uprobe_DB_beginDC(struct pt_regs *ctx)
{
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);

	if (o)
		start(ctx, o, tgid, DB_BEGIN, no_query, GO_ARG4(ctx));
	return 0;
}

/* Commit and Rollback of a Tx that is already done return ErrTxDone at
 * once (e.g. the usual deferred Rollback after Commit): no span. */
static __always_inline int tx_end_start(struct pt_regs *ctx, __u32 op)
{
	__u32 tgid, done = 1;
	struct dbsql_offsets *o = target(&tgid);
	void *tx = GO_ARG1(ctx);

	if (!o)
		return 0;
	if (bpf_probe_read_user(&done, sizeof(done), tx + o->tx_done) || done)
		return 0;
	start(ctx, o, tgid, op, no_query, field_ptr(tx, o->tx_dc));
	return 0;
}

SEC("uprobe/database/sql.(*Tx).Commit")
int uprobe_Tx_Commit(struct pt_regs *ctx)
{
	return tx_end_start(ctx, DB_COMMIT);
}

/* func (tx *Tx) rollback(discardConn bool): Rollback, and awaitDone when
 * the Tx's context ends first. */
SEC("uprobe/database/sql.(*Tx).rollback")
int uprobe_Tx_rollback(struct pt_regs *ctx)
{
	return tx_end_start(ctx, DB_ROLLBACK);
}

/* -------------------------------------------------------------- ends */

/* func (rs *Rows) initContextClose(ctx, txctx context.Context) */
SEC("uprobe/database/sql.(*Rows).initContextClose")
int uprobe_Rows_initContextClose(struct pt_regs *ctx)
{
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);

	if (o)
		finish(ctx, o, tgid, 0, 0, field_ptr(GO_ARG1(ctx), o->rows_dc));
	return 0;
}

/* func (db *DB) putConn(dc *driverConn, err error, resetSession bool) */
SEC("uprobe/database/sql.(*DB).putConn")
int uprobe_DB_putConn(struct pt_regs *ctx)
{
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);

	if (o)
		finish(ctx, o, tgid, GO_ARG3(ctx), GO_ARG4(ctx), GO_ARG2(ctx));
	return 0;
}

/* func (tx *Tx) closemuRUnlockRelease(error) */
SEC("uprobe/database/sql.(*Tx).closemuRUnlockRelease")
int uprobe_Tx_closemuRUnlockRelease(struct pt_regs *ctx)
{
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);

	if (o)
		finish(ctx, o, tgid, GO_ARG2(ctx), GO_ARG3(ctx), field_ptr(GO_ARG1(ctx), o->tx_dc));
	return 0;
}

/* func (c *Conn) closemuRUnlockCondReleaseConn(err error) */
SEC("uprobe/database/sql.(*Conn).closemuRUnlockCondReleaseConn")
int uprobe_Conn_closemuRUnlockCondReleaseConn(struct pt_regs *ctx)
{
	__u32 tgid;
	struct dbsql_offsets *o = target(&tgid);

	if (o)
		finish(ctx, o, tgid, GO_ARG2(ctx), GO_ARG3(ctx), field_ptr(GO_ARG1(ctx), o->conn_dc));
	return 0;
}

/* func (tx *Tx) awaitDone(): beginDC starts it once the driver's BEGIN
 * succeeded, so the BEGIN of the goroutine that started it is over. */
SEC("uprobe/database/sql.(*Tx).awaitDone")
int uprobe_Tx_awaitDone(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct goroutine_key k = {.tgid = tgid};
	struct dbsql_offsets *o;
	struct dbsql_call *c;

	o = bpf_map_lookup_elem(&dbsql_procs, &tgid);
	if (!o || o->g.parent_goid == OFF_NONE)
		return 0;
	k.goid = read_s64(GO_G(ctx) + o->g.parent_goid);
	c = bpf_map_lookup_elem(&dbsql_calls, &k);
	if (!c || c->op != DB_BEGIN)
		return 0;
	emit(o, &k, c, bpf_ktime_get_ns(), END_RETURNED, 0, 0, field_ptr(GO_ARG1(ctx), o->tx_dc));
	bpf_map_delete_elem(&dbsql_calls, &k);
	return 0;
}

/* -------------------------------------------------------------- peer */

SEC("tracepoint/syscalls/sys_enter_write")
int tracepoint_sys_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct goroutine_key k = {.tgid = tgid};
	struct dbsql_offsets *o;
	struct dbsql_call *c;
	struct pt_regs *regs;

	o = bpf_map_lookup_elem(&dbsql_procs, &tgid);
	if (!o)
		return 0;
	/* The goroutine making the syscall: R14 of the saved user registers
	 * (Go's syscall wrappers keep g there). */
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return 0;
	k.goid = read_s64((void *)regs->r14 + o->g.goid);
	c = bpf_map_lookup_elem(&dbsql_calls, &k);
	if (!c || c->has_peer)
		return 0;
	if (!socket_tuple(ctx->args[0], &c->peer))
		c->has_peer = 1;
	return 0;
}
