package eval

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

func TestScoreGenerationEdges(t *testing.T) {
	words := func(s string) []string { return strings.Fields(s) }
	for _, c := range []struct {
		pred, label string
		want        GenScores
	}{
		// Same text: every score is 100 up to rouge_chinese's 1e-8.
		{"今天 天气 很好", "今天 天气 很好", GenScores{BLEU4: 100, Rouge1: 100, Rouge2: 100, RougeL: 100}},
		// An empty side: ROUGE 0 by LLaMA-Factory's rule, BLEU 0 (no match).
		{"", "今天 天气", GenScores{}},
		{"今天 天气", "", GenScores{}},
		{"   ", "今天", GenScores{}},
	} {
		got := ScoreGeneration(c.pred, c.label, words(c.pred), words(c.label))
		if got != c.want {
			t.Errorf("%q vs %q: %+v, want %+v", c.pred, c.label, got, c.want)
		}
	}
	// One character of three right, no bigram: method 3 fills 1/(2·2),
	// 1/(4·1), 1/(8·1) for orders 2-4; hyp longer than ref: no penalty.
	want := math.Exp(0.25 * (math.Log(1.0/3) + math.Log(1.0/4) + math.Log(1.0/4) + math.Log(1.0/8)))
	if got := SentenceBLEU(chars("ab"), chars("axy")); math.Abs(got-want) > 1e-15 {
		t.Errorf("BLEU %v, want %v", got, want)
	}
	// rouge_chinese keeps a sentence of only white space as an empty word.
	if got := rougeWords([]string{"好", "。", "\n", " ", "\n", "是"}); !slices.Equal(got, []string{"好", "。", "", "", "是"}) {
		t.Errorf("rouge words %q", got)
	}
}

func TestRound4(t *testing.T) {
	for x, want := range map[float64]float64{1.03125: 1.0312, 1.09375: 1.0938, 33.333333333: 33.3333, 0: 0, 99.99995000001: 100} {
		if got := round4(x); got != want {
			t.Errorf("round4(%v) = %v, want %v", x, got, want)
		}
	}
}

// genPair is a prediction and label, with what the Python reference says.
type genPair struct {
	Pred  string `json:"pred"`
	Label string `json:"label"`
}

type genRef struct {
	Hyp    []string   `json:"hyp"`
	Ref    []string   `json:"ref"`
	BLEU   float64    `json:"bleu"`
	Rouge  [3]float64 `json:"rouge"`
	Scores GenScores  `json:"scores"`
}

// genReference runs LLaMA-Factory's per-example computation in Python:
// jieba.cut and nltk's sentence_bleu, with rouge_chinese's ROUGE
// (unpackaged) written out from its algorithm.
const genReference = `
import json, re, sys, logging
import jieba
from nltk.translate.bleu_score import sentence_bleu, SmoothingFunction
jieba.setLogLevel(logging.ERROR)

BREAKS = [(r'([。！？\?])([^”’])', r'\1\n\2'), (r'(\.{6})([^”’])', r'\1\n\2'),
          (r'(\…{2})([^”’])', r'\1\n\2'), (r'([。！？\?][”’])([^，。！？\?])', r'\1\n\2')]

def words(text):
    for pat, rep in BREAKS:
        text = re.sub(pat, rep, text)
    sents = [" ".join(s.split()) for s in text.rstrip().split("\n") if len(s) > 0]
    return [w for s in sents for w in s.split(" ")]

def grams(ws, n):
    return set(tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))

def f1(p, r):
    return 2.0 * ((p * r) / (p + r + 1e-8))

def rouge_n(h, r, n):
    hg, rg = grams(h, n), grams(r, n)
    o = len(hg & rg)
    return f1(o / len(hg) if hg else 0.0, o / len(rg) if rg else 0.0)

def lcs(x, y):
    prev = [0] * (len(y) + 1)
    for a in x:
        cur = [0]
        for j, b in enumerate(y):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]

def rouge_l(h, r):
    l = lcs(r, h)
    return f1(l / len(h), l / len(r))

out = []
for p in json.load(sys.stdin):
    pred, label = p["pred"], p["label"]
    hyp, ref = list(jieba.cut(pred)), list(jieba.cut(label))
    if len(" ".join(hyp).split()) == 0 or len(" ".join(ref).split()) == 0:
        rouge = [0.0, 0.0, 0.0]
    else:
        hw, rw = words(" ".join(hyp)), words(" ".join(ref))
        rouge = [rouge_n(hw, rw, 1), rouge_n(hw, rw, 2), rouge_l(hw, rw)]
    bleu = sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3)
    scores = {"rouge-1": round(rouge[0] * 100, 4), "rouge-2": round(rouge[1] * 100, 4),
              "rouge-l": round(rouge[2] * 100, 4), "bleu-4": round(bleu * 100, 4)}
    out.append({"hyp": hyp, "ref": ref, "bleu": bleu, "rouge": rouge, "scores": scores})
json.dump(out, sys.stdout, ensure_ascii=False)
`

