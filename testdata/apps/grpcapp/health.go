package main

import (
	"context"
	"database/sql"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is the server side of grpc.health.v1.Health, written here
// rather than taken from google.golang.org/grpc/health so that each service
// name gives the tests a fixed outcome.
//
// The embedded UnimplementedHealthServer is what RegisterHealthServer expects
// and keeps this building if a later grpc adds methods.
type healthServer struct {
	grpc_health_v1.UnimplementedHealthServer
	db    *sql.DB // nil without -dsn
	table string
}

var serving = &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}

// Check runs everything on the handler goroutine, so the SQL span's parent is
// the server span of this very call.
func (h *healthServer) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	switch req.GetService() {
	case "db":
		if h.db == nil {
			return nil, status.Error(codes.FailedPrecondition, "no database: start with -dsn")
		}
		var name string
		// The tests compare this query text: keep it exactly as it is.
		if err := h.db.QueryRowContext(ctx, "SELECT name FROM "+h.table+" WHERE id = 1").Scan(&name); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return serving, nil
	case "missing":
		return nil, status.Error(codes.NotFound, "no such service")
	case "internal":
		return nil, status.Error(codes.Internal, "boom")
	}
	return serving, nil
}

// Watch sends a fixed number of messages and ends with OK, unlike the real
// service that streams until the client leaves: a server-streaming call with
// a known end.
func (h *healthServer) Watch(req *grpc_health_v1.HealthCheckRequest, stream grpc.ServerStreamingServer[grpc_health_v1.HealthCheckResponse]) error {
	for range 3 {
		if err := stream.Send(serving); err != nil {
			return err
		}
	}
	return nil
}
