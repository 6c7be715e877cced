package sqltext

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
)

func FuzzSummarize(f *testing.F) {
	for _, c := range cases {
		f.Add(c.q, c.truncated)
	}
	for _, q := range secretQueries {
		f.Add(q, false)
	}
	for _, c := range benchQueries {
		f.Add(c.q, true)
	}
	f.Fuzz(check)
}

// TestTokenSoup checks random strings of the fragments on which the
// dialects disagree, which byte-wise fuzzing rarely puts together.
func TestTokenSoup(t *testing.T) {
	frags := []string{
		"'", "''", `\`, `\'`, `"`, "`", "--", "-- ", "#", "/*", "*/", "/*!", "$$", "$a$", "$1", "E'", "N'",
		"U&'", "_utf8'", "\n", "\r", " ", "x", "1", "1e5", "0x1F", "a$b", "IN (", ",", ")", "(", "?", ".",
		"SELECT ", "FROM ", "WITH ", "INSERT INTO ", "t",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for n := range 200000 {
		b.Reset()
		for i := range 1 + rng.IntN(12) {
			if rng.IntN(4) == 0 {
				fmt.Fprintf(&b, "Zq%dx%d", n, i) // found once: a literal's must not leak
			} else {
				b.WriteString(frags[rng.IntN(len(frags))])
			}
		}
		check(t, b.String(), rng.IntN(2) == 0)
		if t.Failed() {
			return
		}
	}
}

// check asserts what must hold of any query: the text keeps no literal or
// comment, and summarizing it again changes nothing.
func check(t *testing.T, q string, truncated bool) {
	sum, out := Summarize([]byte("pre"), q, truncated)
	if string(out[:3]) != "pre" || string(out[3:]) != sum.Text {
		t.Fatalf("Summarize(%q) returned %q with Text %q", q, out, sum.Text)
	}
	if strings.HasPrefix(sum.Text, " ") || strings.HasSuffix(sum.Text, " ") {
		t.Errorf("Summarize(%q) = %q: not trimmed", q, sum.Text)
	}
	if sum.Operation != "" && operations[sum.Operation] != sum.Operation {
		t.Errorf("Summarize(%q): operation %q", q, sum.Operation)
	}
	want := sum.Operation + " " + sum.Collection
	switch {
	case sum.Operation == "":
		want = "db"
	case sum.Collection == "":
		want = sum.Operation
	}
	if name := SpanName(nil, sum, "db"); string(name) != want {
		t.Errorf("SpanName(%+v) = %q", sum, name)
	}

	// An output run without whitespace or '?' is a run of the input, so a
	// part of a literal or comment found only once in the input must not
	// be in the output.
	for _, mysql := range []bool{false, true} {
		refBodies(q, mysql, func(body string) {
			for _, split := range []func(rune) bool{
				func(r rune) bool { return unicode.IsSpace(r) || r == '?' },
				func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) },
			} {
				for _, part := range strings.FieldsFunc(body, split) {
					if len(part) > 3 && strings.Count(q, part) == 1 && strings.Contains(sum.Text, part) {
						t.Fatalf("Summarize(%q) = %q leaks %q (mysql %v)", q, sum.Text, part, mysql)
					}
				}
			}
		})
	}

	again, _ := Summarize(nil, sum.Text, false)
	if again.Text != sum.Text {
		t.Fatalf("not idempotent: %q -> %q -> %q", q, sum.Text, again.Text)
	}
	if !truncated && (again.Operation != sum.Operation || again.Collection != sum.Collection) {
		t.Errorf("%q -> %+v -> %+v", q, sum, again)
	}
}

