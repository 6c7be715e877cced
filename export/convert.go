package export

import (
	"strings"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/spans"
)

// slab holds a batch's protobuf values in a few large arrays instead of
// several small allocations per span and attribute; the whole slab dies with
// the request once it is uploaded.
type slab struct {
	spans  arena[tracepb.Span]
	status arena[tracepb.Status]
	kvs    arena[commonpb.KeyValue]
	vals   arena[commonpb.AnyValue]
	strs   arena[commonpb.AnyValue_StringValue]
	ints   arena[commonpb.AnyValue_IntValue]
	attrs  []*commonpb.KeyValue
}

func newSlab(batch []*spans.Span) *slab {
	var nAttrs, nInts, nErrs int
	for _, s := range batch {
		nAttrs += len(s.Attrs)
		for _, a := range s.Attrs {
			if a.IsInt {
				nInts++
			}
		}
		if s.Error {
			nErrs++
		}
	}
	return &slab{
		spans:  newArena[tracepb.Span](len(batch)),
		status: newArena[tracepb.Status](nErrs),
		kvs:    newArena[commonpb.KeyValue](nAttrs),
		vals:   newArena[commonpb.AnyValue](nAttrs),
		strs:   newArena[commonpb.AnyValue_StringValue](nAttrs - nInts),
		ints:   newArena[commonpb.AnyValue_IntValue](nInts),
		attrs:  make([]*commonpb.KeyValue, 0, nAttrs),
	}
}

// arena hands out the zero elements of one preallocated array. Elements are
// never copied, as protobuf messages must not be.
type arena[T any] struct {
	items []T
	next  int
}

func newArena[T any](n int) arena[T] { return arena[T]{items: make([]T, n)} }

func (a *arena[T]) alloc() *T {
	p := &a.items[a.next]
	a.next++
	return p
}

// span converts s. Ids are referenced, not copied: the batch owns them.
func (sl *slab) span(s *spans.Span) *tracepb.Span {
	ps := sl.spans.alloc()
	ps.TraceId = s.TraceID[:]
	ps.SpanId = s.SpanID[:]
	if s.ParentID != ([8]byte{}) {
		ps.ParentSpanId = s.ParentID[:]
	}
	ps.Flags = uint32(s.TraceFlags)
	ps.TraceState = validUTF8(s.TraceState)
	ps.Name = validUTF8(s.Name)
	ps.Kind = spanKind(s.Kind)
	ps.StartTimeUnixNano = uint64(s.StartNs)
	ps.EndTimeUnixNano = uint64(s.EndNs)
	// A nil status reads as UNSET, which saves a struct per healthy span.
	if s.Error {
		st := sl.status.alloc()
		st.Code = tracepb.Status_STATUS_CODE_ERROR
		st.Message = validUTF8(s.StatusMsg)
		ps.Status = st
	}
	if len(s.Attrs) > 0 {
		start := len(sl.attrs)
		for _, a := range s.Attrs {
			sl.attrs = append(sl.attrs, sl.attr(a))
		}
		ps.Attributes = sl.attrs[start:len(sl.attrs):len(sl.attrs)]
	}
	return ps
}

func (sl *slab) attr(a spans.Attr) *commonpb.KeyValue {
	kv := sl.kvs.alloc()
	kv.Key = validUTF8(a.Key)
	v := sl.vals.alloc()
	if a.IsInt {
		iv := sl.ints.alloc()
		iv.IntValue = a.Int
		v.Value = iv
	} else {
		sv := sl.strs.alloc()
		sv.StringValue = validUTF8(a.Str)
		v.Value = sv
	}
	kv.Value = v
	return kv
}

// anyValue converts one attribute value outside a slab (resources, built once).
func anyValue(a spans.Attr) *commonpb.AnyValue {
	if a.IsInt {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: a.Int}}
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: validUTF8(a.Str)}}
}

func spanKind(k spans.Kind) tracepb.Span_SpanKind {
	switch k {
	case spans.KindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case spans.KindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case spans.KindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	default:
		return tracepb.Span_SPAN_KIND_UNSPECIFIED
	}
}

// validUTF8 repairs s if needed: strings read from a target's memory may be
// cut mid-rune, and protobuf refuses to marshal a request containing one,
// which would fail the whole batch forever.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
