package export

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tracewire/tracewire/spans"
)

// fixedNow stands in for time.Now where a test does not care about it.
var fixedNow = time.Unix(1_700_000_000, 0)

var (
	procA = &spans.Process{PID: 101, ExeName: "frontend", ServiceName: "frontend", RuntimeName: "go", RuntimeVersion: "go1.22.12"}
	procB = &spans.Process{PID: 202, ExeName: "cart", ServiceName: "cart", RuntimeName: "go", RuntimeVersion: "go1.23.4"}
)

// testSpan returns a span whose span id encodes i, so tests can tell spans apart.
func testSpan(p *spans.Process, i int) *spans.Span {
	s := &spans.Span{
		Process: p,
		Scope:   "test/scope",
		TraceID: [16]byte{0xaa, byte(i >> 8), byte(i)},
		Name:    "span",
		Kind:    spans.KindServer,
		StartNs: 1_700_000_000_000_000_000 + int64(i),
		EndNs:   1_700_000_000_000_001_000 + int64(i),
	}
	s.SpanID = spanID(i)
	return s
}

func spanID(i int) [8]byte {
	return [8]byte{1, 0, 0, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func idOf(s *spans.Span) int { return idFromBytes(s.SpanID[:]) }

func idFromBytes(id []byte) int {
	return int(id[4])<<24 | int(id[5])<<16 | int(id[6])<<8 | int(id[7])
}

// logBuffer collects log output; read it only once the writer is done.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count returns how many log lines contain all of subs.
func (l *logBuffer) count(subs ...string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

func newTestLogger() (*slog.Logger, *logBuffer) {
	var lb logBuffer
	return slog.New(slog.NewTextHandler(&lb, &slog.HandlerOptions{Level: slog.LevelDebug})), &lb
}
