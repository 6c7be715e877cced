package otlptest

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func request(t *testing.T, name string) []byte {
	t.Helper()
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	body, err := proto.Marshal(&collectortracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str("service.name", "svc"),
			{Key: "process.pid", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}},
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "scope"},
			Spans: []*tracepb.Span{{Name: name, Attributes: []*commonpb.KeyValue{str("k", "v")}}},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func post(t *testing.T, r *Receiver, body []byte, gzipped bool) error {
	t.Helper()
	if gzipped {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(body); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		body = buf.Bytes()
	}
	req, err := http.NewRequest(http.MethodPost, r.Endpoint()+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	return nil
}

func TestReceiverRecordsAndRestarts(t *testing.T) {
	r := Start(t)
	if err := post(t, r, request(t, "plain"), false); err != nil {
		t.Fatal(err)
	}
	if err := post(t, r, request(t, "zipped"), true); err != nil {
		t.Fatal(err)
	}
	got := r.WaitSpans(t, time.Second, func(g Got) bool { return g.Span.GetName() == "zipped" }, 1)
	if g := got[0]; g.Scope != "scope" || g.Resource["service.name"] != "svc" || g.Resource["process.pid"] != int64(7) || Attrs(g.Span.Attributes)["k"] != "v" {
		t.Fatalf("got %+v", g)
	}

	r.Stop()
	if err := post(t, r, request(t, "lost"), false); err == nil {
		t.Fatal("a stopped receiver accepted a request")
	}
	r.Restart(t)
	if err := post(t, r, request(t, "after"), false); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Spans()); n != 3 {
		t.Fatalf("%d spans, want 3", n)
	}
}
