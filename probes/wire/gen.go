package wire

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 -type wire_event -type wire_proc -type wire_proc_flag -type wire_ctx -type span_ctx -type wire_const -type sock_tuple -type tw_stat bpf ../../bpf/wire.c -- -I../../bpf
