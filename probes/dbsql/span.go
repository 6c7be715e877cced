package dbsql

import (
	"unsafe"

	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// decoder turns events into spans; it belongs to the one goroutine of Run.
type decoder struct {
	clock   kernel.Clock
	procs   func(pid uint32) *process
	text    []byte // sanitized query
	scratch []byte
}

var opNames = [...]string{
	bpfDbsqlOpDB_BEGIN:    "BEGIN",
	bpfDbsqlOpDB_COMMIT:   "COMMIT",
	bpfDbsqlOpDB_ROLLBACK: "ROLLBACK",
}

// decode turns one ring-buffer record into a span, or nil when the record
// is not one it knows or its process is unknown.
func (d *decoder) decode(raw []byte, process func(pid int) *spans.Process) *spans.Span {
	e := kernel.Record[bpfDbsqlEvent](raw)
	if e == nil || e.Op < uint32(bpfDbsqlOpDB_QUERY) || e.Op > uint32(bpfDbsqlOpDB_ROLLBACK) {
		return nil
	}
	proc := process(int(e.Pid))
	if proc == nil {
		return nil
	}
	return d.span(e, proc, d.procs(e.Pid))
}

// span builds the semconv database client span of one call.
func (d *decoder) span(e *bpfDbsqlEvent, proc *spans.Process, pi *process) *spans.Span {
	s := spans.New()
	s.Process, s.Scope, s.Kind = proc, Scope, spans.KindClient
	probes.SetContext(s, e.Sc.TraceId, e.Sc.SpanId, e.Sc.ParentId, e.Sc.Flags, uint8(bpfTwFlagFLAG_LINK_PENDING))
	s.StartNs, s.EndNs = d.clock.Wall(e.StartNs), d.clock.Wall(e.EndNs)

	system := "other_sql"
	if pi != nil {
		if sys := pi.drivers[e.DriverFn]; sys != "" {
			system = sys
		} else if pi.system != "" {
			system = pi.system
		}
	}
	s.Attrs = append(s.Attrs, spans.String("db.system.name", system))
	var query []byte
	if op := bpfDbsqlOp(e.Op); op == bpfDbsqlOpDB_QUERY || op == bpfDbsqlOpDB_EXEC {
		query = kernel.Text(e.Query[:], e.QueryLen)
		d.text = probes.SQLQuery(s, system, unsafe.String(unsafe.SliceData(query), len(query)), e.QueryLen > int64(len(e.Query)), d.text)
	} else {
		s.Name = opNames[op]
		s.Attrs = append(s.Attrs, spans.String("db.operation.name", s.Name))
	}
	if e.HasPeer != 0 {
		d.scratch = probes.RemoteAddr(e.Peer.Family, e.Peer.Remote).AppendTo(d.scratch[:0])
		s.Attrs = append(s.Attrs, spans.String("server.address", s.Str(d.scratch)), spans.Int("server.port", int64(e.Peer.Rport)))
	}
	switch {
	case e.End == uint32(bpfDbsqlEndEND_UNSEEN):
		s.Error, s.StatusMsg = true, "the call's end was not observed"
	case e.ErrFn != 0:
		s.Error = true
		typ := ""
		if pi != nil {
			typ = pi.errTypes[e.ErrFn]
		}
		if typ != "" {
			s.Attrs = append(s.Attrs, spans.String("error.type", typ))
		}
		if e.ErrLen > 0 {
			msg := kernel.Text(e.Err[:], e.ErrLen)
			d.scratch = probes.SQLError(s, unsafe.String(unsafe.SliceData(msg), len(msg)), unsafe.String(unsafe.SliceData(query), len(query)), d.scratch)
		} else {
			s.StatusMsg = typ
		}
	}
	return s
}
