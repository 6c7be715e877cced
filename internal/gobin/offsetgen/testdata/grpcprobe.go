// Command grpcprobe links every gRPC struct type the agent's probes read, so
// that its DWARF describes them. offsetgen builds it once per grpc version
// and gobin's tests build it to check the table; it is never run for real.
//
// It lives under testdata so that the root module, which does not require
// grpc, does not build it. It must compile with every grpc version in the
// table: grpc.Dial, not grpc.NewClient (v1.63+), keeps v1.60 working.
package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func main() {
	// The linker writes DWARF only for types reachable from live code, so the
	// server and the client must be linked in, behind a branch never taken.
	if len(os.Args) > 1 && os.Args[1] == "never" {
		serveAndCall()
	}
}

func serveAndCall() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()

	conn, err := grpc.Dial(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	var p peer.Peer
	_, err = client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if st, ok := status.FromError(err); ok {
		fmt.Println(st.Proto().GetCode(), p.Addr, p.LocalAddr)
	}
	// A server-streaming call links the client's stream path (clientStream,
	// csAttempt) besides the unary one.
	w, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	fmt.Println(status.Code(err))
}
