package spans

import (
	"encoding/hex"
	"net"
	"strconv"
	"strings"
)

// knownMethod tells the HTTP methods semantic conventions name; others are
// reported as _OTHER with the original kept aside. (A switch: a map lookup
// hashes the method on every span.)
func knownMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return true
	}
	return false
}

// HTTPMethod returns the span name for method and appends its
// http.request.method attribute(s) to attrs.
func HTTPMethod(method string, attrs []Attr) (string, []Attr) {
	if knownMethod(method) {
		return method, append(attrs, String("http.request.method", method))
	}
	return "HTTP", append(attrs, String("http.request.method", "_OTHER"), String("http.request.method_original", method))
}

// ParseTraceparent reads a W3C traceparent header value: trace id, parent
// span id and flags. It refuses what the W3C rules refuse (version ff, zero
// ids, a version 00 value of another length, bad hex).
func ParseTraceparent(v string) (trace [16]byte, parent [8]byte, flags byte, ok bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || len(v) > 55 && (v[:2] == "00" || v[55] != '-') {
		return trace, parent, 0, false
	}
	var version, fl [1]byte
	if hexInto(version[:], v[:2]) != nil || version[0] == 0xff ||
		hexInto(trace[:], v[3:35]) != nil || hexInto(parent[:], v[36:52]) != nil || hexInto(fl[:], v[53:55]) != nil {
		return trace, parent, 0, false
	}
	if trace == ([16]byte{}) || parent == ([8]byte{}) {
		return trace, parent, 0, false
	}
	return trace, parent, fl[0], true
}

// hexInto decodes lower-case hex s into dst, exactly len(dst) bytes.
func hexInto(dst []byte, s string) error {
	for i := range len(s) {
		if c := s[i]; c >= 'A' && c <= 'F' {
			return hex.InvalidByteError(c) // W3C: lower case only
		}
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

// HostPort splits "host:port" ("[v6]:port", or a bare host taking defPort).
func HostPort(hp string, defPort int) (string, int) {
	if hp == "" {
		return "", 0
	}
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return strings.Trim(hp, "[]"), defPort
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return host, defPort
	}
	return host, port
}

// FullURL appends url.full without secrets to b: userinfo and every query
// value are replaced by REDACTED, as semantic conventions ask.
func FullURL(b []byte, scheme, host, path, query string, user bool) []byte {
	b = append(append(b, scheme...), "://"...)
	if user {
		b = append(b, "REDACTED:REDACTED@"...)
	}
	b = append(append(b, host...), path...)
	if query == "" {
		return b
	}
	b = append(b, '?')
	for i := 0; query != ""; i++ {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		if i > 0 {
			b = append(b, '&')
		}
		k, _, hasValue := strings.Cut(kv, "=")
		b = append(b, k...)
		if hasValue {
			b = append(b, "=REDACTED"...)
		}
	}
	return b
}