func runGenReference(t *testing.T, pairs []genPair) []genRef {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import jieba, nltk").Run(); err != nil {
		testenv.Need(t, "python3 with jieba and nltk", "apt-get install python3-jieba python3-nltk")
	}
	in, err := json.Marshal(pairs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", "-c", genReference)
	cmd.Stdin = strings.NewReader(string(in))
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("python reference: %v", err)
	}
	var out []genRef
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != len(pairs) {
		t.Fatalf("python scored %d pairs of %d", len(out), len(pairs))
	}
	return out
}

// sftAnswers reads the answers of the shared Chinese SFT sets, each cut to
// at most 300 characters.
func sftAnswers(t *testing.T) []string {
	dir := testenv.Path(t, "sft")
	var out []string
	add := func(s string) {
		if rs := []rune(strings.TrimSpace(s)); len(rs) > 0 {
			out = append(out, string(rs[:min(len(rs), 300)]))
		}
	}
	var alpaca []struct{ Output string }
	testenv.ReadJSON(t, filepath.Join(dir, "alpaca_zh_demo.json"), &alpaca)
	for _, r := range alpaca[:120] {
		add(r.Output)
	}
	for _, name := range []string{"sharegpt_zh_1K_format.jsonl", "medical_sft_1K_format.jsonl"} {
		type turn struct{ From, Value string }
		recs := testenv.ReadJSONLines[struct{ Conversations []turn }](t, filepath.Join(dir, name))
		for _, r := range recs[:90] {
			for _, c := range r.Conversations {
				if c.From == "gpt" {
					add(c.Value)
					break
				}
			}
		}
	}
	return out
}

// perturb makes a prediction from a label the ways a model errs: dropped,
// repeated or swapped characters, a cut, another answer, nothing.
func perturb(r *rand.Rand, label string, other string) string {
	rs := []rune(label)
	switch r.IntN(8) {
	case 0:
		return label
	case 1:
		var out []rune
		for _, c := range rs {
			if r.Float64() > 0.2 {
				out = append(out, c)
			}
		}
		return string(out)
	case 2:
		return string(rs[:r.IntN(len(rs)+1)])
	case 3:
		return other
	case 4:
		if r.IntN(3) == 0 {
			return ""
		}
		return strings.Repeat(string(rs[:min(len(rs), 3)]), 5)
	case 5:
		for range len(rs)/5 + 1 {
			i, j := r.IntN(len(rs)), r.IntN(len(rs))
			rs[i], rs[j] = rs[j], rs[i]
		}
		return string(rs)
	case 6:
		return string(rs[len(rs)/2:]) + "。\n\n " + string(rs[:len(rs)/2])
	}
	return strings.ReplaceAll(label, "的", "地") + "……"
}

func genPairs(t *testing.T) []genPair {
	answers := sftAnswers(t)
	r := rand.New(rand.NewPCG(13, 1))
	pairs := make([]genPair, len(answers))
	for i, a := range answers {
		pairs[i] = genPair{Pred: perturb(r, a, answers[(i+7)%len(answers)]), Label: a}
	}
	// Edges: empty sides, white space only, rouge_chinese's sentence cuts
	// (quotes, six dots, ellipses, ? and ！), CR LF, Python's extra white
	// space (\x1c-\x1f, U+3000, U+00A0), percentages and decimals.
	return append(pairs,
		genPair{"", "答案是四十二。"}, genPair{"答案是四十二。", ""}, genPair{" \n\t", "答案"}, genPair{"答案", "\u3000\u00a0"},
		genPair{"他说：“好。”然后走了。", "他说：“好。”"}, genPair{"等等......然后呢", "等等......"}, genPair{"真的……吗？是！", "真的……？"},
		genPair{"what? yes! 好？对", "what?yes"}, genPair{"第一行\r\n第二行", "第一行\n第二行"}, genPair{"甲\x1c乙\x1f丙", "甲 乙 丙"},
		genPair{"增长了3.5%，约50%的人", "增长了3.5%，约有一半的人"}, genPair{"Python 3.12 版本发布", "Python3.12版本已发布"},
		genPair{"好", "好"}, genPair{"好好好好好好", "好"}, genPair{"。。。", "。"})
}

