package train

import (
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

func ktoConfig(t *testing.T, model string, extra ...string) Config {
	t.Helper()
	return rmConfig(t, model, append([]string{"--stage", "kto", "--dataset", testenv.Path(t, "preference/kto_en_demo.json"),
		"--cutoff_len", "48", "--max_samples", "16"}, extra...)...)
}

// KTO with LoRA: the reference is the policy with its adapters off, so the
// first step's loss is 1 − σ(0) = 0.5; the gradients (with the SFT term)
// match central differences.
func TestKTO(t *testing.T) {
	model := tinyModel(t)
	tr := newTrainer(t, ktoConfig(t, model, "--max_steps", "2"))
	if r := tr.TrainStep(); math.Abs(r.Loss-0.5) > 1e-9 || r.Metrics["kl"] != 0 {
		t.Errorf("first step: loss %g, metrics %v; want 0.5 and kl 0", r.Loss, r.Metrics)
	}
	tr = newTrainer(t, ktoConfig(t, model, "--pref_ftx", "0.3", "--kto_rejected_weight", "1.5"))
	o := tr.KTO
	for _, ad := range tr.Model.Adapters("") {
		for i := range ad.LoRA.B {
			ad.LoRA.B[i] = 0.05 * float32(i%5-2)
		}
	}
	var batch []int // both labels in the batch
	for k := 0; k < o.Data.Len() && len(batch) < 2; k++ {
		if len(batch) == 0 || o.Data.desirable[o.Data.base(k)] != o.Data.desirable[o.Data.base(batch[0])] {
			batch = append(batch, k)
		}
	}
	for _, p := range o.Trained() {
		clear(p.Grad)
	}
	_, res0, _, _ := o.pass(o.Data, batch)
	o.Accumulate(batch, len(batch), 0)
	// The loss with the reference point held (TRL detaches it).
	loss := func() float64 {
		b := MakeBatch([]Example{o.Data.target.Example(o.Data.base(batch[0])), o.Data.target.Example(o.Data.base(batch[1]))}, o.pad)
		pi, lens := sequenceLogps(o.Model, o.acts, b, &o.logp, false)
		ref := o.ref.logps([]row{{o.Data.target, o.Data.base(batch[0])}, {o.Data.target, o.Data.base(batch[1])}})
		var pc, pr, rc, rr []float64
		desirable := o.Data.labels(batch)
		for i, d := range desirable {
			if d {
				pc, rc = append(pc, pi[i]), append(rc, ref[i])
			} else {
				pr, rr = append(pr, pi[i]), append(rr, ref[i])
			}
		}
		sft, _ := o.sftTerm(pi, lens, desirable)
		return o.Loss.Compute(pc, pr, rc, rr, []float64{res0.KL}, []float64{0}).Loss + sft
	}
	checked := 0
	for _, p := range o.Trained() {
		if !strings.Contains(p.Name, "layers.1.self_attn.v_proj") && !strings.Contains(p.Name, "layers.0.mlp.down_proj") {
			continue
		}
		for _, i := range []int{0, len(p.Data) / 2} {
			g := p.Grad[i]
			num := testenv.NumericGrad(loss, p.Data, []int{i}, 1e-2)[0]
			if math.Abs(num-float64(g)) > 3e-2*math.Max(0.02, math.Abs(num)) {
				t.Errorf("%s[%d]: gradient %g, numeric %g", p.Name, i, g, num)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// precompute_ref_log_probs changes nothing but the time: DPO with a frozen
// copy (full) and KTO with adapters off (LoRA) train to the same bits.
func TestPrecomputeRefLogProbs(t *testing.T) {
	model := tinyModel(t)
	for _, mk := range []func(...string) Config{
		func(extra ...string) Config {
			return rmConfig(t, model, append([]string{"--stage", "dpo", "--finetuning_type", "full", "--max_steps", "2"}, extra...)...)
		},
		func(extra ...string) Config {
			return ktoConfig(t, model, append([]string{"--max_steps", "2"}, extra...)...)
		},
	} {
		a, b := newTrainer(t, mk()), newTrainer(t, mk("--precompute_ref_log_probs"))
		for range 2 {
			ra, rb := a.TrainStep(), b.TrainStep()
			if ra.Loss != rb.Loss {
				t.Errorf("%s: loss %g, precomputed %g", a.Cfg.Stage, ra.Loss, rb.Loss)
			}
		}
		if ea, _ := a.Obj.Evaluate(); ea["loss"] != 0 {
			eb, _ := b.Obj.Evaluate()
			if ea["loss"] != eb["loss"] {
				t.Errorf("%s: eval loss %g, precomputed %g", a.Cfg.Stage, ea["loss"], eb["loss"])
			}
		}
		for i, p := range a.Params {
			if !slices.Equal(p.Data, b.Params[i].Data) {
				t.Fatalf("%s: %s differs with precomputed reference log-probs", a.Cfg.Stage, p.Name)
			}
		}
	}
}

// KTO data must carry a boolean label per example.
func TestKTOData(t *testing.T) {
	model := tinyModel(t)
	for _, tc := range []struct{ data, want string }{
		{"sft/alpaca_zh_demo.json", "has no kto_tag column"},
		{"preference/dpo_zh_demo.json", "is a ranking dataset"},
	} {
		_, err := New(ktoConfig(t, model, "--dataset", testenv.Path(t, tc.data)), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.data, err, tc.want)
		}
	}
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "kto.json"), []byte(`[{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "label": true},
{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}], "label": "no"}]`))
	var log strings.Builder
	tr, err := New(ktoConfig(t, model, "--dataset", filepath.Join(dir, "kto.json"), "--val_size", "0"), &log)
	if err != nil {
		t.Fatal(err)
	}
	if tr.KTO.Data.Len() != 1 || !strings.Contains(log.String(), `"label" (kto_tag) is a string`) {
		t.Errorf("%d examples; log:\n%s", tr.KTO.Data.Len(), log.String())
	}
}
