package sampling

import (
	"encoding/binary"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg string
		want         Config
	}{
		{"", "", Default},
		{"", "0.5", Default}, // the argument of no sampler is ignored
		{"always_on", "", Config{Name: "always_on", Ratio: 1}},
		{"always_off", "0.5", Config{Name: "always_off", Ratio: 0}},
		{"traceidratio", "", Config{Name: "traceidratio", Ratio: 1}},
		{"traceidratio", "0.25", Config{Name: "traceidratio", Ratio: 0.25}},
		{"traceidratio", "0", Config{Name: "traceidratio", Ratio: 0}},
		{"parentbased_always_on", "", Default},
		{"parentbased_always_off", "", Config{Name: "parentbased_always_off", ParentBased: true, Ratio: 0}},
		{"parentbased_traceidratio", "0.25", Config{Name: "parentbased_traceidratio", ParentBased: true, Ratio: 0.25}},
		{" ParentBased_TraceIDRatio ", " 1 ", Config{Name: "parentbased_traceidratio", ParentBased: true, Ratio: 1}},
	} {
		got, err := FromEnv(env(map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg}))
		if err != nil || got != tc.want {
			t.Errorf("%q %q: %+v, %v; want %+v", tc.sampler, tc.arg, got, err, tc.want)
		}
	}
}

func TestFromEnvRefuses(t *testing.T) {
	for _, tc := range []struct{ sampler, arg, msg string }{
		{"sometimes", "", `OTEL_TRACES_SAMPLER="sometimes"`},
		{"jaeger_remote", "", "want always_on"},
		{"traceidratio", "quarter", `OTEL_TRACES_SAMPLER_ARG="quarter"`},
		{"traceidratio", "1.5", "from 0 to 1"},
		{"parentbased_traceidratio", "-0.1", "from 0 to 1"},
		{"parentbased_traceidratio", "NaN", "from 0 to 1"},
		{"traceidratio", "25%", "from 0 to 1"},
	} {
		_, err := FromEnv(env(map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg}))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q %q: error %v, want one with %q", tc.sampler, tc.arg, err, tc.msg)
		}
	}
}

func TestFromEnvExtensions(t *testing.T) {
	for _, tc := range []struct {
		limit, keep string
		want        Config
	}{
		{"", "", Default},
		{"0", "false", Default},
		{" 5 ", "", Config{Name: Default.Name, ParentBased: true, Ratio: 1, RateLimit: 5}},
		{"4294967295", "TRUE", Config{Name: Default.Name, ParentBased: true, Ratio: 1, RateLimit: 1<<32 - 1, KeepErrors: true}},
		{"", "1", Config{Name: Default.Name, ParentBased: true, Ratio: 1, KeepErrors: true}},
	} {
		got, err := FromEnv(env(map[string]string{"TRACEWIRE_SAMPLER_RATE_LIMIT": tc.limit, "TRACEWIRE_SAMPLER_KEEP_ERRORS": tc.keep}))
		if err != nil || got != tc.want {
			t.Errorf("%q %q: %+v, %v; want %+v", tc.limit, tc.keep, got, err, tc.want)
		}
	}
	for _, m := range []map[string]string{
		{"TRACEWIRE_SAMPLER_RATE_LIMIT": "-1"},
		{"TRACEWIRE_SAMPLER_RATE_LIMIT": "1.5"},
		{"TRACEWIRE_SAMPLER_RATE_LIMIT": "4294967296"},
		{"TRACEWIRE_SAMPLER_RATE_LIMIT": "many"},
		{"TRACEWIRE_SAMPLER_KEEP_ERRORS": "yes"},
		{"OTEL_TRACES_SAMPLER": "sometimes", "TRACEWIRE_SAMPLER_RATE_LIMIT": "5"},
	} {
		var name string
		for k := range m {
			name = k // the one variable whose value is bad: the sampler's when set
		}
		if _, ok := m["OTEL_TRACES_SAMPLER"]; ok {
			name = "OTEL_TRACES_SAMPLER"
		}
		_, err := FromEnv(env(m))
		if err == nil || !strings.Contains(err.Error(), name+"=") {
			t.Errorf("%v: error %v, want one naming %s", m, err, name)
		}
	}
}

// id is a trace id whose last 8 bytes are low.
func id(low uint64) [16]byte {
	var b [16]byte
	b[0] = 0xff // the first half plays no part
	binary.BigEndian.PutUint64(b[8:], low)
	return b
}

// TestSampled checks the rule at its edges: with ratio 0.25 the bound is
// 1<<61, so ids whose last 8 bytes are below 1<<62 are sampled.
func TestSampled(t *testing.T) {
	quarter := Config{Ratio: 0.25}
	if b := quarter.Bound(); b != 1<<61 {
		t.Fatalf("bound %#x, want %#x", b, uint64(1<<61))
	}
	for _, tc := range []struct {
		c    Config
		low  uint64
		want bool
	}{
		{quarter, 0, true},
		{quarter, 1<<62 - 1, true},
		{quarter, 1 << 62, false},
		{quarter, 1<<64 - 1, false},
		{Config{Ratio: 1}, 1<<64 - 1, true},
		{Config{Ratio: 2}, 1<<64 - 1, true},
		{Config{Ratio: 0}, 0, false},
		{Config{Ratio: -1}, 0, false},
		{Config{Ratio: 0.5}, 1<<63 - 1, true},
		{Config{Ratio: 0.5}, 1 << 63, false},
	} {
		if got := tc.c.Sampled(id(tc.low)); got != tc.want {
			t.Errorf("ratio %v, low %#x: %v, want %v", tc.c.Ratio, tc.low, got, tc.want)
		}
	}
}

// TestSampledFraction: over many ids the fraction sampled is the ratio.
func TestSampledFraction(t *testing.T) {
	c := Config{Ratio: 0.1}
	n := 0
	const ids = 1 << 16
	for i := range uint64(ids) {
		if c.Sampled(id(i << 48)) { // evenly spread over every value
			n++
		}
	}
	if n != 6554 { // i < 0.1 * ids
		t.Errorf("%d of %d sampled, want 6554", n, ids)
	}
}
