package export

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// These tests run the real OTLP sink and Batcher against otlptest's receiver
// playing a collector in trouble.

// newPipeline starts a receiver and a Batcher exporting to it.
func newPipeline(t *testing.T, o Options) (*otlptest.Receiver, *Batcher, *logBuffer) {
	t.Helper()
	recv := otlptest.Start(t)
	useCollector(t, recv.Endpoint())
	sink, err := NewOTLPSink(context.Background(), ResourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newTestLogger()
	b := NewBatcher(sink, o, log)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("batcher log:\n%s", logs)
		}
	})
	return recv, b, logs
}

// receivedIDs returns the ids of the spans recv accepted, in arrival order.
func receivedIDs(recv *otlptest.Receiver) []int {
	var out []int
	for _, g := range recv.Spans() {
		out = append(out, idFromBytes(g.Span.SpanId))
	}
	return out
}

// checkOnce fails unless recv accepted exactly the spans want, each once,
// waiting a little for stragglers (a duplicate would arrive by then).
func checkOnce(t *testing.T, recv *otlptest.Receiver, want []int) {
	t.Helper()
	recv.WaitSpans(t, 15*time.Second, nil, len(want))
	time.Sleep(300 * time.Millisecond)
	got := receivedIDs(recv)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("received spans %v, want %v once each", got, want)
	}
}

func statuses(as []otlptest.Attempt) []int {
	var out []int
	for _, a := range as {
		out = append(out, a.Status)
	}
	return out
}

// TestCollectorDownThenUp: spans produced while the collector refuses
// connections wait in the queue up to its bound, the rest are dropped as
// queue_full, and when it is back each queued span arrives exactly once,
// followed by the new ones.
func TestCollectorDownThenUp(t *testing.T) {
	recv, b, logs := newPipeline(t, Options{ScheduleDelay: 20 * time.Millisecond, MaxQueueSize: 100, MaxExportBatchSize: 25, ExportTimeout: 2 * time.Second})
	recv.Stop()
	addSpans(b, 0, 250)
	if st := b.Stats(); st.Queued != 100 || st.DroppedQueueFull != 150 || st.Dropped != 150 {
		t.Fatalf("Stats = %+v, want 100 queued and 150 dropped as queue_full", st)
	}
	waitFor(t, "failed uploads", func() bool { return b.Stats().FailedUploads >= 3 })
	recv.Restart(t)
	recv.WaitSpans(t, 15*time.Second, nil, 100)
	addSpans(b, 250, 260)
	checkOnce(t, recv, append(ids(0, 100), ids(250, 260)...))
	shutdown(t, b)

	st := b.Stats()
	if st.Exported != 110 || st.DroppedQueueFull != 150 || st.DroppedRejected != 0 || st.Queued != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if logs.count("level=WARN", "dropping spans", "reason=queue_full") != 1 || logs.count("level=INFO", "span export recovered") != 1 {
		t.Fatalf("want one queue_full warning and one recovery line:\n%s", logs)
	}
}

// TestCollectorRetryAfter: a 429 or 503 with Retry-After, in seconds or as
// an HTTP date, delays the next attempt of the same batch by at least that
// much, and the batch is then delivered once.
func TestCollectorRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter func() string
		atLeast    time.Duration
	}{
		{"429 seconds", http.StatusTooManyRequests, func() string { return "1" }, time.Second},
		{"503 seconds", http.StatusServiceUnavailable, func() string { return "2" }, 2 * time.Second},
		// An HTTP date has a resolution of a second: now+3 s means at least 2 s.
		{"503 date", http.StatusServiceUnavailable, func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv, b, logs := newPipeline(t, Options{ScheduleDelay: 20 * time.Millisecond})
			recv.SetFault(otlptest.Fault{Status: tc.status, RetryAfter: tc.retryAfter()})
			addSpans(b, 0, 5)
			recv.WaitAttempts(t, 1)
			recv.SetFault(otlptest.Fault{})
			checkOnce(t, recv, ids(0, 5))
			shutdown(t, b)

			as := recv.Attempts()
			if !slices.Equal(statuses(as), []int{tc.status, http.StatusOK}) {
				t.Fatalf("attempts %+v, want one refusal then one success", as)
			}
			if gap := as[1].At.Sub(as[0].At); gap < tc.atLeast {
				t.Fatalf("retried after %v, want at least %v", gap, tc.atLeast)
			}
			if st := b.Stats(); st != (Stats{Exported: 5, FailedUploads: 1}) {
				t.Fatalf("Stats = %+v", st)
			}
			if logs.count("level=WARN", "span export failed", "Retry-After") != 1 {
				t.Fatalf("no warning with the Retry-After:\n%s", logs)
			}
		})
	}
}

// TestCollectorRetryableBackOff: 502 and 504 without Retry-After are retried
// with growing waits, and the batch then arrives once.
func TestCollectorRetryableBackOff(t *testing.T) {
	for _, status := range []int{http.StatusBadGateway, http.StatusGatewayTimeout} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			recv, b, _ := newPipeline(t, Options{ScheduleDelay: 20 * time.Millisecond})
			recv.SetFault(otlptest.Fault{Status: status})
			addSpans(b, 0, 3)
			recv.WaitAttempts(t, 3)
			recv.SetFault(otlptest.Fault{})
			checkOnce(t, recv, ids(0, 3))
			shutdown(t, b)

			as := recv.Attempts()
			for i, want := range []time.Duration{retryInitial, 2 * retryInitial} {
				if gap := as[i+1].At.Sub(as[i].At); gap < want {
					t.Errorf("attempt %d came %v after the previous one, want at least %v", i+2, gap, want)
				}
			}
			if st := b.Stats(); st.Exported != 3 || st.Dropped != 0 || st.FailedUploads < 3 {
				t.Fatalf("Stats = %+v", st)
			}
		})
	}
}

