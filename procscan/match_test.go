package procscan

import "testing"

func TestMatches(t *testing.T) {
	names := []string{"api", "a-very-long-service-name"}
	for _, c := range []struct {
		comm, exe string
		want      bool
	}{
		{"api", "api", true},
		{"worker", "api", true},            // renamed thread group, executable still api
		{"api", "api-v2", true},            // comm set by the program
		{"a-very-long-ser", "other", true}, // the kernel cut comm at 15 bytes
		{"a-very-long-se", "other", false}, // shorter than the cut: not it
		{"apis", "apis", false},
	} {
		if got := Matches(names, c.comm, c.exe); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.comm, c.exe, got, c.want)
		}
	}
}
