package metrics

import (
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

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
	total, failed        *counter[edge]
	serverSec, clientSec *hist[edge]
	mu                   sync.Mutex
	pending              map[edgeKey]half  // by value: a pending call allocates nothing
	peers                map[string]string // server.address values, copied once
	stop                 chan struct{}
	stopped              sync.WaitGroup
}

// newGraph records the service graph in a.
func newGraph(a *agg) *graph {
	return &graph{
		pending: map[edgeKey]half{}, peers: map[string]string{},
		total: newCounter[edge](a, desc{"traces_service_graph_request_total", "{request}",
			"Calls between two services, by client and server."}),
		failed: newCounter[edge](a, desc{"traces_service_graph_request_failed_total", "{request}",
			"Calls between two services where either side failed."}),
		serverSec: newHist[edge](a, desc{"traces_service_graph_request_server_seconds", "s",
			"Duration of calls between two services, as the server saw them."}, graphBuckets),
		clientSec: newHist[edge](a, desc{"traces_service_graph_request_client_seconds", "s",
			"Duration of calls between two services, as the client saw them."}, graphBuckets),
	}
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
	g.total.add(e, e.fresh, 1)
	if failed {
		g.failed.add(e, e.fresh, 1)
	}
	g.serverSec.record(e, e.fresh, serverSec)
	g.clientSec.record(e, e.fresh, clientSec)
}

// fresh is e to keep (its server may point into the span), with its
// attributes (fresh[edge]).
func (e edge) fresh() (edge, attribute.Set) {
	e.server = strings.Clone(e.server)
	kvs := []attribute.KeyValue{attribute.String("client", e.client), attribute.String("server", e.server)}
	if e.connType != "" {
		kvs = append(kvs, attribute.String("connection_type", e.connType))
	}
	return e, attribute.NewSet(kvs...)
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
