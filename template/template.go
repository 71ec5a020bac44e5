// Package template renders conversations with the chat templates models are
// trained with, and builds training examples from them: input ids and
// labels with everything but the assistant's turns masked, as
// LLaMA-Factory builds them.
package template

import (
	"fmt"
	"sort"
	"strings"

	"zhllama/spm"
)

// Roles of a conversation's messages.
const (
	User        = "user"
	Assistant   = "assistant"
	Observation = "observation" // a tool's result
	Function    = "function"    // the assistant calling a tool
)

// Message is one turn.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// IgnoreIndex marks a label the loss skips. It must equal
// tensor.IgnoreIndex (a test checks it); it is repeated here so that
// rendering conversations does not pull in the numeric kernels.
const IgnoreIndex = -100

// slot is a piece of a turn's format: literal text, where {{content}}
// stands for the message, or one special token.
type slot struct {
	text    string
	special string // "bos" or "eos"
}

func text(s string) slot { return slot{text: s} }

var (
	bos = slot{special: "bos"}
	eos = slot{special: "eos"}
)

// Template is a chat format.
type Template struct {
	Name          string
	user          []slot
	assistant     []slot
	system        []slot
	observation   []slot
	prefix        []slot
	DefaultSystem string
	// fuseSystem puts the system text inside the first user turn (LLaMA-2).
	fuseSystem bool
}

var templates = map[string]*Template{}

func register(t *Template) {
	if t.user == nil {
		t.user = []slot{text("{{content}}")}
	}
	if t.assistant == nil {
		t.assistant = []slot{text("{{content}}"), eos}
	}
	if t.system == nil {
		t.system = []slot{text("{{content}}")}
	}
	if t.observation == nil {
		t.observation = t.user
	}
	templates[t.Name] = t
}

func init() {
	llama2 := func(name, system string) *Template {
		return &Template{Name: name, user: []slot{bos, text("[INST] {{content}} [/INST]")},
			system: []slot{text("<<SYS>>\n{{content}}\n<</SYS>>\n\n")}, DefaultSystem: system, fuseSystem: true}
	}
	register(llama2("llama2", ""))
	register(llama2("llama2_zh", "You are a helpful assistant. 你是一个乐于助人的助手。"))
	register(&Template{Name: "alpaca", user: []slot{text("### Instruction:\n{{content}}\n\n### Response:\n")},
		assistant:     []slot{text("{{content}}"), eos, text("\n\n")},
		DefaultSystem: "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"})
	register(&Template{Name: "chatml", user: []slot{text("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")},
		assistant:   []slot{text("{{content}}<|im_end|>\n")},
		system:      []slot{text("<|im_start|>system\n{{content}}<|im_end|>\n")},
		observation: []slot{text("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")}})
	register(&Template{Name: "vicuna", user: []slot{text("USER: {{content}} ASSISTANT:")},
		DefaultSystem: "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."})
	register(&Template{Name: "default", user: []slot{text("Human: {{content}}"), eos, text("\nAssistant:")},
		assistant: []slot{text("{{content}}"), eos, text("\n")},
		system:    []slot{text("System: {{content}}"), eos, text("\n")}})
	register(&Template{Name: "empty", assistant: []slot{text("{{content}}")}})
}

