// Package dataset reads the datasets LLaMA-Factory users train on: the
// registry dataset_info.json, and records in the alpaca, sharegpt,
// BELLE, MOSS, HH-RLHF and preference layouts, converted to conversations
// that package template renders.
package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"zhllama/template"
)

// Layout says how a dataset's records are laid out, as an entry of
// LLaMA-Factory's dataset_info.json does.
type Layout struct {
	FileName   string            `json:"file_name"`
	Formatting string            `json:"formatting"` // alpaca (default) or sharegpt
	Ranking    bool              `json:"ranking"`
	Columns    map[string]string `json:"columns"`
	Tags       map[string]string `json:"tags"`
}

// Example is a record converted to messages: Prompt alternates user and
// assistant turns and ends with a user turn; Response holds the answer, or
// the chosen and rejected answers of a ranking dataset.
type Example struct {
	System   string
	Tools    string
	Prompt   []template.Message
	Response []template.Message
	// Desirable is a KTO example's label (the kto_tag column): whether its
	// one answer is desirable; nil for other data.
	Desirable *bool
}

func msg(role, content string) template.Message {
	return template.Message{Role: role, Content: content}
}

// Guess picks a layout from a record's fields, for files used without a registry.
func Guess(rec map[string]any) (Layout, error) {
	has := func(f string) bool { _, ok := rec[f]; return ok }
	switch {
	case has("chat") && has("meta_instruction"):
		return Layout{Formatting: "moss"}, nil
	case isHHText(rec["chosen"]) && isHHText(rec["rejected"]) && !has("conversations"):
		return Layout{Formatting: "hh_rlhf", Ranking: true}, nil
	case has("instruction") && has("output") && isDialogText(rec["instruction"]):
		return Layout{Formatting: "belle_multiturn"}, nil
	case has("conversations") || has("messages"):
		d := Layout{Formatting: "sharegpt", Columns: map[string]string{}, Tags: map[string]string{}}
		msgs := "conversations"
		if !has(msgs) {
			msgs = "messages"
		}
		d.Columns["messages"] = msgs
		if list, ok := rec[msgs].([]any); ok && len(list) > 0 {
			if m, ok := list[0].(map[string]any); ok {
				if _, ok := m["role"]; ok {
					d.Tags = map[string]string{"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
				}
			}
		}
		for _, c := range []string{"system", "tools"} {
			if has(c) {
				d.Columns[c] = c
			}
		}
		if has("chosen") && has("rejected") {
			d.Ranking = true
		}
		ktoTag(rec, d.Columns)
		return d, nil
	case has("question") && has("response_chosen") && has("response_rejected"):
		// MedicalGPT's reward data: alpaca-like with a history.
		return Layout{Formatting: "alpaca", Ranking: true, Columns: map[string]string{
			"prompt": "question", "query": "", "chosen": "response_chosen", "rejected": "response_rejected",
			"history": "history", "system": "system"}}, nil
	case has("instruction") && (has("output") || has("chosen")):
		d := Layout{Formatting: "alpaca", Columns: map[string]string{}}
		for _, c := range []string{"history", "system"} {
			if has(c) {
				d.Columns[c] = c
			}
		}
		d.Ranking = has("chosen") && has("rejected")
		ktoTag(rec, d.Columns)
		return d, nil
	}
	names := make([]string, 0, len(rec))
	for k := range rec {
		names = append(names, k)
	}
	sort.Strings(names)
	return Layout{}, fmt.Errorf("unknown layout (fields %s): expected alpaca (instruction, input, output), sharegpt (conversations or messages) or preference pairs", strings.Join(names, ", "))
}

// ktoTag notes a KTO label column (LLaMA-Factory's demo data calls it
// "label"; "kto_tag" is the key's own name) when it holds a boolean.
func ktoTag(rec map[string]any, columns map[string]string) {
	for _, f := range []string{"kto_tag", "label"} {
		if _, ok := rec[f].(bool); ok {
			columns["kto_tag"] = f
			return
		}
	}
}

func (l Layout) column(name, def string) string {
	if c, ok := l.Columns[name]; ok {
		return c
	}
	return def
}

func (l Layout) tag(name, def string) string {
	if t, ok := l.Tags[name]; ok {
		return t
	}
	return def
}

func str(rec map[string]any, field string) (string, error) {
	if field == "" {
		return "", nil
	}
	v, ok := rec[field]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("field %q is %s, not a string", field, jsonKind(v))
	}
	return s, nil
}

