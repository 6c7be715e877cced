package export

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/internal/otlptest"
	"github.com/tracewire/tracewire/spans"
)

// useCollector points the OTLP client at endpoint, clearing variables a
// developer's environment might set that would send it elsewhere.
func useCollector(t *testing.T, endpoint string) {
	for _, k := range otlpVars {
		t.Setenv("OTEL_EXPORTER_OTLP_"+k, "")
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_"+k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
}

// otlpVars are the OTEL_EXPORTER_OTLP_ settings, each also with TRACES_.
var otlpVars = []string{"ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION", "PROTOCOL", "INSECURE", "CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"}

// TestOTLPSinkPartialSuccessIsNotRetried: a 2xx answer with rejected spans
// is a partial success (the rest must not be sent twice), a 503 a plain
// failure.
func TestOTLPSinkPartialSuccessIsNotRetried(t *testing.T) {
	var overloaded atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if overloaded.Load() {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		body, err := proto.Marshal(&collectortracepb.ExportTraceServiceResponse{
			PartialSuccess: &collectortracepb.ExportTracePartialSuccess{RejectedSpans: 1, ErrorMessage: "too old"},
		})
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	useCollector(t, srv.URL)

	sink, err := NewOTLPSink(context.Background(), ResourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	err = sink.Upload(context.Background(), []*spans.Span{testSpan(procA, 1)})
	if !errors.Is(err, errPartialSuccess) {
		t.Fatalf("Upload = %v, want a partial success", err)
	}

	overloaded.Store(true)
	err = sink.Upload(context.Background(), []*spans.Span{testSpan(procA, 1)})
	if err == nil || errors.Is(err, errPartialSuccess) {
		t.Fatalf("Upload = %v, want a plain failure", err)
	}
}

// TestOTLPExportSurvivesCollectorOutage runs the real sink against a
// collector that is down when the spans are produced and starts later on the
// same port: every span must arrive exactly once.
func TestOTLPExportSurvivesCollectorOutage(t *testing.T) {
	recv := otlptest.Start(t)
	useCollector(t, recv.Endpoint())
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	recv.Stop()

	ctx := context.Background()
	sink, err := NewOTLPSink(ctx, ResourceConfig{HostName: "node-1", AgentVersion: "0.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBatcher(sink, Options{ScheduleDelay: 20 * time.Millisecond, MaxQueueSize: 1000, MaxExportBatchSize: 64, ExportTimeout: 2 * time.Second}, nil)
	const n = 300
	for i := range n {
		p := procA
		if i%3 == 0 {
			p = procB
		}
		s := testSpan(p, i)
		if i%2 == 0 {
			s.Scope = "other/scope"
		}
		b.Add(s)
	}
	waitFor(t, "failed uploads", func() bool { return b.Stats().FailedUploads >= 2 })
	recv.Restart(t)

	recv.WaitSpans(t, 15*time.Second, nil, n)
	shutdownCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Shutdown(shutdownCtx); err != nil {
		t.Fatal(err)
	}

	got := recv.Spans()
	if len(got) != n {
		t.Fatalf("received %d spans, want %d", len(got), n)
	}
	seen := make(map[int]bool)
	for _, g := range got {
		i := idFromBytes(g.Span.SpanId)
		if seen[i] {
			t.Fatalf("span %d received twice", i)
		}
		seen[i] = true
		wantService, wantScope := "frontend", "test/scope"
		if i%3 == 0 {
			wantService = "cart"
		}
		if i%2 == 0 {
			wantScope = "other/scope"
		}
		if g.Resource["service.name"] != wantService || g.Scope != wantScope || g.Resource["host.name"] != "node-1" {
			t.Fatalf("span %d: service %v scope %q host %v", i, g.Resource["service.name"], g.Scope, g.Resource["host.name"])
		}
	}
	if st := b.Stats(); st.Exported != n || st.Dropped != 0 || st.Queued != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}
