package procscan

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 -type procscan_event -type tw_stat bpf ../bpf/procscan.c -- -I../bpf
