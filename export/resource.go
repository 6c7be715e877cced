package export

import (
	"github.com/tracewire/tracewire/spans"
)

// serviceName is the service.name of p's spans: the agent's override wins
// over the target's own name.
func serviceName(cfg ResourceConfig, p *spans.Process) string {
	switch {
	case cfg.ServiceNameOverride != "":
		return cfg.ServiceNameOverride
	case p != nil && p.ServiceName != "":
		return p.ServiceName
	default:
		return "unknown_service"
	}
}

// resourceAttrs merges p's resource attributes, lowest precedence first:
// detected, the agent's OTEL_RESOURCE_ATTRIBUTES, the target's own; then
// service.name, which nothing overrides.
func resourceAttrs(cfg ResourceConfig, p *spans.Process) []spans.Attr {
	if p == nil {
		p = &spans.Process{}
	}
	attrs := make([]spans.Attr, 0, 10+len(p.Detected)+len(cfg.Attrs)+len(p.ResourceAttrs))
	if p.PID != 0 {
		attrs = append(attrs, spans.Int("process.pid", int64(p.PID)))
	}
	for _, a := range []spans.Attr{
		spans.String("process.executable.name", p.ExeName),
		spans.String("process.runtime.name", p.RuntimeName),
		spans.String("process.runtime.version", p.RuntimeVersion),
		spans.String("host.name", cfg.HostName),
	} {
		if a.Str != "" {
			attrs = append(attrs, a)
		}
	}
	attrs = append(attrs, p.Detected...)
	attrs = append(attrs,
		spans.String("telemetry.sdk.name", "tracewire"),
		spans.String("telemetry.sdk.language", "go"),
		spans.String("telemetry.sdk.version", cfg.AgentVersion),
	)
	for _, a := range cfg.Attrs {
		attrs = setAttr(attrs, a)
	}
	for _, a := range p.ResourceAttrs {
		attrs = setAttr(attrs, a)
	}
	return setAttr(attrs, spans.String("service.name", serviceName(cfg, p)))
}

// setAttr replaces the attribute with a's key in place, or appends a.
func setAttr(attrs []spans.Attr, a spans.Attr) []spans.Attr {
	for i := range attrs {
		if attrs[i].Key == a.Key {
			attrs[i] = a
			return attrs
		}
	}
	return append(attrs, a)
}

// buildResource returns p's Resource message, encoded.
func buildResource(cfg ResourceConfig, p *spans.Process) []byte {
	var b []byte
	for _, a := range resourceAttrs(cfg, p) {
		a.Key = validUTF8(a.Key) // from the environment: not checked before
		b = appendKeyValue(b, fResourceAttributes, a)
	}
	return b
}
