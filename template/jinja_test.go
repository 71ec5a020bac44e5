package template

import (
	"slices"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/internal/testenv/spmtest"
	"zhllama/spm"
)

// conversations the template tests render: with and without a system
// prompt, several turns, Chinese, an empty answer.
var jinjaCases = []struct {
	system string
	msgs   []Message
}{
	{"", []Message{{User, "你好"}}},
	{"你是一个医生。", []Message{{User, "头疼怎么办？"}, {Assistant, "多休息，多喝水。"}, {User, "还有呢？"}}},
	{"", []Message{{User, "Hello there"}, {Assistant, ""}, {User, "介绍一下北京 and Shanghai"}}},
	{"", []Message{{User, "查一下天气"}, {Assistant, "好的"}, {Observation, "晴，25度"}}},
}

func chineseTokenizer(t *testing.T) *spm.Processor {
	t.Helper()
	return spmtest.Processor(t, "tokenizers/chinese-llama2/tokenizer.model")
}

func render(t *testing.T, j *Jinja, p *spm.Processor, msgs []Message, system string, gen bool) string {
	t.Helper()
	text, err := j.Render(msgs, system, p.IDToPiece(p.SpecialID("bos")), p.IDToPiece(p.SpecialID("eos")), gen)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// A built-in template's Jinja, rendered and tokenized with special pieces
// parsed, gives the very ids training builds: for the prompt a model
// answers, and for a whole conversation.
func TestJinjaGivesTrainingsIDs(t *testing.T) {
	for _, p := range []*spm.Processor{llamaTokenizer(t), chineseTokenizer(t)} {
		for _, name := range Names() {
			tpl := getTemplate(t, name)
			j, err := ParseJinja(tpl.Jinja())
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for i, c := range jinjaCases {
				want, err := tpl.Prompt(p, c.msgs, c.system)
				if err != nil {
					t.Fatal(err)
				}
				got, err := j.Prompt(p, c.msgs, c.system)
				if err != nil {
					t.Fatalf("%s case %d: %v", name, i, err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s case %d prompt:\n jinja %v\n  slot %v\n text %q", name, i, got, want, render(t, j, p, c.msgs, c.system, true))
				}
				whole := append(append([]Message(nil), c.msgs...), Message{Assistant, "好的，我明白了。"})
				enc, err := tpl.EncodeMessages(p, whole, c.system, "")
				if err != nil {
					t.Fatal(err)
				}
				if got, want := p.EncodeSpecial(render(t, j, p, whole, c.system, false)), slices.Concat(enc...); !slices.Equal(got, want) {
					t.Errorf("%s case %d conversation:\n jinja %v\n  slot %v", name, i, got, want)
				}
			}
		}
	}
}

func TestForChatTemplateFindsTheBuiltIn(t *testing.T) {
	for _, name := range Names() {
		pr, err := ForChatTemplate(getTemplate(t, name).Jinja())
		if err != nil {
			t.Fatal(err)
		}
		if tpl, ok := pr.(*Template); !ok || tpl.Name != name {
			t.Errorf("%s: got %T %v", name, pr, pr)
		}
	}
	if pr, err := ForChatTemplate(llama2Official); err != nil {
		t.Fatal(err)
	} else if _, ok := pr.(*Jinja); !ok {
		t.Errorf("a foreign template came back as %T", pr)
	}
}

// llama2Official is the Jinja chat_template Meta's Llama-2-chat checkpoints
// carry: a template from outside, with strip() and raise_exception.
const llama2Official = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"

func TestJinjaErrors(t *testing.T) {
	j, err := ParseJinja(llama2Official)
	if err != nil {
		t.Fatal(err)
	}
	_, err = j.Render([]Message{{User, "a"}, {User, "b"}}, "", "<s>", "</s>", true)
	if err == nil || !strings.Contains(err.Error(), "must alternate") {
		t.Errorf("raise_exception: %v", err)
	}
	if _, err := ParseJinja("{% for m in messages %}"); err == nil || !strings.Contains(err.Error(), "chat_template") {
		t.Errorf("unclosed for: %v", err)
	}
	j, _ = ParseJinja(getTemplate(t, "llama2").Jinja())
	if _, err := j.Render([]Message{{"robot", "a"}}, "", "<s>", "</s>", true); err == nil || !strings.Contains(err.Error(), "robot") {
		t.Errorf("unknown role: %v", err)
	}
}

// Hugging Face's own Jinja renderer (@huggingface/jinja, as transformers.js
// and the Hub render chat templates) gives the same text as zhllama's, for
// every built-in template and for Meta's.
func TestJinjaMatchesHuggingFace(t *testing.T) {
	type job struct {
		Source   string           `json:"source"`
		Messages []map[string]any `json:"messages"`
		Gen      bool             `json:"add_generation_prompt"`
	}
	var jobs []job
	var want []string
	add := func(src string, c struct {
		system string
		msgs   []Message
	}, gen bool) {
		j, err := ParseJinja(src)
		if err != nil {
			t.Fatal(err)
		}
		text, err := j.Render(c.msgs, c.system, "<s>", "</s>", gen)
		if err != nil {
			text = "error: " + err.Error()
		}
		var list []map[string]any
		if c.system != "" {
			list = append(list, map[string]any{"role": "system", "content": c.system})
		}
		for _, m := range c.msgs {
			list = append(list, map[string]any{"role": m.Role, "content": m.Content})
		}
		jobs, want = append(jobs, job{src, list, gen}), append(want, text)
	}
	for _, name := range Names() {
		for _, c := range jinjaCases {
			add(getTemplate(t, name).Jinja(), c, true)
			add(getTemplate(t, name).Jinja(), c, false)
		}
	}
	for _, c := range jinjaCases[:3] {
		add(llama2Official, c, true)
	}
	const script = `
import {Template} from "@huggingface/jinja";
import {readFileSync} from "node:fs";
const jobs = JSON.parse(readFileSync(process.argv[2], "utf8"));
console.log(JSON.stringify(jobs.map(j => {
  try {
    return new Template(j.source).render({messages: j.messages, bos_token: "<s>", eos_token: "</s>", add_generation_prompt: j.add_generation_prompt});
  } catch (e) { return "error: " + e.message; }
})));`
	var got []string
	testenv.RunNode(t, script, jobs, &got)
	if len(got) != len(want) {
		t.Fatalf("%d renders for %d jobs", len(got), len(want))
	}
	for i := range want {
		if strings.HasPrefix(want[i], "error: ") != strings.HasPrefix(got[i], "error: ") || !strings.HasPrefix(want[i], "error: ") && got[i] != want[i] {
			t.Errorf("job %d (%.60q...):\n huggingface %q\n     zhllama %q", i, jobs[i].Source, got[i], want[i])
		}
	}
}

// llama.cpp, reading the LLaMA-2 vocabulary from a GGUF file and parsing
// special tokens, tokenizes every built-in template's rendered text to the
// ids training builds.
func TestJinjaIDsMatchLlamaCpp(t *testing.T) {
	p := llamaTokenizer(t)
	type job struct {
		Model string   `json:"model"`
		Texts []string `json:"texts"`
	}
	in := job{Model: testenv.Path(t, "gguf/llama-2-tiny-random.gguf")}
	var want [][]int
	for _, name := range Names() {
		tpl := getTemplate(t, name)
		j, err := ParseJinja(tpl.Jinja())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range jinjaCases {
			whole := append(append([]Message(nil), c.msgs...), Message{Assistant, "好的，我明白了。"})
			enc, err := tpl.EncodeMessages(p, whole, c.system, "")
			if err != nil {
				t.Fatal(err)
			}
			in.Texts = append(in.Texts, render(t, j, p, whole, c.system, false))
			want = append(want, slices.Concat(enc...))
		}
	}
	const script = `
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {readFileSync} from "node:fs";
const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 1});
const model = await llama.loadModel({modelPath: job.model, vocabOnly: true});
console.log(JSON.stringify(job.texts.map(t => Array.from(model.tokenize(t, true)))));
await llama.dispose();`
	var got [][]int
	testenv.RunNode(t, script, in, &got)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("%q:\n llama.cpp %v\n  training %v", in.Texts[i], got[i], want[i])
		}
	}
}
