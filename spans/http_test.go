package spans

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
		if got := string(FullURL(nil, c.scheme, c.host, c.path, c.query, c.user)); got != c.want {
			t.Errorf("FullURL(%q, %q, %q, %q, %v) = %q, want %q", c.scheme, c.host, c.path, c.query, c.user, got, c.want)
		}
	}
}

func TestHostPort(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		port int
	}{{"a:81", "a", 81}, {"a", "a", 80}, {"[::1]:9", "::1", 9}, {"[::1]", "::1", 80}, {"", "", 0}} {
		if h, p := HostPort(c.in, 80); h != c.host || p != c.port {
			t.Errorf("HostPort(%q) = %q %d, want %q %d", c.in, h, p, c.host, c.port)
		}
	}
}