// answer is a required text field: absent or null is an error, as
// LLaMA-Factory drops such examples (an empty string it keeps).
func answer(rec map[string]any, field string) (string, error) {
	v, ok := rec[field]
	switch {
	case !ok:
		return "", fmt.Errorf("no response field %q", field)
	case v == nil:
		return "", fmt.Errorf("field %q is null: the record has no answer", field)
	}
	return str(rec, field)
}

// jsonKind names a decoded JSON value's type as JSON does.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// ErrRoleOrder is a conversation whose turns do not alternate user and
// assistant as a chat template needs.
var ErrRoleOrder = errors.New("wrong role order")

// Convert turns a record into an Example, checking its structure.
func (l Layout) Convert(rec map[string]any) (Example, error) {
	var ex Example
	var err error
	if ex.System, err = str(rec, l.column("system", "")); err != nil {
		return ex, err
	}
	if tools, ok := rec[l.column("tools", "")]; ok && tools != nil {
		if s, ok := tools.(string); ok {
			ex.Tools = s
		} else {
			b, _ := json.Marshal(tools)
			ex.Tools = string(b)
		}
	}
	if col := l.column("kto_tag", ""); col != "" {
		v, ok := rec[col].(bool)
		if !ok {
			return ex, fmt.Errorf("field %q (kto_tag) is %s, not true or false", col, jsonKind(rec[col]))
		}
		ex.Desirable = &v
	}
	switch l.Formatting {
	case "sharegpt":
		return l.convertShareGPT(rec, ex)
	case "moss":
		return convertMOSS(rec, ex)
	case "hh_rlhf":
		return convertHH(rec, ex)
	case "belle_multiturn":
		return convertBelleMultiturn(rec, ex)
	}
	return l.convertAlpaca(rec, ex)
}

func (l Layout) convertAlpaca(rec map[string]any, ex Example) (Example, error) {
	if h, ok := rec[l.column("history", "")].([]any); ok {
		for i, turn := range h {
			qa, ok := turn.([]any)
			if !ok || len(qa) != 2 {
				return ex, fmt.Errorf("history turn %d is not a [question, answer] pair", i)
			}
			q, ok1 := qa[0].(string)
			a, ok2 := qa[1].(string)
			if !ok1 || !ok2 {
				return ex, fmt.Errorf("history turn %d is not two strings", i)
			}
			ex.Prompt = append(ex.Prompt, msg(template.User, q), msg(template.Assistant, a))
		}
	}
	var query []string
	for _, c := range []string{l.column("prompt", "instruction"), l.column("query", "input")} {
		s, err := str(rec, c)
		if err != nil {
			return ex, err
		}
		if s != "" {
			query = append(query, s)
		}
	}
	if len(query) == 0 {
		return ex, fmt.Errorf("empty prompt: no %q or %q", l.column("prompt", "instruction"), l.column("query", "input"))
	}
	ex.Prompt = append(ex.Prompt, msg(template.User, strings.Join(query, "\n")))
	if l.Ranking {
		c, err := answer(rec, l.column("chosen", "chosen"))
		if err != nil {
			return ex, err
		}
		r, err := answer(rec, l.column("rejected", "rejected"))
		if err != nil {
			return ex, err
		}
		ex.Response = []template.Message{msg(template.Assistant, c), msg(template.Assistant, r)}
		return ex, nil
	}
	out, err := answer(rec, l.column("response", "output"))
	if err != nil {
		return ex, err
	}
	ex.Response = []template.Message{msg(template.Assistant, out)}
	return ex, nil
}

