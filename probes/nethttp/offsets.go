package nethttp

import (
	"errors"
	"fmt"

	"github.com/tracewire/tracewire/internal/gobin"
)

// offNone marks a field the binary's Go version does not have (OFF_NONE in C).
const offNone = ^uint64(0)

// bufioWords is how many words of a bufio.Reader the programs copy (BUFIO_WORDS).
const bufioWords = 8

// chunkMax is how much of a struct the programs copy at once (CHUNK_MAX).
const chunkMax = uint64(len(bpfChunk{}.B))

type field struct {
	dst       *uint64
	typ, name string
	optional  bool // absent in some Go versions: offNone there
}

// offsets collects the struct field offsets the programs read for bin.
func offsets(bin *gobin.Binary) (*bpfNethttpOffsets, error) {
	o := &bpfNethttpOffsets{}
	req := func(dst *uint64, name string, optional bool) field {
		return field{dst, "net/http.Request", name, optional}
	}
	url := func(dst *uint64, name string) field { return field{dst, "net/url.URL", name, false} }
	request := []field{
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
	urls := []field{
		url(&o.UrlScheme, "Scheme"), url(&o.UrlUser, "User"), url(&o.UrlHost, "Host"),
		url(&o.UrlPath, "Path"), url(&o.UrlRawQuery, "RawQuery"),
	}
	others := []field{
		{&o.G_goid, "runtime.g", "goid", false},
		{&o.G_parentGoid, "runtime.g", "parentGoid", true},
		{&o.PatternStr, "net/http.pattern", "str", true},
		{&o.ResponseReq, "net/http.response", "req", false},
		{&o.ResponseStatus, "net/http.response", "status", false},
		{&o.BufioBuf, "bufio.Reader", "buf", false},
		{&o.BufioR, "bufio.Reader", "r", false},
		{&o.BufioW, "bufio.Reader", "w", false},
		{&o.TreqRequest, "net/http.transportRequest", "Request", false},
		{&o.PconnConn, "net/http.persistConn", "conn", false},
		{&o.PconnTlsState, "net/http.persistConn", "tlsState", false},
		{&o.ConnFd, "net.conn", "fd", false},
	}
	for _, fs := range [][]field{request, urls, others} {
		if err := resolve(bin, fs); err != nil {
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
	if err := resolve(bin, []field{{&pfd, "net.netFD", "pfd", false}, {&sysfd, "internal/poll.FD", "Sysfd", false}}); err != nil {
		return nil, err
	}
	o.NetfdSysfd = pfd + sysfd
	if err := mapOffsets(bin, o); err != nil {
		return nil, err
	}
	return o, nil
}

// mapOffsets fills what the programs need to read an http.Header: swiss
// tables since Go 1.24, hash maps before.
func mapOffsets(bin *gobin.Binary, o *bpfNethttpOffsets) error {
	m := &o.Maps
	var groups, data, mask uint64
	swiss := []field{
		{&m.SwissDirPtr, "internal/runtime/maps.Map", "dirPtr", false},
		{&m.SwissDirLen, "internal/runtime/maps.Map", "dirLen", false},
		{&groups, "internal/runtime/maps.table", "groups", false},
		{&data, "internal/runtime/maps.groupsReference", "data", false},
		{&mask, "internal/runtime/maps.groupsReference", "lengthMask", false},
	}
	err := resolve(bin, swiss)
	if err == nil {
		m.Swiss = 1
		m.TableGroups, m.TableMask = groups+data, groups+mask
		return nil
	}
	if !errors.Is(err, gobin.ErrNoField) {
		return err
	}
	return resolve(bin, []field{
		{&m.HmapB, "runtime.hmap", "B", false},
		{&m.HmapBuckets, "runtime.hmap", "buckets", false},
	})
}

func resolve(bin *gobin.Binary, fs []field) error {
	for _, f := range fs {
		v, err := bin.FieldOffset(f.typ, f.name)
		switch {
		case err == nil:
			*f.dst = v
		case f.optional && errors.Is(err, gobin.ErrNoField):
			*f.dst = offNone
		default:
			return fmt.Errorf("offset of %s.%s: %w", f.typ, f.name, err)
		}
	}
	return nil
}

// prefixSize is how many bytes of a struct the programs copy to read fs in
// one go: up to the end of the last field (16 bytes: the largest, a string).
func prefixSize(typ string, fs []field) (uint64, error) {
	var n uint64
	for _, f := range fs {
		if *f.dst != offNone {
			n = max(n, *f.dst+16)
		}
	}
	if n > chunkMax {
		return 0, fmt.Errorf("%s fields end at byte %d, beyond the %d the probe copies", typ, n, chunkMax)
	}
	return n, nil
}
