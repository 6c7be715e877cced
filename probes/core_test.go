package probes_test

import (
	"testing"

	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// TestDropUnsampled: spans of sampled traces go on, the others are counted.
func TestDropUnsampled(t *testing.T) {
	var got []*spans.Span
	drop := probes.DropUnsampled(func(s *spans.Span) { got = append(got, s) })
	before := probes.Unsampled()
	sampled, unsampled := spans.New(), spans.New()
	sampled.TraceFlags, unsampled.TraceFlags = 1, 2 // another flag set, the sampled one not
	drop(sampled)
	drop(unsampled)
	if len(got) != 1 || got[0] != sampled || probes.Unsampled()-before != 1 {
		t.Errorf("passed %d spans, counted %d unsampled; want the sampled one and 1", len(got), probes.Unsampled()-before)
	}
}
