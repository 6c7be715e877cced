package nethttp

import "testing"

func TestFullURLRedacts(t *testing.T) {
	for _, c := range []struct {
		scheme, host, path, query string
		user                      bool
		want                      string
	}{
		{"http", "svc:8080", "/users/7", "", false, "http://svc:8080/users/7"},
		{"https", "svc", "/a", "token=s3cret&x=1&flag", false, "https://svc/a?token=REDACTED&x=REDACTED&flag"},
		{"http", "svc", "/", "a=", true, "http://REDACTED:REDACTED@svc/?a=REDACTED"},
	} {
		if got := string(fullURL(nil, c.scheme, c.host, c.path, c.query, c.user)); got != c.want {
			t.Errorf("fullURL(%q, %q, %q, %q, %v) = %q, want %q", c.scheme, c.host, c.path, c.query, c.user, got, c.want)
		}
	}
}

func TestRouteAndHostPort(t *testing.T) {
	for pattern, want := range map[string]string{"GET /users/{id}": "/users/{id}", "/x": "/x", "GET example.com/a": "/a", "": ""} {
		if got := route(pattern); got != want {
			t.Errorf("route(%q) = %q, want %q", pattern, got, want)
		}
	}
	for _, c := range []struct {
		in   string
		host string
		port int
	}{{"a:81", "a", 81}, {"a", "a", 80}, {"[::1]:9", "::1", 9}, {"[::1]", "::1", 80}, {"", "", 0}} {
		if h, p := hostPort(c.in, 80); h != c.host || p != c.port {
			t.Errorf("hostPort(%q) = %q %d, want %q %d", c.in, h, p, c.host, c.port)
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
