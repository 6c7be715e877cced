package probes

import (
	"github.com/tracewire/tracewire/internal/sqltext"
	"github.com/tracewire/tracewire/spans"
)

// SQLQuery names s after query (operation and table, else system) and adds
// db.query.text with every literal masked, db.operation.name and
// db.collection.name. cut says the text was cut by the capture. text is a
// buffer to reuse; it returns it.
func SQLQuery(s *spans.Span, system, query string, cut bool, text []byte) []byte {
	var sum sqltext.Summary
	sum, text = sqltext.Summarize(text[:0], query, cut)
	s.Attrs = append(s.Attrs, spans.String("db.query.text", s.Str(text)))
	if sum.Operation != "" {
		s.Attrs = append(s.Attrs, spans.String("db.operation.name", sum.Operation))
	}
	if sum.Collection != "" {
		s.Attrs = append(s.Attrs, spans.String("db.collection.name", s.Str([]byte(sum.Collection))))
	}
	// The name is built in text's spare room (the summary's strings may
	// point into text: copied above), and copied at once.
	s.Name = s.Str(sqltext.SpanName(text[len(text):], sum, system))
	return text
}

// SQLError sets s's error status to msg with whatever of query it repeats
// masked (a literal quoted back by the server). buf is reused and returned.
func SQLError(s *spans.Span, msg, query string, buf []byte) []byte {
	s.Error = true
	buf = sqltext.Redact(buf[:0], msg, query)
	s.StatusMsg = s.Str(buf)
	return buf
}
