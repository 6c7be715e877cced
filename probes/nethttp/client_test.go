package nethttp

import "testing"

func TestRoute(t *testing.T) {
	for pattern, want := range map[string]string{"GET /users/{id}": "/users/{id}", "/x": "/x", "GET example.com/a": "/a", "": ""} {
		if got := route(pattern); got != want {
			t.Errorf("route(%q) = %q, want %q", pattern, got, want)
		}
	}
}

func TestProcNetAddr(t *testing.T) {
	b, port, err := procNetAddr("0100007F:1F90")
	if err != nil || port != 8080 || b[0] != 127 || b[3] != 1 {
		t.Fatalf("procNetAddr: %v %d %v", b, port, err)
	}
	if _, _, err := procNetAddr("zz:1"); err == nil {
		t.Error("bad address accepted")
	}
}
