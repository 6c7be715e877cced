// xh2c serves HTTP/2 without TLS through golang.org/x/net/http2/h2c, the
// way programs did before net/http's Server.Protocols: its requests run in
// x/net's own http2 server, not net/http's bundled copy.
package main

import (
	"flag"
	"io"
	"log"
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
	mux.HandleFunc("GET /call", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	log.Fatal(http.ListenAndServe(*addr, h2c.NewHandler(mux, &http2.Server{})))
}
