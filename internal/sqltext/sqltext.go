// Package sqltext turns a captured SQL query into the fields of an
// OpenTelemetry database span without its secrets: every literal becomes
// '?' and comments go.
//
// The agent does not know whether it watches PostgreSQL or MySQL, and the
// two lex some queries differently ('it\'s' is one string to MySQL, and a
// string followed by code to PostgreSQL). Each query is lexed both ways and
// whatever either calls a literal is masked, so a secret survives only if
// both dialects would run it as code. Where they disagree the output loses
// more than it would in one dialect, up to all of the rest of the query.
package sqltext

import (
	"slices"
	"unsafe"
)

// Summary is what a span shows of one query.
type Summary struct {
	// Text is the query with every literal replaced by '?', comments
	// removed and whitespace collapsed. It aliases the buffer Summarize
	// returns.
	Text string
	// Operation is the statement's upper-case keyword (SELECT, INSERT,
	// BEGIN, ...) or "". It is always one of a fixed set of constants, so it
	// may be kept after the buffer is reused, and a first word that is no
	// SQL keyword never becomes an operation name.
	Operation string
	// Collection is the statement's main table, schema prefix kept and
	// quotes removed (public.users), or "". It lies just past the Text in
	// the spare capacity of the buffer Summarize returns (to allocate
	// nothing, with the buffer still exactly the Text), so appending to
	// that buffer overwrites it; SpanName copes with that.
	Collection string
}

// Summarize appends the sanitized query to buf and returns its summary and
// the extended buffer, which holds exactly the text (the Collection is kept
// past its length, so the caller can use the buffer as the text). With
// enough capacity in buf it does not allocate. truncated says that query is
// only the first bytes of a longer one: then a table or keyword that
// reaches its end is not reported, as it may be cut. Whatever is open at
// the end, truncated or not, is masked: a string or quoted name becomes
// '?' and a comment is dropped.
//
// Literals are strings in single quotes (with doubled quotes and, as MySQL
// reads them, \' escapes), E'..', N'..', X'..', B'..', U&'..' and
// _charset'..' strings, dollar quotes ($$..$$, $tag$..$tag$) and numbers
// (12, 1.5e3, .5, 0x1F); digits in names (t1) and placeholders ($1, ?,
// :name) are kept, as are TRUE, FALSE, NULL and names in double quotes or
// backticks (so a MySQL "string" in double quotes is kept too). An IN list of literals or '?' placeholders becomes IN (?), so
// the text does not vary with the length of the list. For WITH the
// Operation is the main statement's keyword after the common table
// expressions, or WITH when there is none.
//
// query must not alias buf.
func Summarize(buf []byte, query string, truncated bool) (Summary, []byte) {
	s := summarizer{q: query, out: buf, start: len(buf), truncated: truncated}
	rd := [...]reading{{}, {mysql: true}}
	for i := range rd {
		rd[i].advance(query, 0)
	}
	for pos := 0; ; {
		start := min(rd[0].next.start, rd[1].next.start)
		s.code(pos, start)
		if start == len(query) {
			break
		}
		// The union of the overlapping regions of both readings, from start.
		end, kinds, n, first := start+1, kind(0), 0, rd[0].next
		if rd[1].next.start < rd[0].next.start {
			first = rd[1].next
		}
		agree := true
		for grown := true; grown; {
			grown = false
			for i := range rd {
				for r := &rd[i]; r.next.start < end; grown = true {
					g := r.next
					end, kinds, n = max(end, g.end), kinds|g.kind, n+1
					agree = agree && g == first
					r.advance(query, g.end)
				}
			}
		}
		switch {
		case kinds == quoted && agree && n == len(rd) && !first.open:
			s.emit(tQuoted, query[start:end], end)
		case kinds == comment:
			s.space = true
		default:
			// A literal in either reading, or a name the readings do not
			// agree on.
			s.emit(tQ, "?", end)
		}
		pos = end
	}
	n := len(s.out)
	if (s.name == nameAfterPart || s.name == nameDone) && !s.cutName {
		s.out = appendName(s.out, s.out[s.nameStart:s.nameEnd])
		if s.op == "SELECT" && asciiEqualFold(str(s.out[n:]), "DUAL") {
			s.out = s.out[:n] // MySQL's dummy table
		}
	}
	sum := Summary{Text: str(s.out[s.start:n]), Operation: s.op, Collection: str(s.out[n:])}
	return sum, s.out[:n]
}

// SpanName appends the span name of s to buf: "OPERATION collection",
// "OPERATION", or fallback (such as the db.system.name) without an operation.
func SpanName(buf []byte, s Summary, fallback string) []byte {
	switch {
	case s.Operation == "":
		return append(buf, fallback...)
	case s.Collection == "":
		return append(buf, s.Operation...)
	}
	n, k := len(buf), len(s.Operation)
	buf = slices.Grow(buf, k+1+len(s.Collection))[:n+k+1+len(s.Collection)]
	// The Collection may lie just past len(buf), where the operation goes:
	// move it first (copy handles the overlap).
	copy(buf[n+k+1:], s.Collection)
	copy(buf[n:], s.Operation)
	buf[n+k] = ' '
	return buf
}

