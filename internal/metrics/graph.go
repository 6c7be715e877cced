package metrics

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tracewire/tracewire/spans"
)

// The service graph follows Tempo's metrics-generator: the same metric names
// and labels, so that Grafana's service graph reads them as they are.
const (
	// pairWait is how long a span waits for the other side of its call.
	// Both sides are on this node and decoded within the ring-buffer poll
	// period (100 ms), so a few seconds is ample.
	pairWait = 3 * time.Second
	// maxPending bounds the spans waiting for their pair (Tempo's default
	// max_items); a span beyond it is not counted.
	maxPending = 10_000
	// userNode is the client of a call that came from outside any trace.
	userNode = "user"
)

// graphBuckets are Tempo's default service-graph buckets, in s.
var graphBuckets = []float64{0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8}

// edgeKey names one call: the client span, as its server span's parent.
type edgeKey struct {
	trace [16]byte
	span  [8]byte
}

// half is the side of a call seen first; the service names are those of the
// targets, which outlive the span.
type half struct {
	client, server string  // the side not seen yet is ""
	peer           string  // the client's server.address, for a virtual server
	clientSec      float64 // the client span's duration
	serverSec      float64
	failed         bool
	deadline       time.Time
}

// edge is one call's labels.
type edge struct{ client, server, connType string }

// graph pairs each CLIENT span with the SERVER span it caused and records
// the call in the service-graph metrics.
type graph struct {
	total, failed        metric.Int64Counter
	serverSec, clientSec metric.Float64Histogram
	mu                   sync.Mutex
	pending              map[edgeKey]half // by value: a pending call allocates nothing
	opts                 map[edge][]metric.AddOption
	recOpts              map[edge][]metric.RecordOption
	peers                map[string]string // server.address values, copied once
	stop                 chan struct{}
	stopped              sync.WaitGroup
}

func newGraph(m metric.Meter) (*graph, error) {
	g := &graph{pending: map[edgeKey]half{}, opts: map[edge][]metric.AddOption{}, recOpts: map[edge][]metric.RecordOption{}, peers: map[string]string{}}
	var errs [4]error
	g.total, errs[0] = m.Int64Counter("traces_service_graph_request_total", metric.WithUnit("{request}"),
		metric.WithDescription("Calls between two services, by client and server."))
	g.failed, errs[1] = m.Int64Counter("traces_service_graph_request_failed_total", metric.WithUnit("{request}"),
		metric.WithDescription("Calls between two services where either side failed."))
	g.serverSec, errs[2] = m.Float64Histogram("traces_service_graph_request_server_seconds", metric.WithUnit("s"),
		metric.WithDescription("Duration of calls between two services, as the server saw them."),
		metric.WithExplicitBucketBoundaries(graphBuckets...))
	g.clientSec, errs[3] = m.Float64Histogram("traces_service_graph_request_client_seconds", metric.WithUnit("s"),
		metric.WithDescription("Duration of calls between two services, as the client saw them."),
		metric.WithExplicitBucketBoundaries(graphBuckets...))
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return g, nil
}

// run expires unpaired spans every second until close: without it the last
// calls before a quiet spell would wait for the next span.
func (g *graph) run(now func() time.Time) {
	g.stop = make(chan struct{})
	g.stopped.Add(1)
	go func() {
		defer g.stopped.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				g.expire(now())
			case <-g.stop:
				return
			}
		}
	}()
}

func (g *graph) close() {
	if g.stop != nil {
		close(g.stop)
		g.stopped.Wait()
	}
}

// observe takes s, a span of service svc described by inst. It sees spans
// after the pipeline joined them, so a gRPC server span whose call carried
// no traceparent has its client span as parent when both are traced here.
func (g *graph) observe(s *spans.Span, svc string, inst instrument, now time.Time) {
	secs := max(0, float64(s.EndNs-s.StartNs)/1e9)
	switch inst {
	case dbClient:
		// Tempo's database edge: no server span will come.
		g.record(edge{svc, orDefault(attr(s, "server.address"), attr(s, "db.system.name")), "database"}, secs, secs, s.Error)
	case httpServer, rpcServer:
		if s.ParentID == ([8]byte{}) {
			// A call from outside any trace (a browser, curl): Tempo's
			// "user" client, without a client duration.
			g.record(edge{userNode, svc, "virtual_node"}, secs, 0, s.Error)
			return
		}
		g.pair(edgeKey{s.TraceID, s.ParentID}, now, half{server: svc, serverSec: secs, failed: s.Error})
	case httpClient, rpcClient:
		g.pair(edgeKey{s.TraceID, s.SpanID}, now, half{client: svc, clientSec: secs, failed: s.Error,
			peer: attr(s, "server.address")})
	}
}

