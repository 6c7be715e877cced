package dbsql

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 -type dbsql_event -type dbsql_offsets -type dbsql_op -type dbsql_end -type errtype_key -type errtype -type sock_tuple -type span_ctx -type tw_stat -type tw_flag bpf ../../bpf/dbsql.c -- -I../../bpf
