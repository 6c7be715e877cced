package pipeline

import (
	"testing"
	"time"

	"github.com/tracewire/tracewire/spans"
)

// keepRig is a KeepErrors on a clock the test moves, recording what it
// passes on.
type keepRig struct {
	k     *KeepErrors
	count Counts
	t     time.Time
	got   []*spans.Span
}

func newKeepRig(limit int) *keepRig {
	r := &keepRig{t: time.Unix(1000, 0)}
	r.k = NewKeepErrors(func(s *spans.Span) { r.got = append(r.got, s) }, &r.count, 10*time.Second, limit)
	r.k.now = func() time.Time { return r.t }
	return r
}

// add sends a span of trace id (its first byte), sampled or in error as told.
func (r *keepRig) add(id byte, sampled, failed bool) *spans.Span {
	s := spans.New()
	s.TraceID[0] = id
	s.Error = failed
	if sampled {
		s.TraceFlags = 1
	}
	r.k.Add(s)
	return s
}

// check checks that got is exactly want, each marked as kept for an
// error unless sampled.
func (r *keepRig) check(t *testing.T, want ...*spans.Span) {
	t.Helper()
	if len(r.got) != len(want) {
		t.Fatalf("%d spans passed, want %d", len(r.got), len(want))
	}
	for i, s := range r.got {
		marked := len(s.Attrs) > 0 && s.Attrs[len(s.Attrs)-1] == keptForError
		if s != want[i] || marked == (s.TraceFlags&1 != 0) {
			t.Errorf("span %d: %p marked %v, want %p marked %v", i, s, marked, want[i], want[i].TraceFlags&1 == 0)
		}
	}
}

func TestKeepErrorsErrorLast(t *testing.T) {
	r := newKeepRig(100)
	a := r.add(1, false, false)
	b := r.add(1, false, false)
	r.add(2, false, false) // another trace, held on
	sampled := r.add(3, true, false)
	r.check(t, sampled)
	r.t = r.t.Add(9 * time.Second)
	c := r.add(1, false, true)
	r.check(t, sampled, a, b, c)
	if h := r.k.Held(); h != 1 {
		t.Errorf("%d spans held, want trace 2's", h)
	}
}

func TestKeepErrorsErrorFirst(t *testing.T) {
	r := newKeepRig(100)
	a := r.add(1, false, true)
	b := r.add(1, false, false)
	r.t = r.t.Add(9 * time.Second)
	c := r.add(1, false, false)
	r.check(t, a, b, c)
	r.t = r.t.Add(time.Second) // the window is over: held again
	r.add(1, false, false)
	r.check(t, a, b, c)
	if h := r.k.Held(); h != 1 {
		t.Errorf("%d spans held, want 1", h)
	}
}

func TestKeepErrorsNoError(t *testing.T) {
	r := newKeepRig(100)
	before := r.count.Unsampled.Load()
	r.add(1, false, false)
	r.add(1, false, false)
	r.t = r.t.Add(10 * time.Second)
	r.add(2, false, false) // ends trace 1's window
	if n := r.count.Unsampled.Load() - before; n != 2 || r.k.Held() != 1 {
		t.Errorf("%d counted unsampled, %d held; want 2 and 1", n, r.k.Held())
	}
	r.add(1, false, true) // a new window: the expired spans are gone
	r.check(t, r.got...)
	if len(r.got) != 1 {
		t.Errorf("%d spans passed, want the error alone", len(r.got))
	}
	r.k.Flush()
	if n := r.count.Unsampled.Load() - before; n != 3 || r.k.Held() != 0 {
		t.Errorf("after Flush: %d counted unsampled, %d held; want 3 and 0", n, r.k.Held())
	}
}

func TestKeepErrorsBound(t *testing.T) {
	r := newKeepRig(3)
	before, overflow := r.count.Unsampled.Load(), r.count.HeldOverflow.Load()
	r.add(1, false, false)
	r.add(1, false, false)
	r.add(2, false, false)
	r.add(2, false, false) // over the bound: dropped at once
	r.add(3, false, false) // too many traces
	if n, o := r.count.Unsampled.Load()-before, r.count.HeldOverflow.Load()-overflow; n != 2 || o != 2 || r.k.Held() != 3 {
		t.Errorf("%d unsampled, %d overflow, %d held; want 2, 2, 3", n, o, r.k.Held())
	}
	e := r.add(4, false, true) // an error is passed on even so
	r.check(t, e)
}
