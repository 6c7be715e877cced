//go:build go1.22

package main

import "net/http"

// routes uses Go 1.22 patterns, so requests carry Request.Pattern (http.route).
// The module says go 1.21, so the binary must run with GODEBUG=httpmuxgo121=0.
func routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) { user(w, r.PathValue("id")) })
	mux.HandleFunc("/status", status)
	mux.HandleFunc("/silent", silent)
}
