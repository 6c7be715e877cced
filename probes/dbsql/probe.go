// Package dbsql traces Go database/sql: one CLIENT span per query, exec,
// BEGIN, COMMIT and ROLLBACK, for any driver, the child of the server span
// its goroutine serves. The query text is sanitized before it leaves the
// agent: every literal becomes '?'.
package dbsql

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// Scope is the instrumentation scope of the spans this probe makes.
const Scope = "github.com/tracewire/tracewire/probes/dbsql"

// Probe is the loaded set of database/sql programs serving every target.
type Probe struct {
	*probes.Core
	objs  bpfObjects
	clock kernel.Clock
	log   *slog.Logger

	mu    sync.Mutex
	write link.Link           // the write(2) tracepoint, attached with the first target
	procs map[uint32]*process // what decoding needs of each target
}

// Load loads the programs and maps (the server spans map from shared).
func Load(log *slog.Logger, shared *probes.Shared) (*Probe, error) {
	p := &Probe{clock: kernel.NewClock(), log: log, procs: map[uint32]*process{}}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("read dbsql BPF objects: %w", err)
	}
	if err := shared.Load(spec, &p.objs); err != nil {
		return nil, fmt.Errorf("load dbsql BPF objects: %w", err)
	}
	m := &p.objs.bpfMaps
	p.Core, err = probes.NewCore(spec, probes.CoreMaps{
		Procs: m.DbsqlProcs, Stats: m.Stats, Events: m.DbsqlEvents,
		Counters: []string{"ringbuf_full", "read_failed", "map_full", "rate_limited"},
		Stale:    map[string]*ebpf.Map{"calls": m.DbsqlCalls},
	}, log)
	if err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

// Add starts tracing database/sql calls of process pid. It fails when the
// executable does not use database/sql.
func (p *Probe) Add(pid int, file kernel.FileID, exe string, bin *gobin.Binary) error {
	if !bin.HasFunc("database/sql.(*DB).queryDC") && !bin.HasFunc("database/sql.(*DB).execDC") {
		return fmt.Errorf("database/sql: %w", probes.ErrNotUsed)
	}
	off, err := offsets(bin)
	if err != nil {
		return err
	}
	proc, err := newProcess(pid, bin)
	if err != nil {
		return err
	}
	if err := p.attachWrite(); err != nil {
		return err
	}
	o := &p.objs
	if err := p.Core.Add(pid, file, exe, bin, off, []probes.Uprobe{
		{Symbol: "database/sql.(*DB).queryDC", Prog: o.UprobeDB_queryDC},
		{Symbol: "database/sql.(*DB).execDC", Prog: o.UprobeDB_execDC},
		{Symbol: "database/sql.(*Stmt).QueryContext", Prog: o.UprobeStmtQueryContext},
		{Symbol: "database/sql.(*Stmt).ExecContext", Prog: o.UprobeStmtExecContext},
		{Symbol: "database/sql.(*DB).beginDC", Prog: o.UprobeDB_beginDC},
		{Symbol: "database/sql.(*Tx).Commit", Prog: o.UprobeTxCommit},
		{Symbol: "database/sql.(*Tx).rollback", Prog: o.UprobeTxRollback},
		{Symbol: "database/sql.(*Rows).initContextClose", Prog: o.UprobeRowsInitContextClose},
		{Symbol: "database/sql.(*DB).putConn", Prog: o.UprobeDB_putConn},
		{Symbol: "database/sql.(*Tx).closemuRUnlockRelease", Prog: o.UprobeTxClosemuRUnlockRelease},
		{Symbol: "database/sql.(*Conn).closemuRUnlockCondReleaseConn", Prog: o.UprobeConnClosemuRUnlockCondReleaseConn},
		{Symbol: "database/sql.(*Tx).awaitDone", Prog: o.UprobeTxAwaitDone},
	}); err != nil {
		return err
	}
	for fn, et := range proc.errMessages {
		k := bpfErrtypeKey{Fn: fn, Tgid: uint32(pid)}
		if err := o.DbsqlErrtypes.Put(&k, &et); err != nil {
			p.log.Warn("error messages of a type will be missing", "pid", pid, "err", err)
		}
	}
	proc.errMessages = nil
	p.mu.Lock()
	p.procs[uint32(pid)] = proc
	p.mu.Unlock()
	return nil
}

// attachWrite attaches the write(2) tracepoint that finds each call's peer,
// once: it costs every process's writes a map lookup, so not before a
// target uses database/sql.
func (p *Probe) attachWrite() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.write != nil {
		return nil
	}
	l, err := link.Tracepoint("syscalls", "sys_enter_write", p.objs.TracepointSysEnterWrite, nil)
	if err != nil {
		return fmt.Errorf("attach tracepoint syscalls/sys_enter_write: %w", err)
	}
	p.write = l
	return nil
}

// Remove stops tracing pid.
func (p *Probe) Remove(pid int, file kernel.FileID) {
	p.Core.Remove(pid, file)
	var k bpfErrtypeKey
	var v bpfErrtype
	var stale []bpfErrtypeKey
	for it := p.objs.DbsqlErrtypes.Iterate(); it.Next(&k, &v); {
		if k.Tgid == uint32(pid) {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		_ = p.objs.DbsqlErrtypes.Delete(&k)
	}
	p.mu.Lock()
	delete(p.procs, uint32(pid))
	p.mu.Unlock()
}

// Run turns ring-buffer events into spans until done is closed and every
// event already submitted is read.
func (p *Probe) Run(done <-chan struct{}, process func(pid int) *spans.Process, emit func(*spans.Span)) {
	d := &decoder{clock: p.clock, procs: p.lookup}
	p.Core.Run(done, func(raw []byte) *spans.Span { return d.decode(raw, process) }, emit)
}

func (p *Probe) lookup(pid uint32) *process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.procs[pid]
}

// Detach removes every hook: no new events after it returns.
func (p *Probe) Detach() {
	p.Core.Detach()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.write != nil {
		p.write.Close()
		p.write = nil
	}
}

// Close detaches, ends Run and frees the programs.
func (p *Probe) Close() {
	p.Detach()
	p.Core.Close()
	p.objs.Close()
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

// driverSystems names the db.system of each known driver by its package.
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
