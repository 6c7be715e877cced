// grpcapp is a target for the end-to-end tests of the agent's gRPC spans
// (client and server, unary and server-streaming) and of database/sql under a
// gRPC server span. It serves the standard health service written by hand,
// so that no protoc-generated code of its own is linked, and an HTTP front
// whose handlers call an upstream grpcapp.
//
// A typical pair: B runs with -grpc and -dsn, A with -addr and -upstream set
// to B's -grpc address; requests to A's HTTP routes then cross both.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"regexp"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "", "HTTP listen address; empty: no HTTP server")
	grpcAddr := flag.String("grpc", "", "gRPC listen address; empty: no gRPC server")
	upstream := flag.String("upstream", "", "gRPC address the HTTP handlers call; empty: none")
	dsn := flag.String("dsn", "", "PostgreSQL DSN for pgx; empty: no database")
	table := flag.String("table", "users", "table name; tests pick their own to keep their rows apart")
	flag.Parse()
	if *addr == "" && *grpcAddr == "" {
		log.Fatal("nothing to serve: give -addr, -grpc or both")
	}
	// The name goes into the SQL text unquoted.
	if !regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`).MatchString(*table) {
		log.Fatalf("-table %q: want a lower-case SQL identifier", *table)
	}

	var db *sql.DB
	if *dsn != "" {
		var err error
		if db, err = sql.Open("pgx", *dsn); err != nil {
			log.Fatal(err)
		}
		// Idle connections are reused, so most calls trace no connect.
		db.SetMaxIdleConns(4)
		if err := setup(db, *table); err != nil {
			log.Fatalf("setup: %v", err)
		}
	}

	// One connection for the life of the process, as real services keep it:
	// the tests then see calls on an established HTTP/2 connection.
	var client grpc_health_v1.HealthClient
	if *upstream != "" {
		conn, err := grpc.NewClient(*upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatalf("-upstream %q: %v", *upstream, err)
		}
		defer conn.Close()
		client = grpc_health_v1.NewHealthClient(conn)
	}

	// Both listeners are bound before either is logged, so a test that waits
	// for the log lines or polls a port finds the other one ready too.
	errc := make(chan error, 2)
	if *grpcAddr != "" {
		lis, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			log.Fatal(err)
		}
		s := grpc.NewServer()
		grpc_health_v1.RegisterHealthServer(s, &healthServer{db: db, table: *table})
		log.Printf("grpcapp gRPC listening on %s", lis.Addr())
		go func() { errc <- s.Serve(lis) }()
	}
	if *addr != "" {
		lis, err := net.Listen("tcp", *addr)
		if err != nil {
			log.Fatal(err)
		}
		mux := http.NewServeMux()
		routes(mux, client)
		log.Printf("grpcapp HTTP listening on %s (upstream %q)", lis.Addr(), *upstream)
		go func() { errc <- http.Serve(lis, mux) }()
	}
	log.Fatal(<-errc)
}

// setup runs before anything listens, so the tests trace none of it. Every
// start begins from the same single row.
func setup(db *sql.DB, t string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS " + t + " (id INT PRIMARY KEY, name VARCHAR(64))",
		"DELETE FROM " + t,
		"INSERT INTO " + t + " (id, name) VALUES (1, 'alice')",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}
