package rlhf

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/llama/torchref"
)

// The PyTorch reference's rlhf mode recomputes TRL 0.9.6's and
// LLaMA-Factory's arithmetic with autograd in float64, on TRL's padded
// [B, T] layouts; these tests compare every output and gradient of the Go
// functions with it on random inputs.

// runTorch runs the reference on cases and returns one result per case.
func runTorch(t *testing.T, cases []map[string]any) []map[string]any {
	t.Helper()
	testenv.RequireTorch(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
	b, err := json.Marshal(map[string]any{"cases": cases})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, in, b)
	if _, err := torchref.Run(dir, "rlhf", in, out); err != nil {
		t.Fatal(err)
	}
	var res struct{ Results []map[string]any }
	testenv.ReadJSON(t, out, &res)
	if len(res.Results) != len(cases) {
		t.Fatalf("%d results for %d cases", len(res.Results), len(cases))
	}
	return res.Results
}

// num reads a reference number: a JSON number, or "inf", "-inf", "nan".
func num(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case bool:
		if x {
			return 1
		}
		return 0
	case string:
		switch x {
		case "inf":
			return math.Inf(1)
		case "-inf":
			return math.Inf(-1)
		case "nan":
			return math.NaN()
		}
	}
	panic(fmt.Sprintf("not a number: %v", v))
}

func vec(v any) []float64 {
	l := v.([]any)
	out := make([]float64, len(l))
	for i, x := range l {
		out[i] = num(x)
	}
	return out
}

func mat(v any) [][]float64 {
	l := v.([]any)
	out := make([][]float64, len(l))
	for i, x := range l {
		out[i] = vec(x)
	}
	return out
}

// diffs compares values with the reference's and keeps the worst relative
// difference of each kind of value, for the log.
type diffs struct {
	t     *testing.T
	worst map[string]float64
	n     int
}

func newDiffs(t *testing.T) *diffs { return &diffs{t: t, worst: map[string]float64{}} }

// check fails when some |got−want| > tol·max(|want|, floor·max|want|)
// (NaN and infinities must match exactly). kind groups the values in the
// log; name says which ones failed.
func (d *diffs) check(kind, name string, got, want []float64, tol, floor float64) {
	d.t.Helper()
	if len(got) != len(want) {
		d.t.Errorf("%s: %d values, the reference has %d", name, len(got), len(want))
		return
	}
	scale := 0.0
	for _, w := range want {
		if !math.IsInf(w, 0) && !math.IsNaN(w) {
			scale = math.Max(scale, math.Abs(w))
		}
	}
	for i, w := range want {
		g := got[i]
		var r float64
		switch {
		case g == w || math.IsNaN(g) && math.IsNaN(w):
		case math.IsNaN(g) || math.IsNaN(w) || math.IsInf(g, 0) || math.IsInf(w, 0):
			r = math.Inf(1)
		default:
			r = math.Abs(g-w) / math.Max(math.Abs(w), math.Max(floor*scale, 1e-300))
		}
		d.n++
		if w, ok := d.worst[kind]; !ok || r > w {
			d.worst[kind] = r
		}
		if r > tol {
			d.t.Errorf("%s[%d] = %.17g, PyTorch %.17g (relative difference %.3g > %g)", name, i, g, w, r, tol)
		}
	}
}

func (d *diffs) scalar(kind, name string, got, want, tol float64) {
	d.t.Helper()
	d.check(kind, name, []float64{got}, []float64{want}, tol, 0)
}

func (d *diffs) log() {
	kinds := make([]string, 0, len(d.worst))
	for k := range d.worst {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	for _, k := range kinds {
		fmt.Fprintf(&b, " %s %.2g;", k, d.worst[k])
	}
	d.t.Logf("%d values compared; worst relative difference by kind:%s", d.n, b.String())
}

// flat concatenates rows.
func flat(rows [][]float64) []float64 {
	var out []float64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func normals(rng *rand.Rand, n int, mean, std float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = mean + std*rng.NormFloat64()
	}
	return out
}

func uniforms(rng *rand.Rand, n int, lo, hi float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = lo + (hi-lo)*rng.Float64()
	}
	return out
}

func matrix(rows, cols int, f func() float64) [][]float64 {
	out := make([][]float64, rows)
	for i := range out {
		out[i] = make([]float64, cols)
		for j := range out[i] {
			out[i][j] = f()
		}
	}
	return out
}

