package export

import (
	"reflect"
	"testing"
	"time"

	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/internal/otlptest"
	"github.com/tracewire/tracewire/spans"
)

func TestResourcePrecedence(t *testing.T) {
	cfg := ResourceConfig{
		HostName:     "node-1",
		AgentVersion: "0.9.0",
		Attrs: []spans.Attr{
			spans.String("host.name", "agent-host"), // agent-wide beats detected
			spans.String("deployment.environment", "prod"),
			spans.String("k8s.cluster.name", "c1"),
			spans.String("service.name", "agent-wide"), // never beats the service name rule
		},
	}
	p := &spans.Process{
		PID: 42, ExeName: "shop", ServiceName: "shop-svc", RuntimeName: "go", RuntimeVersion: "go1.22.12",
		ResourceAttrs: []spans.Attr{
			spans.String("deployment.environment", "staging"), // target's own beats agent-wide
			spans.String("service.name", "from-attrs"),
			spans.Int("shard", 7),
		},
	}
	got := otlptest.Attrs(resourceOf(t, buildResource(cfg, p)).GetAttributes())
	want := map[string]any{
		"service.name":            "shop-svc",
		"process.pid":             int64(42),
		"process.executable.name": "shop",
		"process.runtime.name":    "go",
		"process.runtime.version": "go1.22.12",
		"host.name":               "agent-host",
		"telemetry.sdk.name":      "tracewire",
		"telemetry.sdk.language":  "go",
		"telemetry.sdk.version":   "0.9.0",
		"deployment.environment":  "staging",
		"k8s.cluster.name":        "c1",
		"shard":                   int64(7),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if n := len(resourceOf(t, buildResource(cfg, p)).GetAttributes()); n != len(want) {
		t.Fatalf("%d attributes, want %d without duplicate keys", n, len(want))
	}

	cfg.ServiceNameOverride = "override"
	if got := otlptest.Attrs(resourceOf(t, buildResource(cfg, p)).GetAttributes())["service.name"]; got != "override" {
		t.Fatalf("service.name = %v, want the agent's override", got)
	}
}

func TestResourceCache(t *testing.T) {
	c := newResourceCache(ResourceConfig{HostName: "h"})
	t0 := time.Unix(1000, 0)
	r1 := c.get(procA, t0)
	if &c.get(procA, t0.Add(time.Second))[0] != &r1[0] {
		t.Fatal("resource rebuilt for the same process")
	}
	c.get(procB, t0.Add(resourceTTL))

	c.sweep(t0.Add(resourceTTL + 2*time.Second)) // procA idle just over the TTL
	if _, ok := c.entries[procA]; ok {
		t.Fatal("idle entry kept")
	}
	if _, ok := c.entries[procB]; !ok {
		t.Fatal("recently used entry dropped")
	}

	c.get(procA, t0)
	c.sweep(t0.Add(resourceTTL + 3*time.Second)) // too soon after the last sweep
	if _, ok := c.entries[procA]; !ok {
		t.Fatal("swept more often than resourceSweep")
	}
}

// resourceOf decodes an encoded Resource message.
func resourceOf(t *testing.T, raw []byte) *resourcepb.Resource {
	t.Helper()
	var r resourcepb.Resource
	if err := proto.Unmarshal(raw, &r); err != nil {
		t.Fatalf("decode the resource: %v", err)
	}
	return &r
}
