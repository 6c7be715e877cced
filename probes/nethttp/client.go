package nethttp

import (
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// client builds the semconv HTTP client span of one call. It lasts from the
// call of Transport.roundTrip until the response arrives (ReadResponse); a
// call that got no response (status 0) is an error ending when the agent
// noticed: the caller's next call or the end of the request it serves.
func (d *decoder) client(e *bpfNethttpClientEvent, proc *spans.Process) *spans.Span {
	s := d.span(proc, spans.KindClient, &e.Sc, e.StartNs, e.EndNs)
	method := text(s, e.Method[:], e.MethodLen)
	scheme := text(s, e.Scheme[:], e.SchemeLen)
	s.Name, s.Attrs = spans.HTTPMethod(method, s.Attrs)
	host := text(s, e.Host[:], e.HostLen)
	d.scratch = spans.FullURL(d.scratch[:0], scheme, host, text(s, e.Path[:], e.PathLen), text(s, e.Query[:], e.QueryLen), e.HasUser != 0)
	s.Attrs = append(s.Attrs, spans.String("url.full", s.Str(d.scratch)))
	defPort := 80
	if scheme == "https" {
		defPort = 443
	}
	if h, port := spans.HostPort(host, defPort); h != "" {
		s.Attrs = append(s.Attrs, spans.String("server.address", h), spans.Int("server.port", int64(port)))
	}
	if e.HasPeer != 0 {
		d.scratch = probes.RemoteAddr(e.Peer.Family, e.Peer.Remote).AppendTo(d.scratch[:0])
		s.Attrs = append(s.Attrs, spans.String("network.peer.address", s.Str(d.scratch)), spans.Int("network.peer.port", int64(e.Peer.Rport)))
	}
	if e.H2 != 0 {
		s.Attrs = append(s.Attrs, spans.String("network.protocol.version", "2"))
	}
	switch {
	case e.Status == 0:
		s.Error, s.StatusMsg = true, "no response"
	case e.Status > 0: // < 0: the status line was not in the buffer yet
		s.Attrs = append(s.Attrs, spans.Int("http.response.status_code", e.Status))
		s.Error = e.Status >= 400
	}
	return s
}