// refBodies calls f with the body of every literal and comment of q as one
// dialect lexes it: a plain second lexer, written from the PostgreSQL and
// MySQL manuals, to check the package's against.
func refBodies(q string, mysql bool, f func(body string)) {
	// quoted returns the end of the text quoted from i-1 and reports its body.
	quoted := func(i int, quote byte, backslash bool, report bool) int {
		j := i
		for ; j < len(q); j++ {
			if backslash && q[j] == '\\' {
				j++
			} else if q[j] == quote {
				if j+1 == len(q) || q[j+1] != quote {
					break
				}
				j++
			}
		}
		if report {
			f(q[i:min(j, len(q))])
		}
		return j + 1
	}
	name := func(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' || c == '_' || c >= 0x80 }
	lineEnds := "\r\n"
	if mysql {
		lineEnds = "\n"
	}
	for i := 0; i < len(q); {
		rest := q[i:]
		switch c := rest[0]; {
		case c == '\'':
			i = quoted(i+1, '\'', mysql, true)
		case c == '"':
			i = quoted(i+1, '"', mysql, false)
		case c == '`':
			i = quoted(i+1, '`', false, false)
		case strings.HasPrefix(rest, "--") && (!mysql || len(rest) == 2 || rest[2] <= ' '),
			c == '#' && mysql:
			n := strings.IndexAny(rest, lineEnds)
			if n < 0 {
				n = len(rest)
			}
			f(rest[:n])
			i += n
		case mysql && (strings.HasPrefix(rest, "/*!") || strings.HasPrefix(rest, "/*M!")):
			i += 3 // MySQL runs its body
		case strings.HasPrefix(rest, "/*"):
			n := 2
			for depth := 1; n < len(rest) && depth > 0; {
				switch {
				case strings.HasPrefix(rest[n:], "*/"):
					depth--
					n += 2
				case !mysql && strings.HasPrefix(rest[n:], "/*"):
					depth++
					n += 2
				default:
					n++
				}
			}
			f(rest[:n])
			i += n
		case c == '$' && !mysql:
			n := 1
			if len(rest) > 1 && name(rest[1]) {
				for n = 2; n < len(rest) && (name(rest[n]) || '0' <= rest[n] && rest[n] <= '9'); n++ {
				}
			}
			if n < len(rest) && rest[n] == '$' {
				tag := rest[:n+1]
				body := rest[n+1:]
				if k := strings.Index(body, tag); k >= 0 {
					body = body[:k]
				}
				f(body)
				i += len(tag) + len(body) + len(tag)
				continue
			}
			for i++; i < len(q) && '0' <= q[i] && q[i] <= '9'; i++ {
			}
		case name(c) || '0' <= c && c <= '9':
			// A word; a '$' after one of its letters is part of it.
			n, letter := 0, false
			for ; n < len(rest) && (name(rest[n]) || '0' <= rest[n] && rest[n] <= '9' || rest[n] == '$' && letter); n++ {
				letter = letter || name(rest[n])
			}
			w, after := rest[:n], rest[n:]
			switch {
			case name(c) && strings.HasPrefix(after, "'") && (c == '_' || n == 1 && strings.Contains("EeNnXxBb", w)):
				i = quoted(i+n+1, '\'', mysql || w == "E" || w == "e", true)
			case (w == "U" || w == "u") && strings.HasPrefix(after, "&'"):
				i = quoted(i+n+2, '\'', mysql, true)
			default:
				i += n
			}
		default:
			i++
		}
	}
}

// TestRefBodies checks the reference lexer itself.
func TestRefBodies(t *testing.T) {
	for _, c := range []struct {
		q     string
		mysql bool
		want  []string
	}{
		{`SELECT 'a''b', E'c\'d', "e'f", $x$g'h$x$, x$y$ -- i`, false, []string{"a''b", `c\'d`, "g'h", "-- i"}},
		{`SELECT 'a\'b', "c\"'", ` + "`d'`" + ` # e'` + "\n /*! 'f' */ /* g /* h */", true, []string{`a\'b`, "# e'", "f", "/* g /* h */"}},
		{`SELECT 'a\' /* b /* c */ d */ 'e'`, false, []string{`a\`, "/* b /* c */ d */", "e"}},
		{"SELECT 1--2\r3 'x", true, []string{"x"}},
		{"SELECT 1--2\r3 'x", false, []string{"--2", "x"}},
	} {
		var got []string
		refBodies(c.q, c.mysql, func(b string) { got = append(got, b) })
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("refBodies(%q, %v) = %q, want %q", c.q, c.mysql, got, c.want)
		}
	}
}
