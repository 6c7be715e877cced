package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/internal/metrics"
)

// startMetrics starts the request metrics and their exporters
// (OTEL_METRICS_EXPORTER); the pipeline shows them every span. It returns
// nil when no metrics exporter is configured.
func startMetrics(log *slog.Logger) (*metrics.Recorder, error) {
	cfg, err := metrics.ConfigFromEnv(os.Getenv)
	if err != nil || !cfg.Enabled() {
		return nil, err
	}
	res, err := export.ResourceConfigFromEnv(version)
	if err != nil {
		return nil, err
	}
	rec, err := metrics.New(context.Background(), cfg, res, log)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// The SDK reports failed exports through the global handler, by default
	// the standard logger; keep them in the agent's log. A push in flight
	// when the agent stops is cancelled by the reader's shutdown, whose
	// final push then sends the same cumulative points: not a failure.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		if errors.Is(err, context.Canceled) {
			log.Debug("metrics export cancelled", "err", err)
			return
		}
		log.Warn("metrics export", "err", err)
	}))
	return rec, nil
}

// startSelfMetrics exports the agent's own counters next to the request
// metrics.
func startSelfMetrics(rec *metrics.Recorder, a *agent, b *export.Batcher) {
	if rec == nil {
		return
	}
	if err := rec.RegisterSelf(func() metrics.SelfStats { return a.selfStats(b) }); err != nil {
		a.log.Warn("the agent's own metrics are not exported", "err", err)
	}
}

// stopMetrics flushes the metrics within ctx.
func stopMetrics(ctx context.Context, rec *metrics.Recorder, log *slog.Logger) {
	if rec == nil {
		return
	}
	if err := rec.Shutdown(ctx); err != nil {
		log.Error("metrics flush on shutdown incomplete", "err", err)
	}
}
