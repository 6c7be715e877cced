/* SPDX-License-Identifier: GPL-2.0 */
/* The TCP connection behind a file descriptor of the current process. */
#ifndef TRACEWIRE_SOCK_H
#define TRACEWIRE_SOCK_H

#include "common.h"

#define S_IFMT_ 00170000
#define S_IFSOCK_ 0140000

/* A TCP connection as both the uprobes (from the socket) and sk_msg see it:
 * ports in host byte order, IPv4 addresses in the first 4 bytes. */
struct sock_tuple {
	__u8 local[16];
	__u8 remote[16];
	__u16 lport;
	__u16 rport;
	__u16 family;
	__u16 _pad;
};

/* socket_tuple finds the TCP socket behind file descriptor fd of the current
 * process (CO-RE reads of task -> files -> file -> socket -> sock); -1 when
 * fd is not an IPv4/IPv6 TCP socket. */
static __always_inline int socket_tuple(__u64 fd, struct sock_tuple *t)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f = 0;
	struct socket *sock;
	struct sock *sk;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return -1;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), fds + fd) || !f)
		return -1;
	/* private_data is a struct socket only for socket files. */
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT_) != S_IFSOCK_)
		return -1;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return -1;
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (t->family == 2 /* AF_INET */) {
		BPF_CORE_READ_INTO((__u32 *)t->local, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)t->remote, sk, __sk_common.skc_daddr);
	} else if (t->family == 10 /* AF_INET6 */) {
		BPF_CORE_READ_INTO(t->local, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(t->remote, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return -1;
	}
	return 0;
}

#endif
