package nethttp

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 -type nethttp_server_event -type nethttp_client_event -type nethttp_offsets -type event_kind -type sock_tuple -type span_ctx -type tw_stat -type tw_flag -type nethttp_const -type chunk bpf ../../bpf/nethttp.c -- -I../../bpf
