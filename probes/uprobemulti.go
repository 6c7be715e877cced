package probes

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// UprobeMulti reports whether uprobes are attached as BPF uprobe_multi links
// (Linux 6.6+) rather than perf events. It matters for privileges: since
// Linux 6.16 perf_event_open of a uprobe needs CAP_SYS_ADMIN, a uprobe_multi
// link only CAP_BPF and CAP_PERFMON. Decided once: a program loaded for one
// kind of attachment cannot be attached the other way.
var UprobeMulti = sync.OnceValue(func() bool {
	err := features.HaveBPFLinkUprobeMulti()
	if err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		slog.Warn("cannot tell whether the kernel has uprobe_multi links; attaching uprobes as perf events", "err", err)
	}
	return err == nil
})

// uprobeSection is the ELF section prefix of the objects' uprobe programs.
const uprobeSection = "uprobe/"

// setUprobeAttachType makes spec's uprobe programs attachable as
// uprobe_multi links when those are used: the kernel checks the attach type
// at load.
func setUprobeAttachType(spec *ebpf.CollectionSpec) {
	if !UprobeMulti() {
		return
	}
	for _, p := range spec.Programs {
		if p.Type == ebpf.Kprobe && strings.HasPrefix(p.SectionName, uprobeSection) {
			p.AttachType = ebpf.AttachTraceUprobeMulti
		}
	}
}

// attachUprobe puts h's program at file offset off of ex: one link per hook,
// so that each can be handed over (detachElsewhere) and closed on its own.
func attachUprobe(ex *link.Executable, sym string, prog *ebpf.Program, off uint64) (link.Link, error) {
	if UprobeMulti() {
		// Addresses, like UprobeOptions.Address, are file offsets taken as
		// they are; Offsets would be added to a symbol's address, and the
		// symbol name is not needed.
		l, err := ex.UprobeMulti(nil, prog, &link.UprobeMultiOptions{Addresses: []uint64{off}})
		if err != nil {
			return nil, fmt.Errorf("uprobe_multi link: %w", err)
		}
		return l, nil
	}
	// The symbol name is only a label here.
	return ex.Uprobe(sym, prog, &link.UprobeOptions{Address: off})
}
