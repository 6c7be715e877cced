// Package kernel holds what the agent reads from the kernel the same way
// everywhere: ring-buffer records and the C strings in them, the kernel
// clock, executable file identities, and tracefs. procscan and every probe
// use it.
package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// FileID identifies an executable file: uprobes bind to its inode, so all
// processes running one file share one set of links.
type FileID struct{ Dev, Ino uint64 }

// StatFile returns the FileID of path (following symlinks such as /proc/PID/exe).
func StatFile(path string) (FileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return FileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// idlePollMax is how far an idle ring's polls are spaced out: a probe
// whose library nobody calls should not wake the agent ten times a second.
const idlePollMax = time.Second

// ReadRing calls handle for every record of rd until done is closed and the
// ring is empty, or rd is closed. Probes submit without waking the reader, so
// it also polls: every interval while records come, and, while none do,
// twice as far apart each time up to idlePollMax (a record then waits at
// most that, or until the ring is a quarter full). raw is only valid during
// the call.
func ReadRing(rd *ringbuf.Reader, interval time.Duration, done <-chan struct{}, handle func(raw []byte)) {
	var rec ringbuf.Record
	wait, got := interval, false
	rd.SetDeadline(time.Now().Add(wait))
	for {
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			got = true
			handle(rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The reader returns this only once the ring is empty.
			select {
			case <-done:
				return
			default:
			}
			if got {
				wait = interval
			} else {
				wait = min(2*wait, max(interval, idlePollMax))
			}
			got = false
			rd.SetDeadline(time.Now().Add(wait))
		case errors.Is(err, ringbuf.ErrClosed):
			return
		default:
			slog.Warn("ring buffer read failed", "err", err)
			time.Sleep(interval)
		}
	}
}

// Clock converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall-clock Unix ns.
type Clock struct{ offset int64 }

// NewClock measures the monotonic-to-wall offset once.
func NewClock() Clock {
	var ts unix.Timespec
	// The tightest bracket of the two reads over a few tries.
	best := int64(1 << 62)
	var offset int64
	for range 5 {
		w0 := time.Now().UnixNano()
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		w1 := time.Now().UnixNano()
		if w1-w0 < best {
			best = w1 - w0
			offset = (w0+w1)/2 - ts.Nano()
		}
	}
	return Clock{offset: offset}
}

// Wall converts a kernel monotonic timestamp.
func (c Clock) Wall(mono uint64) int64 { return int64(mono) + c.offset }

// CString returns the text of a NUL-terminated C char array.
func CString(b []int8) string { return string(Bytes(b)) }

// Text views the C char array b holding the start of a Go string whose full
// length was n (the kernel cut it at the array's size; n < 0: unreadable).
func Text(b []int8, n int64) []byte {
	if n <= 0 {
		return nil
	}
	return Bytes(b[:min(n, int64(len(b)))])
}

// Bytes views a C char array up to its first NUL as bytes, without copying.
func Bytes(b []int8) []byte {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), n)
}

// MountTracefs mounts tracefs where the tracepoint API looks for it, unless
// it is there already: some hosts boot without it.
func MountTracefs() error {
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(dir + "/events"); err == nil {
		return nil
	}
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted at %s and mounting it failed: %w", dir, err)
	}
	return nil
}

// Record views a ring-buffer record as the C struct T it was submitted as,
// without copying, or returns nil when raw cannot be one: shorter than T
// (another kind's record, or a corrupt one) or not aligned for T. The
// kernel aligns every record to 8 bytes, so a misaligned one was not made
// by it, and reading through a misaligned pointer is undefined in Go.
func Record[T any](raw []byte) *T {
	var zero T
	if len(raw) < int(unsafe.Sizeof(zero)) {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(raw))
	if uintptr(p)%unsafe.Alignof(zero) != 0 {
		return nil
	}
	return (*T)(p)
}

// RecordInto copies raw, a record of T cut after its fixed part (header
// bytes) and as many bytes of its trailing array as it holds, into dst. It
// returns false when raw cannot be one: shorter than header, or longer than
// T.
func RecordInto[T any](dst *T, raw []byte, header uintptr) bool {
	b := unsafe.Slice((*byte)(unsafe.Pointer(dst)), unsafe.Sizeof(*dst))
	if uintptr(len(raw)) < header || len(raw) > len(b) {
		return false
	}
	copy(b, raw)
	return true
}
