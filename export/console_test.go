package export

import (
	"context"
	"strings"
	"testing"

	"github.com/tracewire/tracewire/spans"
)

func TestConsoleSinkWaterfall(t *testing.T) {
	const t0 = 1_700_000_000_000_000_000
	const ms = 1_000_000
	trace := [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	root := &spans.Span{
		Process: procA, TraceID: trace, SpanID: spanID(1), ParentID: [8]byte{9, 9, 9}, // parent outside the batch
		Name: "GET /checkout", Kind: spans.KindServer, StartNs: t0, EndNs: t0 + 12*ms,
		Attrs: []spans.Attr{spans.String("http.route", "/checkout"), spans.Int("http.response.status_code", 200)},
	}
	client := &spans.Span{
		Process: procA, TraceID: trace, SpanID: spanID(2), ParentID: root.SpanID,
		Name: "POST", Kind: spans.KindClient, StartNs: t0 + 1*ms, EndNs: t0 + 9*ms + 250_500,
		Attrs: []spans.Attr{spans.Int("http.response.status_code", 503), spans.String("url.path", "/cart/add"),
			spans.String("server.address", "cart"), spans.Int("server.port", 8080)},
	}
	db := &spans.Span{
		Process: procB, TraceID: trace, SpanID: spanID(3), ParentID: client.SpanID,
		Name: "SELECT carts", Kind: spans.KindClient, StartNs: t0 + 3*ms, EndNs: t0 + 7*ms,
		Error: true, StatusMsg: "deadlock detected",
		Attrs: []spans.Attr{spans.String("db.system.name", "postgresql")},
	}
	other := &spans.Span{
		Process: procB, TraceID: [16]byte{1}, SpanID: spanID(4),
		Name: "refresh", Kind: spans.KindInternal, StartNs: t0 + 20*ms, EndNs: t0 + 20*ms + 500_000,
	}
	var out strings.Builder
	// Out of order on purpose: traces and spans are sorted by start time.
	batch := []*spans.Span{other, db, root, client}
	if err := NewConsoleSink(&out, ResourceConfig{}).Upload(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	want := `trace 4bf92f3577b34da6a3ce929d0e0e4736  spans=3  12.000 ms
  frontend    GET /checkout  SERVER       12.000 ms  |========================================|  OK     status=200 route=/checkout
    frontend  POST           CLIENT        8.251 ms  |   ===========================          |  OK     status=503 path=/cart/add server=cart:8080
      cart    SELECT carts   CLIENT        4.000 ms  |          =============                 |  ERROR  db=postgresql error="deadlock detected"
trace 01000000000000000000000000000000  spans=1  0.500 ms
  cart  refresh  INTERNAL      0.500 ms  |========================================|  OK
`
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestTreeOrder: children follow their parent even when a sibling of the
// parent started earlier than them (fan-out).
func TestTreeOrder(t *testing.T) {
	mk := func(id, parent byte, start int64) *spans.Span {
		return &spans.Span{SpanID: [8]byte{id}, ParentID: [8]byte{parent}, StartNs: start}
	}
	root, c1, c2, s1, s2 := mk(1, 0, 0), mk(2, 1, 10), mk(3, 1, 20), mk(4, 2, 30), mk(5, 3, 40)
	got, depth := treeOrder([]*spans.Span{root, c1, c2, s1, s2})
	want := []*spans.Span{root, c1, s1, c2, s2}
	for i := range want {
		if got[i] != want[i] || depth[i] != []int{0, 1, 2, 1, 2}[i] {
			t.Fatalf("position %d: span %x depth %d", i, got[i].SpanID[0], depth[i])
		}
	}
}
