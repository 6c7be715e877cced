package metrics

import (
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tracewire/tracewire/spans"
)

// instrument indexes the request-duration histograms.
type instrument int8

const (
	httpServer instrument = iota
	httpClient
	rpcServer
	rpcClient
	dbClient
	numInstruments
	none instrument = -1
)

// shape is a histogram and the span attributes that become its metric
// attributes: str[i] names key.str[i], code names key.code, port key.port.
type shape struct {
	name, desc string
	str        [4]string
	code, port string
}

var shapes = [numInstruments]shape{
	httpServer: {
		name: "http.server.request.duration", desc: "Duration of HTTP server requests.",
		str:  [4]string{"http.request.method", "http.route", "url.scheme", "network.protocol.version"},
		code: "http.response.status_code",
	},
	httpClient: {
		name: "http.client.request.duration", desc: "Duration of HTTP client requests.",
		str:  [4]string{"http.request.method", "server.address"},
		code: "http.response.status_code", port: "server.port",
	},
	rpcServer: {
		name: "rpc.server.duration", desc: "Duration of inbound RPCs.",
		str:  [4]string{"rpc.system", "rpc.service", "rpc.method"},
		code: "rpc.grpc.status_code",
	},
	rpcClient: {
		name: "rpc.client.duration", desc: "Duration of outbound RPCs.",
		str:  [4]string{"rpc.system", "rpc.service", "rpc.method"},
		code: "rpc.grpc.status_code",
	},
	dbClient: {
		name: "db.client.operation.duration", desc: "Duration of database client operations.",
		str: [4]string{"db.system.name", "db.operation.name", "db.collection.name", "server.address"},
	},
}

// key is the metric attributes of one span, comparable so that the
// attribute set built from it is made once per distinct value. Its strings
// may point into the span until the key is stored (see key.clone).
type key struct {
	inst    instrument
	str     [4]string
	code    int64
	hasCode bool
	port    int64
	errType string
}

// keyOf picks the span's metric attributes; none for a span no histogram
// describes. It allocates nothing. Only low-cardinality attributes are read:
// never url.path, url.full or the query text.
func keyOf(s *spans.Span) key {
	k := key{inst: none}
	var (
		method, route, scheme, proto, addr string
		rpcSystem, service, rpcMethod      string
		dbSystem, op, coll, errType        string
		status, port, grpcCode             int64
		hasStatus, hasGRPC                 bool
	)
	for i := range s.Attrs {
		a := &s.Attrs[i]
		switch a.Key {
		case "http.request.method":
			method = a.Str
		case "http.route":
			route = a.Str
		case "url.scheme":
			scheme = a.Str
		case "network.protocol.version":
			proto = a.Str
		case "server.address":
			addr = a.Str
		case "server.port":
			port = a.Int
		case "http.response.status_code":
			status, hasStatus = a.Int, true
		case "rpc.system":
			rpcSystem = a.Str
		case "rpc.service":
			service = a.Str
		case "rpc.method":
			rpcMethod = a.Str
		case "rpc.grpc.status_code":
			grpcCode, hasGRPC = a.Int, true
		case "db.system.name":
			dbSystem = a.Str
		case "db.operation.name":
			op = a.Str
		case "db.collection.name":
			coll = a.Str
		case "error.type":
			errType = a.Str
		}
	}
	server := s.Kind == spans.KindServer
	switch {
	case rpcSystem != "":
		k.inst = rpcClient
		if server {
			k.inst = rpcServer
		}
		k.str = [4]string{rpcSystem, service, rpcMethod}
		k.code, k.hasCode = grpcCode, hasGRPC
	case dbSystem != "":
		k.inst = dbClient
		k.str = [4]string{dbSystem, op, coll, addr}
		if s.Error {
			k.errType = orOther(errType)
		}
	case method != "" && server:
		k.inst = httpServer
		k.str = [4]string{method, route, scheme, proto}
		k.code, k.hasCode = status, hasStatus
		if status >= 500 {
			k.errType = statusText(status)
		}
	case method != "":
		k.inst = httpClient
		k.str = [4]string{method, addr}
		k.code, k.hasCode, k.port = status, hasStatus, port
		switch {
		case status >= 400:
			k.errType = statusText(status)
		case s.Error:
			// No response at all (refused, reset, timeout): the probe
			// cannot tell which.
			k.errType = orOther(errType)
		}
	}
	return k
}

// statusText is the error.type of an HTTP error status, without
// allocating for the common ones.
func statusText(code int64) string {
	switch code {
	case 400:
		return "400"
	case 404:
		return "404"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.FormatInt(code, 10)
}

func orOther(s string) string {
	if s == "" {
		return "_OTHER"
	}
	return s
}

// clone copies the key's strings out of the span that they may point into
// (spans are recycled), so that the key can be stored.
// fresh is k to keep, with its attributes (fresh[key]).
func (k key) fresh() (key, attribute.Set) {
	k = k.clone()
	return k, k.set()
}

func (k key) clone() key {
	for i := range k.str {
		k.str[i] = strings.Clone(k.str[i])
	}
	k.errType = strings.Clone(k.errType)
	return k
}

// set returns the key's metric attributes; empty ones are left out.
func (k key) set() attribute.Set {
	sh := &shapes[k.inst]
	kvs := make([]attribute.KeyValue, 0, 8)
	for i, name := range sh.str {
		if name != "" && k.str[i] != "" {
			kvs = append(kvs, attribute.String(name, k.str[i]))
		}
	}
	if sh.code != "" && k.hasCode {
		kvs = append(kvs, attribute.Int64(sh.code, k.code))
	}
	if sh.port != "" && k.port != 0 {
		kvs = append(kvs, attribute.Int64(sh.port, k.port))
	}
	if k.errType != "" {
		kvs = append(kvs, attribute.String("error.type", k.errType))
	}
	return attribute.NewSet(kvs...)
}
