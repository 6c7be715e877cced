package export

import (
	"strings"
	"testing"
)

// FuzzParseResourceAttrs: OTEL_RESOURCE_ATTRIBUTES comes from each target's
// own environment, so any bytes: they parse to at most one attribute per
// pair, each with a trimmed key, or to an error, never a crash.
func FuzzParseResourceAttrs(f *testing.F) {
	f.Add(" k8s.node.name = node-1 ,team=a%2Cb%20c,plus=a+b,empty=,")
	f.Add("a=1,=2,bad=%zz,%")
	f.Fuzz(func(t *testing.T, s string) {
		attrs, err := ParseResourceAttrs(s)
		if err != nil {
			return
		}
		if len(attrs) > strings.Count(s, ",")+1 {
			t.Fatalf("%d attributes from %q", len(attrs), s)
		}
		for _, a := range attrs {
			if a.Key == "" || a.Key != strings.TrimSpace(a.Key) {
				t.Fatalf("key %q from %q", a.Key, s)
			}
		}
	})
}