// The reward model's loss with scores read at each row's last real token
// of a right-padded batch (the padding holds values that must not count),
// its gradient over every value, and the strict pair accuracy.
func TestRankLossParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type rc struct {
		values [][]float64
		lens   []int
	}
	var cases []map[string]any
	var in []rc
	for _, shape := range []struct{ n, l int }{{1, 3}, {2, 8}, {5, 16}, {8, 5}} {
		vals := matrix(2*shape.n, shape.l, func() float64 { return 2 * rng.NormFloat64() })
		lens := make([]int, 2*shape.n)
		attn := make([][]int, 2*shape.n)
		for i := range lens {
			lens[i] = 1 + rng.IntN(shape.l)
			attn[i] = make([]int, shape.l)
			for j := range lens[i] {
				attn[i][j] = 1
			}
		}
		if shape.n == 8 { // a tie counts as wrong
			vals[shape.n][lens[shape.n]-1] = vals[0][lens[0]-1]
		}
		in = append(in, rc{vals, lens})
		cases = append(cases, map[string]any{"kind": "rank", "values": vals, "attention_mask": attn})
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	for k, c := range in {
		r := res[k]
		n := len(c.lens) / 2
		chosen, rejected := make([]float64, n), make([]float64, n)
		for i := range n {
			chosen[i], rejected[i] = c.values[i][c.lens[i]-1], c.values[n+i][c.lens[n+i]-1]
		}
		loss, dc, dr, acc := RankLoss(chosen, rejected)
		p := fmt.Sprintf("case %d ", k)
		d.check("scores", p+"chosen scores", chosen, vec(r["chosen"]), 0, 0)
		d.check("scores", p+"rejected scores", rejected, vec(r["rejected"]), 0, 0)
		d.scalar("loss", p+"loss", loss, num(r["loss"]), 1e-9)
		d.scalar("accuracy", p+"accuracy", acc, num(r["accuracy"]), 1e-12)
		grad := matrix(2*n, len(c.values[0]), func() float64 { return 0 })
		for i := range n {
			grad[i][c.lens[i]-1], grad[n+i][c.lens[n+i]-1] = dc[i], dr[i]
		}
		d.check("gradient", p+"∂loss/∂values", flat(grad), flat(mat(r["grad_values"])), 1e-9, 1e-6)
	}
	d.log()
}

// prefCase is a DPO-family batch as LLaMA-Factory's get_batch_logps sees
// it: per-token log-probabilities of 2n rows (chosen, then rejected), the
// policy's and the reference's, and the mask of the answer tokens.
type prefCase struct {
	pref          Pref
	logp, refLogp [][]float64
	mask          [][]bool
}

// seq is the rows' answer log-probabilities (sums, or per-token averages
// when averaged) and answer lengths.
func (c prefCase) seq(tok [][]float64) (seq []float64, lens []int) {
	seq, lens = make([]float64, len(tok)), make([]int, len(tok))
	for r, row := range tok {
		for t, v := range row {
			if c.mask[r][t] {
				seq[r] += v
				lens[r]++
			}
		}
		if c.pref.Averaged() {
			seq[r] /= float64(lens[r])
		}
	}
	return seq, lens
}

