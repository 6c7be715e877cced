package probes

import (
	"log/slog"
	"os"
	"os/exec"
	"strconv"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// detacherEnv starts the agent's own binary as a detacher, with the number
// of link fds it inherited from fd 3 on.
const detacherEnv = "TRACEWIRE_DETACH_LINKS"

// RunDetacher returns unless this process was started by detachElsewhere;
// then it closes the uprobe links it inherited, which removes them, and
// exits. The agent's main calls it first.
func RunDetacher() {
	v := os.Getenv(detacherEnv)
	if v == "" {
		return
	}
	n, _ := strconv.Atoi(v)
	for fd := 3; fd < 3+n; fd++ {
		unix.Close(fd)
	}
	os.Exit(0)
}

// detachElsewhere removes the uprobes of ls without making the agent wait:
// the kernel removes uprobes one at a time, each after an RCU grace period
// (~80 ms on the VMs measured), so an agent with a few targets would need
// seconds to exit. A child process takes the links over and closes them; the
// agent's own references then close at once. Until the child is done the
// programs run but find no process of theirs (Probe.Detach cleared them).
func detachElsewhere(ls []link.Link) {
	var files []*os.File
	for _, l := range ls {
		fl, ok := l.(interface{ FD() int })
		if !ok {
			continue // closed below, in this process
		}
		fd, err := unix.FcntlInt(uintptr(fl.FD()), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			continue
		}
		files = append(files, os.NewFile(uintptr(fd), "uprobe link"))
	}
	if len(files) > 0 {
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = []string{detacherEnv + "=" + strconv.Itoa(len(files))}
		cmd.ExtraFiles = files
		if err := cmd.Start(); err != nil {
			slog.Warn("cannot start the detacher; removing the uprobes here", "err", err)
		} else {
			cmd.Process.Release()
		}
		for _, f := range files {
			f.Close()
		}
	}
	closeLinks(ls)
}
