package nethttp

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tracewire/tracewire/internal/kernel"
	"golang.org/x/sys/unix"
)

// propagation owns the programs that insert traceparent into outgoing
// requests: sock_ops on the cgroup-v2 root (new connections of targets) and
// sk_msg on the socket map.
type propagation struct {
	objs    propObjects
	sockops link.Link
	// fionreadChanged: on this kernel a socket in a SOCKHASH answers
	// FIONREAD from the map's own (empty) queue, not its receive queue.
	fionreadChanged bool
}

// propObjects are the programs and the socket map of propagation.
type propObjects struct {
	sockets        *ebpf.Map
	skMsg, sockops *ebpf.Program
}

func propObjectsOf(coll *ebpf.Collection) (propObjects, error) {
	o := propObjects{coll.Maps["nethttp_sockets"], coll.Programs["sk_msg_traceparent"], coll.Programs["sockops_track_connect"]}
	if o.sockets == nil || o.skMsg == nil || o.sockops == nil {
		return o, errors.New("the object lacks the socket map or its programs")
	}
	return o, nil
}

func attachPropagation(objs propObjects) (*propagation, error) {
	root, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	// sk_msg first: a socket takes the map's programs when it is inserted.
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target: objs.sockets.FD(), Program: objs.skMsg, Attach: ebpf.AttachSkMsgVerdict,
	})
	if err != nil {
		return nil, fmt.Errorf("attach sk_msg to the socket map: %w", err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: ebpf.AttachCGroupSockOps, Program: objs.sockops})
	if err != nil {
		detachSkMsg(objs)
		return nil, fmt.Errorf("attach sock_ops to cgroup %s: %w", root, err)
	}
	p := &propagation{objs: objs, sockops: l}
	if p.fionreadChanged, err = kernel.SockmapChangesFIONREAD(); err != nil {
		p.fionreadChanged = true // unknown: assume the worst
		slog.Warn("cannot tell whether sockets under sk_msg keep FIONREAD; assuming they do not", "err", err)
	}
	return p, nil
}

// close stops propagation: no new sockets, and the sockets already in the map
// are released so their traffic flows unmodified.
func (p *propagation) close() {
	if p.sockops == nil {
		return
	}
	p.sockops.Close()
	p.sockops = nil
	var k bpfSockTuple
	var keys []bpfSockTuple
	it := p.objs.sockets.Iterate()
	var v uint64
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for _, k := range keys {
		_ = p.objs.sockets.Delete(k)
	}
	detachSkMsg(p.objs)
}

func detachSkMsg(objs propObjects) {
	_ = link.RawDetachProgram(link.RawDetachProgramOptions{
		Target: objs.sockets.FD(), Program: objs.skMsg, Attach: ebpf.AttachSkMsgVerdict,
	})
}

// cgroup2Root finds where the cgroup-v2 hierarchy is mounted.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}

// adoptConnections puts the target's established outgoing TCP connections,
// opened before the agent saw it, under the sk_msg program: sock_ops only
// sees new connections. The agent takes a duplicate of each socket with
// pidfd_getfd, inserts it into the map and closes its copy.
func (p *propagation) adoptConnections(pid int) error {
	conns, err := outgoingConnections(pid)
	if err != nil || len(conns) == 0 {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	var errs []error
	for _, c := range conns {
		dup, err := unix.PidfdGetfd(pidfd, c.fd, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("pidfd_getfd fd %d: %w", c.fd, err))
			continue
		}
		err = p.objs.sockets.Update(c.tuple, uint64(dup), ebpf.UpdateNoExist)
		unix.Close(dup)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			// EBUSY: another sk_msg program (another agent, a CNI) owns it.
			errs = append(errs, fmt.Errorf("add connection %d->%d: %w", c.tuple.Lport, c.tuple.Rport, err))
		}
	}
	return errors.Join(errs...)
}

type connection struct {
	fd    int
	tuple bpfSockTuple
}

// outgoingConnections lists pid's established TCP sockets whose local port
// is not one it listens on, from /proc/PID/net/tcp{,6} and /proc/PID/fd.
func outgoingConnections(pid int) ([]connection, error) {
	byInode := map[uint64]bpfSockTuple{}
	listening := map[uint16]bool{}
	for _, v6 := range []bool{false, true} {
		name := "tcp"
		if v6 {
			name = "tcp6"
		}
		if err := parseProcNet(fmt.Sprintf("/proc/%d/net/%s", pid, name), v6, byInode, listening); err != nil {
			return nil, err
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list fds of %d: %w", pid, err)
	}
	var out []connection
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		ino, _ := strconv.ParseUint(strings.Trim(target[len("socket:"):], "[]"), 10, 64)
		t, ok := byInode[ino]
		if !ok || listening[t.Lport] {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		out = append(out, connection{fd: fd, tuple: t})
	}
	return out, nil
}

const (
	tcpEstablished = 0x01
	tcpListen      = 0x0A
)

// parseProcNet reads a /proc/net/tcp{,6} table: established sockets by
// inode, and listening ports.
func parseProcNet(path string, v6 bool, byInode map[uint64]bpfSockTuple, listening map[uint16]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 {
			continue
		}
		state, _ := strconv.ParseUint(fs[3], 16, 8)
		local, lport, err1 := procNetAddr(fs[1])
		remote, rport, err2 := procNetAddr(fs[2])
		if err1 != nil || err2 != nil {
			continue
		}
		switch state {
		case tcpListen:
			listening[lport] = true
		case tcpEstablished:
			ino, _ := strconv.ParseUint(fs[9], 10, 64)
			t := bpfSockTuple{Lport: lport, Rport: rport, Family: afInet}
			if v6 {
				t.Family = afInet6
			}
			copy(t.Local[:], local)
			copy(t.Remote[:], remote)
			byInode[ino] = t
		}
	}
	return sc.Err()
}

const (
	afInet  = 2
	afInet6 = 10
)

// procNetAddr decodes "0100007F:1F90": the address in 32-bit words printed in
// host (little-endian) order, then the port.
func procNetAddr(s string) ([]byte, uint16, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(a)
	if err != nil || len(b)%4 != 0 {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("bad port %q", s)
	}
	return b, uint16(port), nil
}
