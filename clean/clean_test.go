package clean

import (
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

func TestNormalizeText(t *testing.T) {
	for in, want := range map[string]string{
		"ＡＢＣ１２３ａｂｃ":                  "ABC123abc",
		"你好，世界！（测试）":                 "你好，世界！（测试）",
		"全角　空格":                      "全角 空格",
		"ctrl\x01\x07chars\r\n":      "ctrlchars\n",
		"a<br>b<p>c</p>&nbsp;&amp;d": "a\nbc\n &d",
		"x < y && y > z":             "x < y && y > z",
		"zero\u200bwidth\ufeff":      "zerowidth",
		"<div class=\"x\">正文</div>":  "正文",
	} {
		if got := NormalizeText(in); got != want {
			t.Errorf("NormalizeText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTextRules(t *testing.T) {
	o := DefaultOptions()
	o.MinChineseRatio = 0.5
	long := strings.Repeat("这是一段正常的中文文本，用来测试规则。", 5)
	for _, c := range []struct {
		text, rule string
	}{
		{long, ""},
		{"短", RuleTooShort},
		{"This is English text only, long enough to pass.", RuleNotChinese},
		{long + strings.Repeat("啊", 40), RuleCharRun},
		{strings.Repeat("重复的一行文字内容在这里\n", 5), RuleDupLines},
		{strings.Repeat("哈哈哈", 30), RuleCharRun},
		{strings.Repeat("一二三", 30), RuleNgram},
	} {
		if rule, why := textRules(c.text, o); rule != c.rule {
			t.Errorf("%q: rule %q (%s), want %q", c.text[:min(len(c.text), 30)], rule, why, c.rule)
		}
	}
}

func TestCleanInstructionData(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "sft.jsonl")
	recs := []string{
		`{"instruction":"介绍一下长城。","input":"","output":"长城是中国古代的军事防御工程，绵延上万里。"}`,
		`{"instruction":"介绍一下长城。","input":"","output":"长城是中国古代的军事防御工程，绵延上万里。"}`,
		`{"instruction":"你是谁？","input":"","output":"作为一个AI语言模型，我没有名字。"}`,
		`{"instruction":"写一首诗。","input":"","output":""}`,
		`{"instruction":"重复这句话","input":"","output":"重复这句话"}`,
		`not json`,
		`{"conversations":[{"from":"gpt","value":"答"},{"from":"human","value":"问"}]}`,
		`{"instruction":"ＡＩ是什么？","input":"","output":"人工智能（ＡＩ）是计算机科学的一个分支。"}`,
	}
	testenv.WriteFile(t, in, []byte(strings.Join(recs, "\n")+"\n"))
	out := filepath.Join(dir, "out", "clean.jsonl")
	rep, err := Run([]string{in}, out, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{RuleExactDup: 1, RuleRefusal: 1, RuleEmptyAnswer: 1, RuleEchoAnswer: 1, RuleMalformed: 1, RuleLayout: 1}
	for rule, n := range want {
		if rep.Removed[rule] != n {
			t.Errorf("%s removed %d, want %d (report %v)", rule, rep.Removed[rule], n, rep.Removed)
		}
	}
	if rep.Read != 8 || rep.Kept != 2 {
		t.Errorf("read %d kept %d", rep.Read, rep.Kept)
	}
	kept := testenv.ReadJSONLines[map[string]any](t, out)
	if len(kept) != 2 || kept[1]["instruction"] != "AI是什么？" || kept[1]["output"] != "人工智能（AI）是计算机科学的一个分支。" {
		t.Errorf("kept %v", kept)
	}
	if !strings.Contains(rep.Summary(), "refusal") || len(rep.Examples[RuleRefusal]) != 1 || rep.Examples[RuleMalformed][0].Where != in+":6" {
		t.Errorf("report: %s %+v", rep.Summary(), rep.Examples)
	}
	if err := WriteReport(filepath.Join(dir, "r.json"), rep); err != nil {
		t.Fatal(err)
	}
}

func TestNearDuplicates(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "docs.txt")
	base := "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。这是一首关于登高望远的诗，表达了积极向上的精神。" +
		"诗人登上鹳雀楼，看到夕阳依傍着山峦慢慢沉没，滔滔黄河朝着东海汹涌奔流。若想把千里风光景物看够，那就要登上更高的一层城楼。"
	lines := []string{base, strings.Replace(base, "积极", "奋发", 1), "床前明月光，疑是地上霜。举头望明月，低头思故乡。这首诗写的是游子思乡之情，语言朴素自然。"}
	testenv.WriteFile(t, in, []byte(strings.Join(lines, "\n")+"\n"))
	for dedup, kept := range map[string]int64{"minhash": 2, "exact": 3, "none": 3} {
		o := DefaultOptions()
		o.Dedup = dedup
		rep, err := Run([]string{in}, filepath.Join(dir, dedup+".jsonl"), o)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Kept != kept {
			t.Errorf("--dedup=%s kept %d, want %d (%v)", dedup, rep.Kept, kept, rep.Removed)
		}
	}
	if b, r := lshParams(0.8); b*r > numPerm || b < 2 {
		t.Errorf("lsh params %d x %d", b, r)
	}
}

func TestCleanSharedData(t *testing.T) {
	dir := t.TempDir()
	for _, rel := range []string{"sft/alpaca_zh_demo.json", "sft/sharegpt_zh_1K_format.jsonl", "preference/dpo_zh_500.jsonl", "pretrain/fever.txt"} {
		out := filepath.Join(dir, filepath.Base(rel)+".jsonl")
		rep, err := Run([]string{testenv.Path(t, rel)}, out, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", rel, rep.Summary())
		if rep.Kept < rep.Read*8/10 || rep.Removed[RuleMalformed] > 0 {
			t.Errorf("%s: kept %d of %d: %v", rel, rep.Kept, rep.Read, rep.Removed)
		}
		if n := int64(len(testenv.ReadJSONLines[map[string]any](t, out))); n != rep.Kept {
			t.Errorf("%s: %d lines written, report says %d", rel, n, rep.Kept)
		}
	}
	if _, err := Run([]string{testenv.Path(t, "pretrain/fever.txt")}, filepath.Join(dir, "x.jsonl"), Options{Dedup: "fuzzy"}); err == nil {
		t.Error("unknown --dedup accepted")
	}
}

func TestTraditionalToSimplified(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "t.txt")
	testenv.WriteFile(t, in, []byte("床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。\n"))
	o := DefaultOptions()
	o.TraditionalToSimplified = true
	if _, err := Run([]string{in}, filepath.Join(dir, "o.jsonl"), o); err != nil {
		t.Fatal(err)
	}
	got := testenv.ReadJSONLines[map[string]any](t, filepath.Join(dir, "o.jsonl"))
	if len(got) != 1 || got[0]["text"] != "床前明月光，疑是地上霜。举头望明月，低头思故乡。" {
		t.Errorf("t2s gave %v", got)
	}
}

// In a sharegpt file, turns out of order are reported as such, with the
// record shown as JSON.
func TestCleanRoleOrder(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "sg.jsonl")
	testenv.WriteFile(t, in, []byte(`{"conversations":[{"from":"human","value":"长城有多长？"},{"from":"gpt","value":"长城全长两万多公里，是世界上最长的城墙。"}]}`+"\n"+
		`{"conversations":[{"from":"gpt","value":"答"},{"from":"human","value":"问"}]}`+"\n"))
	rep, err := Run([]string{in}, filepath.Join(dir, "out.jsonl"), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ex := rep.Examples[RuleRoleOrder]
	if rep.Removed[RuleRoleOrder] != 1 || len(ex) != 1 || !strings.HasPrefix(ex[0].Text, `{"conversations":`) {
		t.Errorf("report %v, examples %+v", rep.Removed, ex)
	}
}
