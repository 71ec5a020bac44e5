package eval

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"zhllama/internal/atomicfile"
	"zhllama/llama"
	"zhllama/template"
)

// This file is multiple-choice evaluation as LLaMA-Factory's evaluator
// (src/llamafactory/eval/evaluator.py, eval/template.py) does it: each
// question, after n_shot exemplars from the dev split as earlier
// user/assistant turns, is rendered with the chat template, and the
// prediction is the letter whose token the model's next-token logits at
// the prompt's last position rank highest.

// mcLang is the text around the questions in one language: the system
// text is before + subject + after.
type mcLang struct{ before, after, answer string }

var mcLangs = map[string]mcLang{
	"zh": {"以下是中国关于", "考试的单项选择题，请选出其中的正确答案。\n\n", "\n答案："},
	"en": {"The following are multiple choice questions (with answers) about ", ".\n\n", "\nAnswer:"},
}

// MCLangs are the prompt languages.
var MCLangs = []string{"en", "zh"}

// user renders a question as the user's turn: the question, each choice
// on its own line as "A. text", then the answer cue.
func (l mcLang) user(q Question) string {
	var b strings.Builder
	b.WriteString(q.Question)
	for k, c := range q.Choices {
		b.WriteString("\n" + Letters[k] + ". " + c)
	}
	b.WriteString(l.answer)
	return b.String()
}

// MCMessages is the conversation for one question: each exemplar as a user
// turn and its answer letter as the assistant's, then the question and its
// answer (empty when unknown), the first user turn opened by the system
// text that names the subject.
func MCMessages(lang, subject string, shots []Question, q Question) ([]template.Message, error) {
	l, ok := mcLangs[lang]
	if !ok {
		return nil, fmt.Errorf("unknown language %q: use en or zh", lang)
	}
	var msgs []template.Message
	for _, s := range append(shots[:len(shots):len(shots)], q) {
		msgs = append(msgs, template.Message{Role: template.User, Content: l.user(s)},
			template.Message{Role: template.Assistant, Content: s.Answer})
	}
	msgs[0].Content = l.before + subject + l.after + msgs[0].Content
	return msgs, nil
}

// MCPromptIDs encodes the conversation with the chat template (its default
// system text) and keeps every turn but the last answer: the prompt the
// next token is predicted from (LLaMA-Factory's encode_oneturn).
func MCPromptIDs(tpl *template.Template, tok template.Tokenizer, msgs []template.Message) ([]int32, error) {
	return tpl.PromptIDs(tok, msgs, "", "")
}

// ChoiceIDs are the tokens the letters are read from: the last id of
// each letter encoded alone (LLaMA-Factory's
// tokenizer.encode(letter, add_special_tokens=False)[-1]).
func ChoiceIDs(tok template.Tokenizer) ([4]int32, error) {
	var out [4]int32
	for k, l := range Letters {
		ids := tok.Encode(l)
		if len(ids) == 0 {
			return out, fmt.Errorf("the tokenizer encodes %q to nothing", l)
		}
		out[k] = int32(ids[len(ids)-1])
	}
	return out, nil
}

// MCSubject is a subject's exemplars and questions.
type MCSubject struct {
	Subject
	Dev, Eval []Question
}

// MCData is a benchmark's split, every subject read.
type MCData struct {
	Task, Split string
	Subjects    []MCSubject
}

// Questions is the number of questions to evaluate.
func (d *MCData) Questions() int {
	n := 0
	for _, s := range d.Subjects {
		n += len(s.Eval)
	}
	return n
}

