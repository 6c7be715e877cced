package export

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracewire/tracewire/spans"
)

// fakeSink records every upload attempt; result decides each attempt's outcome.
type fakeSink struct {
	result func(attempt int) error // nil: always succeed

	mu        sync.Mutex
	attempts  int
	delivered [][]int // span ids of the successful uploads
}

func (f *fakeSink) Upload(_ context.Context, batch []*spans.Span) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	var err error
	if f.result != nil {
		err = f.result(f.attempts)
	}
	if err == nil || errors.Is(err, errPartialSuccess) {
		ids := make([]int, len(batch))
		for i, s := range batch {
			ids[i] = idOf(s)
		}
		f.delivered = append(f.delivered, ids)
	}
	return err
}

func (f *fakeSink) snapshot() (attempts int, delivered [][]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts, append([][]int(nil), f.delivered...)
}

func ids(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func addSpans(b *Batcher, from, to int) {
	for i := from; i < to; i++ {
		b.Add(testSpan(procA, i))
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func shutdown(t *testing.T, b *Batcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestBatcherExportsFullBatches(t *testing.T) {
	sink := &fakeSink{}
	b := NewBatcher(sink, Options{ScheduleDelay: time.Hour, MaxQueueSize: 100, MaxExportBatchSize: 10}, nil)
	addSpans(b, 0, 25)
	waitFor(t, "two batches", func() bool { return b.Stats().Exported == 20 })
	time.Sleep(50 * time.Millisecond) // a partial batch must wait for the schedule
	if _, got := sink.snapshot(); !reflect.DeepEqual(got, [][]int{ids(0, 10), ids(10, 20)}) {
		t.Fatalf("delivered %v", got)
	}
	if q := b.Stats().Queued; q != 5 {
		t.Fatalf("Queued = %d, want 5", q)
	}
	shutdown(t, b)
	if _, got := sink.snapshot(); !reflect.DeepEqual(got, [][]int{ids(0, 10), ids(10, 20), ids(20, 25)}) {
		t.Fatalf("after Shutdown delivered %v", got)
	}
}

func TestBatcherExportsAfterScheduleDelay(t *testing.T) {
	sink := &fakeSink{}
	b := NewBatcher(sink, Options{ScheduleDelay: 30 * time.Millisecond}, nil)
	defer shutdown(t, b)
	start := time.Now()
	addSpans(b, 0, 3)
	waitFor(t, "the scheduled export", func() bool { return b.Stats().Exported == 3 })
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("exported after %v", elapsed)
	}
	if _, got := sink.snapshot(); !reflect.DeepEqual(got, [][]int{ids(0, 3)}) {
		t.Fatalf("delivered %v", got)
	}
}

func TestBatcherRetriesFailedBatch(t *testing.T) {
	sink := &fakeSink{result: func(attempt int) error {
		if attempt <= 3 {
			return errors.New("connection refused")
		}
		return nil
	}}
	log, logs := newTestLogger()
	b := NewBatcher(sink, Options{ScheduleDelay: 10 * time.Millisecond}, log)
	addSpans(b, 0, 5)
	waitFor(t, "the retried export", func() bool { return b.Stats().Exported == 5 })
	shutdown(t, b)

	attempts, delivered := sink.snapshot()
	if attempts != 4 || !reflect.DeepEqual(delivered, [][]int{ids(0, 5)}) {
		t.Fatalf("%d attempts delivered %v; want 4 attempts delivering each span once", attempts, delivered)
	}
	if st := b.Stats(); st != (Stats{Exported: 5, FailedUploads: 3}) {
		t.Fatalf("Stats = %+v", st)
	}
	if n := logs.count("level=WARN", "span export failed", "connection refused"); n != 1 {
		t.Errorf("%d warnings for the first failure, want 1:\n%s", n, logs)
	}
	if n := logs.count("level=DEBUG", "failed again"); n != 2 {
		t.Errorf("%d debug lines for later failures, want 2:\n%s", n, logs)
	}
	if n := logs.count("level=INFO", "recovered", "failed_attempts=3"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs)
	}
}

func TestBatcherOverflowDropsAndCounts(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	sink := &fakeSink{result: func(int) error {
		if down.Load() {
			return errors.New("collector down")
		}
		return nil
	}}
	log, logs := newTestLogger()
	b := NewBatcher(sink, Options{ScheduleDelay: 10 * time.Millisecond, MaxQueueSize: 10, MaxExportBatchSize: 5}, log)
	addSpans(b, 0, 25)
	if st := b.Stats(); st.Queued != 10 || st.Dropped != 15 {
		t.Fatalf("Stats = %+v, want 10 queued and 15 dropped", st)
	}
	waitFor(t, "a failed upload", func() bool { return b.Stats().FailedUploads > 0 })
	down.Store(false)
	waitFor(t, "the queued spans", func() bool { return b.Stats().Exported == 10 })
	shutdown(t, b)

	_, delivered := sink.snapshot()
	if !reflect.DeepEqual(delivered, [][]int{ids(0, 5), ids(5, 10)}) {
		t.Fatalf("delivered %v, want the first 10 spans once", delivered)
	}
	if st := b.Stats(); st.Dropped != 15 || st.DroppedQueueFull != 15 || st.Queued != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if n := logs.count("level=WARN", "dropping spans", "reason=queue_full", "dropped_total=1 "); n != 1 || logs.count("dropping spans") != 1 {
		t.Errorf("want exactly one rate-limited drop warning:\n%s", logs)
	}
}

func TestBatcherShutdownFlushes(t *testing.T) {
	sink := &fakeSink{}
	b := NewBatcher(sink, Options{ScheduleDelay: time.Hour}, nil)
	addSpans(b, 0, 7)
	shutdown(t, b)
	if _, got := sink.snapshot(); !reflect.DeepEqual(got, [][]int{ids(0, 7)}) {
		t.Fatalf("delivered %v", got)
	}
	b.Add(testSpan(procA, 7))
	if st := b.Stats(); st != (Stats{Exported: 7, Dropped: 1, DroppedShutdown: 1}) {
		t.Fatalf("Stats after a late Add = %+v", st)
	}
	shutdown(t, b) // a second Shutdown is harmless
}

func TestBatcherShutdownGivesUpAtDeadline(t *testing.T) {
	sink := &fakeSink{result: func(int) error { return errors.New("collector down") }}
	b := NewBatcher(sink, Options{ScheduleDelay: time.Hour}, nil)
	addSpans(b, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 spans") {
		t.Fatalf("Shutdown = %v, want a deadline error counting 3 spans", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Shutdown took %v", elapsed)
	}
	if attempts, _ := sink.snapshot(); attempts < 2 {
		t.Fatalf("%d attempts, want retries until the deadline", attempts)
	}
}

func TestBatcherDoesNotRetryPartialSuccess(t *testing.T) {
	sink := &fakeSink{result: func(int) error { return fmt.Errorf("%w: 1 span too old", errPartialSuccess) }}
	log, logs := newTestLogger()
	b := NewBatcher(sink, Options{ScheduleDelay: time.Hour}, log)
	addSpans(b, 0, 4)
	shutdown(t, b)
	if attempts, _ := sink.snapshot(); attempts != 1 {
		t.Fatalf("%d attempts, want 1", attempts)
	}
	if st := b.Stats(); st != (Stats{Exported: 4}) {
		t.Fatalf("Stats = %+v", st)
	}
	if logs.count("level=WARN", "collector rejected spans") != 1 {
		t.Fatalf("no warning about the rejected spans:\n%s", logs)
	}
}
