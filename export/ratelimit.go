package export

import "time"

// rateLimit lets an event through at most once per period, so that a
// persistent condition (a full queue) cannot flood the log.
type rateLimit struct {
	period time.Duration
	last   time.Time
}

func (r *rateLimit) allow(now time.Time) bool {
	if !r.last.IsZero() && now.Sub(r.last) < r.period {
		return false
	}
	r.last = now
	return true
}
