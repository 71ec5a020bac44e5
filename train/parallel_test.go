package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// world is N ranks in one process, one goroutine each: the collectives
// of MPI's that Comm names, moving values exactly as MPI moves them. It is
// a test double for the exchange logic; internal/mpi is tested under
// mpirun.
type world struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	arrived int
	gen     int
	slots   []any
}

func newWorld(n int) *world {
	w := &world{n: n, slots: make([]any, n)}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *world) barrier() {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.gen
	if w.arrived++; w.arrived == w.n {
		w.arrived, w.gen = 0, w.gen+1
		w.cond.Broadcast()
		return
	}
	for g == w.gen {
		w.cond.Wait()
	}
}

type rankOf struct {
	w *world
	r int
}

// exchange deposits v, runs use on every rank's deposit, then waits until
// every rank has read.
func (f rankOf) exchange(v any, use func(all []any)) {
	f.w.mu.Lock()
	f.w.slots[f.r] = v
	f.w.mu.Unlock()
	f.w.barrier()
	f.w.mu.Lock()
	all := append([]any(nil), f.w.slots...)
	f.w.mu.Unlock()
	use(all)
	f.w.barrier()
}

func (f rankOf) Rank() int { return f.r }
func (f rankOf) Size() int { return f.w.n }

type part struct {
	send           []float32
	counts, displs []int
}

func (f rankOf) Alltoallv(send []float32, sc, sd []int, recv []float32, rc, rd []int) (err error) {
	f.exchange(part{send, sc, sd}, func(all []any) {
		for q, a := range all {
			p := a.(part)
			if p.counts[f.r] != rc[q] {
				err = fmt.Errorf("rank %d sends %d values to rank %d, which expects %d", q, p.counts[f.r], f.r, rc[q])
				return
			}
			copy(recv[rd[q]:rd[q]+rc[q]], p.send[p.displs[f.r]:p.displs[f.r]+p.counts[f.r]])
		}
	})
	return err
}

func (f rankOf) Gatherv(send, recv []float32, counts, displs []int, root int) (err error) {
	f.exchange(send, func(all []any) {
		if root >= 0 && root != f.r {
			return
		}
		for q, a := range all {
			if s := a.([]float32); len(s) != counts[q] {
				err = fmt.Errorf("rank %d sends %d values, counts say %d", q, len(s), counts[q])
			} else {
				copy(recv[displs[q]:], s)
			}
		}
	})
	return err
}

func (f rankOf) Allgatherv(send, recv []float32, counts, displs []int) error {
	return f.Gatherv(send, recv, counts, displs, -1)
}

func (f rankOf) AllgatherBytes(msg []byte) ([][]byte, error) {
	var out [][]byte
	f.exchange(append([]byte(nil), msg...), func(all []any) {
		for _, a := range all {
			out = append(out, a.([]byte))
		}
	})
	return out, nil
}

