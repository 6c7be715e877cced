package grpc

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 -type grpc_event -type grpc_offsets -type grpc_kind -type endpoint -type span_ctx -type tw_stat -type tw_flag bpf ../../bpf/grpc.c -- -I../../bpf