// Every preference loss (sigmoid with and without label smoothing, hinge,
// IPO, ORPO, SimPO), with and without the pref_ftx term: the loss, its
// gradients with respect to the sequence log-probabilities and the chosen
// average, and through LF's sums and averages to each token's log-prob.
func TestPrefParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	prefs := []Pref{
		{Loss: "sigmoid", Beta: 0.1},
		{Loss: "sigmoid", Beta: 0.5, LabelSmoothing: 0.1},
		{Loss: "sigmoid", Beta: 0.25, LabelSmoothing: 0.3, FTX: 0.4},
		{Loss: "hinge", Beta: 0.6},
		{Loss: "hinge", Beta: 1, FTX: 1},
		{Loss: "ipo", Beta: 0.1},
		{Loss: "ipo", Beta: 2, FTX: 0.5},
		{Loss: "orpo", Beta: 0.1},
		{Loss: "orpo", Beta: 0.7, FTX: 0.2},
		{Loss: "simpo", Beta: 2, SimPOGamma: 0.5},
		{Loss: "simpo", Beta: 2.5, SimPOGamma: 1.2, FTX: 0.3},
		// The first step of a run: the reference is the policy, every
		// reward 0, and no pair counts as won (strict >).
		{Loss: "sigmoid", Beta: 0.1, FTX: 0.1},
	}
	var in []prefCase
	var cases []map[string]any
	hingeBelow, hingeAbove := 0, 0
	for k, p := range prefs {
		sameRef := k == len(prefs)-1
		for _, shape := range []struct{ n, t int }{{1, 5}, {3, 12}, {6, 9}} {
			rows := 2 * shape.n
			c := prefCase{pref: p, mask: make([][]bool, rows)}
			c.logp = matrix(rows, shape.t, func() float64 { return -0.01 - 3*rng.Float64() })
			c.refLogp = make([][]float64, rows)
			mask := make([][]int, rows)
			for r := range rows {
				c.refLogp[r] = make([]float64, shape.t)
				for j, v := range c.logp[r] {
					c.refLogp[r][j] = math.Min(-1e-3, v+0.7*rng.NormFloat64())
					if sameRef {
						c.refLogp[r][j] = v
					}
				}
				// A prompt, then the answer, then padding: ragged rows.
				start := rng.IntN(shape.t - 1)
				n := 1 + rng.IntN(shape.t-start)
				c.mask[r], mask[r] = make([]bool, shape.t), make([]int, shape.t)
				for j := start; j < start+n; j++ {
					c.mask[r][j], mask[r][j] = true, 1
				}
			}
			if p.Loss == "hinge" {
				pc, _ := c.seq(c.logp)
				rc, _ := c.seq(c.refLogp)
				for i := range shape.n {
					if p.Beta*((pc[i]-pc[shape.n+i])-(rc[i]-rc[shape.n+i])) < 1 {
						hingeBelow++
					} else {
						hingeAbove++
					}
				}
			}
			in = append(in, c)
			cases = append(cases, map[string]any{"kind": "pref", "loss": p.Loss, "beta": p.Beta, "label_smoothing": p.LabelSmoothing,
				"simpo_gamma": p.SimPOGamma, "ftx": p.FTX, "logp": c.logp, "ref_logp": c.refLogp, "mask": mask})
		}
	}
	if hingeBelow == 0 || hingeAbove == 0 {
		t.Fatalf("hinge: %d pairs below the margin, %d above: the cases miss a regime", hingeBelow, hingeAbove)
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	for k, c := range in {
		r, p := res[k], c.pref
		name := fmt.Sprintf("%s β=%g ε=%g γ=%g ftx=%g case %d: ", p.Loss, p.Beta, p.LabelSmoothing, p.SimPOGamma, p.FTX, k)
		n := len(c.logp) / 2
		seq, lens := c.seq(c.logp)
		ref, _ := c.seq(c.refLogp)
		pc, pr := seq[:n], seq[n:]
		rc, rr := ref[:n], ref[n:]
		d.check("sequence log-probs", name+"π_c", pc, vec(r["pc"]), 1e-12, 1e-6)
		d.check("sequence log-probs", name+"π_r", pr, vec(r["pr"]), 1e-12, 1e-6)
		d.check("sequence log-probs", name+"ρ_c", rc, vec(r["rc"]), 1e-12, 1e-6)
		d.check("sequence log-probs", name+"ρ_r", rr, vec(r["rr"]), 1e-12, 1e-6)
		var chosenAvg []float64
		if p.FTX > 1e-6 {
			chosenAvg = make([]float64, n)
			for i := range chosenAvg {
				chosenAvg[i] = pc[i]
				if !p.Averaged() {
					chosenAvg[i] /= float64(lens[i])
				}
			}
			d.check("sequence log-probs", name+"chosen average", chosenAvg, vec(r["chosen_avg"]), 1e-12, 1e-6)
		}
		if !p.UsesReference() {
			rc, rr = nil, nil
		}
		got, dAvg := p.Compute(pc, pr, rc, rr, chosenAvg)
		d.scalar("loss", name+"loss", got.Loss, num(r["loss"]), 1e-9)
		d.check("∂loss/∂sequence", name+"∂/∂π_c", got.DChosen, vec(r["d_pc"]), 1e-9, 1e-6)
		d.check("∂loss/∂sequence", name+"∂/∂π_r", got.DRejected, vec(r["d_pr"]), 1e-9, 1e-6)
		if p.FTX > 1e-6 {
			d.check("∂loss/∂sequence", name+"∂/∂chosen average", dAvg, vec(r["d_avg"]), 1e-9, 1e-6)
		} else if dAvg != nil {
			t.Errorf("%s: a gradient for the chosen average without pref_ftx", name)
		}
		d.check("rewards", name+"rewards/chosen", got.RewardsChosen, vec(r["rewards_chosen"]), 1e-9, 1e-6)
		d.check("rewards", name+"rewards/rejected", got.RewardsRejected, vec(r["rewards_rejected"]), 1e-9, 1e-6)
		want := r["metrics"].(map[string]any)
		m := got.Metrics(pc, pr)
		for _, key := range []string{"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"} {
			d.scalar("metrics", name+key, m[key], num(want[key]), 1e-9)
		}
		// Each token's share, as train's DPO objective takes it back.
		grad := make([][]float64, len(c.logp))
		for row := range grad {
			g := 0.0
			if row < n {
				g = got.DChosen[row]
				if dAvg != nil {
					if p.Averaged() {
						g += dAvg[row]
					} else {
						g += dAvg[row] / float64(lens[row])
					}
				}
			} else {
				g = got.DRejected[row-n]
			}
			if p.Averaged() {
				g /= float64(lens[row])
			}
			grad[row] = make([]float64, len(c.logp[row]))
			for j := range grad[row] {
				if c.mask[row][j] {
					grad[row][j] = g
				}
			}
		}
		d.check("∂loss/∂token", name+"∂loss/∂token log-probs", flat(grad), flat(mat(r["grad_logp"])), 1e-9, 1e-6)
	}
	d.log()
}

