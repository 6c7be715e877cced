package export

import (
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/spans"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func noFiles(name string) ([]byte, error) { return nil, os.ErrNotExist }

// TestOTLPConfigFromEnv pins the settings otlptracehttp used to read for the
// agent, so that a deployment sends the same requests as before.
func TestOTLPConfigFromEnv(t *testing.T) {
	const p = "OTEL_EXPORTER_OTLP_"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		url     string
		headers map[string]string
		gzip    bool
		timeout time.Duration
	}{
		{"defaults", nil, "https://localhost:4318/v1/traces", nil, false, 10 * time.Second},
		{"endpoint", map[string]string{p + "ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces", nil, false, 10 * time.Second},
		{"endpoint with a path", map[string]string{p + "ENDPOINT": "https://gw.example/otlp/"}, "https://gw.example/otlp/v1/traces", nil, false, 10 * time.Second},
		{"traces endpoint as is", map[string]string{p + "ENDPOINT": "http://ignored:1", p + "TRACES_ENDPOINT": "http://t:4318/custom"}, "http://t:4318/custom", nil, false, 10 * time.Second},
		{"traces endpoint without a path", map[string]string{p + "TRACES_ENDPOINT": "http://t:4318"}, "http://t:4318/", nil, false, 10 * time.Second},
		{"insecure overrides the scheme", map[string]string{p + "ENDPOINT": "https://c:4318", p + "INSECURE": "TRUE"}, "http://c:4318/v1/traces", nil, false, 10 * time.Second},
		{"traces insecure wins", map[string]string{p + "ENDPOINT": "http://c:4318", p + "INSECURE": "true", p + "TRACES_INSECURE": "false"}, "https://c:4318/v1/traces", nil, false, 10 * time.Second},
		{"headers", map[string]string{p + "HEADERS": "api-key=s3cr%20t, X-Tenant = blue "}, "https://localhost:4318/v1/traces", map[string]string{"api-key": "s3cr t", "X-Tenant": "blue"}, false, 10 * time.Second},
		{"traces headers replace", map[string]string{p + "HEADERS": "a=1", p + "TRACES_HEADERS": "b=2"}, "https://localhost:4318/v1/traces", map[string]string{"b": "2"}, false, 10 * time.Second},
		{"gzip", map[string]string{p + "COMPRESSION": "gzip"}, "https://localhost:4318/v1/traces", nil, true, 10 * time.Second},
		{"traces compression wins", map[string]string{p + "COMPRESSION": "gzip", p + "TRACES_COMPRESSION": "none"}, "https://localhost:4318/v1/traces", nil, false, 10 * time.Second},
		{"timeout", map[string]string{p + "TIMEOUT": "1500", p + "PROTOCOL": "http/protobuf"}, "https://localhost:4318/v1/traces", nil, false, 1500 * time.Millisecond},
		{"traces timeout wins", map[string]string{p + "TIMEOUT": "1500", p + "TRACES_TIMEOUT": "250"}, "https://localhost:4318/v1/traces", nil, false, 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := otlpConfigFromEnv(envOf(tc.env), noFiles)
			if err != nil {
				t.Fatal(err)
			}
			if c.url != tc.url || !maps.Equal(c.headers, tc.headers) || c.gzip != tc.gzip || c.timeout != tc.timeout || c.tls != nil {
				t.Fatalf("got %+v, want url %s headers %v gzip %v timeout %v", c, tc.url, tc.headers, tc.gzip, tc.timeout)
			}
		})
	}
}

func TestOTLPConfigFromEnvErrors(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://[::1"},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "5s"},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key"},
		{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad key=1"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"},
		{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := otlpConfigFromEnv(envOf(map[string]string{tc.name: tc.value}), noFiles)
			if err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("%s=%q: error %v, want one naming the variable", tc.name, tc.value, err)
			}
		})
	}
}

// TestOTLPSinkSendsSettings checks the request the settings produce on the
// wire: path, headers, gzip and protobuf.
func TestOTLPSinkSendsSettings(t *testing.T) {
	got := make(chan *http.Request, 1)
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			t.Errorf("body: %v", err)
		}
		got <- r
	}))
	defer srv.Close()
	useCollector(t, "http://unused:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/custom/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20abc,X-Scope-OrgID=tenant-1")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	sink, err := NewOTLPSink(context.Background(), ResourceConfig{AgentVersion: "0.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Upload(context.Background(), []*spans.Span{testSpan(procA, 7)}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	for k, want := range map[string]string{
		"Authorization":    "Bearer abc",
		"X-Scope-OrgID":    "tenant-1",
		"Content-Type":     "application/x-protobuf",
		"Content-Encoding": "gzip",
		"User-Agent":       "tracewire/0.9.0",
	} {
		if v := r.Header.Get(k); v != want {
			t.Errorf("%s: %q, want %q", k, v, want)
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/custom/traces" {
		t.Errorf("%s %s, want POST /custom/traces", r.Method, r.URL.Path)
	}
	var msg collectortracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if id := idFromBytes(msg.ResourceSpans[0].ScopeSpans[0].Spans[0].SpanId); id != 7 {
		t.Fatalf("span %d, want 7", id)
	}
}

// TestOTLPSinkTimeout: OTEL_EXPORTER_OTLP_TIMEOUT bounds each request, and a
// timeout is worth retrying.
func TestOTLPSinkTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	useCollector(t, srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	sink, err := NewOTLPSink(context.Background(), ResourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = sink.Upload(context.Background(), []*spans.Span{testSpan(procA, 1)})
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("Upload = %v after %v, want a timeout after about 200 ms", err, took)
	}
	if errors.Is(err, errRejected) {
		t.Fatalf("a timeout drops the batch: %v", err)
	}
}

// TestOTLPSinkCertificate: OTEL_EXPORTER_OTLP_CERTIFICATE is the CA trusted
// for an https endpoint.
func TestOTLPSinkCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	useCollector(t, srv.URL)
	sink, err := NewOTLPSink(context.Background(), ResourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Upload(context.Background(), []*spans.Span{testSpan(procA, 1)}); err == nil {
		t.Fatal("an unknown CA was trusted")
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)
	sink, err = NewOTLPSink(context.Background(), ResourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Upload(context.Background(), []*spans.Span{testSpan(procA, 1)}); err != nil {
		t.Fatal(err)
	}
}
