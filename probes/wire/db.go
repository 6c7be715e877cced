package wire

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
)

// dbOp is one database call a target made: a PostgreSQL simple query or
// extended-protocol cycle up to its Sync, a MySQL command.
type dbOp struct {
	system  string // db.system
	start   uint64
	query   string // the statement's text, as captured
	cut     bool   // the text was cut by the capture
	unknown bool   // a prepared statement whose text the agent never saw
	span    bool   // a call worth a span (not a Parse alone, a ping, ...)
	errMsg  string
	errCode string // SQLSTATE, or the MySQL error number
	ids     spanIDs
}

// PostgreSQL protocol constants (protocol 3.0).
const (
	pgProtocol3 = 196608   // StartupMessage
	pgSSL       = 80877103 // SSLRequest
	pgGSS       = 80877104 // GSSENCRequest
)

// isPGStartup tells whether one syscall's bytes are exactly a StartupMessage,
// SSLRequest or GSSENCRequest, the first message of a PostgreSQL client.
func isPGStartup(data []byte, n int64) bool {
	if len(data) < 8 || int64(binary.BigEndian.Uint32(data)) != n {
		return false
	}
	switch binary.BigEndian.Uint32(data[4:]) {
	case pgProtocol3, pgSSL, pgGSS:
		return true
	}
	return false
}

// isPGQuery tells whether one syscall's bytes are a chain of frontend
// messages starting with a Query or Parse (a connection the agent saw open
// only now): each captured header plausible, the lengths ending exactly at
// n when all of them were captured.
func isPGQuery(data []byte, n int64) bool {
	if len(data) < 5 || data[0] != 'Q' && data[0] != 'P' {
		return false
	}
	var pos int64
	for pos < n {
		if pos+5 > int64(len(data)) {
			return pos > 0 // the rest was not captured
		}
		l := int64(binary.BigEndian.Uint32(data[pos+1:]))
		if strings.IndexByte("QPBEDSHCX", data[pos]) < 0 || l < 4 {
			return false
		}
		pos += 1 + l
	}
	return pos == n
}

// pgConn follows a PostgreSQL client connection.
type pgConn struct {
	d       *decoder
	c       *conn
	thread  threadKey
	out, in framed
	started bool // the startup message went by
	ssl     bool // an SSLRequest awaits its one-byte answer
	stmts   map[string]dbStmt
	portals map[string]dbStmt
	cycle   *dbOp   // extended-protocol messages since the last Sync
	ops     []*dbOp // awaiting ReadyForQuery, oldest first
}

// stmtsMax bounds the statements remembered per connection: past it they
// are forgotten (their executions become spans without text, counted).
const stmtsMax = 4096

// remember keeps v under k in m, forgetting all when m is full.
func remember[K comparable](m map[K]dbStmt, k K, v dbStmt) {
	if _, ok := m[k]; !ok && len(m) >= stmtsMax {
		clear(m)
	}
	m[k] = v
}

// dbStmt is a prepared statement's text.
type dbStmt struct {
	query string
	cut   bool
}

func newPG(d *decoder, c *conn) *pgConn {
	return &pgConn{d: d, c: c, stmts: map[string]dbStmt{}, portals: map[string]dbStmt{}}
}

// pgFrontend and pgBackend frame the two directions: a type byte, then a
// big-endian length that counts itself.
type pgFrontend struct{ *pgConn }
type pgBackend struct{ *pgConn }

func pgLength(hdr []byte) (int64, bool) {
	l := int64(binary.BigEndian.Uint32(hdr[1:]))
	return l - 4, l >= 4 && l < 1<<30 && (hdr[0] >= 'A' && hdr[0] <= 'Z' || hdr[0] >= 'a' && hdr[0] <= 'z' || hdr[0] >= '1' && hdr[0] <= '3')
}

func (pgFrontend) size() int                                 { return 5 }
func (pgFrontend) length(hdr []byte) (int64, bool)           { return pgLength(hdr) }
func (pgBackend) size() int                                  { return 5 }
func (pgBackend) length(hdr []byte) (int64, bool)            { return pgLength(hdr) }
func (p pgFrontend) message(h, b []byte, n int64, ts uint64) { p.frontend(h[0], b, n, ts) }
func (p pgBackend) message(h, b []byte, n int64, ts uint64)  { p.backend(h[0], b, ts) }

func (p *pgConn) feed(e *event) {
	switch {
	case e.dir == dirOut && !p.started && isPGStartup(e.data, e.n):
		p.started = true
		p.ssl = binary.BigEndian.Uint32(e.data[4:]) != pgProtocol3
		p.thread = threadKey{e.pid, e.tid}
	case e.dir == dirIn && p.ssl:
		p.ssl = false
		if len(e.data) > 0 && e.data[0] != 'N' {
			p.c.proto = protoNone // encrypted from now on: out of reach
			return
		}
		p.started = false // the real startup follows
		if e.n > 1 {
			p.in.feed(pgBackend{p}, e.ts, e.data[min(1, len(e.data)):], e.n-1)
		}
	case e.dir == dirOut:
		p.thread = threadKey{e.pid, e.tid}
		p.out.feed(pgFrontend{p}, e.ts, e.data, e.n)
	default:
		p.in.feed(pgBackend{p}, e.ts, e.data, e.n)
	}
}