// KTO with desirable and undesirable examples in varying numbers (none of
// one kind too), weights, and a reference point that is clamped at 0.
func TestKTOParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	type kc struct {
		k                        KTO
		pc, pr, rc, rr, pKL, rKL []float64
	}
	var in []kc
	var cases []map[string]any
	for _, s := range []struct {
		nc, nr, nkl  int
		beta, wc, wr float64
		klShift      float64 // the reference's KL rows above the policy's: a negative mean KL is clamped to 0
	}{{2, 1, 3, 0.1, 1, 1, -0.3}, {3, 3, 6, 0.5, 1.33, 0.7, -1}, {0, 4, 4, 0.1, 1, 1.5, -0.2}, {4, 0, 4, 0.2, 0.8, 1, -0.5},
		{5, 2, 7, 0.1, 1, 1, 2}, {1, 1, 2, 1, 1, 1, -3}} {
		c := kc{k: KTO{Beta: s.beta, ChosenWeight: s.wc, RejectedWeight: s.wr}}
		c.pc, c.pr = normals(rng, s.nc, -20, 6), normals(rng, s.nr, -20, 6)
		c.rc, c.rr = make([]float64, s.nc), make([]float64, s.nr)
		for j, v := range c.pc {
			c.rc[j] = v + 3*rng.NormFloat64()
		}
		for j, v := range c.pr {
			c.rr[j] = v + 3*rng.NormFloat64()
		}
		c.pKL, c.rKL = normals(rng, s.nkl, -25, 6), make([]float64, s.nkl)
		for j, v := range c.pKL {
			c.rKL[j] = v + s.klShift + 0.5*rng.NormFloat64()
		}
		in = append(in, c)
		cases = append(cases, map[string]any{"kind": "kto", "beta": s.beta, "chosen_weight": s.wc, "rejected_weight": s.wr,
			"pc": c.pc, "pr": c.pr, "rc": c.rc, "rr": c.rr, "p_kl": c.pKL, "r_kl": c.rKL})
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	clamped := 0
	for i, c := range in {
		r := res[i]
		name := fmt.Sprintf("case %d (%d desirable, %d undesirable): ", i, len(c.pc), len(c.pr))
		got := c.k.Compute(c.pc, c.pr, c.rc, c.rr, c.pKL, c.rKL)
		if num(r["kl"]) == 0 {
			clamped++
		}
		d.scalar("kl", name+"kl", got.KL, num(r["kl"]), 1e-9)
		d.scalar("loss", name+"loss", got.Loss, num(r["loss"]), 1e-9)
		d.check("gradient", name+"∂/∂π_chosen", got.DChosen, vec(r["d_pc"]), 1e-9, 1e-6)
		d.check("gradient", name+"∂/∂π_rejected", got.DRejected, vec(r["d_pr"]), 1e-9, 1e-6)
		for key, w := range r["metrics"].(map[string]any) {
			d.scalar("metrics", name+key, got.Metrics[key], num(w), 1e-9)
		}
	}
	if clamped == 0 || clamped == len(in) {
		t.Errorf("%d of %d cases have the reference point clamped to 0: the cases miss a regime", clamped, len(in))
	}
	d.log()
}

