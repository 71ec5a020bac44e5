package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"zhllama/hfdir"

	"zhllama/internal/atomicfile"
	"zhllama/optim"
	"zhllama/safetensors"
)

// trainerState is checkpoint-N/trainer_state.json. Every random choice of a
// run (data order, dropout) is drawn from streams seeded by the seed and
// the epoch or step, so the step and the seed are the whole RNG state.
type trainerState struct {
	GlobalStep int     `json:"global_step"`
	Epoch      float64 `json:"epoch"`
	MaxSteps   int     `json:"max_steps"`
	Seed       uint64  `json:"seed"`
	Optimizer  string  `json:"optimizer"`
	Trained    int     `json:"trained_tensors"`
}

const optimizerFile = "optimizer.safetensors"

// objectiveStateFile holds an objective's own running state (PPO's KL
// coefficient and score statistics).
const objectiveStateFile = "objective_state.json"

// stateful is an objective with state of its own beyond its tensors.
type stateful interface {
	State() any
	// SetState reads what State wrote, as JSON.
	SetState(b []byte) error
}

// SaveCheckpoint writes output_dir/checkpoint-N (N the step) through a
// temporary directory renamed at the end, and removes the oldest beyond
// save_total_limit.
//
// On several ranks every rank calls it (with ZeRO-1 the optimizer state
// is gathered from all of them) and rank 0 writes; a checkpoint is the
// same whatever the number of ranks.
func (t *Loop) SaveCheckpoint() error {
	c := &t.Cfg
	st := t.Opt.State()
	if z, ok := t.Opt.(*shardedAdamW); ok {
		var err error
		if st, err = z.gathered(); err != nil {
			return err
		}
	}
	if t.Comm.Rank() != 0 {
		return nil
	}
	final := t.checkpointDir(t.Step)
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := t.Obj.Save(tmp); err != nil {
		return err
	}
	if s, ok := t.Obj.(stateful); ok {
		if err := atomicfile.WriteJSON(filepath.Join(tmp, objectiveStateFile), s.State()); err != nil {
			return err
		}
	}
	var srcs []safetensors.Source
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		srcs = append(srcs, safetensors.FromFloat32(n, safetensors.F32, []int{len(st[n])}, st[n]))
	}
	meta := map[string]string{"step": strconv.Itoa(t.Opt.Steps())}
	if err := safetensors.Write(filepath.Join(tmp, optimizerFile), meta, srcs); err != nil {
		return err
	}
	ts := trainerState{GlobalStep: t.Step, Epoch: t.epoch(), MaxSteps: t.Total, Seed: c.Seed, Optimizer: c.Optim, Trained: len(t.Params)}
	if err := atomicfile.WriteJSON(filepath.Join(tmp, "trainer_state.json"), ts); err != nil {
		return err
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	fmt.Fprintf(t.Log, "saved %s\n", final)
	if c.SaveTotalLimit > 0 {
		cks, err := checkpoints(c.OutputDir)
		if err != nil {
			return err
		}
		for len(cks) > c.SaveTotalLimit {
			if err := os.RemoveAll(cks[0].dir); err != nil {
				return err
			}
			cks = cks[1:]
		}
	}
	return nil
}

// checkpointDir is where the checkpoint of a step goes.
func (t *Loop) checkpointDir(step int) string {
	return filepath.Join(t.Cfg.OutputDir, "checkpoint-"+strconv.Itoa(step))
}

type checkpointDir struct {
	dir  string
	step int
}

// checkpoints lists output_dir's complete checkpoints, oldest first.
func checkpoints(dir string) ([]checkpointDir, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []checkpointDir
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.Name(), "checkpoint-")
		n, err := strconv.Atoi(s)
		if !ok || err != nil || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "trainer_state.json")); err == nil {
			out = append(out, checkpointDir{filepath.Join(dir, e.Name()), n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].step < out[j].step })
	return out, nil
}

