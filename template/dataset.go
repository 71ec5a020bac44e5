package template

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Dataset describes a dataset's layout as an entry of LLaMA-Factory's
// dataset_info.json does.
type Dataset struct {
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
	Prompt   []Message
	Response []Message
}

// ReadRegistry reads a dataset_info.json.
func ReadRegistry(path string) (map[string]Dataset, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reg map[string]Dataset
	if err := json.Unmarshal(b, &reg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for name, d := range reg {
		if d.Formatting == "" {
			d.Formatting = "alpaca"
			reg[name] = d
		}
		if d.Formatting != "alpaca" && d.Formatting != "sharegpt" {
			return nil, fmt.Errorf("%s: dataset %q has formatting %q; zhllama reads alpaca and sharegpt", path, name, d.Formatting)
		}
	}
	return reg, nil
}

// Lookup returns the named dataset of a registry, with its file's path
// resolved against the registry's directory.
func Lookup(registryPath, name string) (Dataset, string, error) {
	reg, err := ReadRegistry(registryPath)
	if err != nil {
		return Dataset{}, "", err
	}
	d, ok := reg[name]
	if !ok {
		names := make([]string, 0, len(reg))
		for n := range reg {
			names = append(names, n)
		}
		sort.Strings(names)
		return Dataset{}, "", fmt.Errorf("%s has no dataset %q (it has %d: %s ...)", registryPath, name, len(names), strings.Join(names[:min(8, len(names))], ", "))
	}
	if d.FileName == "" {
		return Dataset{}, "", fmt.Errorf("%s: dataset %q has no file_name", registryPath, name)
	}
	return d, filepath.Join(filepath.Dir(registryPath), d.FileName), nil
}

// Resolve finds a dataset as LLaMA-Factory users name it: a file (or
// directory) as given, with an empty layout to be guessed from its records,
// else a name in dir/dataset_info.json.
func Resolve(dir, name string) (Dataset, string, error) {
	if _, err := os.Stat(name); err == nil {
		return Dataset{}, name, nil
	}
	reg := filepath.Join(dir, "dataset_info.json")
	if _, err := os.Stat(reg); err != nil {
		return Dataset{}, "", fmt.Errorf("dataset %s: no such file, and no %s to look the name up in (set dataset_dir)", name, reg)
	}
	return Lookup(reg, name)
}

// Guess picks a layout from a record's fields, for files used without a registry.
func Guess(rec map[string]any) (Dataset, error) {
	has := func(f string) bool { _, ok := rec[f]; return ok }
	switch {
	case has("chat") && has("meta_instruction"):
		return Dataset{Formatting: "moss"}, nil
	case isHHText(rec["chosen"]) && isHHText(rec["rejected"]) && !has("conversations"):
		return Dataset{Formatting: "hh_rlhf", Ranking: true}, nil
	case has("instruction") && has("output") && isDialogText(rec["instruction"]):
		return Dataset{Formatting: "belle_multiturn"}, nil
	case has("conversations") || has("messages"):
		d := Dataset{Formatting: "sharegpt", Columns: map[string]string{}, Tags: map[string]string{}}
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
		return d, nil
	case has("question") && has("response_chosen") && has("response_rejected"):
		// MedicalGPT's reward data: alpaca-like with a history.
		return Dataset{Formatting: "alpaca", Ranking: true, Columns: map[string]string{
			"prompt": "question", "query": "", "chosen": "response_chosen", "rejected": "response_rejected",
			"history": "history", "system": "system"}}, nil
	case has("instruction") && (has("output") || has("chosen")):
		d := Dataset{Formatting: "alpaca", Columns: map[string]string{}}
		for _, c := range []string{"history", "system"} {
			if has(c) {
				d.Columns[c] = c
			}
		}
		d.Ranking = has("chosen") && has("rejected")
		return d, nil
	}
	names := make([]string, 0, len(rec))
	for k := range rec {
		names = append(names, k)
	}
	sort.Strings(names)
	return Dataset{}, fmt.Errorf("unknown layout (fields %s): expected alpaca (instruction, input, output), sharegpt (conversations or messages) or preference pairs", strings.Join(names, ", "))
}

func (d Dataset) column(name, def string) string {
	if c, ok := d.Columns[name]; ok {
		return c
	}
	return def
}

func (d Dataset) tag(name, def string) string {
	if t, ok := d.Tags[name]; ok {
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
		return "", fmt.Errorf("field %q is %T, not a string", field, v)
	}
	return s, nil
}

// Convert turns a record into an Example, checking its structure.
func (d Dataset) Convert(rec map[string]any) (Example, error) {
	var ex Example
	var err error
	if ex.System, err = str(rec, d.column("system", "")); err != nil {
		return ex, err
	}
	if tools, ok := rec[d.column("tools", "")]; ok && tools != nil {
		if s, ok := tools.(string); ok {
			ex.Tools = s
		} else {
			b, _ := json.Marshal(tools)
			ex.Tools = string(b)
		}
	}
	switch d.Formatting {
	case "sharegpt":
		return d.convertShareGPT(rec, ex)
	case "moss":
		return convertMOSS(rec, ex)
	case "hh_rlhf":
		return convertHH(rec, ex)
	case "belle_multiturn":
		return convertBelleMultiturn(rec, ex)
	}
	return d.convertAlpaca(rec, ex)
}

func (d Dataset) convertAlpaca(rec map[string]any, ex Example) (Example, error) {
	if h, ok := rec[d.column("history", "")].([]any); ok {
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
			ex.Prompt = append(ex.Prompt, Message{User, q}, Message{Assistant, a})
		}
	}
	var query []string
	for _, c := range []string{d.column("prompt", "instruction"), d.column("query", "input")} {
		s, err := str(rec, c)
		if err != nil {
			return ex, err
		}
		if s != "" {
			query = append(query, s)
		}
	}
	if len(query) == 0 {
		return ex, fmt.Errorf("empty prompt: no %q or %q", d.column("prompt", "instruction"), d.column("query", "input"))
	}
	ex.Prompt = append(ex.Prompt, Message{User, strings.Join(query, "\n")})
	if d.Ranking {
		c, err := str(rec, d.column("chosen", "chosen"))
		if err != nil {
			return ex, err
		}
		r, err := str(rec, d.column("rejected", "rejected"))
		if err != nil {
			return ex, err
		}
		ex.Response = []Message{{Assistant, c}, {Assistant, r}}
		return ex, nil
	}
	resp := d.column("response", "output")
	if _, ok := rec[resp]; !ok {
		return ex, fmt.Errorf("no response field %q", resp)
	}
	out, err := str(rec, resp)
	if err != nil {
		return ex, err
	}
	ex.Response = []Message{{Assistant, out}}
	return ex, nil
}

