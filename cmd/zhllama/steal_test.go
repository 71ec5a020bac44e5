package main

import (
	"strings"
	"testing"
)

func TestStealReport(t *testing.T) {
	m := parseSteal("cpu  4496777 386 350629 6849369 36991 0 17806 590963 0 0")
	if !m.ok || m.steal != 590963 || m.total != 4496777+386+350629+6849369+36991+0+17806+590963 {
		t.Fatalf("parseSteal: %+v", m)
	}
	for _, line := range []string{"cpu  1 2 3 4", "intr 1 2 3 4 5 6 7 8 9", "cpu  1 2 3 4 5 6 7 x 9"} {
		if parseSteal(line).ok {
			t.Errorf("parseSteal(%q) is ok, want not", line)
		}
	}
	r := stealReport{{"zhllama", 0.012}, {"torch", 0.2}}
	res := map[string]any{}
	note := r.note(res)
	if !strings.HasPrefix(note, "host steal during the runs: zhllama 1.2%, torch 20.0% — over 5%") || res["steal_torch"] != 0.2 {
		t.Errorf("note %q, results %v", note, res)
	}
	if note := (stealReport{{"zhllama", 0.01}}).note(nil); strings.Contains(note, "unreliable") {
		t.Errorf("a 1%% steal warns: %q", note)
	}
	if (stealReport{}).note(nil) != "" {
		t.Error("an empty report prints a note")
	}
}
