// hello is a tiny net/http service that the end-to-end tests and the demo trace.
// It is built with several Go toolchains, stripped and as PIE.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	routes(mux)
	callRoutes(mux)
	log.Printf("hello listening on %s", *addr)
	srv := &http.Server{Addr: *addr, Handler: mux}
	h2c(srv, mux)
	log.Fatal(srv.ListenAndServe())
}

// status answers with the code given in the query: /status?code=503.
func status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.URL.Query().Get("code"))
	if err != nil {
		code = http.StatusBadRequest
	}
	w.WriteHeader(code)
}

func user(w http.ResponseWriter, id string) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":%q}`, id)
}

// silent writes nothing: net/http answers 200 for it.
func silent(http.ResponseWriter, *http.Request) {}