// rollouts are PPO rollouts in TRL's layout: query+response rows
// right-padded together, the log-prob positions [B, T] with T the longest
// row less one, row i's response at [q_i−1, q_i−1+r_i).
type rollouts struct {
	q, r []int
	t    int
}

func newRollouts(rng *rand.Rand, b, maxQ, maxR int) rollouts {
	ro := rollouts{q: make([]int, b), r: make([]int, b)}
	for {
		total := 0
		for i := range b {
			ro.q[i], ro.r[i] = 1+rng.IntN(maxQ), 1+rng.IntN(maxR)
			total += ro.r[i]
			ro.t = max(ro.t, ro.q[i]+ro.r[i]-1)
		}
		if total >= 2 { // TRL's whitening divides by the token count less one
			return ro
		}
		ro.t = 0
	}
}

// response is row i's response positions of x.
func (ro rollouts) response(x [][]float64, i int) []float64 {
	return x[i][ro.q[i]-1 : ro.q[i]-1+ro.r[i]]
}

func (ro rollouts) responses(x [][]float64) [][]float64 {
	out := make([][]float64, len(x))
	for i := range x {
		out[i] = ro.response(x, i)
	}
	return out
}

// pad is the number of padding positions after each row's response.
func (ro rollouts) pad() []int {
	out := make([]int, len(ro.q))
	for i := range out {
		out[i] = ro.t - (ro.q[i] - 1 + ro.r[i])
	}
	return out
}

// Per-token rewards for each kl_penalty (full from the logits), GAE with
// and without whitened rewards over batches whose rows have real padding
// after their responses (the pad argument), and the advantages' whitening.
func TestPPORewardsAndGAEParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	type gc struct {
		ro                       rollouts
		kind                     string
		coef, gamma, lam         float64
		whiten                   bool
		logp, ref, values        [][]float64
		scores                   []float64
		logits, refLogits        [][][]float32
		wantPaddedWhitenedReward bool
	}
	var in []gc
	var cases []map[string]any
	const vocab = 7
	shapes := []struct{ b, q, r int }{{1, 3, 6}, {2, 4, 5}, {4, 5, 8}, {6, 2, 12}}
	for k, kind := range []string{"kl", "abs", "mse", "full"} {
		for j, s := range shapes {
			for _, whiten := range []bool{false, true} {
				c := gc{ro: newRollouts(rng, s.b, s.q, s.r), kind: kind, whiten: whiten,
					coef: []float64{0.2, 0.05}[j%2], gamma: []float64{1, 0.99}[k%2], lam: []float64{0.95, 0.9}[j/2]}
				tt := c.ro.t
				c.logp = matrix(s.b, tt, func() float64 { return -0.05 - 4*rng.Float64() })
				c.ref = make([][]float64, s.b)
				for i := range c.ref {
					c.ref[i] = make([]float64, tt)
					for p, v := range c.logp[i] {
						c.ref[i][p] = math.Min(-1e-3, v+0.5*rng.NormFloat64())
					}
				}
				c.values = matrix(s.b, tt, rng.NormFloat64)
				c.scores = normals(rng, s.b, 0.5, 2)
				cs := map[string]any{"kind": "gae", "query_lens": c.ro.q, "response_lens": c.ro.r, "kl_penalty": kind, "kl_coef": c.coef,
					"logprobs": c.logp, "ref_logprobs": c.ref, "values": c.values, "scores": c.scores, "gamma": c.gamma, "lam": c.lam, "whiten_rewards": whiten}
				if kind == "full" {
					c.logits, c.refLogits = make([][][]float32, s.b), make([][][]float32, s.b)
					for i := range s.b {
						c.logits[i], c.refLogits[i] = make([][]float32, tt), make([][]float32, tt)
						for p := range tt {
							c.logits[i][p], c.refLogits[i][p] = make([]float32, vocab), make([]float32, vocab)
							for v := range vocab {
								c.logits[i][p][v] = float32(2 * rng.NormFloat64())
								c.refLogits[i][p][v] = c.logits[i][p][v] + float32(0.8*rng.NormFloat64())
							}
						}
					}
					// As float64: the exact float32 values, not their shortest decimals.
					cs["logits"], cs["ref_logits"] = widen(c.logits), widen(c.refLogits)
				}
				in = append(in, c)
				cases = append(cases, cs)
			}
		}
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	padded := 0
	for k, c := range in {
		r := res[k]
		name := fmt.Sprintf("case %d (%s, B=%d, whiten_rewards %v): ", k, c.kind, len(c.ro.q), c.whiten)
		kl := make([][]float64, len(c.ro.q))
		for i := range kl {
			lp, ref := c.ro.response(c.logp, i), c.ro.response(c.ref, i)
			for p := range lp {
				if c.kind == "full" {
					at := c.ro.q[i] - 1 + p
					kl[i] = append(kl[i], FullKL(c.logits[i][at], c.refLogits[i][at]))
				} else {
					kl[i] = append(kl[i], KLPenalty(c.kind, lp[p], ref[p]))
				}
			}
		}
		d.check("penalty", name+"k_t", flat(kl), flat(c.ro.responses(mat(r["kl"]))), 1e-9, 1e-6)
		rewards, klSum := TokenRewards(kl, c.scores, c.coef)
		d.check("rewards", name+"rewards", flat(rewards), flat(c.ro.responses(mat(r["rewards"]))), 1e-9, 1e-6)
		d.check("rewards", name+"Σ k_t", klSum, vec(r["kl_sum"]), 1e-9, 1e-6)
		mean := 0.0
		for _, s := range klSum {
			mean += s / float64(len(klSum))
		}
		d.scalar("rewards", name+"objective/kl", mean, num(r["objective_kl"]), 1e-9)
		pad := c.ro.pad()
		for _, p := range pad {
			padded += p
		}
		adv, ret, err := GAE(rewards, c.ro.responses(c.values), pad, c.gamma, c.lam, c.whiten)
		if err != nil {
			t.Fatal(err)
		}
		d.check("advantages", name+"whitened advantages", flat(adv), flat(c.ro.responses(mat(r["advantages"]))), 1e-9, 1e-6)
		d.check("returns", name+"returns", flat(ret), flat(c.ro.responses(mat(r["returns"]))), 1e-9, 1e-6)
	}
	if padded == 0 {
		t.Fatal("no row has padding after its response: pad is not exercised")
	}
	d.log()
}

