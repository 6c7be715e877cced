// Package nethttp traces Go net/http servers: one SERVER span per request,
// from two uprobes on emulated prologue instructions.
package nethttp

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// Scope is the instrumentation scope of the spans this probe makes.
const Scope = "github.com/tracewire/tracewire/probes/nethttp"

const (
	symServe  = "net/http.serverHandler.ServeHTTP"
	symFinish = "net/http.(*response).finishRequest"
)

// Probe is the loaded set of net/http programs serving every target.
type Probe struct {
	objs     bpfObjects
	counters []string // names of the stats map's indexes
	att      probes.Attachments
	rd       *ringbuf.Reader
	clock    probes.Clock
}

// Load loads the programs and maps into the kernel.
func Load() (*Probe, error) {
	p := &Probe{clock: probes.NewClock()}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("read nethttp BPF objects: %w", err)
	}
	if p.counters, err = probes.CounterNames(spec); err != nil {
		return nil, err
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load nethttp BPF objects: %w", err)
	}
	rd, err := ringbuf.NewReader(p.objs.NethttpEvents)
	if err != nil {
		p.objs.Close()
		return nil, fmt.Errorf("open nethttp ring buffer: %w", err)
	}
	p.rd = rd
	return p, nil
}

// Add starts tracing process pid running executable exe (file id file).
func (p *Probe) Add(pid int, file probes.FileID, exe string, bin *gobin.Binary) error {
	off, err := offsets(bin)
	if err != nil {
		return err
	}
	if err := p.objs.NethttpProcs.Put(uint32(pid), off); err != nil {
		return fmt.Errorf("store net/http offsets of pid %d: %w", pid, err)
	}
	err = p.att.Acquire(file, exe, bin, []probes.Uprobe{
		{Symbol: symServe, Prog: p.objs.UprobeServerHandlerServeHTTP},
		{Symbol: symFinish, Prog: p.objs.UprobeResponseFinishRequest},
	})
	if err != nil {
		_ = p.objs.NethttpProcs.Delete(uint32(pid))
		return err
	}
	return nil
}

// Remove stops tracing pid; the uprobes go with the file's last process.
func (p *Probe) Remove(pid int, file probes.FileID) {
	if err := p.objs.NethttpProcs.Delete(uint32(pid)); err == nil {
		p.att.Release(file)
	}
}

// offsets collects the struct field offsets the programs read for bin.
func offsets(bin *gobin.Binary) (*bpfNethttpOffsets, error) {
	o := &bpfNethttpOffsets{}
	request := []*uint64{
		&o.RequestMethod, &o.RequestUrl, &o.RequestProtoMajor, &o.RequestProtoMinor, &o.RequestHost,
		&o.RequestRemoteAddr, &o.RequestTls, &o.RequestPattern, &o.RequestPat,
	}
	for _, f := range []struct {
		dst        *uint64
		typ, field string
		optional   bool
	}{
		{&o.G_goid, "runtime.g", "goid", false},
		{request[0], "net/http.Request", "Method", false},
		{request[1], "net/http.Request", "URL", false},
		{request[2], "net/http.Request", "ProtoMajor", false},
		{request[3], "net/http.Request", "ProtoMinor", false},
		{request[4], "net/http.Request", "Host", false},
		{request[5], "net/http.Request", "RemoteAddr", false},
		{request[6], "net/http.Request", "TLS", false},
		{request[7], "net/http.Request", "Pattern", true},
		{request[8], "net/http.Request", "pat", true},
		{&o.PatternStr, "net/http.pattern", "str", true},
		{&o.UrlPath, "net/url.URL", "Path", false},
		{&o.ResponseReq, "net/http.response", "req", false},
		{&o.ResponseStatus, "net/http.response", "status", false},
	} {
		v, err := bin.FieldOffset(f.typ, f.field)
		switch {
		case err == nil:
			*f.dst = v
		case f.optional && errors.Is(err, gobin.ErrNoField):
			*f.dst = offNone
		default:
			return nil, fmt.Errorf("offset of %s.%s: %w", f.typ, f.field, err)
		}
	}
	// The programs copy the Request's prefix up to its last needed field
	// (16 bytes: the largest, a string) in one read.
	for _, off := range request {
		if *off != offNone {
			o.RequestSize = max(o.RequestSize, *off+16)
		}
	}
	if o.RequestSize > chunkMax {
		return nil, fmt.Errorf("net/http.Request fields end at byte %d, beyond the %d the probe copies", o.RequestSize, chunkMax)
	}
	return o, nil
}

// chunkMax is how much of a struct the programs copy at once (CHUNK_MAX).
const chunkMax = uint64(len(bpfChunk{}.B))

// offNone marks a field the binary's Go version does not have (OFF_NONE in C).
const offNone = ^uint64(0)

// Run turns ring-buffer events into spans until done is closed and every
// event already submitted is read. process returns the target's description
// (nil if unknown: the event is counted and dropped).
func (p *Probe) Run(done <-chan struct{}, process func(pid int) *spans.Process, emit func(*spans.Span)) {
	probes.ReadRing(p.rd, 100*time.Millisecond, done, func(raw []byte) {
		var e bpfNethttpServerEvent
		if len(raw) < int(unsafe.Sizeof(e)) {
			probes.CountUndecodable()
			return
		}
		e = *(*bpfNethttpServerEvent)(unsafe.Pointer(&raw[0]))
		proc := process(int(e.Pid))
		if proc == nil {
			probes.CountUndecodable()
			return
		}
		emit(serverSpan(&e, proc, p.clock))
	})
}

// Detach removes every uprobe: no new events after it returns.
func (p *Probe) Detach() { p.att.Close() }

// Close detaches, ends Run and frees the programs.
func (p *Probe) Close() {
	p.att.Close()
	p.rd.Close()
	p.objs.Close()
}

// Counters returns the kernel-side drop and error counters.
func (p *Probe) Counters() (map[string]uint64, error) {
	return probes.KernelCounters(p.objs.Stats, p.counters)
}

func str(b []int8, n int64) string {
	if n <= 0 {
		return ""
	}
	if n > int64(len(b)) {
		n = int64(len(b))
	}
	return probes.CString(b[:n])
}

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
