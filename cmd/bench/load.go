package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadSpec is one load run: workers send warmURL during the warm-up, then
// measureURL for the window. Distinct URLs let the span count include
// exactly the measured requests.
type loadSpec struct {
	warmURL, measureURL string
	workers             int
	warmup, window      time.Duration
	// rate > 0 paces all workers together to rate requests/s (open loop
	// while the workers keep up); 0 is a closed loop.
	rate float64
}

// loadResult summarises the measured window.
type loadResult struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
}

// runLoad drives the load; onStart and onEnd run at the window's edges so
// the caller can sample the agent exactly over the window.
func runLoad(ctx context.Context, s loadSpec, onStart, onEnd func()) (loadResult, error) {
	begin := time.Now()
	start := begin.Add(s.warmup)
	end := start.Add(s.window)
	// Room for 60 000 requests/s over the window, so that recording does not
	// reallocate; a faster run only pays for append growth.
	capHint := int(s.window.Seconds()*60000)/s.workers + 1024
	var ticket atomic.Int64
	lat := make([][]time.Duration, s.workers)
	errs := make([]int, s.workers)
	var wg sync.WaitGroup
	for w := range s.workers {
		lat[w] = make([]time.Duration, 0, capHint)
		wg.Go(func() {
			// One keep-alive connection per worker.
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				if s.rate > 0 {
					due := begin.Add(time.Duration(float64(ticket.Add(1)-1) / s.rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				now := time.Now()
				if !now.Before(end) {
					return
				}
				measured := !now.Before(start)
				u := s.warmURL
				if measured {
					u = s.measureURL
				}
				ok := get(client, u)
				d := time.Since(now)
				switch {
				case !measured:
				case ok:
					lat[w] = append(lat[w], d)
				default:
					errs[w]++
				}
			}
		})
	}
	sleepUntil(ctx, start)
	onStart()
	sleepUntil(ctx, end)
	onEnd()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return loadResult{}, fmt.Errorf("load interrupted: %w", err)
	}
	return summarise(slices.Concat(lat...), errs, s.window), nil
}

// oneOffClient sends the requests outside measured windows.
var oneOffClient = &http.Client{Timeout: 5 * time.Second}

func get(c *http.Client, u string) bool {
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

func summarise(all []time.Duration, errs []int, window time.Duration) loadResult {
	r := loadResult{Requests: len(all), Seconds: window.Seconds()}
	for _, e := range errs {
		r.Errors += e
	}
	r.RPS = float64(r.Requests) / r.Seconds
	if len(all) == 0 {
		return r
	}
	slices.Sort(all)
	pct := func(p int) float64 { return float64(all[(len(all)-1)*p/100]) / 1e3 }
	r.P50us, r.P99us = pct(50), pct(99)
	return r
}