// TRL's masked_whiten over random masks, with and without the mean.
func TestWhitenParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	type wc struct {
		x     [][]float64
		mask  [][]bool
		shift bool
	}
	var in []wc
	var cases []map[string]any
	for _, s := range []struct{ b, t int }{{1, 3}, {3, 7}, {5, 20}} {
		for _, shift := range []bool{true, false} {
			c := wc{x: matrix(s.b, s.t, func() float64 { return 3 + 2*rng.NormFloat64() }), shift: shift, mask: make([][]bool, s.b)}
			mask := make([][]int, s.b)
			ones := 0
			for ones < 2 {
				ones = 0
				for i := range s.b {
					c.mask[i], mask[i] = make([]bool, s.t), make([]int, s.t)
					for j := range s.t {
						if rng.Float64() < 0.6 {
							c.mask[i][j], mask[i][j] = true, 1
							ones++
						}
					}
				}
			}
			in = append(in, c)
			cases = append(cases, map[string]any{"kind": "whiten", "x": c.x, "mask": mask, "shift_mean": shift})
		}
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	for k, c := range in {
		masked := func(x [][]float64) [][]float64 {
			out := make([][]float64, len(x))
			for i := range x {
				out[i] = []float64{}
				for j, v := range x[i] {
					if c.mask[i][j] {
						out[i] = append(out[i], v)
					}
				}
			}
			return out
		}
		got, err := Whiten(masked(c.x), c.shift)
		if err != nil {
			t.Fatal(err)
		}
		d.check("whiten", fmt.Sprintf("case %d (shift_mean %v)", k, c.shift), flat(got), flat(masked(mat(res[k]["whitened"]))), 1e-9, 1e-6)
	}
	d.log()
}

