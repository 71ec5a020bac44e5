package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"zhllama/internal/testenv"
)

var (
	mpiBinaryOnce sync.Once
	mpiBinary     string
	mpiBuildErr   error
)

// needMPI returns the zhllama built with -tags mpi, or skips (fails
// under CI) without mpirun and OpenMPI's headers.
func needMPI(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		testenv.Need(t, "mpirun", "apt-get install openmpi-bin libopenmpi-dev")
	}
	if err := exec.Command("pkg-config", "--exists", "ompi-c").Run(); err != nil {
		testenv.Need(t, "OpenMPI's pkg-config file ompi-c", "apt-get install libopenmpi-dev")
	}
	mpiBinaryOnce.Do(func() {
		mpiBinary = filepath.Join(filepath.Dir(binary), "zhllama-mpi")
		out, err := exec.Command("go", "build", "-tags", "mpi", "-o", mpiBinary, ".").CombinedOutput()
		if err != nil {
			mpiBuildErr = fmt.Errorf("go build -tags mpi: %v\n%s", err, out)
		}
	})
	if mpiBuildErr != nil {
		t.Fatal(mpiBuildErr)
	}
	return mpiBinary
}

// mpirunCmd is `mpirun -np n zhllama-mpi args...` on this machine alone,
// shared memory only, one thread per rank.
func mpirunCmd(ctx context.Context, bin string, n int, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "mpirun", append([]string{"--oversubscribe", "--bind-to", "none", "-np", fmt.Sprint(n), "-x", "GOMAXPROCS=1", bin}, args...)...)
	cmd.Env = append(os.Environ(), "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
		"OMPI_MCA_btl=self,vader", "OMPI_MCA_oob_tcp_if_include=lo", "OMPI_MCA_btl_vader_single_copy_mechanism=none")
	return cmd
}

func mpirun(t *testing.T, bin string, n int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := mpirunCmd(ctx, bin, n, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mpirun -np %d zhllama %s: %v\n%s", n, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// trainArgs is a short SFT run of the tiny model: batches of one, three
// steps, so that -np 3 with two micro-batches each ends an epoch of 16
// examples with a short step.
func trainArgs(t *testing.T, model, out string, extra ...string) []string {
	return append([]string{"train", "--stage", "sft", "--model_name_or_path", model, "--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json"),
		"--template", "llama2", "--cutoff_len", "48", "--max_samples", "16", "--per_device_train_batch_size", "1",
		"--max_steps", "3", "--logging_steps", "1", "--learning_rate", "1e-3", "--weight_decay", "0.01", "--max_grad_norm", "0.5",
		"--output_dir", out}, extra...)
}

// sameFile fails unless two runs saved the same bytes.
func sameFile(t *testing.T, what, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Errorf("%s: %s and %s differ", what, a, b)
	}
}

