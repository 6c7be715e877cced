// Package spans holds the library-independent span record that probes produce
// and exporters consume, and the per-process description its resource is built from.
package spans

import (
	"net/netip"
	"sync"
	"unsafe"
)

// Kind is the OTLP span kind.
type Kind uint8

const (
	KindInternal Kind = iota + 1
	KindServer
	KindClient
)

// Attr is one span attribute: a string, or an int when IsInt is set.
type Attr struct {
	Key   string
	Str   string
	Int   int64
	IsInt bool
}

// String returns a string attribute.
func String(k, v string) Attr { return Attr{Key: k, Str: v} }

// Int returns an int attribute.
func Int(k string, v int64) Attr { return Attr{Key: k, Int: v, IsInt: true} }

// Process describes a traced process; every span of that process shares one
// (immutable) Process, so its resource outlives the process itself.
type Process struct {
	PID            int
	ExeName        string // basename of the executable
	ServiceName    string // target's OTEL_SERVICE_NAME, else ExeName
	RuntimeName    string // "go"
	RuntimeVersion string // "go1.22.12"
	// Detected are attributes the agent found (Kubernetes, container);
	// any OTEL_RESOURCE_ATTRIBUTES overrides them.
	Detected []Attr
	// ResourceAttrs are the target's own OTEL_RESOURCE_ATTRIBUTES.
	ResourceAttrs []Attr
}

// Span is one finished span. Ids are chosen by the agent where the span
// starts and are exported unchanged.
type Span struct {
	Process    *Process
	Scope      string // instrumentation scope, e.g. "github.com/tracewire/tracewire/probes/nethttp"
	TraceID    [16]byte
	SpanID     [8]byte
	ParentID   [8]byte // zero for a root span
	TraceFlags byte
	TraceState string
	Name       string
	Kind       Kind
	StartNs    int64 // wall clock, Unix nanoseconds
	EndNs      int64
	Error      bool // status Error; StatusMsg says why
	StatusMsg  string
	Attrs      []Attr
	// LinkPending says the trace id is provisional: a server span whose
	// call carried no traceparent, or a child of one, waiting for the
	// pipeline to join it with its client's span (see Call).
	LinkPending bool
	// Call is the call on the wire, zero when unknown: what the pipeline
	// joins a client and a server span of one node by.
	Call Call

	arena []byte // backing store of strings made by Str
}

// Call identifies one call on the wire: the client's and the server's ends
// of its connection and, where a connection carries several calls at once,
// its stream (the HTTP/2 stream id). Both sides of the call see the same.
type Call struct {
	Client, Server netip.AddrPort
	Stream         uint32
}

// Spans are recycled: the probes' hot path takes one with New, fills it, and
// the exporter gives it back with Release once it is uploaded (or dropped),
// so decoding an event allocates nothing in the steady state.
var pool = sync.Pool{New: func() any {
	return &Span{Attrs: make([]Attr, 0, 12), arena: make([]byte, 0, 512)}
}}

// New returns an empty span from the pool.
func New() *Span { return pool.Get().(*Span) }

// Release returns s to the pool; s and every string made by s.Str must not
// be used afterwards.
func (s *Span) Release() {
	*s = Span{Attrs: s.Attrs[:0], arena: s.arena[:0]}
	pool.Put(s)
}

// Str copies b into storage owned by s and returns it as a string that stays
// valid until s is released. Text read from the kernel goes through it.
func (s *Span) Str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(s.arena)-len(s.arena) < len(b) {
		// Strings already made keep the old array alive; start a new one.
		s.arena = make([]byte, 0, max(512, 2*len(b)))
	}
	start := len(s.arena)
	s.arena = append(s.arena, b...)
	return unsafe.String(&s.arena[start], len(b))
}
