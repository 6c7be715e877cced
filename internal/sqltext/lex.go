package sqltext

import "strings"

// kind classifies a stretch of a query that is not plain code.
type kind uint8

const (
	literal kind = 1 << iota // string or dollar-quoted text: masked
	comment                  // dropped
	quoted                   // quoted identifier: kept
)

// region is a literal, comment or quoted identifier as one reading lexes it.
type region struct {
	start, end int
	kind       kind
	open       bool // unterminated: it runs to the end of the query
}

// reading lexes a query as one dialect would. PostgreSQL and MySQL disagree
// on backslashes in quotes, '#', "--" without a following space, nested and
// executable comments and dollar quotes, and the agent does not know which
// one it watches, so Summarize masks whatever either reading calls a
// literal: a secret survives only if both dialects would call it code.
type reading struct {
	mysql bool
	next  region // the next region; it starts at len(q) when none is left
}

// advance lexes q from i, a position in code, up to the next region.
func (r *reading) advance(q string, i int) {
	for i < len(q) {
		c := q[i]
		switch {
		case isWord(c) && c != '$':
			// A name, keyword or number. As in PostgreSQL 16, a '$' after
			// a letter belongs to the word (a$b, 1e5$a$); after digits
			// alone it may start a dollar quote (1$a$).
			j, letter := i, false
			for ; j < len(q) && isWord(q[j]) && (q[j] != '$' || letter); j++ {
				letter = letter || isIdentStart(q[j])
			}
			w := q[i:j]
			switch {
			case !isIdentStart(c):
			case at(q, j) == '\'' && isPrefix(w):
				// E'..', N'..', X'..', B'..', _utf8mb4'..': the prefix is part of
				// the literal; only E strings use backslash escapes everywhere.
				r.quote(q, i, j, literal, r.mysql || w == "E" || w == "e")
				return
			case (w == "U" || w == "u") && strings.HasPrefix(q[j:], "&'"):
				r.quote(q, i, j+1, literal, r.mysql)
				return
			}
			i = j
		case c == '\'':
			r.quote(q, i, i, literal, r.mysql)
			return
		case c == '"':
			// A name, as PostgreSQL and MySQL's ANSI_QUOTES read it; a string
			// in MySQL's default mode, where backslashes escape.
			r.quote(q, i, i, quoted, r.mysql)
			return
		case c == '`':
			r.quote(q, i, i, quoted, false)
			return
		case c == '-' && at(q, i+1) == '-' && (!r.mysql || i+2 >= len(q) || q[i+2] <= ' '):
			r.line(q, i)
			return
		case c == '#' && r.mysql:
			r.line(q, i)
			return
		case c == '/' && at(q, i+1) == '*':
			if r.mysql && (at(q, i+2) == '!' || strings.HasPrefix(q[i+2:], "M!")) {
				// MySQL and MariaDB run the body of /*! ... */ as SQL, so a
				// quote in it opens a string that a "*/" does not close.
				i += 3
				continue
			}
			end, open := blockEnd(q, i+2, !r.mysql)
			r.next = region{start: i, end: end, kind: comment, open: open}
			return
		case c == '$' && !r.mysql:
			if n := dollarTag(q, i); n > 0 {
				end, open := len(q), true
				if k := strings.Index(q[i+n:], q[i:i+n]); k >= 0 {
					end, open = i+n+k+n, false
				}
				r.next = region{start: i, end: end, kind: literal, open: open}
				return
			}
			// $1 is a parameter; its digits cannot start a tag.
			for i++; i < len(q) && isDigit(q[i]); i++ {
			}
		default:
			i++
		}
	}
	r.next = region{start: len(q), end: len(q)}
}

// quote sets r.next to the region from start whose opening quote is at q[open].
func (r *reading) quote(q string, start, open int, k kind, backslash bool) {
	end, unterminated := quoteEnd(q, open+1, q[open], backslash)
	r.next = region{start: start, end: end, kind: k, open: unterminated}
}

// line sets r.next to the comment from i to the end of its line.
func (r *reading) line(q string, i int) {
	end := len(q)
	for j := i; j < len(q); j++ {
		// PostgreSQL also ends the line at '\r'; MySQL only at '\n'.
		if q[j] == '\n' || q[j] == '\r' && !r.mysql {
			end = j
			break
		}
	}
	r.next = region{start: i, end: end, kind: comment}
}

// quoteEnd returns the end of the quoted text that starts at i, after its
// opening quote, and whether it is unterminated. A doubled quote is one
// quote; with backslash set, a backslash escapes the next byte.
func quoteEnd(q string, i int, quote byte, backslash bool) (int, bool) {
	for i < len(q) {
		switch c := q[i]; {
		case c == '\\' && backslash:
			i += 2
		case c != quote:
			i++
		case at(q, i+1) == quote:
			i += 2
		default:
			return i + 1, false
		}
	}
	return len(q), true
}

// blockEnd returns the end of the /* comment whose body starts at i, and
// whether it is unterminated. PostgreSQL nests comments; MySQL does not.
func blockEnd(q string, i int, nested bool) (int, bool) {
	depth := 1
	for i+1 < len(q) {
		switch {
		case q[i] == '*' && q[i+1] == '/':
			i += 2
			if depth--; depth == 0 {
				return i, false
			}
		case nested && q[i] == '/' && q[i+1] == '*':
			i += 2
			depth++
		default:
			i++
		}
	}
	return len(q), true
}

// dollarTag returns the length of the PostgreSQL dollar-quote tag ($$ or
// $name$) at q[i], or 0 when there is none.
func dollarTag(q string, i int) int {
	j := i + 1
	if j < len(q) && isIdentStart(q[j]) {
		for j++; j < len(q) && isWord(q[j]) && q[j] != '$'; j++ {
		}
	}
	if at(q, j) != '$' {
		return 0
	}
	return j + 1 - i
}

// isPrefix reports whether w, just before a quote, makes the string a
// special literal: E (escapes), N (national), X (hex), B (bits), or a MySQL
// character set introducer such as _utf8mb4.
func isPrefix(w string) bool {
	if w[0] == '_' {
		return true
	}
	return len(w) == 1 && strings.IndexByte("EeNnXxBb", w[0]) >= 0
}

// at returns q[i], or 0 past the end.
func at(q string, i int) byte {
	if i < len(q) {
		return q[i]
	}
	return 0
}

// Byte classes, looked up in classes.
const (
	identStart = 1 << iota // starts an identifier: a letter, '_' or a byte of UTF-8, which names may hold
	digit
	word // continues an identifier (t1, col_2, a$b) or a number
	space
)

var classes = func() (t [256]uint8) {
	for c := range len(t) {
		switch {
		case 'a' <= c|0x20 && c|0x20 <= 'z' || c == '_' || c >= 0x80:
			t[c] = identStart | word
		case '0' <= c && c <= '9':
			t[c] = digit | word
		case c == '$':
			t[c] = word
		case c == ' ' || '\t' <= c && c <= '\r':
			t[c] = space
		}
	}
	return t
}()

func isIdentStart(c byte) bool { return classes[c]&identStart != 0 }
func isDigit(c byte) bool      { return classes[c]&digit != 0 }
func isWord(c byte) bool       { return classes[c]&word != 0 }
func isSpace(c byte) bool      { return classes[c]&space != 0 }
