// Package metrics turns every finished span, sampled or not, into the
// OpenTelemetry request-duration histograms of its target, and exports them
// (and the agent's own counters) over OTLP/HTTP and/or a Prometheus endpoint.
package metrics

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Config says where metrics go. The zero Config exports nothing.
type Config struct {
	OTLP       bool
	Prometheus bool
	// PromAddr is host:port of the Prometheus /metrics endpoint.
	PromAddr string
}

// Enabled tells whether any exporter is configured.
func (c Config) Enabled() bool { return c.OTLP || c.Prometheus }

// ConfigFromEnv reads OTEL_METRICS_EXPORTER (otlp, prometheus, none or a
// comma list; otlp by default when an OTLP endpoint is set, else none) and
// the settings of the exporters it names. The OTLP exporter reads its other
// variables itself; those whose bad values it would silently ignore are
// checked here, so a typo stops the agent instead of losing the metrics.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	kinds := strings.TrimSpace(getenv("OTEL_METRICS_EXPORTER"))
	if kinds == "" {
		kinds = "none"
		if getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
			kinds = "otlp"
		}
	}
	none := false
	for k := range strings.SplitSeq(kinds, ",") {
		switch strings.TrimSpace(k) {
		case "otlp":
			c.OTLP = true
		case "prometheus":
			c.Prometheus = true
		case "none":
			none = true
		default:
			return Config{}, fmt.Errorf("OTEL_METRICS_EXPORTER: unknown exporter %q (want otlp, prometheus, none or a comma list)", strings.TrimSpace(k))
		}
	}
	if none && c.Enabled() {
		return Config{}, fmt.Errorf("OTEL_METRICS_EXPORTER: %q mixes none with an exporter", kinds)
	}
	if c.OTLP {
		if err := checkOTLPEnv(getenv); err != nil {
			return Config{}, err
		}
	}
	if c.Prometheus {
		host := orDefault(getenv("OTEL_EXPORTER_PROMETHEUS_HOST"), "localhost")
		port := orDefault(getenv("OTEL_EXPORTER_PROMETHEUS_PORT"), "9464")
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return Config{}, fmt.Errorf("OTEL_EXPORTER_PROMETHEUS_PORT: %q is not a port number", port)
		}
		c.PromAddr = net.JoinHostPort(host, port)
	}
	return c, nil
}

func checkOTLPEnv(getenv func(string) string) error {
	for _, k := range []string{"OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n <= 0 {
				return fmt.Errorf("%s: %q is not a positive number of milliseconds", k, v)
			}
		}
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		v := strings.TrimSpace(getenv(k))
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: %q is not an http:// or https:// URL", k, v)
		}
		// The more specific variable wins; the other one is not used.
		break
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(getenv(k)); v != "" && v != "http/protobuf" {
			return fmt.Errorf("%s: %q is not supported (only http/protobuf)", k, v)
		}
	}
	return nil
}

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v == "" {
		return def
	}
	return v
}
