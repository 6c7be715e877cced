package nethttp

import (
	"net"
	"strconv"
	"strings"

	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// serverSpan builds the semconv HTTP server span of one request.
func serverSpan(e *bpfNethttpServerEvent, proc *spans.Process, clock probes.Clock) *spans.Span {
	method := str(e.Method[:], e.MethodLen)
	status := e.Status
	if status == 0 { // the handler wrote nothing: net/http sends 200
		status = 200
	}
	scheme, defPort := "http", 80
	if e.Tls != 0 {
		scheme, defPort = "https", 443
	}
	s := &spans.Span{
		Process:    proc,
		Scope:      Scope,
		TraceID:    e.Sc.TraceId,
		SpanID:     e.Sc.SpanId,
		ParentID:   e.Sc.ParentId,
		TraceFlags: e.Sc.Flags,
		TraceState: str(e.Tracestate[:], e.TracestateLen),
		Kind:       spans.KindServer,
		StartNs:    clock.Wall(e.StartNs),
		EndNs:      clock.Wall(e.EndNs),
		Error:      status >= 500,
	}
	s.Name, s.Attrs = spans.HTTPMethod(method, make([]spans.Attr, 0, 11))
	s.Attrs = append(s.Attrs,
		spans.String("url.path", str(e.Path[:], e.PathLen)),
		spans.String("url.scheme", scheme),
		spans.Int("http.response.status_code", status),
		spans.String("network.protocol.version", protoVersion(e.ProtoMajor, e.ProtoMinor)),
	)
	if route := route(str(e.Pattern[:], e.PatternLen)); route != "" {
		s.Attrs = append(s.Attrs, spans.String("http.route", route))
		s.Name += " " + route
	}
	if host, port := hostPort(str(e.Host[:], e.HostLen), defPort); host != "" {
		s.Attrs = append(s.Attrs, spans.String("server.address", host), spans.Int("server.port", int64(port)))
	}
	if addr, _ := hostPort(str(e.Remote[:], e.RemoteLen), 0); addr != "" {
		s.Attrs = append(s.Attrs, spans.String("client.address", addr))
	}
	return s
}

// route returns the path template of a ServeMux pattern "[METHOD ][HOST]/PATH".
func route(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// hostPort splits "host:port" ("[v6]:port", or a bare host taking defPort).
func hostPort(hp string, defPort int) (string, int) {
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

func protoVersion(major, minor int64) string {
	if major >= 2 && minor == 0 {
		return strconv.FormatInt(major, 10)
	}
	return strconv.FormatInt(major, 10) + "." + strconv.FormatInt(minor, 10)
}
