//go:build !go1.24

package main

import "net/http"

// h2c needs Transport.Protocols (Go 1.24).
func h2c(*http.Server, *http.ServeMux) {}