// Resume loads a checkpoint: a path, or "true" for output_dir's latest.
func (t *Loop) Resume(which string) error {
	dir := which
	if which == "true" || which == "True" {
		cks, err := checkpoints(t.Cfg.OutputDir)
		if err != nil || len(cks) == 0 {
			return fmt.Errorf("resume_from_checkpoint: no checkpoint-N in %s", t.Cfg.OutputDir)
		}
		dir = cks[len(cks)-1].dir
	}
	if t.Comm.Size() > 1 {
		// Every rank resumes from the checkpoint rank 0 found.
		dirs, err := t.Comm.AllgatherBytes([]byte(dir))
		if err != nil {
			return fmt.Errorf("resume_from_checkpoint: agreeing on the checkpoint: %w", err)
		}
		dir = string(dirs[0])
	}
	var ts trainerState
	b, err := os.ReadFile(filepath.Join(dir, "trainer_state.json"))
	if err == nil {
		err = json.Unmarshal(b, &ts)
	}
	if err != nil {
		return fmt.Errorf("resume_from_checkpoint %s: %w", dir, err)
	}
	if ts.Optimizer != t.Cfg.Optim {
		return fmt.Errorf("resume_from_checkpoint %s: it was trained with %s, this run uses %s: resume with the settings it was made with", dir, ts.Optimizer, t.Cfg.Optim)
	}
	lookup, closeFn, err := openWeights(dir)
	if err != nil {
		return fmt.Errorf("resume_from_checkpoint %s: %w", dir, err)
	}
	defer closeFn()
	for _, p := range t.Params {
		tn, err := lookup(p.Name)
		if err != nil {
			return fmt.Errorf("resume_from_checkpoint %s: %w (it trained %d tensors, this run %d: resume with the settings it was made with)", dir, err, ts.Trained, len(t.Params))
		}
		if tn.Elements() != len(p.Data) {
			return fmt.Errorf("resume_from_checkpoint %s: tensor %s has %d values, the model %d", dir, p.Name, tn.Elements(), len(p.Data))
		}
		if _, err := tn.Float32(p.Data); err != nil {
			return err
		}
	}
	of, err := safetensors.Open(filepath.Join(dir, optimizerFile))
	if err != nil {
		return err
	}
	defer of.Close()
	err = optim.LoadState(t.Opt, t.Params, of.Names(), func(name string) ([]float32, error) {
		tn, ok := of.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("no tensor %s", name)
		}
		return tn.Float32(nil)
	})
	if err != nil {
		return fmt.Errorf("resume_from_checkpoint %s: %w", dir, err)
	}
	if z, ok := t.Opt.(*shardedAdamW); ok {
		z.keep()
	}
	if s, ok := t.Obj.(stateful); ok {
		b, err := os.ReadFile(filepath.Join(dir, objectiveStateFile))
		if err == nil {
			err = s.SetState(b)
		}
		if err != nil {
			return fmt.Errorf("resume_from_checkpoint %s: %w", dir, err)
		}
	}
	steps, _ := strconv.Atoi(of.Metadata["step"])
	t.Opt.SetSteps(steps)
	t.Step = ts.GlobalStep
	fmt.Fprintf(t.Log, "resumed from %s at step %d\n", dir, t.Step)
	return nil
}

// openWeights opens a checkpoint's trained tensors: a PEFT adapter file or
// the model's safetensors, and a value head beside them.
func openWeights(dir string) (func(string) (*safetensors.Tensor, error), func() error, error) {
	var lookup func(string) (*safetensors.Tensor, error)
	var closers []func() error
	path := filepath.Join(dir, hfdir.AdapterFile)
	if _, err := os.Stat(path); err == nil {
		f, err := safetensors.Open(path)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, f.Close)
		lookup = fileLookup(f, path)
	} else {
		ck, err := safetensors.OpenDir(dir)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, ck.Close)
		lookup = ck.Tensor
	}
	closeAll := func() error {
		var first error
		for _, c := range closers {
			if err := c(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	head := filepath.Join(dir, hfdir.ValueHeadFile)
	if _, err := os.Stat(head); err == nil {
		f, err := safetensors.Open(head)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, f.Close)
		model, inHead := lookup, fileLookup(f, head)
		lookup = func(name string) (*safetensors.Tensor, error) {
			if strings.HasPrefix(name, "v_head.") {
				return inHead(name)
			}
			return model(name)
		}
	}
	return lookup, closeAll, nil
}

func fileLookup(f *safetensors.File, path string) func(string) (*safetensors.Tensor, error) {
	return func(name string) (*safetensors.Tensor, error) {
		t, ok := f.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("%s has no tensor %s", path, name)
		}
		return t, nil
	}
}
