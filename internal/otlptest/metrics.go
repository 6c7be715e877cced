package otlptest

import (
	"net/http"

	collectormetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// GotMetric is one received metric with its resource.
type GotMetric struct {
	Resource map[string]any
	Metric   *metricspb.Metric
}

// handleMetrics accepts POST /v1/metrics, as a collector does, and records
// the metrics; faults apply to traces only.
func (r *Receiver) handleMetrics(w http.ResponseWriter, req *http.Request) {
	raw, err := readBody(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg collectormetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		http.Error(w, "decode: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.metrics = AppendMetrics(r.metrics, &msg)
	r.mu.Unlock()
	resp, err := proto.Marshal(&collectormetricspb.ExportMetricsServiceResponse{})
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// Metrics returns every metric received so far, in order.
func (r *Receiver) Metrics() []GotMetric {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]GotMetric(nil), r.metrics...)
}

// AppendMetrics appends every metric of msg, with its resource, to out.
func AppendMetrics(out []GotMetric, msg *collectormetricspb.ExportMetricsServiceRequest) []GotMetric {
	for _, rm := range msg.GetResourceMetrics() {
		res := Attrs(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				out = append(out, GotMetric{Resource: res, Metric: m})
			}
		}
	}
	return out
}
