package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// promLabels are the resource attributes put on every Prometheus series
// (the rest are in target_info): enough to keep the series of two
// processes apart, since Prometheus has no resource.
var promLabels = attribute.NewAllowKeysFilter(
	"service.name", "service.namespace", "service.instance.id", "process.pid",
	"host.name", "k8s.namespace.name", "k8s.pod.name",
)

// sink makes the readers of each MeterProvider: a periodic reader on the
// one OTLP exporter, and a Prometheus exporter whose registry is gathered
// by the /metrics endpoint while the provider lives.
type sink struct {
	otlp   sdkmetric.Exporter
	server *http.Server
	served chan error

	mu   sync.Mutex
	regs map[*prometheus.Registry]struct{}
}

func newSink(ctx context.Context, cfg Config, log *slog.Logger) (*sink, error) {
	s := &sink{regs: map[*prometheus.Registry]struct{}{}}
	if cfg.OTLP {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP metric exporter: %w", err)
		}
		s.otlp = exp
	}
	if cfg.Prometheus {
		// Listen now, so that a port in use stops the agent at start.
		ln, err := net.Listen("tcp", cfg.PromAddr)
		if err != nil {
			return nil, fmt.Errorf("prometheus endpoint: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s, promhttp.HandlerOpts{ErrorLog: slogPrinter{log}}))
		s.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.served = make(chan error, 1)
		go func() { s.served <- s.server.Serve(ln) }()
	}
	return s, nil
}

// readers returns new readers for one provider, which also collect p's
// metrics, and release, to call after the provider is shut down.
func (s *sink) readers(p sdkmetric.Producer) (rs []sdkmetric.Reader, release func(), err error) {
	release = func() {}
	if s.otlp != nil {
		// Reads OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT itself.
		rs = append(rs, sdkmetric.NewPeriodicReader(sharedExporter{s.otlp}, sdkmetric.WithProducer(p)))
	}
	if s.server != nil {
		reg := prometheus.NewRegistry()
		exp, err := promexp.New(promexp.WithRegisterer(reg), promexp.WithResourceAsConstantLabels(promLabels), promexp.WithProducer(p))
		if err != nil {
			return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		rs = append(rs, exp)
		s.mu.Lock()
		s.regs[reg] = struct{}{}
		s.mu.Unlock()
		release = func() {
			s.mu.Lock()
			delete(s.regs, reg)
			s.mu.Unlock()
		}
	}
	return rs, release, nil
}

// Gather merges the registries of the live providers (prometheus.Gatherer).
func (s *sink) Gather() ([]*dto.MetricFamily, error) {
	s.mu.Lock()
	gs := make(prometheus.Gatherers, 0, len(s.regs))
	for r := range s.regs {
		gs = append(gs, r)
	}
	s.mu.Unlock()
	return gs.Gather()
}

// shutdown stops the endpoint and the OTLP exporter; the providers were
// shut down (and flushed) before.
func (s *sink) shutdown(ctx context.Context) error {
	var errs []error
	if s.otlp != nil {
		errs = append(errs, s.otlp.Shutdown(ctx))
	}
	if s.server != nil {
		errs = append(errs, s.server.Shutdown(ctx))
		if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sharedExporter lets many periodic readers use one exporter: a reader
// shuts down its exporter with its provider, which would end the others'.
type sharedExporter struct{ sdkmetric.Exporter }

func (sharedExporter) Shutdown(context.Context) error { return nil }

// slogPrinter logs promhttp's errors.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("prometheus endpoint", "err", fmt.Sprint(v...)) }
