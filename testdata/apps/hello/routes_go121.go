//go:build !go1.22

package main

import (
	"net/http"
	"strings"
)

// routes without patterns: Go 1.21 has no Request.Pattern, so no http.route.
func routes(mux *http.ServeMux) {
	mux.HandleFunc("/users/", func(w http.ResponseWriter, r *http.Request) { user(w, strings.TrimPrefix(r.URL.Path, "/users/")) })
	mux.HandleFunc("/status", status)
	mux.HandleFunc("/silent", silent)
}
