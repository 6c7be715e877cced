package pipeline

import (
	"testing"

	"github.com/tracewire/tracewire/internal/sampling"
	"github.com/tracewire/tracewire/spans"
)

// Every span is observed, after its join; only sampled ones are exported,
// the others counted.
func TestPipelineStages(t *testing.T) {
	var observed, exported []*spans.Span
	p := New(Config{
		Sampler: sampling.Default,
		Observe: func(s *spans.Span) { observed = append(observed, s) },
		Export:  func(s *spans.Span) { exported = append(exported, s) },
	})
	sampled, unsampled := spans.New(), spans.New()
	sampled.TraceFlags, unsampled.TraceFlags = 1, 2 // another flag set, the sampled one not
	p.Add(sampled)
	p.Add(unsampled)
	// A server span of a provisional, unsampled trace joins a sampled client.
	server := span(9, 1, 0, 0)
	server.Kind, server.LinkPending, server.Call = spans.KindServer, true, key
	client := span(7, 5, 4, 1)
	client.Kind, client.Call = spans.KindClient, key
	p.Add(server)
	if len(observed) != 2 {
		t.Fatalf("observed %d spans before the join, want 2", len(observed))
	}
	p.Add(client)
	p.Flush()
	if len(observed) != 4 || observed[0] != sampled || observed[1] != unsampled {
		t.Fatalf("observed %d spans, want 4 in order", len(observed))
	}
	if len(exported) != 3 || exported[0] != sampled {
		t.Fatalf("exported %d spans, want the sampled one, the server and the client", len(exported))
	}
	if server.TraceID != client.TraceID || server.ParentID != client.SpanID || server.TraceFlags != 1 || server.LinkPending {
		t.Errorf("server span not joined: trace %x parent %x flags %x pending %v", server.TraceID, server.ParentID, server.TraceFlags, server.LinkPending)
	}
	if n := p.Counts().Unsampled.Load(); n != 1 {
		t.Errorf("counted %d unsampled, want 1", n)
	}
}
