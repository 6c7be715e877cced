package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/kernel"
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
	// orSysAdmin: the kernel also accepts CAP_SYS_ADMIN (bpf_capable,
	// perfmon_capable), as granted where uprobes are perf events.
	orSysAdmin bool
}

// needed holds with uprobe_multi links (Linux 6.6+), which need only
// CAP_BPF and CAP_PERFMON where a perf-event uprobe needs CAP_SYS_ADMIN since
// Linux 6.16 (kernel commit ba677dbe77af). CAP_NET_ADMIN is for the socket
// map and the sock_ops and sk_msg programs: nethttp loads them with its
// uprobes, so without it there are no HTTP spans either. CAP_SYS_ADMIN
// bypasses neither file permissions nor ptrace access checks, hence the last
// two even where it is granted.
var needed = []capability{
	{"CAP_BPF", unix.CAP_BPF, "to load the eBPF programs and maps", true},
	{"CAP_PERFMON", unix.CAP_PERFMON, "to attach uprobes and tracepoints and read target memory from them", true},
	{"CAP_NET_ADMIN", unix.CAP_NET_ADMIN, "to create the socket map and load the sock_ops and sk_msg programs that carry traceparent, which the HTTP probe loads with its uprobes", false},
	{"CAP_SYS_PTRACE", unix.CAP_SYS_PTRACE, "to read /proc/PID/exe, maps and environ of other users' processes and take their sockets with pidfd_getfd", false},
	{"CAP_DAC_READ_SEARCH", unix.CAP_DAC_READ_SEARCH, "to read tracefs and target executables whatever their owner and mode", false},
}

// perfEventUprobes is needed only on kernels without uprobe_multi links.
var perfEventUprobes = capability{"CAP_SYS_ADMIN", unix.CAP_SYS_ADMIN,
	"to attach uprobes as perf events, which Linux reserves to it since 6.16, on this kernel without uprobe_multi links (Linux 6.6+)", false}

// checkHost says in one sentence what is missing for eBPF.
func checkHost() error {
	eff, err := effectiveCaps()
	if err != nil {
		return err
	}
	if err := checkCaps(eff, needed); err != nil {
		return err
	}
	if err := liftMemlock(); err != nil {
		return err
	}
	// Asking the kernel loads a program: only now that it can be loaded.
	if !probes.UprobeMulti() {
		if err := checkCaps(eff, []capability{perfEventUprobes}); err != nil {
			return err
		}
	}
	return ensureTracefs()
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

// checkCaps names every capability of cs that eff lacks, in one sentence.
func checkCaps(eff uint64, cs []capability) error {
	var missing []string
	for _, c := range cs {
		if !has(eff, c.bit) && !(c.orSysAdmin && has(eff, unix.CAP_SYS_ADMIN)) {
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

const tracefsDir = "/sys/kernel/tracing" // where kernel.MountTracefs mounts it

// ensureTracefs mounts tracefs only when it is not mounted yet, so that a
// host (or a pod) providing it does not need the agent to mount anything.
// statfs needs no permission on the directory itself (tracefs is mode 0700).
func ensureTracefs() error {
	var st unix.Statfs_t
	if err := unix.Statfs(tracefsDir, &st); err == nil && st.Type == unix.TRACEFS_MAGIC {
		return nil
	}
	err := kernel.MountTracefs()
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("missing capability CAP_SYS_ADMIN (needed to mount tracefs, which is not mounted at %s); run as root or grant it", tracefsDir)
	}
	return err
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
