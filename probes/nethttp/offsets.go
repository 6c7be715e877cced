package nethttp

import (
	"fmt"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/probes"
)

// bufioWords is how many words of a bufio.Reader the programs copy.
const bufioWords = uint64(bpfNethttpConstBUFIO_WORDS)

// chunkMax is how much of a struct the programs copy at once (CHUNK_MAX).
const chunkMax = uint64(len(bpfChunk{}.B))

// offsets collects the struct field offsets the programs read for bin.
func offsets(bin *gobin.Binary) (*bpfNethttpOffsets, error) {
	o := &bpfNethttpOffsets{}
	req := func(dst *uint64, name string, optional bool) probes.Field {
		return probes.Field{Dst: dst, Typ: "net/http.Request", Name: name, Optional: optional}
	}
	url := func(dst *uint64, name string) probes.Field {
		return probes.Field{Dst: dst, Typ: "net/url.URL", Name: name}
	}
	request := []probes.Field{
		req(&o.RequestMethod, "Method", false),
		req(&o.RequestUrl, "URL", false),
		req(&o.RequestHeader, "Header", false),
		req(&o.RequestProtoMajor, "ProtoMajor", false),
		req(&o.RequestProtoMinor, "ProtoMinor", false),
		req(&o.RequestHost, "Host", false),
		req(&o.RequestRemoteAddr, "RemoteAddr", false),
		req(&o.RequestTls, "TLS", false),
		req(&o.RequestPattern, "Pattern", true), // Go >= 1.23
		req(&o.RequestPat, "pat", true),         // Go 1.22
	}
	urls := []probes.Field{
		url(&o.UrlScheme, "Scheme"), url(&o.UrlUser, "User"), url(&o.UrlHost, "Host"),
		url(&o.UrlPath, "Path"), url(&o.UrlRawQuery, "RawQuery"),
	}
	others := append(probes.GoroutineFields(&o.G.Goid, &o.G.ParentGoid), []probes.Field{
		{Dst: &o.PatternStr, Typ: "net/http.pattern", Name: "str", Optional: true},
		{Dst: &o.ResponseReq, Typ: "net/http.response", Name: "req"},
		{Dst: &o.ResponseStatus, Typ: "net/http.response", Name: "status"},
		{Dst: &o.ConnCurReq, Typ: "net/http.conn", Name: "curReq"},
		{Dst: &o.BufioBuf, Typ: "bufio.Reader", Name: "buf"},
		{Dst: &o.BufioR, Typ: "bufio.Reader", Name: "r"},
		{Dst: &o.BufioW, Typ: "bufio.Reader", Name: "w"},
		{Dst: &o.TreqRequest, Typ: "net/http.transportRequest", Name: "Request"},
		{Dst: &o.PconnConn, Typ: "net/http.persistConn", Name: "conn"},
		{Dst: &o.PconnTlsState, Typ: "net/http.persistConn", Name: "tlsState"},
		{Dst: &o.ConnFd, Typ: "net.conn", Name: "fd"},
	}...)
	for _, fs := range [][]probes.Field{request, urls, others} {
		if err := probes.ResolveFields(bin, fs); err != nil {
			return nil, err
		}
	}
	var err error
	if o.RequestSize, err = prefixSize("net/http.Request", request); err != nil {
		return nil, err
	}
	if o.UrlSize, err = prefixSize("net/url.URL", urls); err != nil {
		return nil, err
	}
	if max(o.BufioBuf, o.BufioR, o.BufioW) >= 8*bufioWords {
		return nil, fmt.Errorf("bufio.Reader fields beyond the %d words the probe copies", bufioWords)
	}
	// netFD.pfd.Sysfd: two structs deep.
	var pfd, sysfd uint64
	if err := probes.ResolveFields(bin, []probes.Field{{Dst: &pfd, Typ: "net.netFD", Name: "pfd"}, {Dst: &sysfd, Typ: "internal/poll.FD", Name: "Sysfd"}}); err != nil {
		return nil, err
	}
	o.NetfdSysfd = pfd + sysfd
	m, err := probes.MapOffsets(bin)
	if err != nil {
		return nil, err
	}
	o.Maps.Swiss, o.Maps.HmapB, o.Maps.HmapBuckets = m.Swiss, m.HmapB, m.HmapBuckets
	o.Maps.SwissDirPtr, o.Maps.SwissDirLen, o.Maps.TableGroups, o.Maps.TableMask = m.SwissDirPtr, m.SwissDirLen, m.TableGroups, m.TableMask
	// HTTP/2 in net/http's bundled copy and in golang.org/x/net/http2: a
	// package whose offsets are missing gives no span (counted
	// http2_skipped), never a wrong one.
	probes.ResolveAllOrNone(bin, h2ServerFields("net/http.http2", &o.H2Rws, &o.H2Status, &o.H2Stream, &o.H2State))
	probes.ResolveAllOrNone(bin, h2ServerFields("golang.org/x/net/http2.", &o.Xh2Rws, &o.Xh2Status, &o.Xh2Stream, &o.Xh2State))
	probes.ResolveAllOrNone(bin, h2ClientFields("net/http.http2", &o.H2ccTconn, &o.H2ccTlsState, &o.H2csCc, &o.H2csId, &o.H2mhfFields))
	probes.ResolveAllOrNone(bin, h2ClientFields("golang.org/x/net/http2.", &o.Xh2ccTconn, &o.Xh2ccTlsState, &o.Xh2csCc, &o.Xh2csId, &o.Xh2mhfFields))
	return o, nil
}

// h2ServerFields are what the HTTP/2 server hooks read in the http2
// package whose type names start with prefix.
func h2ServerFields(prefix string, rws, status, stream, state *uint64) []probes.Field {
	return []probes.Field{
		{Dst: rws, Typ: prefix + "responseWriter", Name: "rws"},
		{Dst: status, Typ: prefix + "responseWriterState", Name: "status"},
		{Dst: stream, Typ: prefix + "responseWriterState", Name: "stream"},
		{Dst: state, Typ: prefix + "stream", Name: "state"},
	}
}

// h2ClientFields are what the HTTP/2 client hooks read in the http2
// package whose type names start with prefix.
func h2ClientFields(prefix string, tconn, tlsState, csCC, csID, fields *uint64) []probes.Field {
	return []probes.Field{
		{Dst: tconn, Typ: prefix + "ClientConn", Name: "tconn"},
		{Dst: tlsState, Typ: prefix + "ClientConn", Name: "tlsState"},
		{Dst: csCC, Typ: prefix + "clientStream", Name: "cc"},
		{Dst: csID, Typ: prefix + "clientStream", Name: "ID"},
		{Dst: fields, Typ: prefix + "MetaHeadersFrame", Name: "Fields"},
	}
}

// prefixSize is how many bytes of a struct the programs copy to read fs in
// one go: up to the end of the last field (16 bytes: the largest, a string).
func prefixSize(typ string, fs []probes.Field) (uint64, error) {
	var n uint64
	for _, f := range fs {
		if *f.Dst != probes.OffNone {
			n = max(n, *f.Dst+16)
		}
	}
	if n > chunkMax {
		return 0, fmt.Errorf("%s fields end at byte %d, beyond the %d the probe copies", typ, n, chunkMax)
	}
	return n, nil
}
