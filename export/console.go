package export

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tracewire/tracewire/spans"
)

// barWidth is the width of the waterfall bar in characters.
const barWidth = 40

// consoleSink prints each batch as per-trace waterfalls, for trying the
// agent out without a collector.
type consoleSink struct {
	res ResourceConfig
	mu  sync.Mutex // one batch's output is never interleaved with another's
	w   io.Writer
}

// NewConsoleSink returns a Sink that writes each batch to w as readable,
// deterministic text.
func NewConsoleSink(w io.Writer, res ResourceConfig) Sink {
	return &consoleSink{res: res, w: w}
}

// Upload implements Sink.
func (c *consoleSink) Upload(_ context.Context, batch []*spans.Span) error {
	var buf bytes.Buffer
	for _, t := range groupTraces(batch) {
		c.writeTrace(&buf, t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// groupTraces splits batch by trace id, ordered by each trace's first start
// (then id), and each trace's spans by start time.
func groupTraces(batch []*spans.Span) [][]*spans.Span {
	byID := make(map[[16]byte][]*spans.Span)
	for _, s := range batch {
		byID[s.TraceID] = append(byID[s.TraceID], s)
	}
	traces := make([][]*spans.Span, 0, len(byID))
	for _, t := range byID {
		slices.SortStableFunc(t, func(a, b *spans.Span) int {
			return cmp.Or(cmp.Compare(a.StartNs, b.StartNs), bytes.Compare(a.SpanID[:], b.SpanID[:]))
		})
		traces = append(traces, t)
	}
	slices.SortFunc(traces, func(a, b []*spans.Span) int {
		return cmp.Or(cmp.Compare(a[0].StartNs, b[0].StartNs), bytes.Compare(a[0].TraceID[:], b[0].TraceID[:]))
	})
	return traces
}

// treeOrder lists t depth first: children right under their parent, siblings
// by start time (t is sorted by start). A span whose parent is not in t is a
// root; spans caught in a parent cycle (bad input) are listed as roots too.
func treeOrder(t []*spans.Span) ([]*spans.Span, []int) {
	in := make(map[[8]byte]bool, len(t))
	for _, s := range t {
		in[s.SpanID] = true
	}
	children := make(map[[8]byte][]*spans.Span, len(t))
	var roots []*spans.Span
	for _, s := range t {
		if in[s.ParentID] && s.ParentID != s.SpanID {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	out := make([]*spans.Span, 0, len(t))
	depth := make([]int, 0, len(t))
	seen := make(map[*spans.Span]bool, len(t))
	var walk func(s *spans.Span, d int)
	walk = func(s *spans.Span, d int) {
		if seen[s] {
			return
		}
		seen[s] = true
		out, depth = append(out, s), append(depth, d)
		for _, c := range children[s.SpanID] {
			walk(c, d+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	for _, s := range t {
		walk(s, 0)
	}
	return out, depth
}

func (c *consoleSink) writeTrace(buf *bytes.Buffer, t []*spans.Span) {
	first, last := t[0].StartNs, t[0].EndNs
	for _, s := range t {
		last = max(last, s.EndNs)
	}
	fmt.Fprintf(buf, "trace %s  spans=%d  %s ms\n", hex.EncodeToString(t[0].TraceID[:]), len(t), millis(last-first))

	t, d := treeOrder(t)
	heads := make([]string, len(t))
	var wHead, wName int
	for i, s := range t {
		heads[i] = strings.Repeat("  ", d[i]+1) + serviceName(c.res, s.Process)
		wHead = max(wHead, len(heads[i]))
		wName = max(wName, len(s.Name))
	}
	for i, s := range t {
		line := fmt.Sprintf("%-*s  %-*s  %-8s %10s ms  |%s|  %-5s  %s",
			wHead, heads[i], wName, s.Name, kindName(s.Kind), millis(s.EndNs-s.StartNs),
			bar(s, first, last), statusName(s), keyAttrs(s))
		buf.WriteString(strings.TrimRight(line, " "))
		buf.WriteByte('\n')
	}
}

func millis(ns int64) string {
	return strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64)
}

// bar draws s on a barWidth-wide timeline from first to last; every span
// gets at least one mark so that short ones stay visible.
func bar(s *spans.Span, first, last int64) string {
	total := last - first
	from, to := 0, barWidth
	if total > 0 {
		from = int((s.StartNs - first) * barWidth / total)
		to = int((s.EndNs - first) * barWidth / total)
	}
	from = min(max(from, 0), barWidth-1)
	to = min(max(to, from+1), barWidth)
	return strings.Repeat(" ", from) + strings.Repeat("=", to-from) + strings.Repeat(" ", barWidth-to)
}

func kindName(k spans.Kind) string {
	switch k {
	case spans.KindInternal:
		return "INTERNAL"
	case spans.KindServer:
		return "SERVER"
	case spans.KindClient:
		return "CLIENT"
	default:
		return "-"
	}
}

func statusName(s *spans.Span) string {
	if s.Error {
		return "ERROR"
	}
	return "OK"
}

// keyAttrs picks the attributes that tell spans apart at a glance.
func keyAttrs(s *spans.Span) string {
	get := func(key string) (string, bool) {
		for _, a := range s.Attrs {
			if a.Key == key {
				if a.IsInt {
					return strconv.FormatInt(a.Int, 10), true
				}
				return a.Str, true
			}
		}
		return "", false
	}
	var parts []string
	add := func(label, v string) { parts = append(parts, label+"="+v) }
	if v, ok := get("http.response.status_code"); ok {
		add("status", v)
	}
	if v, ok := get("http.route"); ok {
		add("route", v)
	} else if v, ok := get("url.path"); ok {
		add("path", v)
	}
	if host, ok := get("server.address"); ok {
		if port, ok := get("server.port"); ok {
			host += ":" + port
		}
		add("server", host)
	}
	if v, ok := get("db.system.name"); ok {
		add("db", v)
	}
	if v, ok := get("rpc.method"); ok {
		add("rpc", v)
	}
	if v, ok := get("network.protocol.version"); ok && v == "2" {
		add("http", v) // HTTP/1 is the rule: only HTTP/2 is shown
	}
	if s.Error && s.StatusMsg != "" {
		add("error", strconv.Quote(s.StatusMsg))
	}
	return strings.Join(parts, " ")
}
