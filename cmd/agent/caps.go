package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/probes"
)

// capability is one the agent needs, and what for. The agent checks
// capabilities instead of uid 0 so that it runs as any user granted exactly
// these: deploy/daemonset.yaml grants the same list, and
// e2e/privilege_test.go proves it is enough, and each one needed, by running
// the agent as nobody with it.
type capability struct {
	name string
	bit  uint
	why  string
}

// needed is short because of uprobes: since Linux 6.16 (and the stable
// releases of July 2025), perf_event_open of a uprobe requires CAP_SYS_ADMIN
// (kernel commit ba677dbe77af; CAP_PERFMON was enough before). The kernel
// accepts CAP_SYS_ADMIN wherever the agent would otherwise need CAP_BPF
// (programs, maps), CAP_PERFMON (tracepoints, reading target memory) or
// CAP_NET_ADMIN (sock_ops, sk_msg, the socket map), so those add nothing.
// CAP_SYS_ADMIN bypasses neither file permissions nor ptrace access checks,
// hence the other two.
var needed = []capability{
	{"CAP_SYS_ADMIN", unix.CAP_SYS_ADMIN, "to attach uprobes, which Linux reserves to it since 6.16, and to load the eBPF programs"},
	{"CAP_SYS_PTRACE", unix.CAP_SYS_PTRACE, "to read /proc/PID/exe, maps and environ of other users' processes and take their sockets with pidfd_getfd"},
	{"CAP_DAC_READ_SEARCH", unix.CAP_DAC_READ_SEARCH, "to read tracefs and target executables whatever their owner and mode"},
}

// checkHost says in one sentence what is missing for eBPF.
func checkHost() error {
	eff, err := effectiveCaps()
	if err != nil {
		return err
	}
	if err := checkCaps(eff); err != nil {
		return err
	}
	if err := ensureTracefs(); err != nil {
		return err
	}
	return liftMemlock()
}

// effectiveCaps reads the agent's effective capability set, one bit per
// capability number.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3: two 32-bit words
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read the agent's capabilities: %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}

func has(eff uint64, bit uint) bool { return eff&(1<<bit) != 0 }

// checkCaps names every needed capability eff lacks, in one sentence.
func checkCaps(eff uint64) error {
	var missing []string
	for _, c := range needed {
		if !has(eff, c.bit) {
			missing = append(missing, fmt.Sprintf("%s (needed %s)", c.name, c.why))
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("missing capability %s; run as root or grant it", missing[0])
	}
	return fmt.Errorf("missing capabilities %s; run as root or grant them", strings.Join(missing, ", "))
}

const tracefsDir = "/sys/kernel/tracing" // where probes.MountTracefs mounts it

// ensureTracefs mounts tracefs only when it is not mounted yet, so that a
// host (or a pod) providing it does not need the agent to mount anything.
// statfs needs no permission on the directory itself (tracefs is mode 0700).
func ensureTracefs() error {
	var st unix.Statfs_t
	if err := unix.Statfs(tracefsDir, &st); err == nil && st.Type == unix.TRACEFS_MAGIC {
		return nil
	}
	return probes.MountTracefs()
}

// liftMemlock raises RLIMIT_MEMLOCK where BPF maps are charged to it
// (kernels < 5.11). Later kernels charge the memory cgroup and RemoveMemlock
// does nothing, so CAP_SYS_RESOURCE is needed only on old kernels whose hard
// limit is too low: EPERM is reported as that capability. Any other failure
// is only logged: if the limit matters, loading the maps says so.
func liftMemlock() error {
	err := rlimit.RemoveMemlock()
	if errors.Is(err, unix.EPERM) {
		return errors.New("missing capability CAP_SYS_RESOURCE (needed to lift the locked-memory limit for BPF maps on kernels before 5.11); run as root or grant it")
	}
	if err != nil {
		slog.Warn("cannot lift the locked-memory limit for BPF maps", "err", err)
	}
	return nil
}
