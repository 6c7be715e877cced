package export

import (
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracewire/tracewire/spans"
)

// The OTLP protobuf is appended field by field straight from the spans: no
// intermediate protobuf structs, no reflection, nothing allocated per span.
// Field numbers are those of opentelemetry/proto (trace/v1, common/v1,
// resource/v1, collector/trace/v1); the tests decode the bytes with the
// generated types.
const (
	fRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans

	fResourceSpansResource   = 1
	fResourceSpansScopeSpans = 2
	fScopeSpansScope         = 1
	fScopeSpansSpans         = 2

	fSpanTraceID      = 1
	fSpanSpanID       = 2
	fSpanTraceState   = 3
	fSpanParentSpanID = 4
	fSpanName         = 5
	fSpanKind         = 6
	fSpanStart        = 7
	fSpanEnd          = 8
	fSpanAttributes   = 9
	fSpanStatus       = 15
	fSpanFlags        = 16

	fStatusMessage = 2
	fStatusCode    = 3
	statusError    = 2 // STATUS_CODE_ERROR

	fKeyValueKey   = 1
	fKeyValueValue = 2
	fAnyString     = 1
	fAnyInt        = 3

	fResourceAttributes = 1
	fScopeName          = 1
	fScopeVersion       = 2
)

// openLen starts a length-delimited field num: its tag and a one-byte
// length to be fixed by closeLen, which gets the returned content start.
func openLen(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = append(b, 0)
	return b, len(b)
}

// closeLen writes the length of the content appended since start, moving
// the content when the length needs more than one byte.
func closeLen(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	for range k - 1 {
		b = append(b, 0)
	}
	copy(b[start+k-1:], b[start:start+n])
	protowire.AppendVarint(b[:start-1], uint64(n))
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, validUTF8(s))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendSpan appends the fields of one Span message.
func appendSpan(b []byte, s *spans.Span) []byte {
	b = appendBytes(b, fSpanTraceID, s.TraceID[:])
	b = appendBytes(b, fSpanSpanID, s.SpanID[:])
	if s.TraceState != "" {
		b = appendString(b, fSpanTraceState, s.TraceState)
	}
	if s.ParentID != ([8]byte{}) {
		b = appendBytes(b, fSpanParentSpanID, s.ParentID[:])
	}
	if s.Name != "" {
		b = appendString(b, fSpanName, s.Name)
	}
	if k := spanKind(s.Kind); k != 0 {
		b = protowire.AppendTag(b, fSpanKind, protowire.VarintType)
		b = protowire.AppendVarint(b, k)
	}
	b = protowire.AppendTag(b, fSpanStart, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(s.StartNs))
	b = protowire.AppendTag(b, fSpanEnd, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(s.EndNs))
	for _, a := range s.Attrs {
		b = appendKeyValue(b, fSpanAttributes, a)
	}
	// No status field reads as UNSET.
	if s.Error {
		var at int
		b, at = openLen(b, fSpanStatus)
		if s.StatusMsg != "" {
			b = appendString(b, fStatusMessage, s.StatusMsg)
		}
		b = protowire.AppendTag(b, fStatusCode, protowire.VarintType)
		b = protowire.AppendVarint(b, statusError)
		b = closeLen(b, at)
	}
	if s.TraceFlags != 0 {
		b = protowire.AppendTag(b, fSpanFlags, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, uint32(s.TraceFlags))
	}
	return b
}

// appendKeyValue appends a as the KeyValue field num.
func appendKeyValue(b []byte, num protowire.Number, a spans.Attr) []byte {
	b, kv := openLen(b, num)
	b = protowire.AppendTag(b, fKeyValueKey, protowire.BytesType)
	b = protowire.AppendString(b, a.Key) // the probes' and the resource's own names: valid
	b, v := openLen(b, fKeyValueValue)
	if a.IsInt {
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.Int))
	} else {
		b = appendString(b, fAnyString, a.Str) // set even when empty: a oneof
	}
	b = closeLen(b, v)
	return closeLen(b, kv)
}

// spanKind is the SpanKind enum value of k.
func spanKind(k spans.Kind) uint64 {
	switch k {
	case spans.KindInternal:
		return 1
	case spans.KindServer:
		return 2
	case spans.KindClient:
		return 3
	default:
		return 0 // SPAN_KIND_UNSPECIFIED
	}
}

// validUTF8 repairs s if needed: strings read from a target's memory may be
// cut mid-rune, and a collector refuses a request containing one, which
// would fail the whole batch forever.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
