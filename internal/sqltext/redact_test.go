package sqltext

import "testing"

func TestRedact(t *testing.T) {
	for _, c := range []struct{ msg, query, want string }{
		{`Duplicate entry 'alice@x.org' for key 'PRIMARY'`, `INSERT INTO u (email) VALUES ('alice@x.org')`, `Duplicate entry '?' for key 'PRIMARY'`},
		{`syntax error at or near "hunter2"`, `SELECT * FROM u WHERE pw = E'hunter2`, `syntax error at or near "?"`},
		{`value 4111111111111111 is out of range for type integer`, `UPDATE t SET n = 4111111111111111 WHERE id = 1`, `value ? is out of range for type integer`},
		{`relation "t1" does not exist`, `SELECT a FROM t1 WHERE id = 1`, `relation "t1" does not exist`},
		{`line 12: bad $tag$`, `SELECT $x$secret$x$, $1, 12`, `line ?: bad $tag$`},
		{`near 'it\'s'`, `SELECT 'it\'s'`, `near '?'`},
		{`no literals here`, `SELECT a FROM b`, `no literals here`},
		{`token x1secret`, `SELECT '1secret'`, `token x?`}, // a string, though it starts with a digit
	} {
		if got := string(Redact(nil, c.msg, c.query)); got != c.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", c.msg, c.query, got, c.want)
		}
	}
}
