package metrics

import (
	"strings"
	"testing"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want Config
		err  string
	}{
		{env: nil, want: Config{}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: Config{OTLP: true}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, want: Config{OTLP: true}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"}, want: Config{}},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, want: Config{Prometheus: true, PromAddr: "localhost:9464"}},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "otlp, prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST": "::", "OTEL_EXPORTER_PROMETHEUS_PORT": "9000"},
			want: Config{OTLP: true, Prometheus: true, PromAddr: "[::]:9000"}},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "stdout"}, err: `unknown exporter "stdout"`},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "none,otlp"}, err: "mixes none"},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "http"}, err: "OTEL_EXPORTER_PROMETHEUS_PORT"},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "10s"}, err: "OTEL_METRIC_EXPORT_INTERVAL"},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "collector:4318"}, err: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, err: "only http/protobuf"},
	} {
		got, err := ConfigFromEnv(func(k string) string { return tc.env[k] })
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: err %v, want one with %q", tc.env, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%v: %+v, %v; want %+v", tc.env, got, err, tc.want)
		}
	}
}
