//go:build go1.24

package main

import "net/http"

// h2c: the server also speaks HTTP/2 without TLS (prior knowledge), and
// /call-h2c calls its url that way, as Transport.Protocols allows since Go 1.24.
func h2c(srv *http.Server, mux *http.ServeMux) {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &cp}}
	mux.HandleFunc("/call-h2c", func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequest(http.MethodGet, r.URL.Query().Get("url"), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		forward(w, client, req)
	})
}
