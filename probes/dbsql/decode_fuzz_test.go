package dbsql

import (
	"strings"
	"testing"

	"github.com/tracewire/tracewire/internal/ringtest"
	"github.com/tracewire/tracewire/spans"
)

// FuzzDecode: any ring-buffer record, however corrupt, decodes to a span or
// to nil (counted by the caller), never a crash. (What the query text
// keeps is sqltext's FuzzSummarize.)
func FuzzDecode(f *testing.F) {
	const driver, errType = 0x401000, 0x402000
	query := func(op bpfDbsqlOp, q string) *bpfDbsqlEvent {
		e := &bpfDbsqlEvent{Op: uint32(op), Pid: 1, DriverFn: driver, HasPeer: 1}
		e.QueryLen = ringtest.Fill(e.Query[:], q)
		e.Peer.Family, e.Peer.Rport = 2, 5432
		copy(e.Peer.Remote[:], []byte{127, 0, 0, 1})
		return e
	}
	failed := query(bpfDbsqlOpDB_EXEC, "INSERT INTO users (email) VALUES ('secret@x.org') -- note")
	failed.ErrFn = errType
	failed.ErrLen = ringtest.Fill(failed.Err[:], `duplicate key value "secret@x.org"`)
	cut := query(bpfDbsqlOpDB_QUERY, "SELECT * FROM t WHERE a IN (1, 2, 3) AND b = '"+strings.Repeat("x", 2000))
	unseen := &bpfDbsqlEvent{Op: uint32(bpfDbsqlOpDB_BEGIN), Pid: 1, End: uint32(bpfDbsqlEndEND_UNSEEN)}
	seeds := [][]byte{ringtest.Bytes(failed), ringtest.Bytes(cut), ringtest.Bytes(unseen), {6, 0, 0, 0}}

	proc := &process{drivers: map[uint64]string{driver: "postgresql"}, errTypes: map[uint64]string{errType: "*pgconn.PgError"}}
	d := &decoder{procs: func(uint32) *process { return proc }}
	ringtest.Fuzz(f, seeds, d.decode, func(t *testing.T, s *spans.Span) {
		if len(s.StatusMsg) > len(bpfDbsqlEvent{}.Err) {
			t.Fatalf("status message of %d bytes", len(s.StatusMsg))
		}
	})
}
