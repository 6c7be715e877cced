package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// call answers 502 with the error text, or 200 with the text it returns.
// f makes its gRPC call on the handler goroutine with the request's context,
// so the client span's parent is the HTTP server span.
func call(client grpc_health_v1.HealthClient, f func(ctx context.Context, r *http.Request) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if client == nil {
			http.Error(w, "no upstream: start with -upstream", http.StatusServiceUnavailable)
			return
		}
		body, err := f(r.Context(), r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, body)
	}
}

func routes(mux *http.ServeMux, client grpc_health_v1.HealthClient) {
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})

	check := func(ctx context.Context, r *http.Request) (string, error) {
		resp, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: r.FormValue("service")})
		if err != nil {
			return "", err
		}
		return resp.GetStatus().String(), nil
	}
	mux.Handle("GET /check", call(client, check))

	// The outgoing traceparent lets a test check that the upstream's server
	// span continues a trace the caller chose.
	mux.Handle("GET /check-md", call(client, func(ctx context.Context, r *http.Request) (string, error) {
		return check(metadata.AppendToOutgoingContext(ctx, "traceparent", r.FormValue("tp")), r)
	}))

	// A header block bigger than a frame: grpc-go sends it as HEADERS and
	// CONTINUATION frames.
	mux.Handle("GET /check-big", call(client, func(ctx context.Context, r *http.Request) (string, error) {
		n, err := strconv.Atoi(r.FormValue("n"))
		if err != nil {
			return "", err
		}
		return check(metadata.AppendToOutgoingContext(ctx, "x-pad", strings.Repeat("p", n)), r)
	}))

	// A request message bigger than the connection's write batches: its
	// DATA frames are cut across writes.
	mux.Handle("GET /check-long", call(client, func(ctx context.Context, r *http.Request) (string, error) {
		n, err := strconv.Atoi(r.FormValue("n"))
		if err != nil {
			return "", err
		}
		resp, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: strings.Repeat("s", n)})
		if err != nil {
			return "", err
		}
		return resp.GetStatus().String(), nil
	}))

	mux.Handle("GET /watch", call(client, func(ctx context.Context, r *http.Request) (string, error) {
		stream, err := client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{Service: r.FormValue("service")})
		if err != nil {
			return "", err
		}
		// Reading to io.EOF receives the trailers, which ends the call.
		n := 0
		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return fmt.Sprint(n), nil
			}
			if err != nil {
				return "", err
			}
			n++
		}
	}))
}
