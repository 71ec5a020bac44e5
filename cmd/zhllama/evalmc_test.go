package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

// mcFixture is C-Eval's layout, two subjects with dev, val and test (no
// answers) splits.
func mcFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"subject_mapping.json": `{"law": ["Law", "法学", "Humanities"], "college_physics": ["College Physics", "大学物理", "STEM"]}`}
	for _, s := range []string{"law", "college_physics"} {
		files["dev/"+s+"_dev.csv"] = "id,question,A,B,C,D,answer,explanation\n0,甲问题____。,一,二,三,四,A,\n1,乙问题____。,五,六,七,八,D,\n"
		files["val/"+s+"_val.csv"] = "id,question,A,B,C,D,answer\n0,丙问题____。,1,2,3,4,B\n1,丁问题____。,a,b,c,d,C\n2,戊问题____。,春,夏,秋,冬,A\n"
		files["test/"+s+"_test.csv"] = "id,question,A,B,C,D\n0,己问题____。,1,2,3,4\n"
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		testenv.WriteFile(t, p, []byte(text))
	}
	return dir
}

// eval mc prints LLaMA-Factory's score lines and writes them to
// results.log beside results.json (every question's letter, subjects in
// order); progress goes to stderr; a save_dir in use is refused; a split
// without answers is predicted but not scored.
func TestEvalMC(t *testing.T) {
	model, data := tinyModelDir(t), mcFixture(t)
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"eval", "mc", "--model", model, "--task", "ceval", "--task_dir", data, "--n_shot", "2", "--batch", "2", "--save_dir", out}
	stdout, errs, code := zhllama(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	log, err := os.ReadFile(filepath.Join(out, "results.log"))
	if err != nil || stdout != string(log)+"\n" {
		t.Errorf("stdout %q, results.log %q (%v)", stdout, log, err)
	}
	lines := strings.Split(string(log), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "        Average: ") || !strings.HasPrefix(lines[1], "           STEM: ") || !strings.HasPrefix(lines[2], "     Humanities: ") {
		t.Errorf("results.log %q", log)
	}
	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]map[string]string
	if err := json.Unmarshal(raw, &res); err != nil || len(res) != 2 || len(res["law"]) != 3 || len(res["college_physics"]) != 3 {
		t.Fatalf("results.json %s (%v)", raw, err)
	}
	for _, s := range res {
		for _, l := range s {
			if l != "A" && l != "B" && l != "C" && l != "D" {
				t.Errorf("prediction %q", l)
			}
		}
	}
	if strings.Index(string(raw), `"college_physics"`) > strings.Index(string(raw), `"law"`) || !strings.HasPrefix(string(raw), "{\n  \"college_physics\": {\n    \"0\": \"") {
		t.Errorf("results.json is not in LLaMA-Factory's order and layout:\n%s", raw)
	}
	if !strings.Contains(errs, "2 subjects, 6 questions, 2-shot") || !strings.Contains(errs, "subject 2/2 law, 6/6 questions") || !strings.Contains(errs, "questions/s") {
		t.Errorf("stderr %q", errs)
	}
	if _, errs, code := zhllama(t, "", args...); code != 2 || !strings.Contains(errs, "not empty") {
		t.Errorf("the same save_dir again: exit %d %q", code, errs)
	}
	stdout, errs, code = zhllama(t, "", "eval", "mc", "--model", model, "--task", "ceval", "--task_dir", data, "--split", "test", "--template", "llama2")
	if code != 0 || !strings.Contains(stdout, "accuracy not scored") {
		t.Errorf("test split without answers: exit %d %q %q", code, stdout, errs)
	}
}

// Wrong flags are usage errors that name the flag; bad data names the file.
func TestEvalMCBadArguments(t *testing.T) {
	data := mcFixture(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--task", "gaokao", "--task_dir", data}, 2, `unknown task "gaokao"`},
		{[]string{"--task", "cmmlu", "--task_dir", data, "--split", "val"}, 2, "--split"},
		{[]string{"--task", "ceval", "--task_dir", data, "--lang", "fr"}, 2, "--lang"},
		{[]string{"--task", "ceval", "--task_dir", data, "--template", "nope"}, 2, "--template"},
		{[]string{"--task", "ceval", "--task_dir", data, "--n_shot", "-1"}, 2, "--n_shot"},
		{[]string{"--task", "ceval", "--task_dir", filepath.Join(data, "nowhere")}, 1, "nowhere: not a directory"},
		{[]string{"--task", "ceval", "--task_dir", filepath.Join(data, "dev")}, 1, "subject_mapping.json"},
		{[]string{"--task", "mmlu", "--task_dir", data}, 1, "abstract_algebra_dev.csv"},
	} {
		_, errs, code := zhllama(t, "", append([]string{"eval", "mc", "--model", "unused"}, c.args...)...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d %q, want %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
}
