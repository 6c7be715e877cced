package nethttp

import (
	"strconv"
	"strings"

	"github.com/tracewire/tracewire/spans"
)

// server builds the semconv HTTP server span of one request.
func (d *decoder) server(e *bpfNethttpServerEvent, proc *spans.Process) *spans.Span {
	s := d.span(proc, spans.KindServer, &e.Sc, e.StartNs, e.EndNs)
	method := text(s, e.Method[:], e.MethodLen)
	status := e.Status
	if status == 0 { // the handler wrote nothing: net/http sends 200
		status = 200
	}
	scheme, defPort := "http", 80
	if e.Tls != 0 {
		scheme, defPort = "https", 443
	}
	s.TraceState = text(s, e.Tracestate[:], e.TracestateLen)
	s.Error = status >= 500
	s.Name, s.Attrs = spans.HTTPMethod(method, s.Attrs)
	s.Attrs = append(s.Attrs,
		spans.String("url.path", text(s, e.Path[:], e.PathLen)),
		spans.String("url.scheme", scheme),
		spans.String("network.protocol.version", protoVersion(e.ProtoMajor, e.ProtoMinor)),
	)
	switch {
	case e.H2Reset != 0:
		// The HTTP/2 stream closed before the handler returned (reset by
		// the client, or the connection gone): the response did not end,
		// so it failed, with the status its handler wrote if any.
		s.Error, s.StatusMsg = true, "stream closed before the response ended"
		s.Attrs = append(s.Attrs, spans.String("error.type", "stream_reset"))
		if e.Status != 0 {
			s.Attrs = append(s.Attrs, spans.Int("http.response.status_code", status))
		}
	default:
		s.Attrs = append(s.Attrs, spans.Int("http.response.status_code", status))
	}
	if route := route(text(s, e.Pattern[:], e.PatternLen)); route != "" {
		s.Attrs = append(s.Attrs, spans.String("http.route", route))
		d.scratch = append(append(append(d.scratch[:0], s.Name...), ' '), route...)
		s.Name = s.Str(d.scratch)
	}
	if host, port := spans.HostPort(text(s, e.Host[:], e.HostLen), defPort); host != "" {
		s.Attrs = append(s.Attrs, spans.String("server.address", host), spans.Int("server.port", int64(port)))
	}
	if addr, _ := spans.HostPort(text(s, e.Remote[:], e.RemoteLen), 0); addr != "" {
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

func protoVersion(major, minor int64) string {
	switch {
	case major == 1 && minor == 1:
		return "1.1" // the common case, without allocating
	case major == 1 && minor == 0:
		return "1.0"
	case major == 2 && minor == 0:
		return "2"
	case major >= 2 && minor == 0:
		return strconv.FormatInt(major, 10)
	}
	return strconv.FormatInt(major, 10) + "." + strconv.FormatInt(minor, 10)
}
