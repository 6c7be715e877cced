package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tracewire/tracewire/spans"
)

const (
	// A batch that failed for a reason worth retrying is sent again after
	// retryInitial, doubling up to retryMax, each wait stretched by up to a
	// quarter at random so that the agents of many nodes do not all hit a
	// collector at the same instant when it comes back.
	retryInitial = 100 * time.Millisecond
	retryMax     = 5 * time.Second
	// warnPeriod spaces out warnings about a lasting condition.
	warnPeriod = 10 * time.Second
)

// Stats counts what the Batcher did so far.
type Stats struct {
	Queued   uint64 // spans waiting now, including those being uploaded
	Exported uint64
	Dropped  uint64 // every span dropped: the sum of the reasons below
	// Drops by reason.
	DroppedQueueFull uint64 // "queue_full": added while MaxQueueSize spans were waiting
	DroppedRejected  uint64 // "rejected": in a batch the collector refused for good (HTTP 400, ...)
	DroppedShutdown  uint64 // "shutdown": added after Shutdown
	FailedUploads    uint64 // upload attempts that failed (each retry counts, and each rejection)
}

// Drop reasons, as logged.
const (
	dropQueueFull = "queue_full"
	dropRejected  = "rejected"
	dropShutdown  = "shutdown"
)

// Batcher queues spans and hands them to a Sink in batches from one
// goroutine. A batch that failed for a reason worth retrying (collector
// down, slow, overloaded) stays at the head of the queue and is retried with
// backoff, or after the collector's Retry-After, so nothing that fits the
// queue is lost while the collector is down, and nothing is sent twice when it
// is back (unless an attempt timed out after the collector had processed it);
// what does not fit is dropped and counted. A batch the collector refuses for
// good is dropped and counted, and the next ones proceed.
type Batcher struct {
	sink Sink
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	ring      []*spans.Span // the queue: n spans from head, wrapping
	head, n   int
	closed    bool
	exported  uint64
	queueFull uint64 // drops by reason
	rejected  uint64
	late      uint64 // added after Shutdown
	failed    uint64
	dropWarn  rateLimit

	kick     chan struct{} // a full batch is queued; capacity 1
	stopping chan struct{} // closed by Shutdown
	stopOnce sync.Once
	base     context.Context // parent of every upload; cancelled when Shutdown runs out of time
	cancel   context.CancelCauseFunc
	done     chan struct{} // closed when the goroutine has ended
	err      error         // what Shutdown reports; set before done is closed

	// Used by the goroutine alone.
	batch       []*spans.Span
	partialWarn rateLimit
	rejectWarn  rateLimit
}

// NewBatcher starts a Batcher; zero fields of o take the OTEL_BSP_*
// defaults. A nil log discards everything.
func NewBatcher(sink Sink, o Options, log *slog.Logger) *Batcher {
	o = o.normalized()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancelCause(context.Background())
	b := &Batcher{
		sink:        sink,
		opts:        o,
		log:         log,
		ring:        make([]*spans.Span, o.MaxQueueSize),
		dropWarn:    rateLimit{period: warnPeriod},
		kick:        make(chan struct{}, 1),
		stopping:    make(chan struct{}),
		base:        base,
		cancel:      cancel,
		done:        make(chan struct{}),
		batch:       make([]*spans.Span, 0, o.MaxExportBatchSize),
		partialWarn: rateLimit{period: warnPeriod},
		rejectWarn:  rateLimit{period: warnPeriod},
	}
	go b.run()
	return b
}

// Add queues s and never blocks; the Batcher owns s from now on. When the
// queue is full, s is dropped and counted.
func (b *Batcher) Add(s *spans.Span) {
	b.mu.Lock()
	if b.closed || b.n == len(b.ring) {
		reason, total := dropQueueFull, &b.queueFull
		if b.closed {
			reason, total = dropShutdown, &b.late
		}
		*total++
		dropped := *total
		warn := b.dropWarn.allow(time.Now())
		b.mu.Unlock()
		s.Release()
		if warn {
			b.log.Warn("dropping spans", "reason", reason, "dropped_total", dropped, "max_queue_size", len(b.ring))
		}
		return
	}
	b.ring[(b.head+b.n)%len(b.ring)] = s
	b.n++
	full := b.n >= b.opts.MaxExportBatchSize
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default: // the goroutine is already told
		}
	}
}

// Stats returns the counters so far.
func (b *Batcher) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{
		Queued:           uint64(b.n),
		Exported:         b.exported,
		Dropped:          b.queueFull + b.rejected + b.late,
		DroppedQueueFull: b.queueFull,
		DroppedRejected:  b.rejected,
		DroppedShutdown:  b.late,
		FailedUploads:    b.failed,
	}
}

