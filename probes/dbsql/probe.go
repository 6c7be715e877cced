// Package dbsql traces Go database/sql: one CLIENT span per query, exec,
// BEGIN, COMMIT and ROLLBACK, for any driver, the child of the server span
// its goroutine serves. The query text is sanitized before it leaves the
// agent: every literal becomes '?'.
package dbsql

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/probes"
)

// Scope is the instrumentation scope of the spans this probe makes.
const Scope = "github.com/tracewire/tracewire/probes/dbsql"

// Decl declares the database/sql probe.
var Decl = probes.Decl{
	Name:     "dbsql",
	Objects:  loadBpf,
	Procs:    "dbsql_procs",
	Events:   "dbsql_events",
	Stale:    []string{"dbsql_calls"},
	Counters: []string{"ringbuf_full", "read_failed", "map_full", "rate_limited"},
	Hooks: hooks(
		"(*DB).queryDC", "uprobe_DB_queryDC",
		"(*DB).execDC", "uprobe_DB_execDC",
		"(*Stmt).QueryContext", "uprobe_Stmt_QueryContext",
		"(*Stmt).ExecContext", "uprobe_Stmt_ExecContext",
		"(*DB).beginDC", "uprobe_DB_beginDC",
		"(*Tx).Commit", "uprobe_Tx_Commit",
		"(*Tx).rollback", "uprobe_Tx_rollback",
		"(*Rows).initContextClose", "uprobe_Rows_initContextClose",
		"(*DB).putConn", "uprobe_DB_putConn",
		"(*Tx).closemuRUnlockRelease", "uprobe_Tx_closemuRUnlockRelease",
		"(*Conn).closemuRUnlockCondReleaseConn", "uprobe_Conn_closemuRUnlockCondReleaseConn",
		"(*Tx).awaitDone", "uprobe_Tx_awaitDone",
	),
	Offsets: func(bin *gobin.Binary) (any, error) {
		if !bin.HasFunc("database/sql.(*DB).queryDC") && !bin.HasFunc("database/sql.(*DB).execDC") {
			return nil, fmt.Errorf("database/sql: %w", probes.ErrNotUsed)
		}
		return offsets(bin)
	},
	Extend: func(coll *ebpf.Collection, log *slog.Logger) (probes.Extension, error) {
		x := &extension{log: log, errtypes: coll.Maps["dbsql_errtypes"], writeProg: coll.Programs["tracepoint_sys_enter_write"], procs: map[uint32]*process{}}
		if x.errtypes == nil || x.writeProg == nil {
			return nil, errors.New("the object lacks dbsql_errtypes or its write tracepoint")
		}
		return x, nil
	},
	Decoder: func(env probes.Env) probes.DecodeFunc {
		return probes.OneSpan((&decoder{clock: env.Clock, procs: env.Ext.(*extension).lookup}).decode)
	},
}

// hooks pairs each database/sql method with its program.
func hooks(pairs ...string) []probes.Hook {
	var hs []probes.Hook
	for i := 0; i < len(pairs); i += 2 {
		hs = append(hs, probes.Hook{Symbols: []string{"database/sql." + pairs[i]}, Program: pairs[i+1]})
	}
	return hs
}

// extension keeps what decoding needs of each target, tells the kernel
// where its error types keep their message, and attaches the write(2)
// tracepoint that finds each call's peer.
type extension struct {
	log       *slog.Logger
	errtypes  *ebpf.Map
	writeProg *ebpf.Program

	mu    sync.Mutex
	write link.Link           // the write(2) tracepoint, attached with the first target
	procs map[uint32]*process // what decoding needs of each target
}

func (x *extension) Add(pid int, bin *gobin.Binary, _ any) error {
	proc, err := newProcess(pid, bin)
	if err != nil {
		return err
	}
	if err := x.attachWrite(); err != nil {
		return err
	}
	for fn, et := range proc.errMessages {
		k := bpfErrtypeKey{Fn: fn, Tgid: uint32(pid)}
		if err := x.errtypes.Put(&k, &et); err != nil {
			x.log.Warn("error messages of a type will be missing", "pid", pid, "err", err)
		}
	}
	proc.errMessages = nil
	x.mu.Lock()
	x.procs[uint32(pid)] = proc
	x.mu.Unlock()
	return nil
}

// attachWrite attaches the write(2) tracepoint, once: it costs every
// process's writes a map lookup, so not before a target uses database/sql.
func (x *extension) attachWrite() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.write != nil {
		return nil
	}
	l, err := link.Tracepoint("syscalls", "sys_enter_write", x.writeProg, nil)
	if err != nil {
		return fmt.Errorf("attach tracepoint syscalls/sys_enter_write: %w", err)
	}
	x.write = l
	return nil
}

func (x *extension) Remove(pid int) {
	var k bpfErrtypeKey
	var v bpfErrtype
	var stale []bpfErrtypeKey
	for it := x.errtypes.Iterate(); it.Next(&k, &v); {
		if k.Tgid == uint32(pid) {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		_ = x.errtypes.Delete(&k)
	}
	x.mu.Lock()
	delete(x.procs, uint32(pid))
	x.mu.Unlock()
}

func (x *extension) lookup(pid uint32) *process {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.procs[pid]
}

// Detach removes the write tracepoint.
func (x *extension) Detach() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.write != nil {
		x.write.Close()
		x.write = nil
	}
}