// The metric math against nltk and the ROUGE written out in Python, both
// given jieba's words: every score to 1e-9, and the rounded means.
func TestGenMetricsParity(t *testing.T) {
	pairs := genPairs(t)
	refs := runGenReference(t, pairs)
	var got, want []GenScores
	worst := 0.0
	for i, p := range pairs {
		ref := refs[i]
		s := ScoreGeneration(p.Pred, p.Label, ref.Hyp, ref.Ref)
		got, want = append(got, s), append(want, ref.Scores)
		bleu := SentenceBLEU(chars(p.Label), chars(p.Pred))
		var rouge [3]float64
		if s.Rouge1 != 0 || ref.Rouge[0] != 0 {
			hw, rw := rougeWords(ref.Hyp), rougeWords(ref.Ref)
			rouge = [3]float64{rougeN(hw, rw, 1), rougeN(hw, rw, 2), rougeL(hw, rw)}
		}
		for k, d := range []float64{bleu - ref.BLEU, rouge[0] - ref.Rouge[0], rouge[1] - ref.Rouge[1], rouge[2] - ref.Rouge[2]} {
			worst = max(worst, math.Abs(d))
			if math.Abs(d) > 1e-9 {
				t.Errorf("pair %d score %d: Go %v, Python %v (pred %q label %q)", i, k, []float64{bleu, rouge[0], rouge[1], rouge[2]}[k], []float64{ref.BLEU, ref.Rouge[0], ref.Rouge[1], ref.Rouge[2]}[k], p.Pred, p.Label)
			}
		}
		if s != ref.Scores {
			t.Errorf("pair %d rounded: Go %+v, Python %+v", i, s, ref.Scores)
		}
	}
	g, w := MeanScores(got), MeanScores(want)
	t.Logf("%d pairs, largest difference %.3g; means Go %+v", len(pairs), worst, g)
	if d := maxScoreDiff(g, w); d > 1e-9 {
		t.Errorf("means differ by %g: Go %+v, Python %+v", d, g, w)
	}
}

func maxScoreDiff(a, b GenScores) float64 {
	return max(math.Abs(a.BLEU4-b.BLEU4), math.Abs(a.Rouge1-b.Rouge1), math.Abs(a.Rouge2-b.Rouge2), math.Abs(a.RougeL-b.RougeL))
}

// gse (as NewJieba drives it) against jieba on the same pairs, with gse's
// embedded dictionary and with jieba's own: how often the words agree, and
// how far the means of the scores move.
func TestJiebaAgreement(t *testing.T) {
	pairs := genPairs(t)
	refs := runGenReference(t, pairs)
	for _, c := range []struct {
		name, dict           string
		minTokens, maxPoints float64
	}{
		// The stated bounds: with gse's dictionary (one-character words
		// flattened) nearly all words agree and the ROUGE means move by
		// under half a point; with jieba's dictionary the words match.
		{"gse dictionary", "", 0.97, 0.5},
		{"jieba dict.txt", testenv.JiebaDict(t), 0.999, 0.01},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.dict == "" && !EmbeddedDict {
				t.Skip("gse's dictionary is in builds with -tags gsedict (CI runs this so)")
			}
			cut, err := NewJieba(c.dict)
			if err != nil {
				t.Fatal(err)
			}
			texts, same, spans, shared := 0, 0, 0, 0
			compare := func(text string, want []string) {
				got := cut(text)
				texts++
				if slices.Equal(got, want) {
					same++
				} else if texts-same <= 3 {
					i := 0
					for i < min(len(got), len(want)) && got[i] == want[i] {
						i++
					}
					t.Logf("differs at word %d: gse %q, jieba %q", i, got[i:min(i+6, len(got))], want[i:min(i+6, len(want))])
				}
				gs := spanSet(got)
				for s := range spanSet(want) {
					spans++
					if gs[s] {
						shared++
					}
				}
			}
			var goScores, pyScores []GenScores
			for i, p := range pairs {
				compare(p.Pred, refs[i].Hyp)
				compare(p.Label, refs[i].Ref)
				goScores = append(goScores, ScoreGeneration(p.Pred, p.Label, cut(p.Pred), cut(p.Label)))
				pyScores = append(pyScores, refs[i].Scores)
			}
			sentRate, tokRate := float64(same)/float64(texts), float64(shared)/float64(spans)
			g, w := MeanScores(goScores), MeanScores(pyScores)
			d := maxScoreDiff(g, w)
			t.Logf("%d texts: identical words %.4f; jieba's words gse also cuts %.4f (%d of %d)", texts, sentRate, tokRate, shared, spans)
			t.Logf("means: gse %+v\n       jieba %+v\n       largest difference %.4f points", g, w, d)
			if tokRate < c.minTokens || d > c.maxPoints || g.BLEU4 != w.BLEU4 {
				t.Errorf("gse strays from jieba: word agreement %.4f (bound %g), mean difference %.4f (bound %g)", tokRate, c.minTokens, d, c.maxPoints)
			}
		})
	}
}

// spanSet is the words as [start, end) rune offsets.
func spanSet(words []string) map[string]bool {
	out := map[string]bool{}
	at := 0
	for _, w := range words {
		n := len([]rune(w))
		out[fmt.Sprint(at, ":", at+n)] = true
		at += n
	}
	return out
}

// Without a flag, jieba's dict.txt is found where Python installed it.
func TestFindJiebaDict(t *testing.T) {
	want := testenv.JiebaDict(t)
	t.Setenv("ZHLLAMA_JIEBA_DICT", "")
	if got := FindJiebaDict(); got != want {
		t.Errorf("found %q, jieba's is %q", got, want)
	}
	t.Setenv("ZHLLAMA_JIEBA_DICT", "/x/dict.txt")
	if got := FindJiebaDict(); got != "/x/dict.txt" {
		t.Errorf("ZHLLAMA_JIEBA_DICT: %q", got)
	}
}