// LoadMC reads a benchmark's subjects, each one's dev split and the split
// to evaluate.
func LoadMC(task, dir, split string) (*MCData, error) {
	splits, err := Splits(task)
	if err != nil {
		return nil, err
	}
	if split == "dev" {
		return nil, fmt.Errorf("the dev split holds the exemplars: evaluate %s", strings.Join(splits[1:], " or "))
	}
	if !slices.Contains(splits, split) {
		return nil, fmt.Errorf("task %s has no %s split; it evaluates %s", task, split, strings.Join(splits[1:], " or "))
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	subs, err := Subjects(task, dir)
	if err != nil {
		return nil, err
	}
	d := &MCData{Task: task, Split: split}
	for _, s := range subs {
		dev, err := ReadSplit(task, dir, s.Key, "dev")
		if err != nil {
			return nil, err
		}
		ev, err := ReadSplit(task, dir, s.Key, split)
		if err != nil {
			return nil, err
		}
		d.Subjects = append(d.Subjects, MCSubject{s, dev, ev})
	}
	return d, nil
}

// MCOptions say how questions become prompts.
type MCOptions struct {
	Lang     string // en or zh
	NShot    int
	Template *template.Template
	// Seed starts the exemplar draws (LLaMA-Factory's evaluation seed,
	// 42 by default).
	Seed uint32
}

// MCPrompt is one question ready to run.
type MCPrompt struct {
	Shots    []int // the exemplars' rows in the dev split, in order
	Messages []template.Message
	IDs      []int32
	Answer   string
}

// Prompts renders every question of every subject, drawing exemplars in
// LLaMA-Factory's order.
func (d *MCData) Prompts(tok template.Tokenizer, o MCOptions) ([][]MCPrompt, error) {
	if o.NShot < 0 {
		return nil, fmt.Errorf("n_shot %d is negative", o.NShot)
	}
	draw := NewShotDrawer(o.Seed)
	out := make([][]MCPrompt, len(d.Subjects))
	for si, s := range d.Subjects {
		for _, q := range s.Eval {
			idx := draw.Draw(len(s.Dev), o.NShot)
			shots := make([]Question, len(idx))
			for k, i := range idx {
				shots[k] = s.Dev[i]
			}
			msgs, err := MCMessages(o.Lang, s.Name, shots, q)
			if err != nil {
				return nil, err
			}
			ids, err := MCPromptIDs(o.Template, tok, msgs)
			if err != nil {
				return nil, err
			}
			out[si] = append(out[si], MCPrompt{Shots: idx, Messages: msgs, IDs: ids, Answer: q.Answer})
		}
	}
	return out, nil
}

// ErrNotFinite reports logits that are NaN or infinite.
var ErrNotFinite = errors.New("the model's logits are not finite: its weights may be broken")

// Predict runs prompts batch at a time through the KV-cache step (one pass
// over each prompt) and returns, for each, the letter whose choice token
// has the highest logit at the last position (the first on a tie). done,
// if set, is told how many prompts each batch finished.
func Predict(m *llama.Model, choices [4]int32, prompts []MCPrompt, batch int, done func(n int)) ([]string, error) {
	if batch < 1 {
		return nil, fmt.Errorf("batch %d is less than 1", batch)
	}
	v := m.Config.VocabSize
	for _, c := range choices {
		if int(c) >= v || c < 0 {
			return nil, fmt.Errorf("choice token %d is outside the model's vocabulary of %d", c, v)
		}
	}
	out := make([]string, 0, len(prompts))
	for b0 := 0; b0 < len(prompts); b0 += batch {
		part := prompts[b0:min(len(prompts), b0+batch)]
		ids := make([][]int32, len(part))
		most := 1
		for i, p := range part {
			if len(p.IDs) == 0 {
				return nil, fmt.Errorf("prompt %d is empty", b0+i)
			}
			ids[i] = p.IDs
			most = max(most, len(p.IDs))
		}
		logits := m.Step(m.NewCache(len(part), most, false), ids)
		for i := range part {
			best := 0
			row := logits[i*v : (i+1)*v]
			for k, c := range choices {
				x := row[c]
				if x != x || x > 3.4e38 || x < -3.4e38 {
					return nil, ErrNotFinite
				}
				if x > row[choices[best]] {
					best = k
				}
			}
			out = append(out, Letters[best])
		}
		if done != nil {
			done(len(part))
		}
	}
	return out, nil
}

// MCResult is a split's predictions.
type MCResult struct {
	Subjects []Subject
	Preds    [][]string // per subject, per question
	Answers  [][]string // "" where unknown
}

// CategoryScore is one category's accuracy over the questions with known
// answers.
type CategoryScore struct {
	Name           string
	Correct, Total int
}

// Accuracy is the percentage correct.
func (c CategoryScore) Accuracy() float64 { return 100 * float64(c.Correct) / float64(c.Total) }

// Scores are the accuracies of Average and each category that has a
// question with a known answer, in LLaMA-Factory's order.
func (r *MCResult) Scores() []CategoryScore {
	by := map[string]*CategoryScore{}
	for _, n := range mcCategories {
		by[n] = &CategoryScore{Name: n}
	}
	for si, s := range r.Subjects {
		for qi, a := range r.Answers[si] {
			if a == "" {
				continue
			}
			ok := 0
			if r.Preds[si][qi] == a {
				ok = 1
			}
			for _, c := range []string{"Average", s.Category} {
				if cs := by[c]; cs != nil {
					cs.Correct += ok
					cs.Total++
				}
			}
		}
	}
	var out []CategoryScore
	for _, n := range mcCategories {
		if by[n].Total > 0 {
			out = append(out, *by[n])
		}
	}
	return out
}

// Table is LLaMA-Factory's score lines ("{name:>15}: {accuracy:.2f}"), or a
// sentence when no answer is known.
func (r *MCResult) Table() string {
	var lines []string
	for _, c := range r.Scores() {
		lines = append(lines, fmt.Sprintf("%15s: %.2f", c.Name, c.Accuracy()))
	}
	if len(lines) == 0 {
		return "no question of this split has an answer: accuracy not scored (the predictions are in results.json)"
	}
	return strings.Join(lines, "\n")
}

// JSON is results.json as LLaMA-Factory writes it (json.dump with indent
// 2): per subject, each question's index as a string to its predicted
// letter.
func (r *MCResult) JSON() []byte {
	var b bytes.Buffer
	b.WriteString("{")
	for si, s := range r.Subjects {
		if si > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  " + strconv.Quote(s.Key) + ": {")
		for qi, p := range r.Preds[si] {
			if qi > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "\n    \"%d\": %s", qi, strconv.Quote(p))
		}
		if len(r.Preds[si]) > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString("}")
	}
	if len(r.Subjects) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("}")
	return b.Bytes()
}

// CheckSaveDir refuses a save directory that exists and is not empty: it
// would mix results of two runs.
func CheckSaveDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s exists and is not empty: choose another save_dir", dir)
	}
	return nil
}

// Save writes results.json and results.log (the table) to dir, which must
// not hold anything yet.
func (r *MCResult) Save(dir string) error {
	if err := CheckSaveDir(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "results.json"), r.JSON()); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "results.log"), []byte(r.Table()))
}
