// Package export queues finished spans and sends them to an OTLP collector
// (or prints them), keeping the agent running and its memory bounded while
// the collector is down or slow.
package export

import (
	"context"
	"errors"

	"github.com/tracewire/tracewire/spans"
)

// Sink uploads one batch. The batch slice is only valid during the call; a
// Sink must not keep it. An error means nothing was delivered and the batch
// may be sent again.
type Sink interface {
	Upload(ctx context.Context, batch []*spans.Span) error
}

// errPartialSuccess marks an upload the collector accepted while rejecting
// some spans: it must not be retried, or the accepted spans would arrive twice.
var errPartialSuccess = errors.New("collector rejected part of the batch")