func (d Dataset) convertShareGPT(rec map[string]any, ex Example) (Example, error) {
	roleTag, contentTag := d.tag("role_tag", "from"), d.tag("content_tag", "value")
	roles := map[string]string{
		d.tag("user_tag", "human"): User, d.tag("assistant_tag", "gpt"): Assistant,
		d.tag("observation_tag", "observation"): Observation, d.tag("function_tag", "function_call"): Function,
	}
	systemTag := d.tag("system_tag", "system")
	field := d.column("messages", "conversations")
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
	var msgs []Message
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
		if odd != (role == User || role == Observation) {
			return ex, fmt.Errorf("wrong role order: message %d is %q where a %s turn belongs", i, tag, map[bool]string{true: "user/observation", false: "assistant/function"}[odd])
		}
		msgs = append(msgs, Message{role, content})
	}
	if d.Ranking {
		if len(msgs)%2 != 1 {
			return ex, fmt.Errorf("a ranking example's conversation must end with a user turn (%d messages)", len(msgs))
		}
		ex.Prompt = msgs
		for _, k := range []string{d.column("chosen", "chosen"), d.column("rejected", "rejected")} {
			if s, ok := rec[k].(string); ok { // a bare answer
				ex.Response = append(ex.Response, Message{Assistant, s})
				continue
			}
			tag, content, err := parse(rec[k], 0)
			if err != nil {
				return ex, fmt.Errorf("%s: %v", k, err)
			}
			if r := roles[tag]; r != Assistant && r != Function {
				return ex, fmt.Errorf("%s has role %q, not the assistant's", k, tag)
			}
			ex.Response = append(ex.Response, Message{roles[tag], content})
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
func splitDialog(text string, markers map[string]string) []Message {
	var out []Message
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
		out = append(out, Message{Role: role})
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
	markers := map[string]string{"\n\nHuman:": User, "\n\nAssistant:": Assistant}
	c := splitDialog(rec["chosen"].(string), markers)
	r := splitDialog(rec["rejected"].(string), markers)
	if len(c) < 2 || len(r) < 2 || c[len(c)-1].Role != Assistant || r[len(r)-1].Role != Assistant {
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
		if (i%2 == 0) != (m.Role == User) {
			return ex, fmt.Errorf("wrong role order at turn %d", i)
		}
	}
	ex.Prompt = prompt
	ex.Response = []Message{c[len(c)-1], r[len(r)-1]}
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
	msgs := splitDialog("\n"+instr, map[string]string{"\nHuman:": User, "\nAssistant:": Assistant})
	if len(msgs) == 0 || msgs[len(msgs)-1].Role != Assistant || msgs[len(msgs)-1].Content != "" {
		return ex, fmt.Errorf("the instruction must end with an empty \"Assistant:\" turn")
	}
	msgs = msgs[:len(msgs)-1]
	for i, m := range msgs {
		if (i%2 == 0) != (m.Role == User) {
			return ex, fmt.Errorf("wrong role order at turn %d", i)
		}
	}
	if len(msgs)%2 != 1 {
		return ex, fmt.Errorf("the dialog must end with the human's turn")
	}
	ex.Prompt, ex.Response = msgs, []Message{{Assistant, out}}
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
	var msgs []Message
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
		msgs = append(msgs, Message{User, mossTag.ReplaceAllString(h, "")}, Message{Assistant, mossTag.ReplaceAllString(m, "")})
	}
	if len(msgs) != 2*len(chat) || len(msgs) == 0 {
		return ex, fmt.Errorf("chat turns are not turn_1..turn_%d", len(chat))
	}
	ex.Prompt, ex.Response = msgs[:len(msgs)-1], msgs[len(msgs)-1:]
	return ex, nil
}
