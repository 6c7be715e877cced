package export

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// otlpConfig is where and how the OTLP sink POSTs its batches.
type otlpConfig struct {
	url     string            // the traces endpoint, e.g. http://collector:4318/v1/traces
	headers map[string]string // sent with every request
	gzip    bool
	timeout time.Duration // per HTTP request; 0 means none
	tls     *tls.Config   // nil: the system's roots, no client certificate
}

// otlpConfigFromEnv reads the standard OTEL_EXPORTER_OTLP_* variables the
// way otlptracehttp reads them (the agent used its client before it needed
// the status code and Retry-After it hides): the TRACES_ variant of each
// wins over the general one; ENDPOINT gets /v1/traces appended, while
// TRACES_ENDPOINT is used as it is; INSECURE overrides the endpoint's
// scheme. Where otlptracehttp logged a bad value and ignored it, this
// returns an error: the agent refuses bad exporter settings at start.
func otlpConfigFromEnv(getenv func(string) string, readFile func(string) ([]byte, error)) (otlpConfig, error) {
	env := func(key string) (string, string, bool) { return otlpEnv(getenv, key) }
	c := otlpConfig{timeout: 10 * time.Second}
	host, urlPath, secure := "localhost:4318", "/v1/traces", true
	if name, v, ok := env("ENDPOINT"); ok {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return otlpConfig{}, fmt.Errorf("%s=%q: want a URL such as http://collector:4318", name, v)
		}
		host = u.Host
		secure = !strings.EqualFold(u.Scheme, "http")
		if name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
			urlPath = path.Join(u.Path, "/v1/traces")
		} else {
			urlPath = cmp.Or(u.Path, "/")
		}
	}
	if _, v, ok := env("INSECURE"); ok {
		secure = !strings.EqualFold(v, "true")
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	c.url = (&url.URL{Scheme: scheme, Host: host, Path: urlPath}).String()

	if name, v, ok := env("HEADERS"); ok {
		h, err := parseOTLPHeaders(v)
		if err != nil {
			return otlpConfig{}, fmt.Errorf("%s: %w", name, err)
		}
		c.headers = h
	}
	if _, v, ok := env("COMPRESSION"); ok {
		c.gzip = v == "gzip" // anything else means none, as in otlptracehttp
	}
	if name, v, ok := env("TIMEOUT"); ok {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			return otlpConfig{}, fmt.Errorf("%s=%q: want milliseconds", name, v)
		}
		c.timeout = time.Duration(ms) * time.Millisecond
	}
	if name, v, ok := env("PROTOCOL"); ok && v != "http/protobuf" {
		return otlpConfig{}, fmt.Errorf("%s=%q: the agent sends http/protobuf only", name, v)
	}
	tc, err := tlsFromEnv(getenv, readFile)
	if err != nil {
		return otlpConfig{}, err
	}
	c.tls = tc
	return c, nil
}

// otlpEnv returns the first set of OTEL_EXPORTER_OTLP_TRACES_key and
// OTEL_EXPORTER_OTLP_key, with its name.
func otlpEnv(getenv func(string) string, key string) (name, value string, ok bool) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_" + key, "OTEL_EXPORTER_OTLP_" + key} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return name, v, true
		}
	}
	return "", "", false
}

// parseOTLPHeaders reads "k1=v1,k2=v2"; values are URL-decoded (the OTLP
// exporter specification's format).
func parseOTLPHeaders(s string) (map[string]string, error) {
	h := make(map[string]string)
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || !validHeaderKey(k) {
			return nil, fmt.Errorf("bad header %q: want key=value", pair)
		}
		dv, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		h[k] = strings.TrimSpace(dv)
	}
	return h, nil
}

// validHeaderKey reports whether k is an RFC 9110 token.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range []byte(k) {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// tlsFromEnv reads CERTIFICATE (roots) and CLIENT_CERTIFICATE with
// CLIENT_KEY; nil when neither is set.
func tlsFromEnv(getenv func(string) string, readFile func(string) ([]byte, error)) (*tls.Config, error) {
	var tc tls.Config
	if name, file, ok := otlpEnv(getenv, "CERTIFICATE"); ok {
		pem, err := readFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s=%s: no PEM certificate in the file", name, file)
		}
	}
	// A certificate and its key are taken as a pair from the same level.
	for _, prefix := range []string{"OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"} {
		certName, keyName := prefix+"CLIENT_CERTIFICATE", prefix+"CLIENT_KEY"
		certFile, keyFile := strings.TrimSpace(getenv(certName)), strings.TrimSpace(getenv(keyName))
		if certFile == "" || keyFile == "" {
			continue
		}
		certPEM, err := readFile(certFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certName, err)
		}
		keyPEM, err := readFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyName, err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s and %s: %w", certName, keyName, err)
		}
		tc.Certificates = []tls.Certificate{pair}
		break
	}
	if tc.RootCAs == nil && tc.Certificates == nil {
		return nil, nil
	}
	return &tc, nil
}

// newHTTPClient returns a client with net/http's default transport settings
// (spelled out: http.DefaultTransport is a variable any package may replace)
// plus c's TLS settings and timeout.
func newHTTPClient(c otlpConfig) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		TLSClientConfig:       c.tls,
		// A batch's body goes out in a few writes rather than one per
		// 4 KiB: on the machines measured a syscall costs 1.5 us.
		WriteBufferSize: 256 << 10,
	}
	return &http.Client{Transport: tr, Timeout: c.timeout}
}
