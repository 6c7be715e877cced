package export

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Options tune the Batcher; the defaults are the OpenTelemetry batch span
// processor's but for the queue, sized for a node agent.
type Options struct {
	ScheduleDelay      time.Duration // longest wait before queued spans are exported
	MaxQueueSize       int           // spans held at most; more are dropped
	MaxExportBatchSize int           // spans per upload at most
	ExportTimeout      time.Duration // per upload attempt
}

// defaultOptions are the OTEL_BSP_* defaults, but for MaxQueueSize: an SDK's
// 2048 spans is one process's; a node agent queues every target's, and
// 2048 is a tenth of a second at the rate one small VM serves (20 000
// spans/s). 16384 spans is under a second of that, several seconds of a
// moderate node, and at most ~22 MiB (a queued span with its attributes
// and strings is ~1.4 KiB).
var defaultOptions = Options{
	ScheduleDelay:      5 * time.Second,
	MaxQueueSize:       16384,
	MaxExportBatchSize: 512,
	ExportTimeout:      30 * time.Second,
}

// OptionsFromEnv reads the OTEL_BSP_* variables; unset ones keep the
// defaults (5000 ms, 16384, 512, 30000 ms).
func OptionsFromEnv() (Options, error) {
	o := defaultOptions
	for _, v := range []struct {
		name string
		set  func(int)
	}{
		{"OTEL_BSP_SCHEDULE_DELAY", func(n int) { o.ScheduleDelay = time.Duration(n) * time.Millisecond }},
		{"OTEL_BSP_MAX_QUEUE_SIZE", func(n int) { o.MaxQueueSize = n }},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", func(n int) { o.MaxExportBatchSize = n }},
		{"OTEL_BSP_EXPORT_TIMEOUT", func(n int) { o.ExportTimeout = time.Duration(n) * time.Millisecond }},
	} {
		s, ok := os.LookupEnv(v.name)
		if !ok || strings.TrimSpace(s) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return Options{}, fmt.Errorf("%s=%q: want a positive integer", v.name, s)
		}
		v.set(n)
	}
	return o.normalized(), nil
}

// normalized fills unset fields from defaultOptions and caps the batch size
// to the queue size, as a batch can never hold more than the queue.
func (o Options) normalized() Options {
	if o.ScheduleDelay <= 0 {
		o.ScheduleDelay = defaultOptions.ScheduleDelay
	}
	if o.MaxQueueSize <= 0 {
		o.MaxQueueSize = defaultOptions.MaxQueueSize
	}
	if o.MaxExportBatchSize <= 0 {
		o.MaxExportBatchSize = defaultOptions.MaxExportBatchSize
	}
	if o.ExportTimeout <= 0 {
		o.ExportTimeout = defaultOptions.ExportTimeout
	}
	o.MaxExportBatchSize = min(o.MaxExportBatchSize, o.MaxQueueSize)
	return o
}
