// sqlapp is a net/http service whose handlers call database/sql, for the
// end-to-end tests of the agent's SQL spans against PostgreSQL (pgx, lib/pq) and
// MariaDB (go-sql-driver/mysql). The tests compare the query texts: keep them
// exactly as they are.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/http"
	"regexp"
	"strconv"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"
)

var (
	driver = flag.String("driver", "pgx", "database/sql driver: pgx, postgres (lib/pq) or mysql")
	table  = flag.String("table", "users", "table name; tests pick their own to keep their rows apart")
)

// ph is the driver's placeholder for the n-th argument.
func ph(n int) string {
	if *driver != "mysql" {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	dsn := flag.String("dsn", "", "data source name for the driver")
	flag.Parse()
	if *driver != "pgx" && *driver != "postgres" && *driver != "mysql" {
		log.Fatalf("-driver %q: want pgx, postgres or mysql", *driver)
	}
	// The name goes into the SQL text unquoted.
	if !regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`).MatchString(*table) {
		log.Fatalf("-table %q: want a lower-case SQL identifier", *table)
	}
	db, err := sql.Open(*driver, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	// Idle connections are reused, so most requests trace no connect.
	db.SetMaxIdleConns(4)
	if err := setup(db); err != nil {
		log.Fatalf("setup: %v", err)
	}
	mux := http.NewServeMux()
	routes(mux, db, *table)
	log.Printf("sqlapp (%s, table %s) listening on %s", *driver, *table, *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}

// setup runs before the server listens, so the tests trace none of it once
// /health answers. Every start begins from the same two rows.
func setup(db *sql.DB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t := *table
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS " + t + " (id INT PRIMARY KEY, name VARCHAR(64))",
		"CREATE TABLE IF NOT EXISTS " + t + "_audit (id INT, msg VARCHAR(128))",
		"DELETE FROM " + t,
		"DELETE FROM " + t + "_audit",
		"INSERT INTO " + t + " (id, name) VALUES (1, 'alice'), (2, 'bob')",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}