// offsets collects the struct field offsets the programs read for bin.
func offsets(bin *gobin.Binary) (*bpfDbsqlOffsets, error) {
	o := &bpfDbsqlOffsets{}
	fs := append(probes.GoroutineFields(&o.G.Goid, &o.G.ParentGoid),
		probes.Field{Dst: &o.StmtQuery, Typ: "database/sql.Stmt", Name: "query"},
		probes.Field{Dst: &o.TxDc, Typ: "database/sql.Tx", Name: "dc"},
		probes.Field{Dst: &o.TxDone, Typ: "database/sql.Tx", Name: "done"},
		probes.Field{Dst: &o.RowsDc, Typ: "database/sql.Rows", Name: "dc"},
		probes.Field{Dst: &o.ConnDc, Typ: "database/sql.Conn", Name: "dc"},
		probes.Field{Dst: &o.DcCi, Typ: "database/sql.driverConn", Name: "ci"},
	)
	if err := probes.ResolveFields(bin, fs); err != nil {
		return nil, err
	}
	return o, nil
}

// driverSystems names the db.system.name of each known driver by its package.
var driverSystems = []struct{ pkg, system string }{
	{"github.com/jackc/pgx/", "postgresql"},
	{"github.com/lib/pq", "postgresql"},
	{"github.com/go-sql-driver/mysql", "mysql"},
	{"modernc.org/sqlite", "sqlite"},
	{"github.com/mattn/go-sqlite3", "sqlite"},
	{"github.com/glebarez/go-sqlite", "sqlite"},
	{"github.com/microsoft/go-mssqldb", "mssql"},
	{"github.com/denisenkom/go-mssqldb", "mssql"},
	{"github.com/sijms/go-ora", "oracle"},
	{"github.com/godror/godror", "oracle"},
	{"github.com/ClickHouse/clickhouse-go", "clickhouse"},
	{"github.com/snowflakedb/gosnowflake", "snowflake"},
	{"github.com/trinodb/trino-go-client", "trino"},
}

func systemOf(fn string) string {
	for _, d := range driverSystems {
		if strings.HasPrefix(fn, d.pkg) {
			return d.system
		}
	}
	return ""
}

// errorMessages are error types whose message is a string field, read in
// the kernel when a call fails with one of them (Error() cannot run there),
// and wrappers whose field is the error to read instead.
var errorMessages = []struct {
	typ, field string
	wrapper    bool
}{
	{"errors.errorString", "s", false},
	{"fmt.wrapError", "msg", false},
	{"fmt.wrapErrors", "msg", false},
	{"github.com/jackc/pgx/v5/pgconn.PgError", "Message", false},
	{"github.com/jackc/pgx/v5/pgconn.PrepareError", "err", true},
	{"github.com/jackc/pgx/v4/pgconn.PgError", "Message", false},
	{"github.com/jackc/pgconn.PgError", "Message", false},
	{"github.com/lib/pq.Error", "Message", false},
	{"github.com/go-sql-driver/mysql.MySQLError", "Message", false},
}

// process is what decoding needs of one target: runtime addresses of its
// drivers' Begin methods and of its error types' Error methods.
type process struct {
	drivers     map[uint64]string     // Begin method -> db.system
	system      string                // the one driver linked in, "" if several
	errTypes    map[uint64]string     // Error method -> type name, e.g. "*pgconn.PgError"
	errMessages map[uint64]bpfErrtype // Error method -> where its message is (for the kernel)
}

func newProcess(pid int, bin *gobin.Binary) (*process, error) {
	bias, err := bin.LoadBias(pid)
	if err != nil {
		return nil, err
	}
	p := &process{drivers: map[uint64]string{}, errTypes: map[uint64]string{}, errMessages: map[uint64]bpfErrtype{}}
	systems := map[string]bool{}
	for mod := range bin.Modules {
		if s := systemOf(mod + "/"); s != "" {
			systems[s] = true
		}
	}
	if len(systems) == 1 {
		for s := range systems {
			p.system = s
		}
	}
	fns := bin.Funcs(func(n string) bool {
		return strings.HasSuffix(n, ".Error") || strings.HasSuffix(n, ".Begin") && systemOf(n) != ""
	})
	byName := make(map[string]uint64, len(fns))
	for addr, name := range fns {
		byName[name] = addr + bias
		if m, ok := strings.CutSuffix(name, ".Begin"); ok {
			p.drivers[addr+bias] = systemOf(m)
		} else if t := errTypeName(name); t != "" {
			p.errTypes[addr+bias] = t
		}
	}
	for _, em := range errorMessages {
		off, err := bin.FieldOffset(em.typ, em.field)
		if err != nil {
			continue // not linked in, or no layout known (stripped): the type name stands in
		}
		i := strings.LastIndexByte(em.typ, '.')
		for _, fn := range []string{em.typ[:i] + ".(*" + em.typ[i+1:] + ").Error", em.typ + ".Error"} {
			if addr, ok := byName[fn]; ok {
				p.errMessages[addr] = bpfErrtype{Off: off, Wrapper: b2u(em.wrapper)}
			}
		}
	}
	return p, nil
}

// errTypeName turns "github.com/x/pgconn.(*PgError).Error" into
// "*pgconn.PgError", as %T prints it.
func errTypeName(fn string) string {
	m, ok := strings.CutSuffix(fn, ".Error")
	if !ok {
		return ""
	}
	slash := strings.LastIndexByte(m, '/')
	dot := strings.IndexByte(m[slash+1:], '.')
	if dot < 0 {
		return ""
	}
	pkg, typ := m[slash+1:slash+1+dot], m[slash+1+dot+1:]
	if t, ok := strings.CutPrefix(typ, "(*"); ok {
		return "*" + pkg + "." + strings.TrimSuffix(t, ")")
	}
	if strings.ContainsAny(typ, "().") {
		return "" // a closure or generic instance, not a type's method
	}
	return pkg + "." + typ
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
