package export

import (
	"strings"
	"testing"
	"time"
)

func TestOptionsFromEnvDefaults(t *testing.T) {
	for _, k := range []string{"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_EXPORT_TIMEOUT"} {
		t.Setenv(k, "")
	}
	o, err := OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{ScheduleDelay: 5 * time.Second, MaxQueueSize: 16384, MaxExportBatchSize: 512, ExportTimeout: 30 * time.Second}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
}

func TestOptionsFromEnvSet(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
	t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", " 100 ")
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000")
	t.Setenv("OTEL_BSP_EXPORT_TIMEOUT", "1500")
	o, err := OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	// The batch size is capped to the queue size.
	want := Options{ScheduleDelay: 250 * time.Millisecond, MaxQueueSize: 100, MaxExportBatchSize: 100, ExportTimeout: 1500 * time.Millisecond}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
}

func TestOptionsFromEnvErrors(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"OTEL_BSP_SCHEDULE_DELAY", "5s"},
		{"OTEL_BSP_MAX_QUEUE_SIZE", "-1"},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"},
		{"OTEL_BSP_EXPORT_TIMEOUT", "1e3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := OptionsFromEnv()
			if err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("%s=%q: got error %v, want one naming the variable", tc.name, tc.value, err)
			}
		})
	}
}
