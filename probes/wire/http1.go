package wire

import (
	"bytes"
	"strconv"
	"strings"
)

// message is what a request or response head says, its fields cut to what
// was captured.
type message struct {
	request        bool
	method, target string // request line
	minor          byte   // HTTP/1.minor
	status         int    // response line
	host           string
	traceparent    string
	tracestate     string
	length         int64 // Content-Length, -1 when absent
	chunked        bool  // Transfer-Encoding: chunked
	cut            bool  // the head was longer than what was captured
}

// startsHTTP tells whether data can start an HTTP/1 request or response: a
// method token then a space, or "HTTP/1.".
func startsHTTP(data []byte) bool {
	if bytes.HasPrefix(data, []byte("HTTP/1.")) {
		return true
	}
	for i, c := range data {
		switch {
		case c == ' ':
			return i >= 3
		case c < 'A' || c > 'Z' || i >= 16:
			return false
		}
	}
	return len(data) > 0 && len(data) < 16 // a method split across reads
}

// parseHead reads a message head. It returns false when the head is not
// HTTP/1 (the stream then waits for a message it can recognise).
func parseHead(h []byte, cut bool) (message, bool) {
	m := message{length: -1, cut: cut}
	line, rest, complete := bytes.Cut(h, []byte("\r\n"))
	if !complete {
		return m, false // not even the first line was captured
	}
	if v, ok := bytes.CutPrefix(line, []byte("HTTP/1.")); ok {
		if len(v) < 5 || v[1] != ' ' {
			return m, false
		}
		status, err := strconv.Atoi(string(v[2:5]))
		if err != nil || status < 100 || status > 999 {
			return m, false
		}
		m.minor, m.status = v[0], status
	} else {
		method, rest1, ok1 := bytes.Cut(line, []byte(" "))
		target, proto, ok2 := bytes.Cut(rest1, []byte(" "))
		if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(proto) != 8 {
			return m, false
		}
		for _, c := range method {
			if c < 'A' || c > 'Z' {
				return m, false
			}
		}
		m.request, m.method, m.target, m.minor = true, string(method), string(target), proto[7]
	}
	for len(rest) > 0 {
		line, rest, complete = bytes.Cut(rest, []byte("\r\n"))
		if !complete && cut {
			break // a field cut by the capture: not read
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		// Field names are case-insensitive; EqualFold allocates nothing.
		switch {
		case bytes.EqualFold(name, []byte("host")):
			m.host = string(value)
		case bytes.EqualFold(name, []byte("traceparent")):
			m.traceparent = string(value)
		case bytes.EqualFold(name, []byte("tracestate")):
			m.tracestate = string(value)
		case bytes.EqualFold(name, []byte("content-length")):
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
				m.length = n
			}
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			m.chunked = len(value) >= 7 && bytes.EqualFold(value[len(value)-7:], []byte("chunked"))
		}
	}
	return m, true
}

// requestFraming is how a request's body ends (RFC 9112 6.3).
func (m *message) requestFraming() (framing, int64) {
	switch {
	case m.chunked:
		return frameChunked, 0
	case m.length > 0:
		return frameLength, m.length
	}
	return frameNone, 0
}

// responseFraming is how a response to a request of method ends.
func (m *message) responseFraming(method string) (framing, int64) {
	switch {
	case method == "HEAD" || m.status < 200 || m.status == 204 || m.status == 304:
		return frameNone, 0
	case m.chunked:
		return frameChunked, 0
	case m.length >= 0:
		return frameLength, m.length
	}
	return frameClose, 0
}

// path is the request target's path, without the query.
func (m *message) path() string {
	p, _, _ := strings.Cut(m.target, "?")
	if !strings.HasPrefix(p, "/") {
		return "" // absolute-form or authority-form: not a plain path
	}
	return p
}
