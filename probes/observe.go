package probes

import (
	"sync/atomic"

	"github.com/tracewire/tracewire/spans"
)

// observer sees every decoded span, sampled or not (request metrics must
// count 100 % of requests, not the sampled share).
var observer atomic.Pointer[func(*spans.Span)]

// Observe makes f see every span the probes decode, before unsampled ones
// are dropped. Set it before the probes run; f must not keep the span, which
// is recycled once exported.
func Observe(f func(*spans.Span)) { observer.Store(&f) }

func observe(s *spans.Span) {
	if f := observer.Load(); f != nil {
		(*f)(s)
	}
}