// Shutdown exports everything queued, retrying failed uploads until ctx
// ends, then stops. Spans added meanwhile are dropped. It reports how many
// spans were left unexported, if any.
func (b *Batcher) Shutdown(ctx context.Context) error {
	b.stopOnce.Do(func() { close(b.stopping) })
	select {
	case <-b.done:
	case <-ctx.Done():
		b.cancel(ctx.Err())
		<-b.done
	}
	return b.err
}

func (b *Batcher) run() {
	defer b.finish()
	timer := time.NewTimer(b.opts.ScheduleDelay)
	defer timer.Stop()
	for {
		select {
		case <-b.kick:
			b.export(false)
		case <-timer.C:
			b.export(true)
			timer.Reset(b.opts.ScheduleDelay)
		case <-b.stopping:
			b.mu.Lock()
			b.closed = true
			b.mu.Unlock()
			b.export(true)
			return
		}
	}
}

func (b *Batcher) finish() {
	b.mu.Lock()
	b.closed = true
	left := b.n
	b.mu.Unlock()
	if left > 0 {
		b.err = fmt.Errorf("export: %d spans not exported at shutdown: %w", left, context.Cause(b.base))
	}
	close(b.done)
}

// export uploads queued spans in batches, all of them or only full batches,
// retrying a failed batch until it goes through, the collector refuses it
// for good, or Shutdown runs out of time.
func (b *Batcher) export(all bool) {
	backoff := retryInitial
	failures := 0
	var downSince time.Time
	for b.base.Err() == nil {
		batch := b.peek(all)
		if len(batch) == 0 {
			return
		}
		err := b.upload(batch)
		clear(batch) // the ring still holds the spans; do not pin them here too
		rejected := errors.Is(err, errRejected)
		if err == nil || rejected || errors.Is(err, errPartialSuccess) {
			// The collector answered: whatever it was down for is over.
			if failures > 0 {
				b.log.Info("span export recovered", "failed_attempts", failures, "down_for", time.Since(downSince).Round(time.Millisecond))
				failures, backoff = 0, retryInitial
			}
			switch {
			case rejected:
				b.countFailure()
				if b.rejectWarn.allow(time.Now()) {
					b.log.Warn("collector rejected a batch: dropping it", "reason", dropRejected, "error", err, "spans", len(batch))
				}
			case err != nil && b.partialWarn.allow(time.Now()):
				b.log.Warn("collector rejected spans", "error", err)
			}
			b.commit(len(batch), rejected)
			continue
		}
		b.countFailure()
		// The collector's Retry-After is a floor: waiting less would only
		// earn another refusal.
		wait := backoff
		if after, ok := retryAfter(err); ok {
			wait = max(wait, after)
		}
		wait += rand.N(wait / 4)
		if failures == 0 {
			downSince = time.Now()
			b.log.Warn("span export failed, retrying", "error", err, "spans", len(batch), "retry_in", wait.Round(time.Millisecond))
		} else {
			b.log.Debug("span export failed again", "error", err, "attempt", failures+1, "retry_in", wait.Round(time.Millisecond))
		}
		failures++
		if !b.sleep(wait) {
			return
		}
		backoff = min(backoff*2, retryMax)
	}
}

func (b *Batcher) countFailure() {
	b.mu.Lock()
	b.failed++
	b.mu.Unlock()
}

// peek copies the head of the queue into b.batch without removing it, so a
// failed upload leaves the spans in place. Without all, it returns nothing
// unless a full batch is queued.
func (b *Batcher) peek(all bool) []*spans.Span {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(b.n, b.opts.MaxExportBatchSize)
	if n == 0 || (!all && n < b.opts.MaxExportBatchSize) {
		return nil
	}
	b.batch = b.batch[:n]
	for i := range n {
		b.batch[i] = b.ring[(b.head+i)%len(b.ring)]
	}
	return b.batch
}

func (b *Batcher) upload(batch []*spans.Span) error {
	ctx, cancel := context.WithTimeout(b.base, b.opts.ExportTimeout)
	defer cancel()
	return b.sink.Upload(ctx, batch)
}

// commit removes k spans from the head of the queue: delivered, or dropped
// because the collector rejected them.
func (b *Batcher) commit(k int, rejected bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range k {
		j := (b.head + i) % len(b.ring)
		b.ring[j].Release() // the sink keeps nothing of it
		b.ring[j] = nil
	}
	b.head = (b.head + k) % len(b.ring)
	b.n -= k
	if rejected {
		b.rejected += uint64(k)
	} else {
		b.exported += uint64(k)
	}
}

// sleep waits d, or returns false at once when Shutdown gives up.
func (b *Batcher) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.base.Done():
		return false
	}
}