// frontend takes a message the target sent.
func (p *pgConn) frontend(typ byte, b []byte, n int64, ts uint64) {
	cut := int64(len(b)) < n
	switch typ {
	case 'Q':
		q, qcut := cstring(b, cut)
		op := p.d.newOp("postgresql", ts, p.thread)
		op.query, op.cut, op.span = q, qcut, true
		p.ops = append(p.ops, op)
	case 'P':
		name, rest, ok := bytes.Cut(b, []byte{0})
		if ok {
			q, qcut := cstring(rest, cut)
			remember(p.stmts, string(name), dbStmt{q, qcut})
		}
		p.inCycle(ts)
	case 'B':
		portal, rest, ok1 := bytes.Cut(b, []byte{0})
		stmt, _, ok2 := bytes.Cut(rest, []byte{0})
		if ok1 && ok2 {
			remember(p.portals, string(portal), p.stmts[string(stmt)]) // empty when not seen
		}
		p.inCycle(ts)
	case 'E':
		op := p.inCycle(ts)
		portal, _, _ := bytes.Cut(b, []byte{0})
		s := p.portals[string(portal)]
		op.span = true
		if s.query == "" {
			op.unknown = true // prepared before the agent saw the connection
			p.d.count.UnknownStatements.Add(1)
		} else {
			op.query, op.cut = s.query, s.cut
		}
	case 'D', 'H':
		p.inCycle(ts)
	case 'C': // Close a statement or a portal
		p.inCycle(ts)
		if len(b) > 1 {
			name, _, _ := bytes.Cut(b[1:], []byte{0})
			if b[0] == 'S' {
				delete(p.stmts, string(name))
			} else {
				delete(p.portals, string(name))
			}
		}
	case 'S': // Sync: the cycle's ReadyForQuery follows
		op := p.cycle
		if op == nil {
			op = p.d.newOp("postgresql", ts, p.thread)
		}
		p.cycle = nil
		p.ops = append(p.ops, op)
	}
}

// inCycle returns the extended-protocol cycle in progress, starting one.
func (p *pgConn) inCycle(ts uint64) *dbOp {
	if p.cycle == nil {
		p.cycle = p.d.newOp("postgresql", ts, p.thread)
	}
	return p.cycle
}

// backend takes a message the server sent.
func (p *pgConn) backend(typ byte, b []byte, ts uint64) {
	if len(p.ops) == 0 {
		return
	}
	op := p.ops[0]
	switch typ {
	case 'E': // ErrorResponse: fields of a type byte and a C string
		for len(b) > 1 && b[0] != 0 {
			f := b[0]
			v, rest, _ := bytes.Cut(b[1:], []byte{0})
			switch f {
			case 'M':
				op.errMsg = string(v)
			case 'C':
				op.errCode = string(v)
			}
			b = rest
		}
	case 'Z': // ReadyForQuery: the call is over
		p.ops = p.ops[1:]
		p.d.finishOp(p.c, op, ts)
	}
}

// cstring returns the text up to its NUL, and whether it was cut.
func cstring(b []byte, cut bool) (string, bool) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i]), false
	}
	return string(b), cut
}

// MySQL commands the agent follows.
const (
	comQuit        = 0x01
	comQuery       = 0x03
	comStmtPrepare = 0x16
	comStmtExecute = 0x17
	comStmtClose   = 0x19
)

// isMySQLGreeting tells whether one syscall's bytes are exactly a MySQL
// server's first packet (protocol 10 handshake).
func isMySQLGreeting(data []byte, n int64) bool {
	return len(data) >= 5 && mysqlLen(data)+4 == n && data[3] == 0 && data[4] == 0x0a
}

// isMySQLCommand tells whether one syscall's bytes are exactly one query or
// statement command (a connection the agent saw open only now).
func isMySQLCommand(data []byte, n int64) bool {
	return len(data) >= 5 && mysqlLen(data)+4 == n && data[3] == 0 &&
		(data[4] == comQuery || data[4] == comStmtPrepare || data[4] == comStmtExecute)
}

func mysqlLen(b []byte) int64 { return int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16 }

// myConn follows a MySQL/MariaDB client connection.
type myConn struct {
	d       *decoder
	c       *conn
	thread  threadKey
	out, in framed
	stmts   map[uint32]dbStmt
	op      *dbOp // the command awaiting its response
	prepare *dbStmt
	// The response so far: packets after the first, columns announced,
	// whether the EOF after the column definitions went by.
	packets, columns int64
	colsEOF          bool
	lastIn           uint64
}

