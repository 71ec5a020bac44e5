// Package eval measures language models on text through the model's
// public forward pass and loss.
package eval

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strings"

	"zhllama/llama"
	"zhllama/spm"
	"zhllama/tensor"
)

// PPL is the result of Perplexity.
type PPL struct {
	Documents int     `json:"documents"`
	Tokens    int     `json:"tokens"` // predicted tokens
	NLL       float64 `json:"nll"`    // mean per predicted token
	PPL       float64 `json:"ppl"`
}

// Perplexity scores every non-empty line of r as a document: ids are
// [BOS] + encode(line), cut to cutoff tokens, and every position after the
// first is predicted. Documents are run in right-padded batches of batch.
func Perplexity(m *llama.Model, r io.Reader, tok *spm.Processor, cutoff, batch int) (PPL, error) {
	var res PPL
	var sum float64
	bos := tok.SpecialID("bos")
	if bos < 0 {
		return res, fmt.Errorf("the tokenizer has no bos piece")
	}
	var docs [][]int32
	flush := func() {
		if len(docs) == 0 {
			return
		}
		t := 0
		for _, d := range docs {
			t = max(t, len(d))
		}
		ids := make([]int32, len(docs)*t)
		labels := make([]int32, len(docs)*t)
		valid := make([]bool, len(docs)*t)
		for b, d := range docs {
			for i := 0; i < t; i++ {
				labels[b*t+i] = tensor.IgnoreIndex
				if i < len(d) {
					ids[b*t+i], labels[b*t+i], valid[b*t+i] = d[i], d[i], true
				}
			}
		}
		a := m.NewActs(len(docs), t)
		m.Forward(a, ids, valid)
		loss, n, _ := m.LMLoss(a, labels, 0, nil)
		sum += loss * float64(n)
		res.Tokens += n
		res.Documents += len(docs)
		docs = docs[:0]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		d := tok.ModelInput(line)
		if len(d) > cutoff {
			d = d[:cutoff]
		}
		if len(d) < 2 {
			continue // nothing to predict
		}
		docs = append(docs, d)
		if len(docs) == batch {
			flush()
		}
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	flush()
	if res.Tokens == 0 {
		return res, fmt.Errorf("no document with a token to predict")
	}
	res.NLL = sum / float64(res.Tokens)
	res.PPL = math.Exp(res.NLL)
	if math.IsNaN(res.NLL) || math.IsInf(res.NLL, 0) {
		return res, fmt.Errorf("the loss over %d tokens is %g: the model's weights or logits are not finite", res.Tokens, res.NLL)
	}
	return res, nil
}
