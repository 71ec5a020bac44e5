package template

import (
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"

	"zhllama/spm"
)

// Jinja is the template as the Jinja source transformers, llama.cpp and
// zhllama all render (tokenizer_config.json's and GGUF's chat_template).
// Each of the template's pieces of text is tokenized on its own in
// training (with sentencepiece's dummy prefix), so the source puts a space
// before every piece that does not follow a special token or open the
// prompt: a tokenizer that parses <s> and </s> and gives each stretch of
// text between them the dummy prefix (spm.EncodeSpecial, llama.cpp) then
// reads the rendered text back to training's very ids. Messages with a
// role other than system (first), user, assistant or tool are refused.
func (t *Template) Jinja() string {
	var b strings.Builder
	b.WriteString("{#- zhllama template " + t.Name + " -#}\n")
	b.WriteString("{%- set ns = namespace(sp=true) -%}\n")
	b.WriteString("{%- if messages and messages[0]['role'] == 'system' -%}{%- set system = messages[0]['content'] -%}{%- set msgs = messages[1:] -%}" +
		"{%- else -%}{%- set system = '' -%}{%- set msgs = messages -%}{%- endif -%}\n")
	if t.DefaultSystem != "" {
		b.WriteString("{%- if not system -%}{%- set system = " + jinjaString(t.DefaultSystem) + " -%}{%- endif -%}\n")
	}
	b.WriteString("{%- for message in msgs -%}\n{%- set content = message['content'] -%}\n{%- if loop.first -%}\n")
	writeSlots(&b, t.prefix, "''")
	b.WriteString("{%- if system -%}")
	if t.fuseSystem {
		pre, post, _ := strings.Cut(t.system[0].text, "{{content}}")
		b.WriteString("{%- set content = " + jinjaString(pre) + " + system + " + jinjaString(post) + " + content -%}")
	} else {
		writeSlots(&b, t.system, "system")
	}
	b.WriteString("{%- endif -%}\n{%- endif -%}\n")
	for _, r := range []struct {
		cond  string
		slots []slot
	}{
		{"message['role'] == 'user'", t.user},
		{"message['role'] == 'assistant'", t.assistant},
		{"message['role'] in ['tool', 'observation']", t.observation},
	} {
		if r.cond == "message['role'] == 'user'" {
			b.WriteString("{%- if " + r.cond + " -%}\n")
		} else {
			b.WriteString("{%- elif " + r.cond + " -%}\n")
		}
		writeSlots(&b, r.slots, "content")
	}
	b.WriteString("{%- else -%}{{ raise_exception('the " + t.Name + " template takes system, user, assistant and tool messages, not ' + message['role']) }}\n")
	b.WriteString("{%- endif -%}\n{%- endfor -%}\n")
	return b.String()
}

// writeSlots writes the Jinja that renders slots with {{content}} standing
// for the expression content.
func writeSlots(b *strings.Builder, slots []slot, content string) {
	if len(slots) == 0 {
		return
	}
	for _, s := range slots {
		switch {
		case s.special != "":
			b.WriteString("{{ " + s.special + "_token }}{%- set ns.sp = true -%}")
		case s.text == "{{content}}":
			// An empty message renders nothing, as an empty piece encodes to nothing.
			b.WriteString("{%- if " + content + " -%}{{ ('' if ns.sp else ' ') + " + content + " }}{%- set ns.sp = false -%}{%- endif -%}")
		default:
			parts := strings.Split(s.text, "{{content}}")
			for i, p := range parts {
				parts[i] = jinjaString(p)
			}
			b.WriteString("{{ ('' if ns.sp else ' ') + " + strings.Join(parts, " + "+content+" + ") + " }}{%- set ns.sp = false -%}")
		}
	}
	b.WriteString("\n")
}

// jinjaString quotes s as a Jinja string literal.
func jinjaString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return "'" + r.Replace(s) + "'"
}

// Jinja is a compiled chat_template.
type Jinja struct {
	Source string
	tpl    *jinja.Template
}

// ParseJinja compiles a chat_template.
func ParseJinja(src string) (*Jinja, error) {
	tpl, err := jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("chat_template: %w", err)
	}
	return &Jinja{Source: src, tpl: tpl}, nil
}

// Render renders msgs (a system message first when system is not empty)
// with the tokenizer's bos and eos pieces; addGenerationPrompt asks the
// template to open the assistant's turn. A template's raise_exception
// comes back as the error.
func (j *Jinja) Render(msgs []Message, system, bos, eos string, addGenerationPrompt bool) (string, error) {
	var list []any
	if system != "" {
		list = append(list, map[string]any{"role": "system", "content": system})
	}
	for _, m := range msgs {
		list = append(list, map[string]any{"role": m.Role, "content": m.Content})
	}
	out, err := j.tpl.Render(map[string]any{"messages": list, "bos_token": bos, "eos_token": eos, "add_generation_prompt": addGenerationPrompt})
	if err != nil {
		return "", fmt.Errorf("chat_template: %w", err)
	}
	return out, nil
}

// Prompt renders msgs with the generation prompt and tokenizes the text
// with special pieces parsed, as llama.cpp does.
func (j *Jinja) Prompt(p *spm.Processor, msgs []Message, system string) ([]int32, error) {
	piece := func(which string) string {
		if id := p.SpecialID(which); id >= 0 {
			return p.IDToPiece(id)
		}
		return ""
	}
	text, err := j.Render(msgs, system, piece("bos"), piece("eos"), true)
	if err != nil {
		return nil, err
	}
	return spm.Int32s(p.EncodeSpecial(text)), nil
}

// ForChatTemplate is the prompter of a model's chat_template: the
// built-in template whose Jinja it is (so the prompt is training's own
// path), else the source compiled.
func ForChatTemplate(src string) (Prompter, error) {
	for _, name := range Names() {
		if t := templates[name]; t.Jinja() == src {
			return t, nil
		}
	}
	return ParseJinja(src)
}
