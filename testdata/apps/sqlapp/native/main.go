// Command native is a Go service that queries PostgreSQL through pgx's own
// API, not database/sql: no Go probe knows its calls, so the agent reads
// them from the wire (and finds their parent by goroutine).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"sync"

	"github.com/jackc/pgx/v5"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	dsn := flag.String("dsn", "", "PostgreSQL connection string")
	flag.Parse()
	conn, err := pgx.Connect(context.Background(), *dsn)
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex // one connection, one query at a time
	http.HandleFunc("GET /user", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var name string
		if err := conn.QueryRow(r.Context(), "SELECT name FROM wire_users WHERE id = $1", 7).Scan(&name); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, name)
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
