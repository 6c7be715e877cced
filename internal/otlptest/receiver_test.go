package otlptest

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"slices"
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

func TestReceiverFaults(t *testing.T) {
	r := Start(t)
	send := func(client *http.Client) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, r.Endpoint()+"/v1/traces", bytes.NewReader(request(t, "x")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}

	r.SetFault(Fault{Status: http.StatusServiceUnavailable, RetryAfter: "7"})
	resp, err := send(http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("answered %s with Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}

	// A client that gives up before the delay ends leaves nothing recorded.
	r.SetFault(Fault{Delay: time.Second})
	if _, err := send(&http.Client{Timeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("a stalled request got an answer")
	}
	r.WaitAttempts(t, 2) // the receiver noticed

	r.SetFault(Fault{})
	if _, err := send(http.DefaultClient); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Spans()); n != 1 {
		t.Fatalf("%d spans recorded, want only the accepted one", n)
	}
	var statuses []int
	for _, a := range r.WaitAttempts(t, 3) {
		if a.Spans != 1 {
			t.Errorf("attempt %+v: want 1 span", a)
		}
		statuses = append(statuses, a.Status)
	}
	if want := []int{503, 0, 200}; !slices.Equal(statuses, want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
}
