package nethttp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/internal/ringtest"
	"github.com/tracewire/tracewire/spans"
)

// benchmarkToOTLP measures the user-space path of one event: decode -> span
// -> batch -> OTLP protobuf -> HTTP upload to a local sink, as the agent runs
// it. allocs/op is per event: batch-level costs are shared by 2048 spans.
func benchmarkToOTLP(b *testing.B, decode func(d *decoder, proc *spans.Process) *spans.Span) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	ctx := context.Background()
	sink, err := export.NewOTLPSink(ctx, export.ResourceConfig{HostName: "bench", AgentVersion: "0"})
	if err != nil {
		b.Fatal(err)
	}
	bt := export.NewBatcher(sink, export.Options{
		ScheduleDelay: 20 * time.Millisecond, MaxQueueSize: 1 << 16, MaxExportBatchSize: 2048, ExportTimeout: 10 * time.Second,
	}, nil)
	proc := &spans.Process{PID: 1, ExeName: "svc", ServiceName: "svc", RuntimeName: "go", RuntimeVersion: "go1.26.8"}
	d := &decoder{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		bt.Add(decode(d, proc))
		// Do not outrun the exporter: a dropped span would skip its path.
		for i%1024 == 0 && bt.Stats().Queued > 1<<15 {
			time.Sleep(time.Millisecond)
		}
	}
	if err := bt.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st := bt.Stats(); st.Dropped > 0 {
		b.Logf("%d of %d spans dropped: the loop outran the exporter", st.Dropped, b.N)
	}
}

func BenchmarkServerEventToOTLP(b *testing.B) {
	var e bpfNethttpServerEvent
	e.Kind, e.Pid, e.Status, e.ProtoMajor, e.ProtoMinor = uint32(bpfEventKindEVENT_SERVER), 1, 200, 1, 1
	e.StartNs, e.EndNs, e.Sc.Flags = 1000, 51000, 1
	e.MethodLen = ringtest.Fill(e.Method[:], "GET")
	e.PathLen = ringtest.Fill(e.Path[:], "/users/42")
	e.PatternLen = ringtest.Fill(e.Pattern[:], "GET /users/{id}")
	e.HostLen = ringtest.Fill(e.Host[:], "127.0.0.1:8080")
	e.RemoteLen = ringtest.Fill(e.Remote[:], "127.0.0.1:51234")
	benchmarkToOTLP(b, func(d *decoder, proc *spans.Process) *spans.Span { return d.server(&e, proc) })
}

func BenchmarkClientEventToOTLP(b *testing.B) {
	var e bpfNethttpClientEvent
	e.Kind, e.Pid, e.Status = uint32(bpfEventKindEVENT_CLIENT), 1, 200
	e.StartNs, e.EndNs, e.Sc.Flags = 1000, 51000, 1
	e.MethodLen = ringtest.Fill(e.Method[:], "GET")
	e.SchemeLen = ringtest.Fill(e.Scheme[:], "http")
	e.HostLen = ringtest.Fill(e.Host[:], "users:8080")
	e.PathLen = ringtest.Fill(e.Path[:], "/users/42")
	e.QueryLen = ringtest.Fill(e.Query[:], "token=x&page=2")
	e.HasPeer, e.Peer.Family, e.Peer.Rport = 1, afInet, 8080
	copy(e.Peer.Remote[:], []byte{10, 0, 0, 7})
	benchmarkToOTLP(b, func(d *decoder, proc *spans.Process) *spans.Span { return d.client(&e, proc) })
}