// tok is the kind of a token of the output.
type tok uint8

const (
	tWord   tok = iota + 1 // identifier or keyword
	tQuoted                // quoted identifier
	tQ                     // '?': a masked literal or a placeholder
	tParam                 // $1
	tPunct                 // any other byte
)

// name tracks the parse of the statement's main table name.
type nameState uint8

const (
	nameOff       nameState = iota // not looked for, or failed
	namePre                        // before the rule's gate keyword
	namePost                       // after the gate, before the name
	namePart                       // after a '.', expecting a part
	nameAfterPart                  // after a part: '.' or the name is done
	nameDone                       // the name is complete
)

// listState tracks the items of an IN list, to collapse each run of '?'.
type listState uint8

const (
	listNone  listState = iota
	listOpen            // after "IN ("
	listItem            // after an item
	listComma           // after an item and a comma
	listOther           // after an item that is not '?'
)

type summarizer struct {
	q         string
	out       []byte
	start     int // where the text begins in out
	truncated bool
	space     bool // whitespace or a comment since the last token
	last      tok
	lastIN    bool // the last token is the keyword IN
	depth     int  // of parentheses

	opSeen  bool
	op      string
	opDepth int // depth of the statement's keyword

	rule               rule
	name               nameState
	nameStart, nameEnd int // of the table name in out
	cutName            bool

	list      listState
	listDepth int // inside the list's parentheses
	comma     int // length of out before the list's last comma
}

// code emits the tokens of q[from:to], which both readings call code.
func (s *summarizer) code(from, to int) {
	q := s.q
	for i := from; i < to; {
		c, j := q[i], i+1
		switch {
		case isSpace(c):
			s.space = true
		case isIdentStart(c):
			for j < to && isWord(q[j]) {
				j++
			}
			s.emit(tWord, q[i:j], j)
		case isDigit(c) || c == '.' && j < to && isDigit(q[j]) && !s.follows():
			// Letters make the rest a word to the readings, a '$' included.
			for letter := false; j < to; {
				if d := q[j]; isWord(d) && (d != '$' || letter) || d == '.' {
					letter = letter || isIdentStart(d)
					j++
				} else if (d == '+' || d == '-') && q[j-1]|0x20 == 'e' && j+1 < to && isDigit(q[j+1]) {
					j += 2 // exponent sign
				} else {
					break
				}
			}
			s.emit(tQ, "?", j)
		case c == '$':
			for j < to && isWord(q[j]) {
				j++
			}
			s.emit(tParam, q[i:j], j)
		case c == '?':
			s.emit(tQ, "?", j)
		default:
			s.emit(tPunct, q[i:j], j)
		}
		i = j
	}
}

// follows reports whether a '.' now would qualify the last token (t.5),
// rather than start a number (.5).
func (s *summarizer) follows() bool {
	return !s.space && (s.last == tWord || s.last == tQuoted || s.last == tParam || s.last == tQ)
}

// emit appends a token that ends at q[end] to the text.
func (s *summarizer) emit(k tok, text string, end int) {
	if k == tQ && s.list == listComma {
		// Another item of an IN list: drop the comma and the item.
		s.out, s.list, s.space, s.last = s.out[:s.comma], listItem, false, tQ
		return
	}
	before := len(s.out)
	if s.space && before > s.start {
		s.out = append(s.out, ' ')
	}
	s.space = false
	pos := len(s.out)
	s.out = append(s.out, text...)
	s.statement(k, text, pos, s.truncated && end == len(s.q))

	punct := byte(0)
	if k == tPunct {
		punct = text[0]
	}
	switch {
	case punct == '(' && s.lastIN:
		s.list, s.listDepth = listOpen, s.depth+1
	case s.list == listNone || s.depth != s.listDepth:
		// Not in an IN list, or inside a parenthesis of one.
	case punct == ')':
		s.list = listNone
	case punct == ',' && s.list == listItem:
		s.list, s.comma = listComma, before
	case punct == ',':
		s.list = listOpen
	case k == tQ && s.list == listOpen:
		s.list = listItem
	default:
		s.list = listOther
	}
	s.lastIN = k == tWord && asciiEqualFold(text, "IN")
	s.last = k
	switch punct {
	case '(':
		s.depth++
	case ')':
		s.depth--
	}
}

