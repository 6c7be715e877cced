package sqltext

import (
	"strings"
	"testing"
)

// FuzzRedact: a driver's error message and the query it is about, both any
// bytes, give a message no longer than it was, in which no string literal
// of the query is left. (A literal holding '?' is left out: replacing
// another one by '?' can spell it anew, which leaks nothing.)
func FuzzRedact(f *testing.F) {
	for _, q := range secretQueries {
		f.Add("near "+q, q)
	}
	f.Add(`Duplicate entry 'alice@x.org' for key 'PRIMARY'`, `INSERT INTO u (email) VALUES ('alice@x.org')`)
	f.Add(`value 4111111111111111 is out of range`, `UPDATE t SET n = 4111111111111111 WHERE id = 1`)
	f.Add(`bad $tag$ at 12`, `SELECT $x$secret$x$, $1, 12, 'a''b', E'c\'d'`)
	f.Fuzz(func(t *testing.T, msg, query string) {
		out := string(Redact([]byte("pre"), msg, query))
		if !strings.HasPrefix(out, "pre") || len(out)-3 > len(msg) {
			t.Fatalf("Redact(%q, %q) = %q", msg, query, out)
		}
		for _, v := range literals(query) {
			if !v.number && !strings.Contains(v.text, "?") && strings.Contains(out[3:], v.text) {
				t.Fatalf("Redact(%q, %q) = %q keeps literal %q", msg, query, out, v.text)
			}
		}
	})
}
