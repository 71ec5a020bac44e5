package serve

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// 200 requests from 16 clients at once, streamed and not, some cancelled
// mid-stream, some malformed: every valid one is answered in full, the
// malformed ones with 400, and afterwards the goroutines and the heap are
// back where they were.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	s, hs := testServer(t, func(o *Options) { o.Engine.Parallel = 4; o.Engine.Queue = 256 })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	round := func(n, clients int) (ok, bad, cancelled int64) {
		var wg sync.WaitGroup
		var next atomic.Int64
		var okN, badN, cancelN atomic.Int64
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					switch kind := i % 10; {
					case kind == 3: // malformed
						body := []string{`{"messages": [`, `{"messages": [], "stream": true}`, `{"prompt": "x", "temperature": -1}`}[i%3]
						path := []string{"/v1/chat/completions", "/v1/chat/completions", "/v1/completions"}[i%3]
						resp, err := client.Post(hs.URL+path, "application/json", strings.NewReader(body))
						if err != nil {
							t.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 400 {
							t.Errorf("request %d (malformed): %d", i, resp.StatusCode)
						}
						badN.Add(1)
					case kind == 7: // cancelled after the first bytes
						ctx, cancel := context.WithCancel(context.Background())
						req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/chat/completions",
							strings.NewReader(fmt.Sprintf(`{"messages":[{"role":"user","content":"讲个故事 %d"}],"stream":true,"max_tokens":200,"seed":%d}`, i, i)))
						resp, err := client.Do(req)
						if err == nil {
							buf := make([]byte, 32)
							resp.Body.Read(buf)
							cancel()
							resp.Body.Close()
						}
						cancel()
						cancelN.Add(1)
					default:
						stream := i%2 == 0
						// Mostly greedy: sampling sorts the vocabulary for every token.
						temp := 0.0
						if i%5 == 0 {
							temp = 0.8
						}
						body := fmt.Sprintf(`{"messages":[{"role":"user","content":"问题 %d"}],"max_tokens":%d,"stream":%v,"seed":%d,"temperature":%v}`, i, 4+i%24, stream, i, temp)
						resp, err := client.Post(hs.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
						if err != nil {
							t.Error(err)
							return
						}
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 || stream && !strings.HasSuffix(string(b), "data: [DONE]\n\n") || !stream && !strings.Contains(string(b), `"finish_reason"`) {
							t.Errorf("request %d: %d %.200s", i, resp.StatusCode, b)
						}
						okN.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return okN.Load(), badN.Load(), cancelN.Load()
	}
	settle := func() (int, uint64) {
		client.CloseIdleConnections()
		deadline := time.Now().Add(5 * time.Second)
		for s.e.stats.processing.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}
	round(40, 16) // warm up: the slots' caches grow to what they hold
	g0, h0 := settle()
	start := time.Now()
	ok, bad, cancelled := round(200, 16)
	elapsed := time.Since(start)
	g1, h1 := settle()
	t.Logf("%d answered, %d malformed, %d cancelled in %v; goroutines %d → %d, heap %.1f → %.1f MB",
		ok, bad, cancelled, elapsed.Round(time.Millisecond), g0, g1, float64(h0)/1e6, float64(h1)/1e6)
	if ok+bad+cancelled != 200 {
		t.Errorf("%d requests done of 200", ok+bad+cancelled)
	}
	if s.e.stats.processing.Load() != 0 || s.e.stats.deferred.Load() != 0 {
		t.Errorf("after the load: %d processing, %d deferred", s.e.stats.processing.Load(), s.e.stats.deferred.Load())
	}
	if g1 > g0+4 {
		t.Errorf("goroutines %d → %d", g0, g1)
	}
	if h1 > h0+h0/2+8<<20 {
		t.Errorf("heap %d → %d bytes", h0, h1)
	}
}