// PPO's clipped loss over padded mini-batches: both clip regimes of the
// policy and value terms (clipped entries have no gradient) and the
// ratio_threshold skip; the losses, statistics and gradients with respect
// to the new log-probs and value predictions.
func TestPPOLossParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	type pc struct {
		c                                Clip
		ro                               rollouts
		old, logp, oldV, vpred, adv, ret [][]float64
		skip                             bool
	}
	var in []pc
	var cases []map[string]any
	for _, s := range []struct {
		b, q, r int
		c       Clip
		shift   float64 // added to every new log-prob: a mean ratio over the threshold skips the batch
		spread  float64
	}{
		{1, 2, 5, Clip{Range: 0.2, ValueRange: 0.2, VFCoef: 0.1, RatioThreshold: 10}, 0, 0.3},
		{3, 4, 6, Clip{Range: 0.2, ValueRange: 0.2, VFCoef: 0.1, RatioThreshold: 10}, 0, 0.3},
		{5, 3, 9, Clip{Range: 0.1, ValueRange: 0.5, VFCoef: 0.5, RatioThreshold: 10}, 0, 0.25},
		{8, 6, 4, Clip{Range: 0.3, ValueRange: 0.1, VFCoef: 1, RatioThreshold: 4}, 0.1, 0.4},
		{4, 3, 6, Clip{Range: 0.2, ValueRange: 0.2, VFCoef: 0.1, RatioThreshold: 10}, 2.5, 0.2},
	} {
		c := pc{c: s.c, ro: newRollouts(rng, s.b, s.q, s.r)}
		tt := c.ro.t
		c.old = matrix(s.b, tt, func() float64 { return -0.05 - 3*rng.Float64() })
		c.logp, c.vpred = make([][]float64, s.b), make([][]float64, s.b)
		c.oldV = matrix(s.b, tt, rng.NormFloat64)
		for row := range s.b {
			c.logp[row], c.vpred[row] = make([]float64, tt), make([]float64, tt)
			for p := range tt {
				c.logp[row][p] = c.old[row][p] + s.shift + s.spread*rng.NormFloat64()
				c.vpred[row][p] = c.oldV[row][p] + s.spread*rng.NormFloat64()
			}
		}
		c.adv, c.ret = matrix(s.b, tt, rng.NormFloat64), matrix(s.b, tt, rng.NormFloat64)
		mask := make([][]int, s.b)
		for row := range s.b {
			mask[row] = make([]int, tt)
			for p := range c.ro.r[row] {
				mask[row][c.ro.q[row]-1+p] = 1
			}
		}
		in = append(in, c)
		cases = append(cases, map[string]any{"kind": "ppo_loss", "mask": mask, "old_logprobs": c.old, "logprobs": c.logp,
			"old_values": c.oldV, "vpreds": c.vpred, "advantages": c.adv, "returns": c.ret,
			"cliprange": s.c.Range, "cliprange_value": s.c.ValueRange, "vf_coef": s.c.VFCoef, "ratio_threshold": s.c.RatioThreshold})
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	var skipped, pgClipped, vfClipped, zeroGrads int
	for k, c := range in {
		r := res[k]
		name := fmt.Sprintf("case %d (B=%d): ", k, len(c.ro.q))
		resp := c.ro.responses
		st, dLogp, dV := c.c.PPOLoss(resp(c.logp), resp(c.old), resp(c.vpred), resp(c.oldV), resp(c.adv), resp(c.ret))
		if st.Skipped != (r["skipped"] == true) {
			t.Errorf("%sskipped %v, PyTorch %v (mean ratio %g)", name, st.Skipped, r["skipped"], st.Ratio)
		}
		if st.Skipped {
			skipped++
		}
		for _, v := range []struct {
			key string
			got float64
		}{{"pg_loss", st.Policy}, {"vf_loss", st.Value}, {"loss", st.Total}, {"pg_clipfrac", st.PolicyClipFrac}, {"vf_clipfrac", st.ValueClipFrac},
			{"approxkl", st.ApproxKL}, {"policykl", st.PolicyKL}, {"ratio", st.Ratio}, {"advantages_mean", st.AdvantagesMean}} {
			d.scalar("losses and statistics", name+v.key, v.got, num(r[v.key]), 1e-9)
		}
		if !st.Skipped {
			if st.PolicyClipFrac > 0 && st.PolicyClipFrac < 1 {
				pgClipped++
			}
			if st.ValueClipFrac > 0 && st.ValueClipFrac < 1 {
				vfClipped++
			}
		}
		// The gradients, zero outside the responses.
		place := func(g [][]float64) [][]float64 {
			out := matrix(len(c.ro.q), c.ro.t, func() float64 { return 0 })
			for i := range g {
				copy(out[i][c.ro.q[i]-1:], g[i])
			}
			return out
		}
		d.check("gradient", name+"∂loss/∂logprobs", flat(place(dLogp)), flat(mat(r["grad_logprobs"])), 1e-9, 1e-6)
		d.check("gradient", name+"∂loss/∂vpreds", flat(place(dV)), flat(mat(r["grad_vpreds"])), 1e-9, 1e-6)
		for i := range dLogp {
			for p := range dLogp[i] {
				if dLogp[i][p] == 0 && !st.Skipped && c.adv[i][c.ro.q[i]-1+p] != 0 {
					zeroGrads++
				}
			}
		}
	}
	if skipped != 1 || pgClipped < 2 || vfClipped < 2 || zeroGrads == 0 {
		t.Errorf("regimes: %d skipped batches (want 1), %d and %d batches with some clipped policy and value terms, %d clipped tokens with no gradient",
			skipped, pgClipped, vfClipped, zeroGrads)
	}
	d.log()
}

