package export

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter bounds the wait a collector can ask for with Retry-After:
// while the Batcher waits, the queue fills and new spans are dropped, so a
// huge (or garbled) value must not silence the agent for hours.
const maxRetryAfter = 60 * time.Second

// errRejected marks a batch the collector refused for good (HTTP 400 and the
// other answers OTLP says not to retry): sending it again would get the same
// answer and hold up every batch queued behind it, so it is dropped.
var errRejected = errors.New("collector rejected the batch")

// throttled is a retryable failure for which the collector said how long to
// wait before the next attempt (HTTP 429 or 503 with Retry-After).
type throttled struct {
	wait time.Duration // at most maxRetryAfter
	err  error
}

func (t *throttled) Error() string { return fmt.Sprintf("%v (Retry-After %v)", t.err, t.wait) }
func (t *throttled) Unwrap() error { return t.err }

// retryAfter returns the wait the collector asked for, if it did.
func retryAfter(err error) (time.Duration, bool) {
	var t *throttled
	if errors.As(err, &t) {
		return t.wait, true
	}
	return 0, false
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP-date
// (RFC 9110 10.2.3), as a wait from now capped at maxRetryAfter. A date in
// the past means no wait.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	// Too many digits for a uint64 is ErrRange with the maximum: capped.
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		// Compare in seconds: a huge value would overflow a Duration.
		if secs >= uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return min(max(at.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}