func newMySQL(d *decoder, c *conn) *myConn {
	return &myConn{d: d, c: c, stmts: map[uint32]dbStmt{}}
}

type myFrames struct {
	*myConn
	out bool
}

func (myFrames) size() int { return 4 }
func (myFrames) length(hdr []byte) (int64, bool) {
	return mysqlLen(hdr), true
}
func (m myFrames) message(h, b []byte, n int64, ts uint64) {
	if m.out {
		m.command(h[3], b, n, ts)
	} else {
		m.response(b, n, ts)
	}
}

func (m *myConn) feed(e *event) {
	if e.dir == dirOut {
		m.thread = threadKey{e.pid, e.tid}
		m.out.feed(myFrames{m, true}, e.ts, e.data, e.n)
		return
	}
	m.lastIn = e.ts
	m.in.feed(myFrames{m, false}, e.ts, e.data, e.n)
}

// command takes a packet the target sent: a command starts a sequence (0).
func (m *myConn) command(seq byte, b []byte, n int64, ts uint64) {
	if seq == 1 && n == 32 {
		m.c.proto = protoNone // an SSL request: encrypted from now on
		return
	}
	if seq != 0 || len(b) == 0 {
		return
	}
	if m.op != nil {
		// Its end was not recognised (bytes not captured): it ended by
		// the time the next command went out.
		m.d.finishOp(m.c, m.op, m.lastIn)
		m.op = nil
	}
	cut := int64(len(b)) < n
	m.prepare = nil
	switch b[0] {
	case comQuery:
		op := m.d.newOp("mysql", ts, m.thread)
		op.query, op.cut, op.span = string(b[1:]), cut, true
		m.start(op)
	case comStmtPrepare:
		m.prepare = &dbStmt{string(b[1:]), cut}
		m.start(m.d.newOp("mysql", ts, m.thread))
	case comStmtExecute:
		op := m.d.newOp("mysql", ts, m.thread)
		op.span = true
		if s, ok := m.stmts[le32(b[1:])]; ok && len(b) >= 5 {
			op.query, op.cut = s.query, s.cut
		} else {
			op.unknown = true
			m.d.count.UnknownStatements.Add(1)
		}
		m.start(op)
	case comStmtClose:
		if len(b) >= 5 {
			delete(m.stmts, le32(b[1:]))
		}
	case comQuit:
	default:
		m.start(m.d.newOp("mysql", ts, m.thread))
	}
}

func (m *myConn) start(op *dbOp) {
	m.op, m.packets, m.columns, m.colsEOF = op, 0, 0, false
}

// response takes a packet of the server's answer to the current command.
func (m *myConn) response(b []byte, n int64, ts uint64) {
	op := m.op
	if op == nil || len(b) == 0 {
		return
	}
	first := m.packets == 0
	m.packets++
	switch {
	case b[0] == 0xff: // ERR: code, '#' and SQLSTATE, message
		if len(b) >= 3 {
			op.errCode = strconv.Itoa(int(b[1]) | int(b[2])<<8)
			msg := b[3:]
			if len(msg) >= 6 && msg[0] == '#' {
				msg = msg[6:]
			}
			op.errMsg = string(msg)
		}
		m.end(ts)
	case first && b[0] == 0x00: // OK, or a prepared statement's id
		if m.prepare != nil && len(b) >= 5 {
			remember(m.stmts, le32(b[1:]), *m.prepare)
		}
		m.end(ts)
	case first: // a result set: the number of its columns
		m.columns, _ = lenEncInt(b)
	case m.packets <= m.columns+1: // column definitions
	case b[0] == 0xfe && n == 5 && !m.colsEOF: // the EOF after them (no CLIENT_DEPRECATE_EOF)
		m.colsEOF = true
	case b[0] == 0xfe && n < 0xffffff: // the EOF or OK after the rows
		m.end(ts)
	}
}

func (m *myConn) end(ts uint64) {
	m.d.finishOp(m.c, m.op, ts)
	m.op, m.prepare = nil, nil
}

func le32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// lenEncInt reads a MySQL length-encoded integer.
func lenEncInt(b []byte) (int64, bool) {
	switch {
	case len(b) == 0:
		return 0, false
	case b[0] < 0xfb:
		return int64(b[0]), true
	case b[0] == 0xfc && len(b) >= 3:
		return int64(binary.LittleEndian.Uint16(b[1:])), true
	case b[0] == 0xfd && len(b) >= 4:
		return int64(b[1]) | int64(b[2])<<8 | int64(b[3])<<16, true
	case b[0] == 0xfe && len(b) >= 9:
		return int64(binary.LittleEndian.Uint64(b[1:])), true
	}
	return 0, false
}
