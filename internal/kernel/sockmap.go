package kernel

import (
	"fmt"
	"net"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// SockmapChangesFIONREAD asks the running kernel whether a TCP socket in a
// SOCKHASH still answers FIONREAD (SIOCINQ) with the bytes waiting in its
// receive queue. Since tcp_bpf_ioctl (6.x, and stable 6.6/6.12) it answers
// from the map's own ingress queue, which is empty without sk_skb programs:
// an application asking would read 0 with data waiting. Asked once.
func SockmapChangesFIONREAD() (bool, error) {
	fionreadOnce.Do(func() { fionreadChanged, fionreadErr = sockmapChangesFIONREAD() })
	return fionreadChanged, fionreadErr
}

var (
	fionreadOnce    sync.Once
	fionreadChanged bool
	fionreadErr     error
)

func sockmapChangesFIONREAD() (bool, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.SockHash, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return false, fmt.Errorf("create a test socket map: %w", err)
	}
	defer m.Close()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false, err
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return false, err
	}
	defer c.Close()
	s, err := ln.AcceptTCP()
	if err != nil {
		return false, err
	}
	defer s.Close()
	f, err := c.File() // a blocking duplicate: the map takes its socket
	if err != nil {
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := m.Update(uint32(0), uint64(fd), ebpf.UpdateAny); err != nil {
		return false, fmt.Errorf("put a test socket in the map: %w", err)
	}
	const sent = 16
	if _, err := s.Write(make([]byte, sent)); err != nil {
		return false, err
	}
	// Wait until the bytes are in the receive queue (poll sees them there).
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 1000); err != nil {
		return false, fmt.Errorf("poll the test socket: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return false, fmt.Errorf("FIONREAD on the test socket: %w", err)
	}
	return n != sent, nil
}
