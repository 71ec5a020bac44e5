package corpus

import (
	"fmt"
	"sort"
	"strings"
)

// textFields are the fields pretraining corpora keep their text in:
// text (C4, MedicalGPT), completion (wikipedia-cn), content.
var textFields = []string{"text", "completion", "content"}

// DocumentText returns the pretraining text of a record, or an error that
// names the fields it has and what they look like. BaiduBaike entries
// (title, summary, sections of title and content) become one text.
func DocumentText(rec Record) (string, error) {
	if t, ok := baike(rec); ok {
		return t, nil
	}
	for _, f := range textFields {
		if v, ok := rec[f]; ok {
			s, ok := v.(string)
			if !ok {
				return "", fmt.Errorf("field %q is %T, not a string", f, v)
			}
			return s, nil
		}
	}
	return "", fmt.Errorf("no text field (%s) in a record with fields %s%s", strings.Join(textFields, ", "), strings.Join(fieldNames(rec), ", "), layoutHint(rec))
}

func fieldNames(rec Record) []string {
	names := make([]string, 0, len(rec))
	for k := range rec {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// layoutHint names the instruction or preference layout a record looks like.
func layoutHint(rec Record) string {
	has := func(fs ...string) bool {
		for _, f := range fs {
			if _, ok := rec[f]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case has("chosen", "rejected") || has("response_chosen", "response_rejected"):
		return " (preference pairs: data for reward modelling or DPO, not pretraining)"
	case has("instruction", "output"):
		return " (alpaca-style instructions: data for SFT, not pretraining)"
	case has("conversations") || has("messages"):
		return " (multi-turn chat: data for SFT, not pretraining)"
	}
	return ""
}

// baike joins a BaiduBaike entry: the title, the summary, then each
// section's title and content, a paragraph each.
func baike(rec Record) (string, bool) {
	title, ok1 := rec["title"].(string)
	sections, ok2 := rec["sections"].([]any)
	if !ok1 || !ok2 {
		return "", false
	}
	parts := []string{title}
	if s, ok := rec["summary"].(string); ok && s != "" {
		parts = append(parts, s)
	}
	for _, sec := range sections {
		m, ok := sec.(map[string]any)
		if !ok {
			continue
		}
		t, _ := m["title"].(string)
		c, _ := m["content"].(string)
		if c == "" {
			continue
		}
		if t != "" {
			c = t + "\n" + c
		}
		parts = append(parts, c)
	}
	return strings.Join(parts, "\n\n"), true
}