// `mpirun -np N zhllama train` with g micro-batches per rank saves the
// bytes one process saves with g·N: full and LoRA, N = 2 and 3, with and
// without ZeRO-1. Rank 0 alone logs and reports the communication.
func TestMPITrainMatchesOneProcess(t *testing.T) {
	bin := needMPI(t)
	model := tinyModelDir(t)
	cases := []struct {
		n, g  int
		file  string
		extra []string
	}{
		{2, 1, "model.safetensors", []string{"--finetuning_type", "full"}},
		{3, 2, "model.safetensors", []string{"--finetuning_type", "full", "--zero_stage", "1"}},
		{3, 1, "adapter_model.safetensors", []string{"--finetuning_type", "lora", "--lora_rank", "4", "--lora_dropout", "0.1"}},
		{2, 2, "adapter_model.safetensors", []string{"--finetuning_type", "lora", "--lora_rank", "4", "--zero_stage", "1"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("N=%d g=%d %s", tc.n, tc.g, strings.Join(tc.extra, " ")), func(t *testing.T) {
			dir := t.TempDir()
			one, many := filepath.Join(dir, "one"), filepath.Join(dir, "many")
			if _, errs, code := zhllama(t, "", trainArgs(t, model, one, append(tc.extra, "--gradient_accumulation_steps", fmt.Sprint(tc.g*tc.n))...)...); code != 0 {
				t.Fatalf("one process: %s", errs)
			}
			log := mpirun(t, bin, tc.n, trainArgs(t, model, many, append(tc.extra, "--gradient_accumulation_steps", fmt.Sprint(tc.g))...)...)
			sameFile(t, "saved weights", filepath.Join(one, tc.file), filepath.Join(many, tc.file))
			if a, b := metricsWithoutTimes(t, one), metricsWithoutTimes(t, many); a != b {
				t.Errorf("metrics differ:\none process\n%s\nranks\n%s", a, b)
			}
			if strings.Count(log, "step 3/3") != 1 || !strings.Contains(log, fmt.Sprintf("data parallel on %d ranks", tc.n)) || !strings.Contains(log, "MB per step") {
				t.Errorf("rank 0 alone should log, with the communication per step:\n%s", log)
			}
		})
	}
}

// A run saved on 2 ranks with ZeRO-1 resumes on 3 (with the same global
// batch) and ends where one process ends uninterrupted.
func TestMPIResumeOnOtherRankCount(t *testing.T) {
	bin := needMPI(t)
	model := tinyModelDir(t)
	dir := t.TempDir()
	one, two, three := filepath.Join(dir, "one"), filepath.Join(dir, "two"), filepath.Join(dir, "three")
	steps := []string{"--max_steps", "4", "--save_steps", "2", "--finetuning_type", "lora", "--lora_rank", "4", "--zero_stage", "1"}
	if _, errs, code := zhllama(t, "", trainArgs(t, model, one, append(steps, "--gradient_accumulation_steps", "6")...)...); code != 0 {
		t.Fatalf("one process: %s", errs)
	}
	mpirun(t, bin, 2, trainArgs(t, model, two, append(steps, "--gradient_accumulation_steps", "3")...)...)
	if err := os.CopyFS(filepath.Join(three, "checkpoint-2"), os.DirFS(filepath.Join(two, "checkpoint-2"))); err != nil {
		t.Fatal(err)
	}
	log := mpirun(t, bin, 3, trainArgs(t, model, three, append(steps, "--gradient_accumulation_steps", "2", "--resume_from_checkpoint", "true")...)...)
	if !strings.Contains(log, "resumed from") {
		t.Errorf("no resume:\n%s", log)
	}
	sameFile(t, "2 ranks against one process", filepath.Join(one, "adapter_model.safetensors"), filepath.Join(two, "adapter_model.safetensors"))
	sameFile(t, "resumed on 3 ranks against one process", filepath.Join(one, "adapter_model.safetensors"), filepath.Join(three, "adapter_model.safetensors"))
}

// PPO under mpirun: 3 ranks with one mini-batch of experience each save
// the adapter and the critic's value head one process saves with g=3, and
// log the same statistics.
func TestMPIPPOMatchesOneProcess(t *testing.T) {
	bin := needMPI(t)
	model := tinyModelDir(t)
	dir := t.TempDir()
	rm := filepath.Join(dir, "rm")
	if _, errs, code := zhllama(t, "", "train", "--stage", "rm", "--model_name_or_path", model, "--dataset", testenv.Path(t, "preference/dpo_zh_demo.json"),
		"--template", "llama2", "--cutoff_len", "64", "--max_samples", "8", "--finetuning_type", "lora", "--per_device_train_batch_size", "2",
		"--max_steps", "1", "--output_dir", rm); code != 0 {
		t.Fatalf("train rm: %s", errs)
	}
	args := func(out string, g int) []string {
		return []string{"train", "--stage", "ppo", "--model_name_or_path", model, "--reward_model", rm, "--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json"),
			"--template", "llama2", "--cutoff_len", "40", "--max_samples", "12", "--finetuning_type", "lora", "--lora_rank", "4",
			"--per_device_train_batch_size", "2", "--gradient_accumulation_steps", fmt.Sprint(g), "--ppo_epochs", "2", "--max_new_tokens", "6",
			"--top_k", "0", "--top_p", "1", "--max_steps", "2", "--logging_steps", "1", "--learning_rate", "1e-3", "--output_dir", out}
	}
	one, many := filepath.Join(dir, "one"), filepath.Join(dir, "many")
	if _, errs, code := zhllama(t, "", args(one, 3)...); code != 0 {
		t.Fatalf("one process: %s", errs)
	}
	log := mpirun(t, bin, 3, args(many, 1)...)
	for _, f := range []string{"adapter_model.safetensors", "value_head.safetensors"} {
		sameFile(t, f, filepath.Join(one, f), filepath.Join(many, f))
	}
	if a, b := metricsWithoutTimes(t, one), metricsWithoutTimes(t, many); a != b {
		t.Errorf("metrics differ:\none process\n%s\nranks\n%s", a, b)
	}
	if strings.Count(log, "step 2/2") != 1 || !strings.Contains(log, "data parallel on 3 ranks") {
		t.Errorf("rank 0 alone should log:\n%s", log)
	}
}

