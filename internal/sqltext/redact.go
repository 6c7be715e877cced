package sqltext

import (
	"slices"
	"strings"
)

// Redact appends msg, a database's error message about query, to buf with
// every literal value of query that the message repeats replaced by '?':
// messages quote the values they fail on ("Duplicate entry 'alice@x'",
// "near 'hunter2'"). Numbers are replaced where they stand alone, strings
// wherever they occur. It allocates; errors are rare.
func Redact(buf []byte, msg, query string) []byte {
	lits := literals(query)
	// Longest first: one dialect's value may be part of the other's.
	slices.SortFunc(lits, func(a, b value) int { return len(b.text) - len(a.text) })
	for _, v := range lits {
		msg = replaceLiteral(msg, v)
	}
	return append(buf, msg...)
}

// value is a literal's value: a number, or the text of a string.
type value struct {
	text   string
	number bool
}

// literals returns the values of query's literals as either dialect reads
// them: the text inside string and dollar quotes, and numbers.
func literals(q string) []value {
	var out []value
	for _, mysql := range []bool{false, true} {
		r := reading{mysql: mysql}
		for pos := 0; pos < len(q); {
			r.advance(q, pos)
			out = appendNumbers(out, q[pos:r.next.start])
			if r.next.kind == literal {
				if v := literalValue(q[r.next.start:r.next.end]); v != "" {
					out = append(out, value{text: v})
				}
			}
			pos = max(r.next.end, r.next.start+1)
		}
	}
	return out
}

// literalValue strips a string literal's prefix (E, N, X, _utf8mb4, U&)
// and quotes, or a dollar quote's tags.
func literalValue(lit string) string {
	if strings.HasPrefix(lit, "$") {
		if i := strings.IndexByte(lit[1:], '$'); i >= 0 {
			tag := lit[:i+2]
			return strings.TrimSuffix(strings.TrimPrefix(lit, tag), tag)
		}
		return ""
	}
	if i := strings.IndexByte(lit, '\''); i >= 0 {
		lit = lit[i+1:]
	}
	return strings.TrimSuffix(lit, "'")
}

// appendNumbers appends the numbers standing alone in code.
func appendNumbers(out []value, code string) []value {
	for i := 0; i < len(code); {
		if !isWord(code[i]) {
			i++
			continue
		}
		j := i
		for j < len(code) && (isWord(code[j]) || code[j] == '.') {
			j++
		}
		if isDigit(code[i]) && (i == 0 || code[i-1] != '$' && code[i-1] != ':') {
			out = append(out, value{text: code[i:j], number: true})
		}
		i = j
	}
	return out
}

// replaceLiteral replaces lit in msg by '?': a number only where no digit or
// letter adjoins it, a string anywhere (even one that starts with a digit).
func replaceLiteral(msg string, lit value) string {
	v := lit.text
	if !lit.number {
		return strings.ReplaceAll(msg, v, "?")
	}
	var b strings.Builder
	for {
		i := strings.Index(msg, v)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		end := i + len(v)
		alone := (i == 0 || !isWord(msg[i-1])) && (end == len(msg) || !isWord(msg[end]))
		b.WriteString(msg[:i])
		if alone {
			b.WriteByte('?')
		} else {
			b.WriteString(v)
		}
		msg = msg[end:]
	}
}
