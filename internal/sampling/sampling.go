// Package sampling reads the trace sampler from the standard OpenTelemetry
// variables (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG) and the agent's
// own (TRACEWIRE_SAMPLER_RATE_LIMIT, TRACEWIRE_SAMPLER_KEEP_ERRORS). The kernel
// applies it where a trace starts (bpf/sampling.h), so that the traceparent
// sent to the next hop carries the decision; Sampled is the same rule in Go.
package sampling

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Config is a sampler as the kernel applies it.
type Config struct {
	Name string // the OTEL_TRACES_SAMPLER value, for the log
	// ParentBased: a span continuing an incoming valid traceparent takes
	// its sampled flag; otherwise Ratio decides for it too.
	ParentBased bool
	// Ratio is the fraction of trace ids sampled, from 0 to 1.
	Ratio float64
	// RateLimit is the most traces started here sampled per second on the
	// node (the kernel's budget, bpf/sampling.h); 0: no limit.
	RateLimit uint32
	// KeepErrors: the spans of an unsampled trace are exported when one of
	// them ends in error (pipeline.KeepErrors).
	KeepErrors bool
}

// Default is the OpenTelemetry SDKs' default sampler.
var Default = Config{Name: "parentbased_always_on", ParentBased: true, Ratio: 1}

// FromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG with getenv
// (os.Getenv). Names are read as the OpenTelemetry Go SDK reads them (case
// and surrounding spaces ignored), but where the SDK logs a bad value and
// falls back to a default, this returns an error: the agent refuses bad
// settings at start.
func FromEnv(getenv func(string) string) (Config, error) {
	c, err := samplerFromEnv(getenv)
	if err != nil {
		return Config{}, err
	}
	if v := strings.TrimSpace(getenv("TRACEWIRE_SAMPLER_RATE_LIMIT")); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return Config{}, fmt.Errorf("TRACEWIRE_SAMPLER_RATE_LIMIT=%q: want a number of traces per second, "+
				"from 0 (no limit) to %d", v, uint32(math.MaxUint32))
		}
		c.RateLimit = uint32(n)
	}
	if v := strings.TrimSpace(getenv("TRACEWIRE_SAMPLER_KEEP_ERRORS")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("TRACEWIRE_SAMPLER_KEEP_ERRORS=%q: want true or false", v)
		}
		c.KeepErrors = b
	}
	return c, nil
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and its argument.
func samplerFromEnv(getenv func(string) string) (Config, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	if name == "" {
		return Default, nil
	}
	c := Config{Name: name}
	switch name {
	case "always_on", "parentbased_always_on":
		c.Ratio = 1
	case "always_off", "parentbased_always_off":
		c.Ratio = 0
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratioFromEnv(getenv)
		if err != nil {
			return Config{}, err
		}
		c.Ratio = r
	default:
		return Config{}, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
	}
	c.ParentBased = strings.HasPrefix(name, "parentbased_")
	return c, nil
}

// ratioFromEnv reads OTEL_TRACES_SAMPLER_ARG: a ratio, 1 when unset.
func ratioFromEnv(getenv func(string) string) (float64, error) {
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	if arg == "" {
		return 1, nil
	}
	r, err := strconv.ParseFloat(arg, 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
		return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", arg)
	}
	return r, nil
}

// Bound is the rule of OpenTelemetry's TraceIDRatioBased sampler (the Go
// SDK's, exactly): a trace id is sampled when its last 8 bytes, big endian
// and shifted right by one, are below Bound. 1<<63 samples every id.
func (c Config) Bound() uint64 {
	switch {
	case c.Ratio >= 1:
		return 1 << 63
	case c.Ratio <= 0:
		return 0
	}
	return uint64(c.Ratio * (1 << 63))
}

// Sampled reports whether Ratio samples traceID: the decision for a trace
// started here, and for every trace when the sampler is not parent based.
func (c Config) Sampled(traceID [16]byte) bool {
	return binary.BigEndian.Uint64(traceID[8:])>>1 < c.Bound()
}
