package sqltext

import (
	"strings"
	"testing"
)

var cases = []struct {
	name, q   string
	truncated bool
	text      string
	op, coll  string
}{
	// Strings.
	{name: "string", q: "SELECT * FROM users WHERE pw = 'hunter2'", text: "SELECT * FROM users WHERE pw = ?", op: "SELECT", coll: "users"},
	{name: "doubled quote", q: "SELECT 'it''s hunter2' FROM t", text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	{name: "empty string", q: "SELECT '' FROM t", text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	{name: "adjacent strings", q: "SELECT 'a' 'b'\n'c' FROM t", text: "SELECT ? ? ? FROM t", op: "SELECT", coll: "t"},
	{name: "backslash not before a quote", q: `SELECT 'a\nb\\' FROM t`, text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	// MySQL's \' runs on to the end of the string, PostgreSQL's ends it:
	// both readings are masked, which here is the rest of the query.
	{name: "mysql escaped quote", q: `SELECT 'it\'s hunter2' FROM t WHERE a = 1`, text: "SELECT ?", op: "SELECT"},
	{name: "escaped quote resyncs", q: `INSERT INTO t VALUES ('it\'s', 1), ('x\'y', 2)`, text: "INSERT INTO t VALUES (?, ?)", op: "INSERT", coll: "t"},
	{name: "postgres trailing backslash", q: `SELECT * FROM t WHERE a LIKE 'x\_%' ESCAPE '\' AND b = 'hunter2'`, text: "SELECT * FROM t WHERE a LIKE ? ESCAPE ?", op: "SELECT", coll: "t"},
	{name: "E string", q: `SELECT E'it\'s', e'\\' FROM t`, text: "SELECT ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "national", q: "SELECT N'hunter2', n'x' FROM t", text: "SELECT ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "hex and bits", q: "SELECT X'DEADBEEF', x'00', B'0101', b'1' FROM t", text: "SELECT ?, ?, ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "unicode escapes", q: `SELECT U&'d\0061t', u&'x' FROM t`, text: "SELECT ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "charset introducer", q: "SELECT _utf8mb4'hunter2', _binary'x' FROM t", text: "SELECT ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "prefix letter inside a word", q: "SELECT abcE'x' FROM t", text: "SELECT abcE? FROM t", op: "SELECT", coll: "t"},
	{name: "dollar quote", q: "SELECT $$hunter2$$ FROM t", text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	// MySQL has no dollar quotes: to it the quote starts a string.
	{name: "quote in dollar quote", q: "SELECT $$it's$$ FROM t", text: "SELECT ?", op: "SELECT"},
	{name: "tagged dollar quote", q: "SELECT $fn$ $$ 'x' $fn$, $a_1$y$a_1$ FROM t", text: "SELECT ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "dollar after number", q: "SELECT 1$a$ hunter2 $a$ FROM t", text: "SELECT ?? FROM t", op: "SELECT", coll: "t"},
	{name: "dollar inside identifier", q: "SELECT a$b$c, x$1 FROM t", text: "SELECT a$b$c, x$1 FROM t", op: "SELECT", coll: "t"},
	{name: "double-quoted names", q: `SELECT "it's", "a""b" FROM "public"."Users" WHERE x = 'y'`, text: `SELECT "it's", "a""b" FROM "public"."Users" WHERE x = ?`, op: "SELECT", coll: "public.Users"},
	{name: "backtick names", q: "SELECT `it's`, `a``b` FROM `db`.`t` WHERE x = 'y'", text: "SELECT `it's`, `a``b` FROM `db`.`t` WHERE x = ?", op: "SELECT", coll: "db.t"},
	// MySQL reads a backslash in double quotes as an escape, PostgreSQL
	// does not: a name they do not agree on is masked.
	{name: "escaped double quote", q: `SELECT "it\"s", 'hunter2' FROM t`, text: "SELECT ?", op: "SELECT"},
	// Numbers.
	{name: "integers", q: "SELECT 42, -7, +0 FROM t", text: "SELECT ?, -?, +? FROM t", op: "SELECT", coll: "t"},
	{name: "decimals", q: "SELECT 3.14, .5, 5., 1e10, 1.5E-3, 2e+8 FROM t", text: "SELECT ?, ?, ?, ?, ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "hex and friends", q: "SELECT 0x1F, 0XdeadBEEF, 0b101, 0o17, 1_000_000 FROM t", text: "SELECT ?, ?, ?, ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "digits in names", q: "SELECT t1.col_2, a1b2, _9 FROM t1", text: "SELECT t1.col_2, a1b2, _9 FROM t1", op: "SELECT", coll: "t1"},
	{name: "utf-8 names", q: "SELECT été1 FROM tablé2 WHERE x = 3", text: "SELECT été1 FROM tablé2 WHERE x = ?", op: "SELECT", coll: "tablé2"},
	{name: "qualified number", q: "SELECT t.5, (.5) FROM t", text: "SELECT t.?, (?) FROM t", op: "SELECT", coll: "t"},
	{name: "casts and arrays", q: "SELECT '1'::int, ARRAY[1,2], $1::text FROM t", text: "SELECT ?::int, ARRAY[?,?], $1::text FROM t", op: "SELECT", coll: "t"},
	// Placeholders and keywords.
	{name: "placeholders", q: "SELECT * FROM t WHERE a = $1 AND b = ? AND c = :name AND d = @p1 AND e = $12", text: "SELECT * FROM t WHERE a = $1 AND b = ? AND c = :name AND d = @p1 AND e = $12", op: "SELECT", coll: "t"},
	{name: "keywords kept", q: "SELECT TRUE, false, NULL FROM t", text: "SELECT TRUE, false, NULL FROM t", op: "SELECT", coll: "t"},
	// Comments.
	{name: "line comment", q: "SELECT 1 -- it's hunter2\nFROM t", text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	{name: "line comment at the end", q: "SELECT 1 FROM t -- hunter2", text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	{name: "hash comment", q: "SELECT 1 # hunter2\nFROM t", text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	// To PostgreSQL '#' is an operator, and the quote starts a string.
	{name: "quote in hash comment", q: "SELECT 1 # it's hunter2\nFROM t", text: "SELECT ? ?", op: "SELECT"},
	{name: "block comment", q: "SELECT /* it's 'hunter2' */ a/**/b FROM t", text: "SELECT a b FROM t", op: "SELECT", coll: "t"},
	{name: "leading comment", q: "/* app=web */ -- x\n SELECT 1", text: "SELECT ?", op: "SELECT"},
	{name: "nested comment", q: "SELECT 1 /* a /* b */ hunter2 */ FROM t", text: "SELECT ? FROM t", op: "SELECT", coll: "t"},
	{name: "comment in string", q: "SELECT '-- not a comment', '/* nor */' FROM t", text: "SELECT ?, ? FROM t", op: "SELECT", coll: "t"},
	{name: "quote in comment", q: "SELECT a /* it's */ FROM t WHERE b = 'x' -- don't\n AND c = 'y'", text: "SELECT a FROM t WHERE b = ? AND c = ?", op: "SELECT", coll: "t"},
	{name: "double dash without space", q: "SELECT 1--1, 'x\nhunter2'", text: "SELECT ??", op: "SELECT"},
	{name: "mysql executable comment", q: "SELECT a /*!40101 , 'hunter2' */ FROM t", text: "SELECT a ? FROM t", op: "SELECT", coll: "t"},
	{name: "comments keep operators apart", q: "SELECT 1-/**/-1, a//**/*b FROM t", text: "SELECT ?- -?, a/ *b FROM t", op: "SELECT", coll: "t"},
	// '#' is a MySQL comment, so PostgreSQL's JSON operators lose their line.
	{name: "postgres hash operator", q: "SELECT data #>> '{a}' FROM t\nWHERE id = 5", text: "SELECT data ? WHERE id = ?", op: "SELECT"},
	// Whitespace.
	{name: "whitespace", q: " \t\n SELECT\ta ,\r\n  b\f\vFROM   t \n", text: "SELECT a , b FROM t", op: "SELECT", coll: "t"},
	{name: "empty", q: "", text: ""},
	{name: "only comments", q: "  -- x\n /* y */ ", text: ""},
	// IN lists.
	{name: "in list", q: "SELECT * FROM t WHERE a IN (1, 2, 3) AND b in ('x','y')", text: "SELECT * FROM t WHERE a IN (?) AND b in (?)", op: "SELECT", coll: "t"},
	{name: "in placeholders", q: "SELECT * FROM t WHERE a IN (?, ?, ?)", text: "SELECT * FROM t WHERE a IN (?)", op: "SELECT", coll: "t"},
	{name: "in list spaces", q: "SELECT * FROM t WHERE a IN ( 1 , 2 /* c */, 3 )", text: "SELECT * FROM t WHERE a IN ( ? )", op: "SELECT", coll: "t"},
	{name: "in numbered placeholders", q: "SELECT * FROM t WHERE a IN ($1, $2)", text: "SELECT * FROM t WHERE a IN ($1, $2)", op: "SELECT", coll: "t"},
	{name: "in mixed list", q: "SELECT * FROM t WHERE a NOT IN (1, 2, b, 3, 4)", text: "SELECT * FROM t WHERE a NOT IN (?, b, ?)", op: "SELECT", coll: "t"},
	{name: "in list with calls", q: "SELECT * FROM t WHERE a IN (f(1, 2), 3, 4, (5, 6))", text: "SELECT * FROM t WHERE a IN (f(?, ?), ?, (?, ?))", op: "SELECT", coll: "t"},
	{name: "in subquery", q: "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = 1)", text: "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = ?)", op: "SELECT", coll: "t"},
	{name: "values not collapsed", q: "INSERT INTO t VALUES (1, 2), (3, 4)", text: "INSERT INTO t VALUES (?, ?), (?, ?)", op: "INSERT", coll: "t"},
	// Unterminated and truncated.
	{name: "open string", q: "SELECT * FROM t WHERE pw = 'hunt", text: "SELECT * FROM t WHERE pw = ?", op: "SELECT", coll: "t"},
	{name: "open string after doubled quote", q: "SELECT 'a''", text: "SELECT ?", op: "SELECT"},
	{name: "open escape", q: `SELECT E'a\`, text: "SELECT ?", op: "SELECT"},
	{name: "open dollar quote", q: "SELECT $x$hunter2", text: "SELECT ?", op: "SELECT"},
	{name: "open name", q: `SELECT "hunt`, text: "SELECT ?", op: "SELECT"},
	{name: "open comment", q: "SELECT 1 /* hunter2", text: "SELECT ?", op: "SELECT"},
	{name: "truncated name", q: "SELECT * FROM us", truncated: true, text: "SELECT * FROM us", op: "SELECT"},
	{name: "truncated qualified name", q: "SELECT * FROM public.", truncated: true, text: "SELECT * FROM public.", op: "SELECT"},
	{name: "truncated quoted name", q: `SELECT * FROM "users"`, truncated: true, text: `SELECT * FROM "users"`, op: "SELECT"},
	{name: "truncated after name", q: "SELECT * FROM users WHE", truncated: true, text: "SELECT * FROM users WHE", op: "SELECT", coll: "users"},
	{name: "truncated after space", q: "SELECT * FROM users ", truncated: true, text: "SELECT * FROM users", op: "SELECT", coll: "users"},
	{name: "truncated keyword", q: "SELEC", truncated: true, text: "SELEC"},
	{name: "truncated whole keyword", q: "DELETE", truncated: true, text: "DELETE"},
	{name: "untruncated name at end", q: "SELECT * FROM users", text: "SELECT * FROM users", op: "SELECT", coll: "users"},
	// Operations.
	{name: "lower case", q: "select a from t", text: "select a from t", op: "SELECT", coll: "t"},
	{name: "parenthesized", q: "(SELECT a FROM t) UNION (SELECT b FROM u)", text: "(SELECT a FROM t) UNION (SELECT b FROM u)", op: "SELECT", coll: "t"},
	{name: "unknown keyword", q: "FROBNICATE 'hunter2'", text: "FROBNICATE ?"},
	{name: "leading number", q: "42", text: "?"},
	{name: "begin", q: "BEGIN", text: "BEGIN", op: "BEGIN"},
	{name: "start transaction", q: "START TRANSACTION READ ONLY", text: "START TRANSACTION READ ONLY", op: "START"},
	{name: "commit", q: "commit;", text: "commit;", op: "COMMIT"},
	{name: "rollback to", q: "ROLLBACK TO SAVEPOINT s1", text: "ROLLBACK TO SAVEPOINT s1", op: "ROLLBACK"},
	{name: "set password", q: "SET PASSWORD = 'hunter2'", text: "SET PASSWORD = ?", op: "SET"},
	{name: "create user", q: "CREATE USER 'bob'@'%' IDENTIFIED BY 'hunter2'", text: "CREATE USER ?@? IDENTIFIED BY ?", op: "CREATE"},
	{name: "with select", q: "WITH x AS (SELECT a FROM b WHERE c = 1) SELECT * FROM x", text: "WITH x AS (SELECT a FROM b WHERE c = ?) SELECT * FROM x", op: "SELECT", coll: "x"},
	{name: "with recursive", q: "WITH RECURSIVE r(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM r WHERE n < 5), s AS MATERIALIZED (SELECT 1) SELECT n FROM r", text: "WITH RECURSIVE r(n) AS (VALUES (?) UNION ALL SELECT n+? FROM r WHERE n < ?), s AS MATERIALIZED (SELECT ?) SELECT n FROM r", op: "SELECT", coll: "r"},
	{name: "with insert", q: "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", text: "WITH x AS (SELECT ?) INSERT INTO t SELECT * FROM x", op: "INSERT", coll: "t"},
	{name: "with update", q: "WITH x AS (SELECT 1) UPDATE t SET a = 1", text: "WITH x AS (SELECT ?) UPDATE t SET a = ?", op: "UPDATE", coll: "t"},
	{name: "with delete", q: "WITH x AS (SELECT 1) DELETE FROM t", text: "WITH x AS (SELECT ?) DELETE FROM t", op: "DELETE", coll: "t"},
	{name: "with cut", q: "WITH x AS (SELECT a FROM b", truncated: true, text: "WITH x AS (SELECT a FROM b", op: "WITH"},
	{name: "explain", q: "EXPLAIN SELECT * FROM t", text: "EXPLAIN SELECT * FROM t", op: "EXPLAIN"},
	// Collections.
	{name: "join", q: "SELECT * FROM a JOIN b ON a.id = b.id", text: "SELECT * FROM a JOIN b ON a.id = b.id", op: "SELECT", coll: "a"},
	{name: "comma join", q: "SELECT * FROM a, b", text: "SELECT * FROM a, b", op: "SELECT", coll: "a"},
	{name: "alias", q: "SELECT * FROM public.users AS u", text: "SELECT * FROM public.users AS u", op: "SELECT", coll: "public.users"},
	{name: "spaced name", q: "SELECT * FROM public . users", text: "SELECT * FROM public . users", op: "SELECT", coll: "public.users"},
	{name: "commented name", q: "SELECT * FROM public/* x */.users", text: "SELECT * FROM public .users", op: "SELECT", coll: "public.users"},
	{name: "three parts", q: `SELECT * FROM db."s".t`, text: `SELECT * FROM db."s".t`, op: "SELECT", coll: "db.s.t"},
	{name: "from in function", q: "SELECT EXTRACT(YEAR FROM d), SUBSTRING(s FROM 2) FROM t", text: "SELECT EXTRACT(YEAR FROM d), SUBSTRING(s FROM ?) FROM t", op: "SELECT", coll: "t"},
	{name: "subquery", q: "SELECT * FROM (SELECT * FROM t) x", text: "SELECT * FROM (SELECT * FROM t) x", op: "SELECT"},
	{name: "table function", q: "SELECT * FROM generate_series(1, 3)", text: "SELECT * FROM generate_series(?, ?)", op: "SELECT"},
	{name: "only", q: "SELECT * FROM ONLY t", text: "SELECT * FROM ONLY t", op: "SELECT", coll: "t"},
	{name: "dual", q: "SELECT 1 FROM DUAL", text: "SELECT ? FROM DUAL", op: "SELECT"},
	{name: "no from", q: "SELECT 1", text: "SELECT ?", op: "SELECT"},
	{name: "next statement", q: "SELECT 1; SELECT * FROM t", text: "SELECT ?; SELECT * FROM t", op: "SELECT"},
	{name: "statements", q: "DELETE FROM t;DELETE FROM u", text: "DELETE FROM t;DELETE FROM u", op: "DELETE", coll: "t"},
	{name: "masked name", q: "SELECT * FROM $$t$$", text: "SELECT * FROM ?", op: "SELECT"},
	{name: "insert", q: "INSERT INTO t (a, b) VALUES ($1, $2)", text: "INSERT INTO t (a, b) VALUES ($1, $2)", op: "INSERT", coll: "t"},
	{name: "insert no space", q: "insert into t(a) values(1)", text: "insert into t(a) values(?)", op: "INSERT", coll: "t"},
	{name: "insert ignore", q: "INSERT IGNORE INTO `s`.`t` SET a = 1", text: "INSERT IGNORE INTO `s`.`t` SET a = ?", op: "INSERT", coll: "s.t"},
	{name: "insert quoted", q: `INSERT INTO "public"."my""t" VALUES (1)`, text: `INSERT INTO "public"."my""t" VALUES (?)`, op: "INSERT", coll: `public.my"t`},
	{name: "replace", q: "REPLACE INTO t VALUES (1)", text: "REPLACE INTO t VALUES (?)", op: "REPLACE", coll: "t"},
	{name: "update", q: "UPDATE users SET pw = 'hunter2' WHERE id = 1", text: "UPDATE users SET pw = ? WHERE id = ?", op: "UPDATE", coll: "users"},
	{name: "update modifiers", q: "UPDATE LOW_PRIORITY IGNORE t SET a = 1", text: "UPDATE LOW_PRIORITY IGNORE t SET a = ?", op: "UPDATE", coll: "t"},
	{name: "update only", q: `UPDATE ONLY "T" SET a = 1`, text: `UPDATE ONLY "T" SET a = ?`, op: "UPDATE", coll: "T"},
	{name: "delete", q: "DELETE FROM t WHERE id = 1", text: "DELETE FROM t WHERE id = ?", op: "DELETE", coll: "t"},
	{name: "delete multi", q: "DELETE t1 FROM t1 JOIN t2 ON t1.a = t2.a", text: "DELETE t1 FROM t1 JOIN t2 ON t1.a = t2.a", op: "DELETE", coll: "t1"},
	{name: "merge", q: "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", text: "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", op: "MERGE", coll: "t"},
	{name: "create table", q: "CREATE TABLE t (id int)", text: "CREATE TABLE t (id int)", op: "CREATE", coll: "t"},
	{name: "create table if not exists", q: "create temporary table if not exists s.t(id int default 0)", text: "create temporary table if not exists s.t(id int default ?)", op: "CREATE", coll: "s.t"},
	{name: "create index", q: "CREATE INDEX i ON t (a)", text: "CREATE INDEX i ON t (a)", op: "CREATE"},
	{name: "drop table", q: "DROP TABLE IF EXISTS a.b", text: "DROP TABLE IF EXISTS a.b", op: "DROP", coll: "a.b"},
	{name: "drop view", q: "DROP VIEW v", text: "DROP VIEW v", op: "DROP"},
	{name: "truncate", q: "TRUNCATE t", text: "TRUNCATE t", op: "TRUNCATE", coll: "t"},
	{name: "truncate table", q: "TRUNCATE TABLE ONLY t CASCADE", text: "TRUNCATE TABLE ONLY t CASCADE", op: "TRUNCATE", coll: "t"},
	{name: "alter table", q: "ALTER TABLE IF EXISTS ONLY t ADD COLUMN c int DEFAULT 5", text: "ALTER TABLE IF EXISTS ONLY t ADD COLUMN c int DEFAULT ?", op: "ALTER", coll: "t"},
	{name: "alter user", q: "ALTER USER bob WITH PASSWORD 'hunter2'", text: "ALTER USER bob WITH PASSWORD ?", op: "ALTER"},
	// MySQL reads a double-quoted "string" as a literal; it is kept as a
	// name, as PostgreSQL reads it.
	{name: "double quotes are names", q: `SELECT * FROM t WHERE a = "b"`, text: `SELECT * FROM t WHERE a = "b"`, op: "SELECT", coll: "t"},
}

func TestSummarize(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sum, out := Summarize(nil, c.q, c.truncated)
			if sum.Text != c.text || sum.Operation != c.op || sum.Collection != c.coll {
				t.Errorf("Summarize(%q, %v) = %q, %q, %q; want %q, %q, %q", c.q, c.truncated, sum.Text, sum.Operation, sum.Collection, c.text, c.op, c.coll)
			}
			if string(out) != sum.Text {
				t.Errorf("buffer %q, Text %q", out, sum.Text)
			}
			if again, _ := Summarize(nil, sum.Text, false); again.Text != sum.Text {
				t.Errorf("not idempotent: %q -> %q", sum.Text, again.Text)
			}
		})
	}
}

func TestSummarizeAppends(t *testing.T) {
	buf := append(make([]byte, 0, 64), "prefix:"...)
	sum, out := Summarize(buf, `SELECT 'x' FROM "t"`, false)
	if string(out) != "prefix:SELECT ? FROM \"t\"" || sum.Text != `SELECT ? FROM "t"` || sum.Collection != "t" {
		t.Errorf("got %q, %+v", out, sum)
	}
	// Growing the buffer keeps Text and Collection in the new array.
	sum, out = Summarize(make([]byte, 0, 1), `DELETE FROM "a"."b" WHERE c = 1`, false)
	if string(out) != `DELETE FROM "a"."b" WHERE c = ?` || sum.Text != string(out) || sum.Collection != "a.b" {
		t.Errorf("got %q, %+v", out, sum)
	}
}

func TestSpanName(t *testing.T) {
	for _, c := range []struct {
		s    Summary
		want string
	}{
		{Summary{Operation: "SELECT", Collection: "public.users"}, "SELECT public.users"},
		{Summary{Operation: "BEGIN"}, "BEGIN"},
		{Summary{}, "postgresql"},
		{Summary{Collection: "t"}, "postgresql"},
	} {
		if got := SpanName([]byte("x:"), c.s, "postgresql"); string(got) != "x:"+c.want {
			t.Errorf("SpanName(%+v) = %q, want %q", c.s, got, "x:"+c.want)
		}
	}
}

// TestSpanNameSameBuffer appends the name to the buffer whose spare capacity
// holds the Collection.
func TestSpanNameSameBuffer(t *testing.T) {
	for _, capacity := range []int{0, 64, 1024} {
		sum, out := Summarize(make([]byte, 0, capacity), `SELECT * FROM "public"."users"`, false)
		text := string(out)
		name := SpanName(out, sum, "db")
		if want := text + "SELECT public.users"; string(name) != want {
			t.Errorf("cap %d: got %q, want %q", capacity, name, want)
		}
		sum, out = Summarize(out[:0], "DELETE FROM averyveryverylongtablename", false)
		if name := SpanName(out[:0], sum, "db"); string(name) != "DELETE averyveryverylongtablename" {
			t.Errorf("cap %d: got %q", capacity, name)
		}
	}
}

// secretQueries hold the secrets below in every kind of literal and comment,
// in both dialects.
var secretQueries = []string{
	`INSERT INTO users (name, pass, card) VALUES ('alice', 'hunter2', 4111111111111111)`,
	`UPDATE accounts SET token = E'tok\'s3cr3tTok' /* pw: hunter2 */ WHERE id = $1 -- card 4111111111111111`,
	"SELECT * FROM t WHERE a = $q$hunter2$q$ AND b = 'it''s hunter2' # 4111111111111111\n AND c = 0x4111111111111111",
	`SELECT * FROM t WHERE pw = 'O\'hunter2' AND x = "col" AND card IN (4111111111111111, 4111111111111112)`,
	`SELECT * FROM t WHERE a LIKE 'x\' AND b = 's3cr3tTok' AND c = 4111111111111111.5e3`,
	"SELECT 1 /* a /* b */ hunter2 'x */ FROM t WHERE c = X'4111111111111111'",
	`SELECT "it\"s", 'hunter2', N's3cr3tTok' FROM t WHERE a = _utf8mb4'4111111111111111'`,
	"SELECT a /*!40101 , 'hunter2*/s3cr3tTok' */ FROM t -- 4111111111111111\r\n WHERE b = $$s3cr3tTok$$",
	"SELECT 1--1, 'x\nhunter2', \"a\nb\" FROM `it's` WHERE u&'s3cr3tTok' = $tag$ $$ 4111111111111111 $$ $tag$",
}

var secrets = []string{"hunter2", "4111111111111111", "s3cr3tTok"}

// leak returns a part of a secret (4 bytes or more) that s contains, or "".
func leak(s string) string {
	for _, secret := range secrets {
		for i := 0; i+4 <= len(secret); i++ {
			if strings.Contains(s, secret[i:i+4]) {
				return secret
			}
		}
	}
	return ""
}

// TestPrefixesKeepSecrets cuts each query at every byte, as the probe's
// buffer would.
func TestPrefixesKeepSecrets(t *testing.T) {
	var buf, name []byte
	for _, q := range secretQueries {
		for n := 0; n <= len(q); n++ {
			for _, truncated := range []bool{true, false} {
				var sum Summary
				sum, buf = Summarize(buf[:0], q[:n], truncated)
				name = SpanName(name[:0], sum, "db")
				for _, out := range []string{sum.Text, sum.Collection, string(name)} {
					if s := leak(out); s != "" {
						t.Fatalf("Summarize(%q, %v) = %q: leaks %q", q[:n], truncated, out, s)
					}
				}
				if again, _ := Summarize(nil, sum.Text, false); again.Text != sum.Text {
					t.Fatalf("not idempotent: %q -> %q -> %q", q[:n], sum.Text, again.Text)
				}
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	buf, name := make([]byte, 0, 4096), make([]byte, 0, 256)
	for _, q := range append([]string{
		benchQueries[0].q, benchQueries[1].q, benchQueries[2].q,
		`WITH x AS (SELECT 1) UPDATE "public"."my""t" SET a = 'x' WHERE b IN (1, 2, 3)`,
		"SELECT * FROM t WHERE a = 'cut",
	}, secretQueries...) {
		var sum Summary
		allocs := testing.AllocsPerRun(100, func() {
			sum, buf = Summarize(buf[:0], q, true)
			name = SpanName(name[:0], sum, "db")
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocations per call", q, allocs)
		}
	}
}

var benchQueries = []struct{ name, q string }{
	{"short", "SELECT id, name FROM users WHERE id = $1"},
	{"mysql", "INSERT INTO `orders` (`user_id`, `note`, `total`) VALUES (42, 'it\\'s a gift', 19.99), (43, 'hunter2', 5)"},
	{"long", `/* service=checkout */ WITH recent AS (SELECT o.id, o.user_id, o.total FROM orders o WHERE o.created_at > '2024-01-01' AND o.status IN ('paid', 'shipped', 'delivered') -- recent only
) SELECT u.id, u.email, SUM(r.total) AS spent FROM "public"."users" u JOIN recent r ON r.user_id = u.id WHERE u.country = 'FR' AND u.id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10) GROUP BY u.id, u.email HAVING SUM(r.total) > 100.50 ORDER BY spent DESC LIMIT 20`},
}

func BenchmarkSummarize(b *testing.B) {
	for _, c := range benchQueries {
		b.Run(c.name, func(b *testing.B) {
			buf, name := make([]byte, 0, 4096), make([]byte, 0, 256)
			b.ReportAllocs()
			b.SetBytes(int64(len(c.q)))
			for b.Loop() {
				var sum Summary
				sum, buf = Summarize(buf[:0], c.q, false)
				name = SpanName(name[:0], sum, "db")
			}
		})
	}
}