// TestCollectorRejectsBatch: a 400 (or another answer OTLP says not to
// retry) drops that batch once, counted as rejected, and the next batches
// proceed.
func TestCollectorRejectsBatch(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusInternalServerError} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			// Full batches are sent at once; the schedule never fires.
			recv, b, logs := newPipeline(t, Options{ScheduleDelay: time.Hour, MaxExportBatchSize: 10})
			recv.SetFault(otlptest.Fault{Status: status})
			addSpans(b, 0, 30)
			recv.WaitAttempts(t, 3)
			waitFor(t, "three rejected batches", func() bool { return b.Stats().DroppedRejected == 30 })
			recv.SetFault(otlptest.Fault{})
			addSpans(b, 30, 40)
			checkOnce(t, recv, ids(30, 40))
			shutdown(t, b)

			as := recv.Attempts()
			if !slices.Equal(statuses(as), []int{status, status, status, http.StatusOK}) {
				t.Fatalf("attempts %+v, want each rejected batch sent once", as)
			}
			want := Stats{Exported: 10, Dropped: 30, DroppedRejected: 30, FailedUploads: 3}
			if st := b.Stats(); st != want {
				t.Fatalf("Stats = %+v, want %+v", st, want)
			}
			if logs.count("level=WARN", "collector rejected a batch", "reason=rejected", "spans=10") != 1 {
				t.Fatalf("want one rate-limited rejection warning:\n%s", logs)
			}
		})
	}
}

// TestCollectorSlow: while every export takes a second, Add stays
// non-blocking (the probes keep reading their rings), what overflows the
// queue is dropped as queue_full, and what fits arrives once.
func TestCollectorSlow(t *testing.T) {
	recv, b, _ := newPipeline(t, Options{ScheduleDelay: 20 * time.Millisecond, MaxQueueSize: 100, MaxExportBatchSize: 50, ExportTimeout: 5 * time.Second})
	recv.SetFault(otlptest.Fault{Delay: time.Second})
	start := time.Now()
	var slowest time.Duration
	for i := range 1000 {
		t0 := time.Now()
		b.Add(testSpan(procA, i))
		slowest = max(slowest, time.Since(t0))
	}
	// The first batch is still being uploaded: the queue holds it and one more.
	if took := time.Since(start); took > 500*time.Millisecond || slowest > 200*time.Millisecond {
		t.Fatalf("1000 Adds took %v, the slowest %v: Add waits for the collector", took, slowest)
	}
	if st := b.Stats(); st.Queued != 100 || st.DroppedQueueFull != 900 {
		t.Fatalf("Stats = %+v, want 100 queued and 900 dropped as queue_full", st)
	}
	checkOnce(t, recv, ids(0, 100))
	shutdown(t, b)
	if st := b.Stats(); st.Exported != 100 || st.FailedUploads != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

// TestCollectorExportTimeout: an attempt is abandoned after
// OTEL_BSP_EXPORT_TIMEOUT however long the collector takes, counted as
// failed and retried; the spans arrive once when the collector is fast again.
func TestCollectorExportTimeout(t *testing.T) {
	recv, b, logs := newPipeline(t, Options{ScheduleDelay: 20 * time.Millisecond, ExportTimeout: 300 * time.Millisecond})
	recv.SetFault(otlptest.Fault{Delay: time.Minute})
	start := time.Now()
	addSpans(b, 0, 5)
	waitFor(t, "a timed out upload", func() bool { return b.Stats().FailedUploads >= 1 })
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("first attempt failed after %v, want about the 300 ms export timeout", took)
	}
	recv.SetFault(otlptest.Fault{})
	checkOnce(t, recv, ids(0, 5))
	shutdown(t, b)
	if logs.count("level=WARN", "span export failed", "context deadline exceeded") != 1 {
		t.Fatalf("no timeout warning:\n%s", logs)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{" 5 ", 5 * time.Second, true},
		{"60", time.Minute, true},
		{"3600", maxRetryAfter, true},
		{"99999999999999999999999", maxRetryAfter, true},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second, true},
		{"Saturday, 01-Mar-25 12:00:10 GMT", 10 * time.Second, true}, // RFC 850, still valid
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true},                   // past
		{"Sun, 02 Mar 2025 12:00:00 GMT", maxRetryAfter, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestUploadResultClasses pins which answers are retried, after how long,
// and which drop the batch.
func TestUploadResultClasses(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		status     int
		retryAfter string
		rejected   bool
		wait       time.Duration // -1: no Retry-After honoured
	}{
		{200, "", false, -1},
		{429, "3", false, 3 * time.Second},
		{429, "", false, -1},
		{503, "120", false, maxRetryAfter},
		{502, "1", false, time.Second},
		{504, "", false, -1},
		{400, "5", true, -1},
		{401, "", true, -1},
		{404, "", true, -1},
		{413, "", true, -1},
		{500, "", true, -1},
		{501, "", true, -1},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://collector/v1/traces", nil)
		resp := &http.Response{StatusCode: tc.status, Status: http.StatusText(tc.status), Header: http.Header{}, Request: req}
		if tc.retryAfter != "" {
			resp.Header.Set("Retry-After", tc.retryAfter)
		}
		err := uploadResult(resp, []byte("why"), now)
		if (err == nil) != (tc.status == 200) || errors.Is(err, errRejected) != tc.rejected {
			t.Errorf("%d: %v, want rejected=%v", tc.status, err, tc.rejected)
		}
		wait, ok := retryAfter(err)
		if !ok {
			wait = -1
		}
		if wait != tc.wait {
			t.Errorf("%d Retry-After %q: wait %v, want %v", tc.status, tc.retryAfter, wait, tc.wait)
		}
	}
}