// statement follows the operation and the table name through a token that
// starts at out[pos]; cut says it may be cut short.
func (s *summarizer) statement(k tok, text string, pos int, cut bool) {
	word := k == tWord && !cut
	if !s.opSeen {
		if k == tPunct && text == "(" {
			return // (SELECT ...) UNION ...
		}
		s.opSeen = true
		if word {
			s.op = operation(text)
			s.opDepth = s.depth
			s.setRule()
		}
		return
	}
	if s.op == "WITH" && word && s.depth == s.opDepth {
		if op := operation(text); op != "" && rules[op].main {
			s.op = op
			s.setRule()
		}
		return
	}
	if k == tPunct && text == ";" && s.name < nameAfterPart {
		s.name = nameOff // the statement ended without naming its table
		return
	}
	r := &s.rule
	switch s.name {
	case namePre:
		switch {
		case word && asciiEqualFold(text, r.gate) && (!r.seek || s.depth == s.opDepth):
			s.name = namePost
		case r.seek || word && oneOf(text, r.pre):
		case r.gate == "":
			s.part(k, pos, cut)
		default:
			s.name = nameOff
		}
	case namePost:
		if !(word && oneOf(text, r.post)) {
			s.part(k, pos, cut)
		}
	case namePart:
		s.part(k, pos, cut)
	case nameAfterPart:
		switch {
		case k == tPunct && text == ".":
			s.name = namePart
		case k == tPunct && text == "(" && r.seek && r.gate == "FROM":
			s.name = nameOff // FROM f(...): a function, not a table
		default:
			s.name = nameDone
		}
	}
}

// part takes the token at out[pos] as the next part of the table name.
func (s *summarizer) part(k tok, pos int, cut bool) {
	if k != tWord && k != tQuoted {
		s.name = nameOff
		return
	}
	if s.name != namePart {
		s.nameStart = pos
	}
	s.nameEnd = len(s.out)
	s.name = nameAfterPart
	s.cutName = s.cutName || cut
}

func (s *summarizer) setRule() {
	var ok bool
	s.rule, ok = rules[s.op]
	s.name = nameOff
	if ok {
		s.name = namePre
	}
}

// rule says where a statement names its main table.
type rule struct {
	main bool     // may follow WITH
	seek bool     // the gate may come anywhere at the statement's depth
	gate string   // keyword before the name ("" if none)
	pre  []string // words that may come before the gate
	post []string // words that may come between the gate and the name
}

var rules = map[string]rule{
	"SELECT":   {main: true, seek: true, gate: "FROM", post: []string{"ONLY"}},
	"DELETE":   {main: true, seek: true, gate: "FROM", post: []string{"ONLY"}},
	"INSERT":   {main: true, seek: true, gate: "INTO"},
	"REPLACE":  {seek: true, gate: "INTO"},
	"MERGE":    {main: true, seek: true, gate: "INTO"},
	"UPDATE":   {main: true, pre: []string{"LOW_PRIORITY", "IGNORE", "ONLY"}},
	"TRUNCATE": {pre: []string{"TABLE", "ONLY"}},
	"CREATE":   {gate: "TABLE", pre: []string{"TEMPORARY", "TEMP", "UNLOGGED", "GLOBAL", "LOCAL"}, post: []string{"IF", "NOT", "EXISTS"}},
	"DROP":     {gate: "TABLE", pre: []string{"TEMPORARY"}, post: []string{"IF", "EXISTS"}},
	"ALTER":    {gate: "TABLE", post: []string{"IF", "EXISTS", "ONLY"}},
}

// operations maps the keywords that start a statement to themselves: the
// constant a Summary reports.
var operations = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT", "WITH", "VALUES", "TABLE",
		"CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME", "COMMENT",
		"BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT", "XA",
		"SET", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "ANALYZE", "VACUUM", "REINDEX", "CLUSTER",
		"REFRESH", "CHECKPOINT", "DISCARD", "RESET", "LOAD", "GRANT", "REVOKE",
		"CALL", "DO", "EXEC", "EXECUTE", "PREPARE", "DEALLOCATE", "DECLARE", "FETCH", "MOVE", "CLOSE",
		"COPY", "LOCK", "UNLOCK", "USE", "LISTEN", "NOTIFY", "UNLISTEN",
		"OPTIMIZE", "REPAIR", "CHECK", "CHECKSUM", "FLUSH", "KILL", "PURGE", "HANDLER",
	} {
		m[k] = k
	}
	return m
}()

// operation returns the constant for the statement keyword w, or "".
func operation(w string) string {
	var b [12]byte // longer than any keyword
	if len(w) > len(b) {
		return ""
	}
	for i := range len(w) {
		c := w[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	return operations[string(b[:len(w)])] // the compiler does not copy the key
}

// appendName appends the table name of text, a run of the output such as
// public . "my""table", without spaces or quotes.
func appendName(dst, text []byte) []byte {
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case ' ':
		case '"', '`':
			for i++; i < len(text); i++ {
				if text[i] == c {
					if i+1 == len(text) || text[i+1] != c {
						break
					}
					i++ // a doubled quote stands for one
				}
				dst = append(dst, text[i])
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func oneOf(w string, set []string) bool {
	for _, k := range set {
		if asciiEqualFold(w, k) {
			return true
		}
	}
	return false
}

// asciiEqualFold reports whether w equals the upper-case keyword k, ignoring case.
func asciiEqualFold(w, k string) bool {
	if len(w) != len(k) {
		return false
	}
	for i := range len(w) {
		if c := w[i]; c != k[i] && !('a' <= c && c <= 'z' && c-('a'-'A') == k[i]) {
			return false
		}
	}
	return true
}

// str views b as a string without copying.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