// Get returns the named template.
func Get(name string) (*Template, error) {
	if t, ok := templates[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("template %q does not exist; the templates are %s", name, strings.Join(Names(), ", "))
}

// Names lists the templates.
func Names() []string {
	var ns []string
	for n := range templates {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// Tokenizer is what templates need of a tokenizer: text to ids, as a slow
// LlamaTokenizer does (each piece of text gets sentencepiece's dummy
// prefix), and the ids of bos and eos.
type Tokenizer interface {
	Encode(text string) []int
	SpecialID(which string) int
}

var _ Tokenizer = (*spm.Processor)(nil)

func (t *Template) encodeSlots(tok Tokenizer, slots []slot, content string) ([]int, error) {
	var ids []int
	for _, s := range slots {
		if s.special != "" {
			id := tok.SpecialID(s.special)
			if id < 0 {
				return nil, fmt.Errorf("template %s needs a %s token, and the tokenizer has none", t.Name, s.special)
			}
			ids = append(ids, id)
			continue
		}
		if txt := strings.ReplaceAll(s.text, "{{content}}", content); txt != "" {
			ids = append(ids, tok.Encode(txt)...)
		}
	}
	return ids, nil
}

// EncodeMessages renders each message to ids. The first carries the
// template's prefix and the system text (system, or the default when empty,
// followed by the tool descriptions when tools is not empty).
func (t *Template) EncodeMessages(tok Tokenizer, msgs []Message, system, tools string) ([][]int, error) {
	if system == "" {
		system = t.DefaultSystem
	}
	if tools != "" {
		toolText, err := formatTools(tools)
		if err != nil {
			return nil, err
		}
		system += toolText
	}
	out := make([][]int, 0, len(msgs))
	for i, m := range msgs {
		var ids []int
		content := m.Content
		if m.Role == Function {
			var err error
			if content, err = formatFunction(content); err != nil {
				return nil, fmt.Errorf("message %d: %w", i, err)
			}
		}
		if i == 0 {
			pre, err := t.encodeSlots(tok, t.prefix, "")
			if err != nil {
				return nil, err
			}
			ids = append(ids, pre...)
			if system != "" || tools != "" {
				if t.fuseSystem {
					content = strings.ReplaceAll(t.system[0].text, "{{content}}", system) + content
				} else {
					sys, err := t.encodeSlots(tok, t.system, system)
					if err != nil {
						return nil, err
					}
					ids = append(ids, sys...)
				}
			}
		}
		var slots []slot
		switch m.Role {
		case User:
			slots = t.user
		case Assistant, Function:
			slots = t.assistant
		case Observation:
			slots = t.observation
		default:
			return nil, fmt.Errorf("message %d has role %q; roles are user, assistant, observation, function", i, m.Role)
		}
		body, err := t.encodeSlots(tok, slots, content)
		if err != nil {
			return nil, err
		}
		out = append(out, append(ids, body...))
	}
	return out, nil
}

// InferSeqLen splits a budget of cutoff tokens between a prompt and its
// response: a short response is kept whole, then a short prompt, else both
// are cut in proportion (LLaMA-Factory's rule).
func InferSeqLen(sourceLen, targetLen, cutoff int) (int, int) {
	var maxTarget int
	switch {
	case targetLen*2 < cutoff:
		maxTarget = cutoff
	case sourceLen*2 < cutoff:
		maxTarget = cutoff - sourceLen
	default:
		maxTarget = int(float64(cutoff) * (float64(targetLen) / float64(sourceLen+targetLen)))
	}
	newTarget := min(maxTarget, targetLen)
	newSource := min(max(cutoff-newTarget, 0), sourceLen)
	return newSource, newTarget
}

// SupervisedOptions control how a supervised example is built.
type SupervisedOptions struct {
	CutoffLen     int
	TrainOnPrompt bool // learn the prompts too
	MaskHistory   bool // learn the last assistant turn only
}

// Supervised builds input ids and labels for a conversation whose messages
// alternate user (or observation) and assistant (or function) turns, ending
// with the assistant. Prompts get IgnoreIndex labels; turns are cut to
// CutoffLen as LLaMA-Factory cuts them.
func (t *Template) Supervised(tok Tokenizer, msgs []Message, system, tools string, o SupervisedOptions) (ids, labels []int, err error) {
	if len(msgs) == 0 || len(msgs)%2 != 0 {
		return nil, nil, fmt.Errorf("a supervised example needs prompt/response pairs, got %d messages", len(msgs))
	}
	enc, err := t.EncodeMessages(tok, msgs, system, tools)
	if err != nil {
		return nil, nil, err
	}
	type pair struct{ src, tgt []int }
	pairs := make([]pair, 0, len(enc)/2)
	for i := 0; i < len(enc); i += 2 {
		pairs = append(pairs, pair{enc[i], enc[i+1]})
	}
	if o.MaskHistory {
		for i, j := 0, len(pairs)-1; i < j; i, j = i+1, j-1 {
			pairs[i], pairs[j] = pairs[j], pairs[i]
		}
	}
	total := 0
	for turn, p := range pairs {
		if total >= o.CutoffLen {
			break
		}
		sl, tl := InferSeqLen(len(p.src), len(p.tgt), o.CutoffLen-total)
		src, tgt := p.src[:sl], p.tgt[:tl]
		total += sl + tl
		srcLabel := make([]int, sl)
		if o.TrainOnPrompt {
			copy(srcLabel, src)
		} else {
			for i := range srcLabel {
				srcLabel[i] = IgnoreIndex
			}
		}
		tgtLabel := append([]int(nil), tgt...)
		if o.MaskHistory && turn != 0 {
			for i := range tgtLabel {
				tgtLabel[i] = IgnoreIndex
			}
		}
		if o.MaskHistory {
			ids = append(append(append([]int(nil), src...), tgt...), ids...)
			labels = append(append(srcLabel, tgtLabel...), labels...)
		} else {
			ids = append(append(ids, src...), tgt...)
			labels = append(append(labels, srcLabel...), tgtLabel...)
		}
	}
	return ids, labels, nil
}

// Pair is a reward-modelling or DPO example: one prompt, two answers.
type Pair struct {
	ChosenIDs, ChosenLabels     []int
	RejectedIDs, RejectedLabels []int
}

// Pairwise builds the chosen and rejected sequences for a prompt (ending
// with a user turn): the prompt is shared, the longer answer decides how
// much of it fits in cutoff.
func (t *Template) Pairwise(tok Tokenizer, prompt []Message, chosen, rejected Message, system, tools string, cutoff int) (Pair, error) {
	if len(prompt)%2 != 1 {
		return Pair{}, fmt.Errorf("a pairwise prompt must end with a user turn, got %d messages", len(prompt))
	}
	oneTurn := func(answer Message) ([]int, []int, error) {
		enc, err := t.EncodeMessages(tok, append(append([]Message(nil), prompt...), answer), system, tools)
		if err != nil {
			return nil, nil, err
		}
		var p []int
		for _, e := range enc[:len(enc)-1] {
			p = append(p, e...)
		}
		return p, enc[len(enc)-1], nil
	}
	promptIDs, c, err := oneTurn(chosen)
	if err != nil {
		return Pair{}, err
	}
	_, r, err := oneTurn(rejected)
	if err != nil {
		return Pair{}, err
	}
	sl, tl := InferSeqLen(len(promptIDs), max(len(c), len(r)), cutoff)
	promptIDs, c, r = promptIDs[:sl], c[:min(tl, len(c))], r[:min(tl, len(r))]
	mask := make([]int, sl)
	for i := range mask {
		mask[i] = IgnoreIndex
	}
	cat := func(a, b []int) []int { return append(append([]int(nil), a...), b...) }
	return Pair{
		ChosenIDs: cat(promptIDs, c), ChosenLabels: cat(mask, c),
		RejectedIDs: cat(promptIDs, r), RejectedLabels: cat(mask, r),
	}, nil
}
