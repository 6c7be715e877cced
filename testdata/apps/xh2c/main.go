// xh2c serves HTTP/2 without TLS through golang.org/x/net/http2/h2c, the
// way programs did before net/http's Server.Protocols, and calls over h2c
// with x/net's http2.Transport: its requests and calls run in x/net's own
// http2 code, not net/http's bundled copy.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"io"
	"log"
	"net"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("user " + r.PathValue("id") + "\n"))
	})
	// /call?url=U: an HTTP/1 call made while serving.
	mux.HandleFunc("GET /call", func(w http.ResponseWriter, r *http.Request) { forward(w, r, http.DefaultClient) })
	// /call-h2c?url=U: a call over h2c with x/net's own client.
	h2client := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	mux.HandleFunc("GET /call-h2c", func(w http.ResponseWriter, r *http.Request) { forward(w, r, h2client) })
	log.Fatal(http.ListenAndServe(*addr, h2c.NewHandler(mux, &http2.Server{})))
}

// forward calls ?url= with client and answers with its status and body.
func forward(w http.ResponseWriter, r *http.Request, client *http.Client) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, r.URL.Query().Get("url"), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
