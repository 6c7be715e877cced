package wire

import (
	"encoding/binary"
	"strings"
	"testing"
)

// pgMsg is a typed PostgreSQL message.
func pgMsg(typ byte, parts ...string) string {
	body := strings.Join(parts, "")
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return string(b) + body
}

func pgStartup() string {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, uint32(8+len("user\x00u\x00\x00")))
	binary.BigEndian.PutUint32(b[4:], pgProtocol3)
	return string(b) + "user\x00u\x00\x00"
}

// ops returns the finished database calls as "query|error".
func (r *rig) ops() []string {
	var out []string
	for _, f := range r.got {
		if f.op != nil {
			out = append(out, f.op.query+"|"+f.op.errMsg)
		}
	}
	return out
}

func TestPostgresSimpleAndExtended(t *testing.T) {
	r := newRig()
	r.out(pgStartup())
	r.in(pgMsg('R', "\x00\x00\x00\x00") + pgMsg('Z', "I"))
	r.out(pgMsg('Q', "SELECT * FROM users WHERE id = 7\x00"))
	r.in(pgMsg('T', "...") + pgMsg('D', strings.Repeat("x", 5000)))
	r.in(pgMsg('C', "SELECT 1\x00") + pgMsg('Z', "I"))
	// A named statement, prepared once, executed twice; the second time
	// in a cycle of Bind/Execute/Sync only.
	r.out(pgMsg('P', "s1\x00UPDATE users SET name = $1 WHERE id = $2\x00\x00\x00") + pgMsg('S'))
	r.in(pgMsg('1') + pgMsg('Z', "I"))
	for range 2 {
		r.out(pgMsg('B', "\x00s1\x00\x00\x00") + pgMsg('E', "\x00\x00\x00\x00\x00") + pgMsg('S'))
		r.in(pgMsg('2') + pgMsg('C', "UPDATE 1\x00") + pgMsg('Z', "I"))
	}
	r.out(pgMsg('Q', "SELECT nope\x00"))
	r.in(pgMsg('E', "SERROR\x00C42703\x00Mcolumn \"nope\" does not exist\x00\x00") + pgMsg('Z', "I"))
	got := strings.Join(r.ops(), "\n")
	want := strings.Join([]string{
		"SELECT * FROM users WHERE id = 7|",
		"UPDATE users SET name = $1 WHERE id = $2|",
		"UPDATE users SET name = $1 WHERE id = $2|",
		`SELECT nope|column "nope" does not exist`,
	}, "\n")
	if got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	if f := r.got[len(r.got)-1]; f.op.errCode != "42703" || f.op.system != "postgresql" {
		t.Errorf("error code %q system %q", f.op.errCode, f.op.system)
	}
}

// A statement prepared before the agent saw the connection still gives a
// span, without a text.
func TestPostgresUnknownStatement(t *testing.T) {
	r := newRig()
	r.out(pgMsg('P', "\x00SELECT 1\x00\x00\x00")) // recognised by its Parse
	r.out(pgMsg('S'))
	r.in(pgMsg('1') + pgMsg('Z', "I"))
	r.out(pgMsg('B', "\x00old\x00\x00\x00") + pgMsg('E', "\x00\x00\x00\x00\x00") + pgMsg('S'))
	r.in(pgMsg('2') + pgMsg('C', "SELECT 1\x00") + pgMsg('Z', "I"))
	if len(r.got) != 1 || !r.got[0].op.unknown || r.d.count.UnknownStatements.Load() != 1 {
		t.Fatalf("got %v, unknown %d", r.ops(), r.d.count.UnknownStatements.Load())
	}
}

// myPkt is a MySQL packet.
func myPkt(seq byte, payload string) string {
	n := len(payload)
	return string([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}) + payload
}

func TestMySQLQueriesAndStatements(t *testing.T) {
	r := newRig()
	r.in(myPkt(0, "\x0a10.11.6-MariaDB\x00"+strings.Repeat("s", 40)))
	r.out(myPkt(1, strings.Repeat("a", 60)))
	r.in(myPkt(2, "\x00\x00\x00\x02\x00\x00\x00"))
	r.out(myPkt(0, "\x03INSERT INTO t VALUES (1)"))
	r.in(myPkt(1, "\x00\x01\x00\x02\x00\x00\x00"))
	// A result set: 2 columns, their definitions, the EOF after them
	// (no CLIENT_DEPRECATE_EOF), rows, the EOF after them.
	r.out(myPkt(0, "\x03SELECT a, b FROM t"))
	r.in(myPkt(1, "\x02") + myPkt(2, "col-a") + myPkt(3, "col-b") + myPkt(4, "\xfe\x00\x00\x02\x00"))
	r.in(myPkt(5, "\x011\x012") + myPkt(6, "\xfe\x00\x00\x02\x00"))
	// A prepared statement, executed; its result ends with an OK (0xfe).
	r.out(myPkt(0, "\x16SELECT b FROM t WHERE a = ?"))
	r.in(myPkt(1, "\x00\x07\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00") + myPkt(2, "param") + myPkt(3, "col"))
	r.out(myPkt(0, "\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00"))
	r.in(myPkt(1, "\x01") + myPkt(2, "col-b") + myPkt(3, "\x00\x00\x01\x32") + myPkt(4, "\xfe\x00\x00\x02\x00\x00\x00"))
	r.out(myPkt(0, "\x03SELECT nope"))
	r.in(myPkt(1, "\xff\x28\x04#42S22Unknown column 'nope'"))
	got := strings.Join(r.ops(), "\n")
	want := strings.Join([]string{
		"INSERT INTO t VALUES (1)|",
		"SELECT a, b FROM t|",
		"SELECT b FROM t WHERE a = ?|",
		"SELECT nope|Unknown column 'nope'",
	}, "\n")
	if got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	if f := r.got[len(r.got)-1]; f.op.errCode != "1064" || f.op.system != "mysql" {
		t.Errorf("error code %q system %q", f.op.errCode, f.op.system)
	}
}

// An SSLRequest answered 'N' goes on in plaintext; answered 'S', the
// connection is encrypted and no longer read.
func TestPostgresSSLRequest(t *testing.T) {
	sslRequest := func() string {
		b := make([]byte, 8)
		binary.BigEndian.PutUint32(b, 8)
		binary.BigEndian.PutUint32(b[4:], pgSSL)
		return string(b)
	}
	r := newRig()
	r.out(sslRequest())
	r.in("N")
	r.out(pgStartup())
	r.in(pgMsg('R', "\x00\x00\x00\x00") + pgMsg('Z', "I"))
	r.out(pgMsg('Q', "SELECT 1\x00"))
	r.in(pgMsg('C', "SELECT 1\x00") + pgMsg('Z', "I"))
	if got := r.ops(); len(got) != 1 || got[0] != "SELECT 1|" {
		t.Errorf("plaintext after N: %q", got)
	}

	r = newRig()
	r.out(sslRequest())
	r.in("S")
	r.out("\x16\x03\x01\x02\x00" + strings.Repeat("t", 512)) // a TLS ClientHello
	r.out(pgMsg('Q', "SELECT 1\x00"))                        // bytes that only look like a query
	r.in(pgMsg('Z', "I"))
	if got := r.ops(); len(got) != 0 {
		t.Errorf("encrypted connection read: %q", got)
	}
}