// intern returns a copy of peer that outlives its span, made once per value
// (up to the cardinality limit). g.mu is held.
func (g *graph) intern(peer string) string {
	if p, ok := g.peers[peer]; ok {
		return p
	}
	p := strings.Clone(peer)
	if len(g.peers) < CardinalityLimit {
		g.peers[p] = p
	}
	return p
}

// pair merges side, one side of the call k (its peer may point into the
// span), into the call's pending half, and records the call once both sides
// are there.
func (g *graph) pair(k edgeKey, now time.Time, side half) {
	g.mu.Lock()
	h, ok := g.pending[k]
	if !ok {
		if len(g.pending) >= maxPending {
			g.mu.Unlock()
			return
		}
		h.deadline = now.Add(pairWait)
	}
	if side.client != "" {
		h.client, h.clientSec, h.peer = side.client, side.clientSec, g.intern(side.peer)
	} else {
		h.server, h.serverSec = side.server, side.serverSec
	}
	h.failed = h.failed || side.failed
	done := h.client != "" && h.server != ""
	if done {
		delete(g.pending, k)
	} else {
		g.pending[k] = h
	}
	g.mu.Unlock()
	if done {
		g.record(edge{h.client, h.server, ""}, h.serverSec, h.clientSec, h.failed)
	}
}

// expire ends the halves past their deadline: a client whose server is not
// traced here is a call to a virtual server named by its server.address (no
// port: Tempo names a database the same way; its default peer attributes,
// peer.service and db.*, are never on these spans); a
// server whose client is not traced here is not counted (as in Tempo, only
// a root span has a virtual client).
func (g *graph) expire(now time.Time) {
	var virtual []half
	g.mu.Lock()
	for k, h := range g.pending {
		if now.Before(h.deadline) {
			continue
		}
		delete(g.pending, k)
		if h.client != "" && h.peer != "" {
			virtual = append(virtual, h)
		}
	}
	g.mu.Unlock()
	for _, h := range virtual {
		g.record(edge{h.client, h.peer, "virtual_node"}, 0, h.clientSec, h.failed)
	}
}

// record counts one call of e. As in Tempo, both histograms get every call,
// 0 s for the side that was not traced.
func (g *graph) record(e edge, serverSec, clientSec float64, failed bool) {
	add, rec := g.options(e)
	ctx := context.Background()
	g.total.Add(ctx, 1, add...)
	if failed {
		g.failed.Add(ctx, 1, add...)
	}
	g.serverSec.Record(ctx, serverSec, rec...)
	g.clientSec.Record(ctx, clientSec, rec...)
}

// options returns e's attribute options, made once per distinct edge (up to
// the cardinality limit, past which the SDK folds them anyway).
func (g *graph) options(e edge) ([]metric.AddOption, []metric.RecordOption) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if o, ok := g.opts[e]; ok {
		return o, g.recOpts[e]
	}
	kvs := []attribute.KeyValue{attribute.String("client", e.client), attribute.String("server", e.server)}
	if e.connType != "" {
		kvs = append(kvs, attribute.String("connection_type", e.connType))
	}
	set := metric.WithAttributeSet(attribute.NewSet(kvs...))
	add, rec := []metric.AddOption{set}, []metric.RecordOption{set}
	if len(g.opts) < CardinalityLimit {
		e.server = strings.Clone(e.server) // may point into the span
		g.opts[e], g.recOpts[e] = add, rec
	}
	return add, rec
}

// attr is s's string attribute key, "" when absent.
func attr(s *spans.Span, key string) string {
	for i := range s.Attrs {
		if s.Attrs[i].Key == key {
			return s.Attrs[i].Str
		}
	}
	return ""
}