func (l Layout) convertShareGPT(rec map[string]any, ex Example) (Example, error) {
	roleTag, contentTag := l.tag("role_tag", "from"), l.tag("content_tag", "value")
	roles := map[string]string{
		l.tag("user_tag", "human"): template.User, l.tag("assistant_tag", "gpt"): template.Assistant,
		l.tag("observation_tag", "observation"): template.Observation, l.tag("function_tag", "function_call"): template.Function,
	}
	systemTag := l.tag("system_tag", "system")
	field := l.column("messages", "conversations")
	raw, ok := rec[field].([]any)
	if !ok {
		return ex, fmt.Errorf("no message list %q", field)
	}
	parse := func(v any, i int) (string, string, error) {
		m, ok := v.(map[string]any)
		if !ok {
			return "", "", fmt.Errorf("message %d is not an object", i)
		}
		tag, _ := m[roleTag].(string)
		content, ok := m[contentTag].(string)
		if !ok {
			return "", "", fmt.Errorf("message %d has no string %q", i, contentTag)
		}
		return tag, content, nil
	}
	var msgs []template.Message
	for i, v := range raw {
		tag, content, err := parse(v, i)
		if err != nil {
			return ex, err
		}
		if i == 0 && tag == systemTag {
			ex.System = content
			continue
		}
		role, ok := roles[tag]
		if !ok {
			return ex, fmt.Errorf("message %d has unknown role %q", i, tag)
		}
		odd := len(msgs)%2 == 0 // positions 0, 2, ...: user or observation
		if odd != (role == template.User || role == template.Observation) {
			want := "assistant/function"
			if odd {
				want = "user/observation"
			}
			return ex, fmt.Errorf("%w: message %d is %q where a %s turn belongs", ErrRoleOrder, i, tag, want)
		}
		msgs = append(msgs, msg(role, content))
	}
	if l.Ranking {
		if len(msgs)%2 != 1 {
			return ex, fmt.Errorf("a ranking example's conversation must end with a user turn (%d messages)", len(msgs))
		}
		ex.Prompt = msgs
		for _, k := range []string{l.column("chosen", "chosen"), l.column("rejected", "rejected")} {
			if s, ok := rec[k].(string); ok { // a bare answer
				ex.Response = append(ex.Response, msg(template.Assistant, s))
				continue
			}
			tag, content, err := parse(rec[k], 0)
			if err != nil {
				return ex, fmt.Errorf("%s: %v", k, err)
			}
			if r := roles[tag]; r != template.Assistant && r != template.Function {
				return ex, fmt.Errorf("%s has role %q, not the assistant's", k, tag)
			}
			ex.Response = append(ex.Response, msg(roles[tag], content))
		}
		return ex, nil
	}
	if len(msgs) == 0 || len(msgs)%2 != 0 {
		return ex, fmt.Errorf("the conversation must alternate user and assistant turns and end with the assistant (%d messages)", len(msgs))
	}
	ex.Prompt, ex.Response = msgs[:len(msgs)-1], msgs[len(msgs)-1:]
	return ex, nil
}

// isHHText reports text in HH-RLHF's layout: "\n\nHuman: ...\n\nAssistant: ...".
func isHHText(v any) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(strings.TrimLeft(s, " "), "\n\nHuman:") && strings.Contains(s, "\n\nAssistant:")
}

// splitDialog cuts text into turns at the given speaker markers.
func splitDialog(text string, markers map[string]string) []template.Message {
	var out []template.Message
	for len(text) > 0 {
		pos, role, mlen := -1, "", 0
		for m, r := range markers {
			if i := strings.Index(text, m); i >= 0 && (pos < 0 || i < pos) {
				pos, role, mlen = i, r, len(m)
			}
		}
		if pos < 0 {
			if len(out) > 0 {
				out[len(out)-1].Content += text
			}
			break
		}
		if len(out) > 0 {
			out[len(out)-1].Content += text[:pos]
		}
		out = append(out, template.Message{Role: role})
		text = text[pos+mlen:]
	}
	for i := range out {
		out[i].Content = strings.TrimSpace(out[i].Content)
	}
	return out
}

