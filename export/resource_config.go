package export

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/tracewire/tracewire/spans"
)

// ResourceConfig is what the agent contributes to every target's resource.
type ResourceConfig struct {
	HostName     string
	AgentVersion string
	// Attrs are the agent's own OTEL_RESOURCE_ATTRIBUTES.
	Attrs []spans.Attr
	// ServiceNameOverride is the agent's OTEL_SERVICE_NAME; when set it
	// replaces every target's service name.
	ServiceNameOverride string
}

// ResourceConfigFromEnv reads the host name, OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME of the agent's own environment.
func ResourceConfigFromEnv(agentVersion string) (ResourceConfig, error) {
	host, err := os.Hostname()
	if err != nil {
		return ResourceConfig{}, fmt.Errorf("host name: %w", err)
	}
	attrs, err := ParseResourceAttrs(os.Getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return ResourceConfig{}, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	return ResourceConfig{
		HostName:            host,
		AgentVersion:        agentVersion,
		Attrs:               attrs,
		ServiceNameOverride: strings.TrimSpace(os.Getenv("OTEL_SERVICE_NAME")),
	}, nil
}

// ParseResourceAttrs parses an OTEL_RESOURCE_ATTRIBUTES value:
// comma-separated key=value pairs whose values are percent-encoded as in
// W3C baggage. All values are strings.
func ParseResourceAttrs(s string) ([]spans.Attr, error) {
	var attrs []spans.Attr
	for item := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(item) == "" {
			// Tolerate stray commas (e.g. "a=1,"), common in hand-written manifests.
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("malformed pair %q: want key=value", item)
		}
		// PathUnescape, not QueryUnescape: baggage keeps '+' literal.
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("malformed value of %q: %w", k, err)
		}
		attrs = append(attrs, spans.String(k, val))
	}
	return attrs, nil
}
