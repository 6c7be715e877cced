package export

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tracewire/tracewire/spans"
)

func TestParseResourceAttrs(t *testing.T) {
	got, err := ParseResourceAttrs(" k8s.node.name = node-1 ,team=a%2Cb%20c,plus=a+b,empty=,")
	if err != nil {
		t.Fatal(err)
	}
	want := []spans.Attr{
		spans.String("k8s.node.name", "node-1"),
		spans.String("team", "a,b c"),
		spans.String("plus", "a+b"),
		spans.String("empty", ""),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got, err := ParseResourceAttrs(""); err != nil || got != nil {
		t.Fatalf("empty: got %v, %v", got, err)
	}
}

func TestParseResourceAttrsErrors(t *testing.T) {
	for _, in := range []string{"novalue", "a=1,=2", "bad=%zz"} {
		_, err := ParseResourceAttrs(in)
		if err == nil {
			t.Errorf("%q: no error", in)
			continue
		}
		if !strings.Contains(err.Error(), "malformed") {
			t.Errorf("%q: error %q does not say what is malformed", in, err)
		}
	}
}

func TestResourceConfigFromEnv(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.node.name=node-1")
	t.Setenv("OTEL_SERVICE_NAME", "everything")
	cfg, err := ResourceConfigFromEnv("1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	want := ResourceConfig{HostName: host, AgentVersion: "1.2.3", Attrs: []spans.Attr{spans.String("k8s.node.name", "node-1")}, ServiceNameOverride: "everything"}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}

	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "oops")
	if _, err := ResourceConfigFromEnv("1.2.3"); err == nil || !strings.Contains(err.Error(), "OTEL_RESOURCE_ATTRIBUTES") {
		t.Fatalf("got %v, want an error naming OTEL_RESOURCE_ATTRIBUTES", err)
	}
}
