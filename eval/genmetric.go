package eval

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Generation metrics of SFT predictions, as LLaMA-Factory computes them
// with predict_with_generate (its ComputeSimilarity): per example, ROUGE-1,
// ROUGE-2 and ROUGE-L F-scores (rouge_chinese over the words of a Chinese
// segmenter) and BLEU-4 (nltk's sentence_bleu over characters, smoothing
// method 3), each ×100 and rounded to 4 places, then averaged.

// GenScores are one example's scores, or their means.
type GenScores struct {
	BLEU4  float64 `json:"bleu-4"`
	Rouge1 float64 `json:"rouge-1"`
	Rouge2 float64 `json:"rouge-2"`
	RougeL float64 `json:"rouge-l"`
}

// Segmenter cuts text into words, as jieba.cut does.
type Segmenter func(string) []string

// ScoreGeneration scores one prediction against its label. hyp and ref are
// the segmenter's words of pred and label (ROUGE); BLEU reads the
// characters, as LLaMA-Factory passes list(label) and list(pred).
func ScoreGeneration(pred, label string, hyp, ref []string) GenScores {
	var s GenScores
	hw, rw := rougeWords(hyp), rougeWords(ref)
	// LLaMA-Factory scores 0 rather than call rouge_chinese (which raises)
	// when either side has no word.
	if len(pyFields(strings.Join(hyp, " "))) > 0 && len(pyFields(strings.Join(ref, " "))) > 0 {
		s.Rouge1 = round4(100 * rougeN(hw, rw, 1))
		s.Rouge2 = round4(100 * rougeN(hw, rw, 2))
		s.RougeL = round4(100 * rougeL(hw, rw))
	}
	s.BLEU4 = round4(100 * SentenceBLEU(chars(label), chars(pred)))
	return s
}

// MeanScores is the mean of each score (np.mean of the per-example lists).
func MeanScores(all []GenScores) GenScores {
	var m GenScores
	if len(all) == 0 {
		return m
	}
	for _, s := range all {
		m.BLEU4 += s.BLEU4
		m.Rouge1 += s.Rouge1
		m.Rouge2 += s.Rouge2
		m.RougeL += s.RougeL
	}
	n := float64(len(all))
	m.BLEU4, m.Rouge1, m.Rouge2, m.RougeL = m.BLEU4/n, m.Rouge1/n, m.Rouge2/n, m.RougeL/n
	return m
}

// round4 is Python's round(x, 4): the correctly rounded decimal, ties to
// even, which strconv's formatting also gives.
func round4(x float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 4, 64), 64)
	return r
}

func chars(s string) []string {
	out := make([]string, 0, len(s))
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}

// SentenceBLEU is nltk 3.8's sentence_bleu([ref], hyp) with the default
// weights (0.25 each for 1- to 4-grams) and SmoothingFunction().method3.
func SentenceBLEU(ref, hyp []string) float64 {
	var num, den [4]int
	for n := 1; n <= 4; n++ {
		counts := ngramCounts(hyp, n)
		refCounts := ngramCounts(ref, n)
		total := 0
		for g, c := range counts {
			num[n-1] += min(c, refCounts[g])
			total += c
		}
		// nltk keeps the denominator at least 1, unreduced: method 3 reads it.
		den[n-1] = max(1, total)
	}
	if num[0] == 0 {
		return 0
	}
	// Method 3 (NIST): the k-th order with no match counts 1/(2^k·den).
	p := make([]float64, 4)
	k := 1
	for i := range p {
		if num[i] == 0 {
			p[i] = 1 / float64(int(1)<<k*den[i])
			k++
		} else {
			p[i] = float64(num[i]) / float64(den[i])
		}
	}
	sum := 0.0
	for _, pi := range p {
		sum += 0.25 * math.Log(pi)
	}
	return brevityPenalty(len(ref), len(hyp)) * math.Exp(sum)
}

// brevityPenalty is nltk's, with the one reference as the closest.
func brevityPenalty(refLen, hypLen int) float64 {
	switch {
	case hypLen > refLen:
		return 1
	case hypLen == 0:
		return 0
	}
	return math.Exp(1 - float64(refLen)/float64(hypLen))
}

// ngramCounts counts the n-grams of words. A key is each word's length
// and bytes, so no two different n-grams share one.
func ngramCounts(words []string, n int) map[string]int {
	out := map[string]int{}
	var b strings.Builder
	for i := 0; i+n <= len(words); i++ {
		b.Reset()
		for _, w := range words[i : i+n] {
			b.WriteString(strconv.Itoa(len(w)))
			b.WriteByte(':')
			b.WriteString(w)
		}
		out[b.String()]++
	}
	return out
}

// cutSent are rouge_chinese's sentence breaks (Rouge.cut_sent): after
// 。！？? unless a closing quote follows, after six dots or two ellipses,
// and after a closing quote that ends a sentence.
var cutSent = []*regexp.Regexp{
	regexp.MustCompile(`([。！？?])([^”’])`),
	regexp.MustCompile(`(\.{6})([^”’])`),
	regexp.MustCompile(`(…{2})([^”’])`),
	regexp.MustCompile(`([。！？?][”’])([^，。！？?])`),
}

// rougeWords are the words rouge_chinese scores for a segmented text: the
// words joined by spaces, cut into sentences, each sentence's whitespace
// runs made one space, and the sentences split on spaces and flattened.
// A sentence of only whitespace stays as one empty word, as it does there.
func rougeWords(tokens []string) []string {
	text := strings.Join(tokens, " ")
	for _, re := range cutSent {
		text = re.ReplaceAllString(text, "${1}\n${2}")
	}
	text = strings.TrimRightFunc(text, pyIsSpace)
	var words []string
	for _, s := range strings.Split(text, "\n") {
		if s != "" {
			words = append(words, strings.Split(strings.Join(pyFields(s), " "), " ")...)
		}
	}
	return words
}

// rougeN is rouge_chinese's ROUGE-N F-score with its default exclusive
// counting: the distinct n-grams of each side.
func rougeN(hyp, ref []string, n int) float64 {
	h, r := ngramCounts(hyp, n), ngramCounts(ref, n)
	overlap := 0
	for g := range h {
		if r[g] > 0 {
			overlap++
		}
	}
	var p, rc float64
	if len(h) > 0 {
		p = float64(overlap) / float64(len(h))
	}
	if len(r) > 0 {
		rc = float64(overlap) / float64(len(r))
	}
	return fScore(p, rc)
}

// rougeL is rouge_chinese's ROUGE-L F-score: the longest common
// subsequence of all the words over each side's word count.
func rougeL(hyp, ref []string) float64 {
	l := float64(lcsLen(ref, hyp))
	return fScore(l/float64(len(hyp)), l/float64(len(ref)))
}

// fScore is rouge_chinese's F1, with its 1e-8 in the denominator.
func fScore(p, r float64) float64 {
	pr := p * r
	return 2.0 * (pr / (p + r + 1e-8))
}

func lcsLen(x, y []string) int {
	prev, cur := make([]int, len(y)+1), make([]int, len(y)+1)
	for i := range x {
		for j := range y {
			if x[i] == y[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(y)]
}

// pyIsSpace is Python's str.isspace for one character: Go's white space
// plus the four ASCII separators Python counts.
func pyIsSpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

// pyFields is Python's str.split() with no separator.
func pyFields(s string) []string { return strings.FieldsFunc(s, pyIsSpace) }
