package export

import "github.com/tracewire/tracewire/spans"

// ResourceAttrs returns the resource attributes of p's telemetry, exactly as
// the span export builds them, so that metrics of a target carry the same
// resource as its spans.
func ResourceAttrs(cfg ResourceConfig, p *spans.Process) []spans.Attr {
	return resourceAttrs(cfg, p)
}
