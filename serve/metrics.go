package serve

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are llama.cpp's server metrics under zhllama_ names, plus
// requests by endpoint and status and their latency.
type metrics struct {
	processing, deferred, decodes atomic.Int64

	mu                        sync.Mutex
	promptTokens, predicted   int64
	promptSecs, predictedSecs float64
	requests                  map[[2]string]int64 // endpoint, status
	latency                   []int64             // per bucket, cumulative at write time
	latencySum                float64
	latencyCount              int64
	lastPromptTPS, lastGenTPS float64
}

var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]int64{}, latency: make([]int64, len(latencyBuckets))}
}

func (m *metrics) finished(prompt, predicted int, pt, gt time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.promptTokens += int64(prompt)
	m.predicted += int64(predicted)
	m.promptSecs += pt.Seconds()
	m.predictedSecs += gt.Seconds()
	if pt > 0 {
		m.lastPromptTPS = float64(prompt) / pt.Seconds()
	}
	if gt > 0 {
		m.lastGenTPS = float64(predicted) / gt.Seconds()
	}
}

func (m *metrics) request(endpoint string, status int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[2]string{endpoint, fmt.Sprint(status)}]++
	s := d.Seconds()
	for i, b := range latencyBuckets {
		if s <= b {
			m.latency[i]++
		}
	}
	m.latencySum += s
	m.latencyCount++
}

// write prints the metrics in Prometheus' text format.
func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	one := func(name, typ, help string, v any) {
		fmt.Fprintf(w, "# HELP zhllama_%s %s\n# TYPE zhllama_%s %s\nzhllama_%s %v\n", name, help, name, typ, name, v)
	}
	one("prompt_tokens_total", "counter", "Prompt tokens processed.", m.promptTokens)
	one("prompt_seconds_total", "counter", "Prompt processing time.", m.promptSecs)
	one("tokens_predicted_total", "counter", "Generated tokens.", m.predicted)
	one("tokens_predicted_seconds_total", "counter", "Generation time.", m.predictedSecs)
	one("n_decode_total", "counter", "Model steps (batched forward passes).", m.decodes.Load())
	one("prompt_tokens_seconds", "gauge", "Prompt tokens per second of the last finished request.", m.lastPromptTPS)
	one("predicted_tokens_seconds", "gauge", "Generated tokens per second of the last finished request.", m.lastGenTPS)
	one("requests_processing", "gauge", "Requests holding a slot.", m.processing.Load())
	one("requests_deferred", "gauge", "Requests queued for a slot.", m.deferred.Load())
	fmt.Fprintf(w, "# HELP zhllama_requests_total HTTP requests by endpoint and status.\n# TYPE zhllama_requests_total counter\n")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(w, "zhllama_requests_total{endpoint=%q,status=%q} %d\n", k[0], k[1], m.requests[k])
	}
	fmt.Fprintf(w, "# HELP zhllama_request_duration_seconds Time from request to last byte.\n# TYPE zhllama_request_duration_seconds histogram\n")
	for i, b := range latencyBuckets {
		fmt.Fprintf(w, "zhllama_request_duration_seconds_bucket{le=\"%g\"} %d\n", b, m.latency[i])
	}
	fmt.Fprintf(w, "zhllama_request_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.latencyCount)
	fmt.Fprintf(w, "zhllama_request_duration_seconds_sum %g\nzhllama_request_duration_seconds_count %d\n", m.latencySum, m.latencyCount)
}