// The adaptive KL controller over random updates (clipped errors
// included), and the fixed one.
func TestKLControllerParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	type kc struct {
		k       KLController
		updates [][2]float64
	}
	var in []kc
	var cases []map[string]any
	for _, k := range []KLController{{Value: 0.2, Target: 6, Horizon: 10000}, {Value: 0.05, Target: 0.1, Horizon: 500}, {Value: 0.2}} {
		c := kc{k: k}
		for range 12 {
			c.updates = append(c.updates, [2]float64{15 * rng.Float64(), float64([]int{1, 8, 128, 512}[rng.IntN(4)])})
		}
		in = append(in, c)
		cases = append(cases, map[string]any{"kind": "kl_ctl", "init": k.Value, "target": k.Target, "horizon": k.Horizon,
			"adaptive": k.Target > 0, "updates": c.updates})
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	for i, c := range in {
		var got []float64
		for _, u := range c.updates {
			c.k.Update(u[0], int(u[1]))
			got = append(got, c.k.Value)
		}
		d.check("kl_coef", fmt.Sprintf("controller %d", i), got, vec(res[i]["values"]), 1e-12, 0)
	}
	d.log()
}

// RunningMoments on float32 scores, batch after batch, and the scores
// normalised by the statistics that include them; a first batch of one
// score has an infinite deviation.
func TestRunningMomentsParityWithPyTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	var in [][][]float64
	var cases []map[string]any
	for _, sizes := range [][]int{{4, 2, 7}, {1, 3}, {16, 16, 1, 5}, {2}} {
		var batches [][]float64
		for _, n := range sizes {
			b := make([]float64, n)
			for i := range b {
				b[i] = float64(float32(3 + 2*rng.NormFloat64()))
			}
			batches = append(batches, b)
		}
		in = append(in, batches)
		cases = append(cases, map[string]any{"kind": "moments", "batches": batches})
	}
	res := runTorch(t, cases)
	d := newDiffs(t)
	infinite := 0
	for i, batches := range in {
		m := NewRunningMoments()
		steps := res[i]["steps"].([]any)
		for j, b := range batches {
			out := m.Update(b)
			w := steps[j].(map[string]any)
			name := fmt.Sprintf("sequence %d batch %d: ", i, j)
			d.scalar("statistics", name+"mean", m.Mean, num(w["mean"]), 1e-6)
			d.scalar("statistics", name+"var", m.Var, num(w["var"]), 1e-6)
			d.scalar("statistics", name+"std", m.Std, num(w["std"]), 1e-6)
			d.scalar("statistics", name+"count", m.Count, num(w["count"]), 1e-12)
			// float32 scores normalised: their rounding is on the scale of 1.
			d.check("normalised", name+"normalised", out, vec(w["normalised"]), 1e-6, 1/math.Max(1e-30, maxAbs(vec(w["normalised"]))))
			if math.IsInf(m.Std, 1) {
				infinite++
			}
		}
	}
	if infinite != 1 {
		t.Errorf("%d infinite deviations, want 1 (the first batch of one score)", infinite)
	}
	d.log()
}

func widen(x [][][]float32) [][][]float64 {
	out := make([][][]float64, len(x))
	for i := range x {
		out[i] = make([][]float64, len(x[i]))
		for j, row := range x[i] {
			for _, v := range row {
				out[i][j] = append(out[i][j], float64(v))
			}
		}
	}
	return out
}

func maxAbs(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}
