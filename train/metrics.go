package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"zhllama/internal/atomicfile"
)

// metricsLog is output_dir/metrics.jsonl: a JSON object per logging or
// evaluation event, appended and flushed as they come.
type metricsLog struct {
	path string
	f    *os.File
	recs []map[string]any
}

// openMetrics opens the log, dropping records past step (a resumed run
// writes them again).
func openMetrics(dir string, step int) (*metricsLog, error) {
	m := &metricsLog{path: filepath.Join(dir, "metrics.jsonl")}
	if f, err := os.Open(m.path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r map[string]any
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				if s, ok := r["step"].(float64); ok && int(s) <= step {
					m.recs = append(m.recs, r)
				}
			}
		}
		f.Close()
	}
	var b strings.Builder
	for _, r := range m.recs {
		line, _ := json.Marshal(r)
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := atomicfile.WriteFile(m.path, []byte(b.String())); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(m.path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	m.f = f
	return m, nil
}

// Write appends a record; NaN and infinite values are written as null.
func (m *metricsLog) Write(rec map[string]any) error {
	for k, v := range rec {
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			rec[k] = nil
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// Round-trip so that the in-memory copy holds what the file holds.
	var back map[string]any
	json.Unmarshal(b, &back)
	m.recs = append(m.recs, back)
	_, err = m.f.Write(append(b, '\n'))
	return err
}

func (m *metricsLog) Close() error { return m.f.Close() }

// curves are the charts Plot draws besides the loss, when the run logs
// their keys: file name suffix and series.
var curves = []struct {
	file string
	keys []string
}{
	{"reward", []string{"reward"}},
	{"kl", []string{"objective/kl"}},
	{"accuracy", []string{"rewards/accuracies", "eval_rewards/accuracies", "eval_accuracy"}},
}

// Plot draws, in dir, the training loss (and the validation loss, if any)
// against the step as training_loss.svg, and the reward, KL and accuracy
// curves of the runs that log them (training_reward.svg, ...).
func (m *metricsLog) Plot(dir string) error {
	all := append([]struct {
		file string
		keys []string
	}{{"loss", []string{"loss", "eval_loss"}}}, curves...)
	for _, c := range all {
		series := map[string][][2]float64{}
		for _, r := range m.recs {
			s, _ := r["step"].(float64)
			for _, k := range c.keys {
				if v, ok := r[k].(float64); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					series[k] = append(series[k], [2]float64{s, v})
				}
			}
		}
		if len(series) == 0 && c.file != "loss" {
			continue
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, "training_"+c.file+".svg"), []byte(lineChart(c.file, series, c.keys))); err != nil {
			return err
		}
	}
	return nil
}

// lineChart renders series (x, y points) as polylines in a small SVG with
// axes, ticks and a legend.
func lineChart(title string, series map[string][][2]float64, order []string) string {
	const w, h, left, right, top, bottom = 640.0, 400.0, 60.0, 20.0, 30.0, 40.0
	x0, x1, y0, y1 := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, pts := range series {
		for _, p := range pts {
			x0, x1, y0, y1 = math.Min(x0, p[0]), math.Max(x1, p[0]), math.Min(y0, p[1]), math.Max(y1, p[1])
		}
	}
	if math.IsInf(x0, 0) {
		x0, x1, y0, y1 = 0, 1, 0, 1
	}
	if x1 == x0 {
		x1 = x0 + 1
	}
	if y1 == y0 {
		y1 = y0 + 1
	}
	px := func(x float64) float64 { return left + (x-x0)/(x1-x0)*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - (y-y0)/(y1-y0)*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%g" y="18" font-size="14">%s</text>`+"\n", left, title)
	fmt.Fprintf(&b, `<path d="M%g %g V%g H%g" fill="none" stroke="black"/>`+"\n", left, top, h-bottom, w-right)
	for i := 0; i <= 4; i++ {
		y := y0 + (y1-y0)*float64(i)/4
		x := x0 + (x1-x0)*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.3g</text>`+"\n", left-4, py(y)+4, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", px(x), h-bottom+16, x)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">step</text>`+"\n", (left+w-right)/2, h-6)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"}
	for i, name := range order {
		pts := series[name]
		if len(pts) == 0 {
			continue
		}
		var d strings.Builder
		for j, p := range pts {
			if j == 0 {
				fmt.Fprintf(&d, "M%.1f %.1f", px(p[0]), py(p[1]))
			} else {
				fmt.Fprintf(&d, " L%.1f %.1f", px(p[0]), py(p[1]))
			}
		}
		c := colors[i%len(colors)]
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", d.String(), c)
		fmt.Fprintf(&b, `<text x="%g" y="%g" fill="%s">%s</text>`+"\n", w-right-100, top+16*float64(i+1), c, name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
