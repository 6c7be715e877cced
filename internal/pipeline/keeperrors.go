package pipeline

import (
	"sync"
	"time"

	"github.com/tracewire/tracewire/spans"
)

// How long and how many spans of unsampled traces KeepErrors holds: an
// error usually ends a trace's local spans within a few seconds of its
// first, and 10 000 pooled spans are a few MiB.
const (
	keepErrorsHold = 10 * time.Second
	keepErrorsMax  = 10000
)

// keptForError marks the spans exported by KeepErrors: their trace was not
// sampled, so the other agents' spans of it are missing.
var keptForError = spans.String("tracewire.sampling.kept_for_error", "true")

// KeepErrors is dropUnsampled that exports an unsampled trace's local spans
// when one of them ends in error. It holds the spans of each unsampled trace
// for a window from its first span; an error in the window sends on the
// trace's held spans and every later one of the window, marked with
// keptForError; at the end of the window, the held spans are dropped and
// counted as unsampled. Like dropUnsampled it comes after the Joiner.
type KeepErrors struct {
	next  func(*spans.Span)
	count *Counts
	hold  time.Duration
	limit int // spans held, and traces tracked, at most
	now   func() time.Time

	mu     sync.Mutex
	traces map[[16]byte]*keptTrace
	// queue holds the traces by end of window; first seen first, so the
	// windows end in queue order.
	queue []queuedTrace
	held  int
}

type keptTrace struct {
	spans []*spans.Span
	kept  bool // an error was seen: the window's spans go on
}

type queuedTrace struct {
	id  [16]byte
	end time.Time
}

// NewKeepErrors returns the stage in front of next: windows of hold, at most
// limit spans held; drops are counted in c.
func NewKeepErrors(next func(*spans.Span), c *Counts, hold time.Duration, limit int) *KeepErrors {
	return &KeepErrors{next: next, count: c, hold: hold, limit: limit, now: time.Now, traces: map[[16]byte]*keptTrace{}}
}

// Add passes s on, holds it or drops it.
func (k *KeepErrors) Add(s *spans.Span) {
	if s.TraceFlags&1 != 0 {
		k.next(s)
		return
	}
	k.mu.Lock()
	now := k.now()
	k.expire(now)
	t, ok := k.traces[s.TraceID]
	if !ok && len(k.traces) < k.limit {
		t = &keptTrace{}
		k.traces[s.TraceID] = t
		k.queue = append(k.queue, queuedTrace{s.TraceID, now.Add(k.hold)})
	}
	var out []*spans.Span
	switch {
	case t != nil && t.kept:
		out = []*spans.Span{s}
	case s.Error && t != nil:
		out = append(t.spans, s)
		k.held -= len(t.spans)
		t.spans, t.kept = nil, true
	case s.Error: // too many traces tracked: the error span alone
		out = []*spans.Span{s}
	case t == nil || k.held >= k.limit:
		k.count.HeldOverflow.Add(1)
		k.count.Unsampled.Add(1)
		s.Release()
	default:
		t.spans = append(t.spans, s)
		k.held++
	}
	k.mu.Unlock()
	for _, s := range out {
		s.Attrs = append(s.Attrs, keptForError)
		k.next(s)
	}
}

// expire ends the windows ended by now, dropping what they still hold. It
// runs on Add only: a window's end is then exact for the spans that come,
// and what an idle agent holds stays bounded.
func (k *KeepErrors) expire(now time.Time) {
	for len(k.queue) > 0 && !k.queue[0].end.After(now) {
		k.drop(k.queue[0].id)
		k.queue = k.queue[1:]
	}
}

func (k *KeepErrors) drop(id [16]byte) {
	for _, s := range k.traces[id].spans {
		k.count.Unsampled.Add(1)
		s.Release()
	}
	k.held -= len(k.traces[id].spans)
	delete(k.traces, id)
}

// Flush drops every held span, at shutdown: no error can come for them.
func (k *KeepErrors) Flush() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, q := range k.queue {
		k.drop(q.id)
	}
	k.queue = nil
}

// Held returns how many spans are held.
func (k *KeepErrors) Held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held
}