// onRanks runs fn on n ranks of one world and returns their trainers.
func onRanks(t *testing.T, n int, c Config, fn func(tr *Trainer) error) []*Trainer {
	t.Helper()
	w := newWorld(n)
	trs := make([]*Trainer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			trs[r], errs[r] = NewOn(c, io.Discard, rankOf{w, r})
			if errs[r] == nil {
				errs[r] = fn(trs[r])
			}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return trs
}

func steps(k int) func(*Trainer) error {
	return func(tr *Trainer) error {
		for range k {
			if r := tr.TrainStep(); r.Err != nil {
				return r.Err
			}
		}
		return nil
	}
}

// sameBits fails unless every trained value of got equals want's bit for
// bit.
func sameBits(t *testing.T, what string, want, got *Trainer) {
	t.Helper()
	for i, p := range want.Params {
		q := got.Params[i]
		for j := range p.Data {
			if math.Float32bits(p.Data[j]) != math.Float32bits(q.Data[j]) {
				t.Fatalf("%s: %s[%d] is %g, one process has %g", what, p.Name, j, q.Data[j], p.Data[j])
			}
		}
	}
}

func with(c Config, accum int, extra ...string) Config {
	c.GradAccum = accum
	if len(extra) == 2 && extra[0] == "zero_stage" {
		c.ZeroStage, _ = strconv.Atoi(extra[1])
	}
	return c
}

// N ranks with g micro-batches each end every step with the values of one
// process with g·N, bit for bit, for the stages that share the Loop, full
// and LoRA, with and without ZeRO-1, and for N that MPI's own sum would
// get wrong (3). Three steps over 16 examples in batches of 2 include an
// epoch's short last step, where some ranks have no micro-batch.
func TestRanksMatchOneProcess(t *testing.T) {
	model := tinyModel(t)
	sft := sftConfig(t, model, "--max_steps", "3", "--max_grad_norm", "0.5", "--weight_decay", "0.01")
	lora := sftConfig(t, model, "--finetuning_type", "lora", "--lora_rank", "4", "--lora_dropout", "0.1", "--max_steps", "3")
	cases := []struct {
		name    string
		cfg     Config
		n, g    int
		zero    string
		inShort bool
	}{
		{"sft full", sft, 2, 1, "0", false},
		{"sft full", sft, 2, 2, "1", false},
		{"sft full", sft, 3, 1, "1", false},
		{"sft full", sft, 3, 2, "0", true},
		{"sft full", sft, 3, 2, "1", false},
		{"sft lora dropout", lora, 3, 2, "1", true},
		{"sft lora dropout", lora, 2, 2, "0", false},
		{"rm lora", rmConfig(t, model, "--max_steps", "3"), 3, 2, "1", false},
		{"dpo lora", rmConfig(t, model, "--stage", "dpo", "--max_steps", "3"), 2, 2, "0", false},
		{"kto lora", ktoConfig(t, model, "--max_steps", "3"), 3, 2, "1", false},
	}
	for _, tc := range cases {
		if testing.Short() && !tc.inShort {
			continue
		}
		t.Run(fmt.Sprintf("%s N=%d g=%d zero=%s", tc.name, tc.n, tc.g, tc.zero), func(t *testing.T) {
			one := newTrainer(t, with(tc.cfg, tc.g*tc.n))
			var want []StepResult
			for range 3 {
				want = append(want, one.TrainStep())
			}
			var got [][]StepResult
			var mu sync.Mutex
			trs := onRanks(t, tc.n, with(tc.cfg, tc.g, "zero_stage", tc.zero), func(tr *Trainer) error {
				var rs []StepResult
				for range 3 {
					r := tr.TrainStep()
					if r.Err != nil {
						return r.Err
					}
					rs = append(rs, r)
				}
				mu.Lock()
				got = append(got, rs)
				mu.Unlock()
				return nil
			})
			for r, tr := range trs {
				sameBits(t, fmt.Sprintf("rank %d", r), one, tr)
			}
			for _, rs := range got {
				for s, r := range rs {
					if r.Loss != want[s].Loss || r.GradNorm != want[s].GradNorm || r.Tokens != want[s].Tokens {
						t.Errorf("step %d: loss %v, grad norm %v over %d; one process %v, %v over %d", s, r.Loss, r.GradNorm, r.Tokens, want[s].Loss, want[s].GradNorm, want[s].Tokens)
					}
				}
			}
		})
	}
}

// A checkpoint saved by 2 ranks with ZeRO-1 resumes on 3 ranks and on
// one process, and continues the run one process makes uninterrupted with
// the same global batch; rank 0 alone writes.
func TestResumeOnOtherRankCount(t *testing.T) {
	model := tinyModel(t)
	base := sftConfig(t, model, "--max_steps", "4", "--per_device_train_batch_size", "1", "--lr_scheduler_type", "cosine", "--zero_stage", "1")
	one := newTrainer(t, with(base, 6))
	for range 4 {
		one.TrainStep()
	}
	onRanks(t, 2, with(base, 3), func(tr *Trainer) error {
		if tr.Comm.Rank() == 0 {
			if err := tr.prepareOutput(); err != nil {
				return err
			}
		}
		if err := steps(2)(tr); err != nil {
			return err
		}
		return tr.SaveCheckpoint()
	})
	for _, n := range []int{3, 1} {
		c := with(base, 6/n)
		c.OutputDir = filepath.Join(t.TempDir(), "out")
		if err := os.CopyFS(c.OutputDir, os.DirFS(base.OutputDir)); err != nil {
			t.Fatal(err)
		}
		out := onRanks(t, n, c, func(tr *Trainer) error {
			if err := tr.Resume("true"); err != nil {
				return err
			}
			if tr.Step != 2 {
				return fmt.Errorf("resumed at step %d", tr.Step)
			}
			return tr.Run(context.Background())
		})
		for r, tr := range out {
			sameBits(t, fmt.Sprintf("resumed on %d ranks, rank %d", n, r), one, tr)
		}
		if _, err := os.Stat(filepath.Join(c.OutputDir, "model.safetensors")); err != nil {
			t.Errorf("rank 0 did not save the model: %v", err)
		}
	}
}

// PPO on N ranks: each rank generates, scores and evaluates its
// mini-batches of the experience batch, the ranks share the rollouts and
// combine the updates' gradients as the Loop does. Policy, critic and
// every logged statistic equal one process with g·N, bit for bit: LoRA
// (reward adapter on the policy's base) and full (separate reward model),
// with dropout, full KL and ZeRO-1.
func TestPPORanksMatchOneProcess(t *testing.T) {
	model := tinyModel(t)
	rm := rewardModel(t, model)
	cases := []struct {
		name    string
		n, g    int
		zero    string
		reward  string
		extra   []string
		inShort bool
	}{
		{"lora score norm", 2, 1, "0", rm, []string{"--ppo_score_norm"}, true},
		{"lora dropout full kl", 2, 2, "1", rm, []string{"--lora_dropout", "0.1", "--kl_penalty", "full", "--max_samples", "16"}, false},
		{"full", 3, 1, "1", model, []string{"--finetuning_type", "full", "--reward_model_type", "full", "--reward_model_adapters", rm,
			"--max_grad_norm", "0.5", "--ppo_whiten_rewards"}, false},
	}
	for _, tc := range cases {
		if testing.Short() && !tc.inShort {
			continue
		}
		t.Run(fmt.Sprintf("%s N=%d g=%d zero=%s", tc.name, tc.n, tc.g, tc.zero), func(t *testing.T) {
			c := ppoConfig(t, model, tc.reward, tc.extra...)
			one := newTrainer(t, with(c, tc.g*tc.n))
			var want []StepResult
			for range 2 {
				r := one.TrainStep()
				if r.Err != nil {
					t.Fatal(r.Err)
				}
				want = append(want, r)
			}
			got := make([][]StepResult, tc.n)
			trs := onRanks(t, tc.n, with(c, tc.g, "zero_stage", tc.zero), func(tr *Trainer) error {
				for range 2 {
					r := tr.TrainStep()
					if r.Err != nil {
						return r.Err
					}
					got[tr.Comm.Rank()] = append(got[tr.Comm.Rank()], r)
				}
				return nil
			})
			for r, tr := range trs {
				sameBits(t, fmt.Sprintf("rank %d", r), one, tr)
				for s, res := range got[r] {
					for k, v := range want[s].Metrics {
						if !strings.HasPrefix(k, "time/") && math.Float64bits(res.Metrics[k]) != math.Float64bits(v) {
							t.Errorf("rank %d step %d: %s is %v, one process %v", r, s, k, res.Metrics[k], v)
						}
					}
					if res.GradNorm != want[s].GradNorm || res.Tokens != want[s].Tokens || res.Inputs != want[s].Inputs {
						t.Errorf("rank %d step %d: grad norm %v over %d tokens, one process %v over %d", r, s, res.GradNorm, res.Tokens, want[s].GradNorm, want[s].Tokens)
					}
				}
			}
		})
	}
}

// Shards tile each bucket in rank order, cut on norm blocks, whatever the
// number of ranks, so that norm partials never straddle two ranks.
func TestLayout(t *testing.T) {
	for _, n := range []int{1, normBlock - 1, 5*normBlock + 3, bucketSize + 7*normBlock + 1} {
		for ranks := 1; ranks <= 5; ranks++ {
			owned := 0
			for r := range ranks {
				owned += newLayout(n, ranks, r).mine
			}
			if owned != n {
				t.Errorf("n=%d, %d ranks: the ranks own %d values", n, ranks, owned)
			}
			next := 0
			for _, sh := range newLayout(n, ranks, 0).buckets {
				for q, s := range sh {
					if s.lo != next || s.hi < s.lo || (s.hi != n && s.hi%normBlock != 0) {
						t.Fatalf("n=%d, %d ranks: rank %d's shard [%d, %d) after %d", n, ranks, q, s.lo, s.hi, next)
					}
					next = s.hi
				}
			}
			if next != n {
				t.Errorf("n=%d, %d ranks: shards end at %d", n, ranks, next)
			}
		}
	}
}