// metricsWithoutTimes is a run's metrics.jsonl without the keys that
// measure time.
func metricsWithoutTimes(t *testing.T, dir string) string {
	t.Helper()
	var out strings.Builder
	for _, rec := range testenv.ReadJSONLines[map[string]any](t, filepath.Join(dir, "metrics.jsonl")) {
		for k := range rec {
			if k == "tokens_per_s" || strings.HasPrefix(k, "time/") {
				delete(rec, k)
			}
		}
		b, _ := json.Marshal(rec)
		out.Write(append(b, '\n'))
	}
	return out.String()
}

// A rank that fails takes the job down with its reason, and a rank that
// dies takes it down too; no partial checkpoint is published and the next
// start resumes from the last complete one.
func TestMPIFaults(t *testing.T) {
	bin := needMPI(t)
	model := tinyModelDir(t)
	dir := t.TempDir()

	// Rank 0 alone checks output_dir: it fails while rank 1 waits for it.
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(busy, "x"), []byte("x"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := mpirunCmd(ctx, bin, 2, trainArgs(t, model, busy, "--finetuning_type", "lora")...).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "is not empty") || !strings.Contains(string(out), "aborting the job") {
		t.Errorf("a failing rank 0: %v\n%s", err, out)
	}

	// Kill rank 1 after step 3; checkpoints are saved every step.
	run := filepath.Join(dir, "run")
	args := trainArgs(t, model, run, "--finetuning_type", "lora", "--max_steps", "100000", "--save_steps", "1")
	cmd := mpirunCmd(ctx, bin, 2, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	killed := false
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if !killed && strings.HasPrefix(sc.Text(), "step 3/") {
			if pid := rankPID(t, cmd.Process.Pid, 1); pid > 0 {
				killed = true
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
	}
	if err := cmd.Wait(); err == nil || ctx.Err() != nil || !killed {
		t.Fatalf("killing rank 1: mpirun returned %v (killed %v, timeout %v)\n%s", err, killed, ctx.Err(), log.String())
	}
	entries, err := os.ReadDir(run)
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "checkpoint-") {
			continue
		}
		if _, err := os.Stat(filepath.Join(run, e.Name(), "trainer_state.json")); err != nil {
			t.Errorf("%s was published incomplete", e.Name())
		}
		last = e.Name()
	}
	if last == "" {
		t.Fatalf("no checkpoint before the kill:\n%s", log.String())
	}
	resumed := mpirun(t, bin, 2, append(args[:len(args)-4], "--max_steps", "5", "--resume_from_checkpoint", "true")...)
	if !strings.Contains(resumed, "resumed from") || !strings.Contains(resumed, "step 5/5") {
		t.Errorf("no resume after the kill:\n%s", resumed)
	}
}

// rankPID finds the process of a rank among mpirun's children.
func rankPID(t *testing.T, mpirunPID, rank int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", mpirunPID))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, pid := range strings.Fields(string(b)) {
			env, _ := os.ReadFile("/proc/" + pid + "/environ")
			for _, kv := range strings.Split(string(env), "\x00") {
				if kv == fmt.Sprintf("OMPI_COMM_WORLD_RANK=%d", rank) {
					var n int
					fmt.Sscan(pid, &n)
					return n
				}
			}
		}
	}
	return 0
}

// The default build, started by mpirun with several ranks, refuses and
// says how to build for MPI.
func TestDefaultBuildRefusesRanks(t *testing.T) {
	cmd := exec.Command(binary, trainArgs(t, tinyModelDir(t), filepath.Join(t.TempDir(), "out"))...)
	cmd.Env = append(os.Environ(), "OMPI_COMM_WORLD_SIZE=2")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-tags mpi") {
		t.Errorf("default build under 2 ranks: %v\n%s", err, out)
	}
}
