package template

import (
	"slices"
	"strings"
	"testing"

	"zhllama/internal/testenv/spmtest"
	"zhllama/spm"
	"zhllama/tensor"
)

func llamaTokenizer(t *testing.T) *spm.Processor {
	t.Helper()
	return spmtest.Processor(t, "tokenizers/llama2/tokenizer.model")
}

// Labels built here are skipped by the loss kernel.
func TestIgnoreIndexIsTheLossKernels(t *testing.T) {
	if IgnoreIndex != tensor.IgnoreIndex {
		t.Errorf("template.IgnoreIndex %d, tensor.IgnoreIndex %d", IgnoreIndex, tensor.IgnoreIndex)
	}
}

func getTemplate(t *testing.T, name string) *Template {
	t.Helper()
	tpl, err := Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func TestInferSeqLen(t *testing.T) {
	for _, c := range [][5]int{
		{3000, 2000, 1000, 600, 400},
		{2000, 3000, 1000, 400, 600},
		{1000, 100, 1000, 900, 100},
		{100, 1000, 1000, 100, 900},
		{100, 200, 1000, 100, 200},
		{100, 200, 0, 0, 0},
	} {
		s, tg := InferSeqLen(c[0], c[1], c[2])
		if s != c[3] || tg != c[4] {
			t.Errorf("InferSeqLen(%d, %d, %d) = %d, %d; want %d, %d", c[0], c[1], c[2], s, tg, c[3], c[4])
		}
	}
}

func cat(parts ...[]int) []int {
	var out []int
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func masked(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = IgnoreIndex
	}
	return out
}

// The llama2 template as LLaMA-Factory renders it: <s>[INST] <<SYS>>...
// [/INST] answer</s>, each text piece encoded on its own.
func TestLlama2Supervised(t *testing.T) {
	tok := llamaTokenizer(t)
	tpl, err := Get("llama2")
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{User, "你好"}, {Assistant, "你好！有什么可以帮你？"}, {User, "1+1=?"}, {Assistant, "2"}}
	ids, labels, err := tpl.Supervised(tok, msgs, "Be brief.", "", SupervisedOptions{CutoffLen: 1024})
	if err != nil {
		t.Fatal(err)
	}
	p1 := cat([]int{1}, tok.Encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n你好 [/INST]"))
	a1 := cat(tok.Encode("你好！有什么可以帮你？"), []int{2})
	p2 := cat([]int{1}, tok.Encode("[INST] 1+1=? [/INST]"))
	a2 := cat(tok.Encode("2"), []int{2})
	if want := cat(p1, a1, p2, a2); !slices.Equal(ids, want) {
		t.Fatalf("ids\n got %v\nwant %v", ids, want)
	}
	if want := cat(masked(len(p1)), a1, masked(len(p2)), a2); !slices.Equal(labels, want) {
		t.Fatalf("labels\n got %v\nwant %v", labels, want)
	}
	if _, labels, err = tpl.Supervised(tok, msgs, "Be brief.", "", SupervisedOptions{CutoffLen: 1024, MaskHistory: true}); err != nil {
		t.Fatal(err)
	}
	if want := cat(masked(len(p1)+len(a1)+len(p2)), a2); !slices.Equal(labels, want) {
		t.Errorf("mask_history labels %v", labels)
	}
	if _, labels, err = tpl.Supervised(tok, msgs, "Be brief.", "", SupervisedOptions{CutoffLen: 1024, TrainOnPrompt: true}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(labels, ids) {
		t.Errorf("train_on_prompt labels differ from ids")
	}
	// llama2_zh brings Chinese-LLaMA-2's system prompt.
	if ids, _, err = getTemplate(t, "llama2_zh").Supervised(tok, msgs[:2], "", "", SupervisedOptions{CutoffLen: 1024}); err != nil {
		t.Fatal(err)
	}
	if want := cat([]int{1}, tok.Encode("[INST] <<SYS>>\nYou are a helpful assistant. 你是一个乐于助人的助手。\n<</SYS>>\n\n你好 [/INST]"), a1); !slices.Equal(ids, want) {
		t.Errorf("llama2_zh ids %v", ids)
	}
}

func TestTemplatesRender(t *testing.T) {
	tok := llamaTokenizer(t)
	msgs := []Message{{User, "Q"}, {Assistant, "A"}}
	want := map[string][]int{
		"alpaca": cat(tok.Encode("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"),
			tok.Encode("### Instruction:\nQ\n\n### Response:\n"), tok.Encode("A"), []int{2}, tok.Encode("\n\n")),
		"chatml":  cat(tok.Encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"), tok.Encode("A<|im_end|>\n")),
		"vicuna":  cat(tok.Encode("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."), tok.Encode("USER: Q ASSISTANT:"), tok.Encode("A"), []int{2}),
		"default": cat(tok.Encode("Human: Q"), []int{2}, tok.Encode("\nAssistant:"), tok.Encode("A"), []int{2}, tok.Encode("\n")),
		"empty":   cat(tok.Encode("Q"), tok.Encode("A")),
	}
	for name, w := range want {
		tpl, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		ids, _, err := tpl.Supervised(tok, msgs, "", "", SupervisedOptions{CutoffLen: 4096})
		if err != nil || !slices.Equal(ids, w) {
			t.Errorf("%s: %v %v, want %v", name, ids, err, w)
		}
	}
	if _, err := Get("nope"); err == nil || !strings.Contains(err.Error(), "llama2_zh") {
		t.Errorf("unknown template: %v", err)
	}
}

func TestTruncationKeepsTheAnswer(t *testing.T) {
	tok := llamaTokenizer(t)
	tpl := getTemplate(t, "llama2")
	long := strings.Repeat("很长的问题。", 300)
	ids, labels, err := tpl.Supervised(tok, []Message{{User, long}, {Assistant, "短答"}}, "", "", SupervisedOptions{CutoffLen: 128})
	if err != nil {
		t.Fatal(err)
	}
	ans := cat(tok.Encode("短答"), []int{2})
	if len(ids) != 128 || !slices.Equal(ids[128-len(ans):], ans) || !slices.Equal(labels[128-len(ans):], ans) {
		t.Errorf("truncated to %d tokens, tail %v", len(ids), ids[len(ids)-len(ans):])
	}
	p, err := tpl.Pairwise(tok, []Message{{User, long}}, Message{Assistant, "好"}, Message{Assistant, "不好，很不好"}, "", "", 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ChosenIDs) > 64 || len(p.RejectedIDs) != 64 || !slices.Equal(p.ChosenIDs[:10], p.RejectedIDs[:10]) {
		t.Errorf("pairwise lengths %d %d", len(p.ChosenIDs), len(p.RejectedIDs))
	}
	if p.ChosenLabels[0] != IgnoreIndex || p.ChosenLabels[len(p.ChosenLabels)-1] != 2 {
		t.Errorf("pairwise labels %v", p.ChosenLabels)
	}
}

func TestPythonJSONAndTools(t *testing.T) {
	v, err := decodeOrdered(`{"b": 1, "a": [1.0, 2.50, 1e20, -0.0001, 0.00001, "中\n\"x\u0001"], "c": null, "d": true, "e": {}}`)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"b": 1, "a": [1.0, 2.5, 1e+20, -0.0001, 1e-05, "中\n\"x\u0001"], "c": null, "d": true, "e": {}}`
	if got := pyDumps(v); got != want {
		t.Errorf("pyDumps:\n got %s\nwant %s", got, want)
	}
	tools := `[{"name": "get_weather", "description": "查询天气", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "城市"}, "unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": "array", "items": {"type": "integer"}}}, "required": ["city"]}}]`
	got, err := formatTools(tools)
	if err != nil {
		t.Fatal(err)
	}
	wantTools := "You have access to the following tools:\n> Tool Name: get_weather\nTool Description: 查询天气\nTool Args:\n" +
		"  - city (string, required): 城市\n  - unit (string): , should be one of [c, f]\n  - days (array): , where each item should be integer\n\n" +
		"Use the following format if using a tool:\n```\nAction: tool name (one of [get_weather])\nAction Input: the input to the tool, in a JSON format representing the kwargs (e.g. ```{\"input\": \"hello world\", \"num_beams\": 5}```)\n```\n"
	if got != wantTools {
		t.Errorf("formatTools:\n got %q\nwant %q", got, wantTools)
	}
	fn, err := formatFunction(`{"name": "get_weather", "arguments": {"unit": "c", "city": "北京"}}`)
	if err != nil || fn != "Action: get_weather\nAction Input: {\"unit\": \"c\", \"city\": \"北京\"}" {
		t.Errorf("formatFunction: %q %v", fn, err)
	}
	if _, err := formatFunction("not json"); err == nil {
		t.Error("a bad function message was accepted")
	}
	// In a conversation: tools join the system text, the call is the assistant's turn.
	tok := llamaTokenizer(t)
	tpl := getTemplate(t, "default")
	msgs := []Message{{User, "北京天气？"}, {Function, `{"name": "get_weather", "arguments": {"city": "北京"}}`}, {Observation, `{"temp": 20}`}, {Assistant, "20度。"}}
	ids, _, err := tpl.Supervised(tok, msgs, "", tools, SupervisedOptions{CutoffLen: 4096})
	if err != nil {
		t.Fatal(err)
	}
	want2 := cat(tok.Encode("System: "+wantTools), []int{2}, tok.Encode("\n"), tok.Encode("Human: 北京天气？"), []int{2}, tok.Encode("\nAssistant:"),
		tok.Encode("Action: get_weather\nAction Input: {\"city\": \"北京\"}"), []int{2}, tok.Encode("\n"),
		tok.Encode("Human: {\"temp\": 20}"), []int{2}, tok.Encode("\nAssistant:"), tok.Encode("20度。"), []int{2}, tok.Encode("\n"))
	if !slices.Equal(ids, want2) {
		t.Errorf("tool conversation ids differ:\n got %v\nwant %v", ids, want2)
	}
}