// convertHH turns an HH-RLHF pair into the shared conversation and the two
// final answers.
func convertHH(rec map[string]any, ex Example) (Example, error) {
	markers := map[string]string{"\n\nHuman:": template.User, "\n\nAssistant:": template.Assistant}
	c := splitDialog(rec["chosen"].(string), markers)
	r := splitDialog(rec["rejected"].(string), markers)
	if len(c) < 2 || len(r) < 2 || c[len(c)-1].Role != template.Assistant || r[len(r)-1].Role != template.Assistant {
		return ex, fmt.Errorf("an HH-RLHF pair must end with the assistant's answer")
	}
	prompt := c[:len(c)-1]
	if len(r)-1 != len(prompt) {
		return ex, fmt.Errorf("chosen and rejected do not share their conversation")
	}
	for i, m := range prompt {
		if r[i] != m {
			return ex, fmt.Errorf("chosen and rejected differ before the last answer (turn %d)", i)
		}
		if (i%2 == 0) != (m.Role == template.User) {
			return ex, fmt.Errorf("%w at turn %d", ErrRoleOrder, i)
		}
	}
	ex.Prompt = prompt
	ex.Response = []template.Message{c[len(c)-1], r[len(r)-1]}
	return ex, nil
}

// isDialogText reports BELLE's multi-turn layout: the history in the
// instruction as "Human: ...\nAssistant: ..." ending with "Assistant:".
func isDialogText(v any) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(strings.TrimSpace(s), "Human:") && strings.HasSuffix(strings.TrimSpace(s), "Assistant:")
}

func convertBelleMultiturn(rec map[string]any, ex Example) (Example, error) {
	instr, _ := rec["instruction"].(string)
	out, ok := rec["output"].(string)
	if !ok {
		return ex, fmt.Errorf("no output")
	}
	msgs := splitDialog("\n"+instr, map[string]string{"\nHuman:": template.User, "\nAssistant:": template.Assistant})
	if len(msgs) == 0 || msgs[len(msgs)-1].Role != template.Assistant || msgs[len(msgs)-1].Content != "" {
		return ex, fmt.Errorf("the instruction must end with an empty \"Assistant:\" turn")
	}
	msgs = msgs[:len(msgs)-1]
	for i, m := range msgs {
		if (i%2 == 0) != (m.Role == template.User) {
			return ex, fmt.Errorf("%w at turn %d", ErrRoleOrder, i)
		}
	}
	if len(msgs)%2 != 1 {
		return ex, fmt.Errorf("the dialog must end with the human's turn")
	}
	ex.Prompt, ex.Response = msgs, []template.Message{msg(template.Assistant, out)}
	return ex, nil
}

var mossTag = regexp.MustCompile(`^\s*<\|(Human|MOSS)\|>:\s?|\s*<(eoh|eom)>\s*$`)

// convertMOSS reads moss-003-sft: meta_instruction and chat.turn_N with
// Human and MOSS texts wrapped in <|Human|>: ... <eoh> and <|MOSS|>: ... <eom>.
func convertMOSS(rec map[string]any, ex Example) (Example, error) {
	chat, ok := rec["chat"].(map[string]any)
	if !ok {
		return ex, fmt.Errorf("no chat object")
	}
	ex.System, _ = rec["meta_instruction"].(string)
	var msgs []template.Message
	for i := 1; ; i++ {
		turn, ok := chat[fmt.Sprintf("turn_%d", i)].(map[string]any)
		if !ok {
			break
		}
		h, ok1 := turn["Human"].(string)
		m, ok2 := turn["MOSS"].(string)
		if !ok1 || !ok2 {
			return ex, fmt.Errorf("turn_%d lacks Human or MOSS", i)
		}
		msgs = append(msgs, msg(template.User, mossTag.ReplaceAllString(h, "")), msg(template.Assistant, mossTag.ReplaceAllString(m, "")))
	}
	if len(msgs) != 2*len(chat) || len(msgs) == 0 {
		return ex, fmt.Errorf("chat turns are not turn_1..turn_%d", len(chat))
	}
	ex.Prompt, ex.Response = msgs[:len(msgs)-1], msgs[len(msgs)-1:]
	return ex, nil
}
