package nethttp

import (
	"net/netip"
	"strings"

	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// clientSpan builds the semconv HTTP client span of one call. It lasts from
// the call of Transport.roundTrip until the response headers are parsed; a
// call that got no response (status 0) is an error ending when the agent
// noticed: the caller's next call or the end of the request it serves.
func clientSpan(e *bpfNethttpClientEvent, proc *spans.Process, clock probes.Clock) *spans.Span {
	method := str(e.Method[:], e.MethodLen)
	scheme := str(e.Scheme[:], e.SchemeLen)
	s := &spans.Span{
		Process:    proc,
		Scope:      Scope,
		TraceID:    e.Sc.TraceId,
		SpanID:     e.Sc.SpanId,
		ParentID:   e.Sc.ParentId,
		TraceFlags: e.Sc.Flags,
		Kind:       spans.KindClient,
		StartNs:    clock.Wall(e.StartNs),
		EndNs:      clock.Wall(e.EndNs),
	}
	s.Name, s.Attrs = spans.HTTPMethod(method, make([]spans.Attr, 0, 8))
	host := str(e.Host[:], e.HostLen)
	s.Attrs = append(s.Attrs, spans.String("url.full", fullURL(scheme, host, str(e.Path[:], e.PathLen), str(e.Query[:], e.QueryLen), e.HasUser != 0)))
	defPort := 80
	if scheme == "https" {
		defPort = 443
	}
	if h, port := hostPort(host, defPort); h != "" {
		s.Attrs = append(s.Attrs, spans.String("server.address", h), spans.Int("server.port", int64(port)))
	}
	if e.HasPeer != 0 {
		s.Attrs = append(s.Attrs, spans.String("network.peer.address", peerAddr(&e.Peer)), spans.Int("network.peer.port", int64(e.Peer.Rport)))
	}
	switch {
	case e.Status == 0:
		s.Error, s.StatusMsg = true, "no response"
	default:
		s.Attrs = append(s.Attrs, spans.Int("http.response.status_code", e.Status))
		s.Error = e.Status >= 400
	}
	return s
}

// fullURL rebuilds url.full without secrets: userinfo and every query value
// are replaced by REDACTED, as semantic conventions ask.
func fullURL(scheme, host, path, query string, user bool) string {
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if user {
		b.WriteString("REDACTED:REDACTED@")
	}
	b.WriteString(host)
	b.WriteString(path)
	if query != "" {
		b.WriteByte('?')
		for i, kv := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			k, _, hasValue := strings.Cut(kv, "=")
			b.WriteString(k)
			if hasValue {
				b.WriteString("=REDACTED")
			}
		}
	}
	return b.String()
}

func peerAddr(t *bpfSockTuple) string {
	if t.Family == afInet {
		return netip.AddrFrom4([4]byte(t.Remote[:4])).String()
	}
	return netip.AddrFrom16(t.Remote).Unmap().String()
}

const afInet = 2
