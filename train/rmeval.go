package train

import (
	"zhllama/llama"
	"zhllama/rlhf"
	"zhllama/spm"
)

// PairResult is a reward model's record on preference pairs.
type PairResult struct {
	Pairs int `json:"pairs"`
	// Accuracy is the share of pairs whose chosen answer scores strictly
	// higher (a tie is wrong), as stage rm's eval_accuracy counts it.
	Accuracy float64 `json:"accuracy"`
	// MeanMargin is the mean of chosen − rejected score.
	MeanMargin float64 `json:"mean_margin"`
	// Loss is the rank loss, mean −log σ(chosen − rejected).
	Loss float64 `json:"loss"`
}

// ScorePairs scores every pair with a reward model (trunk m, value head
// head): batch pairs a forward pass, the chosen and rejected rows laid out
// as stage rm lays them, dropout off. progress, if not nil, gets the number
// of pairs done after each pass.
func ScorePairs(m *llama.Model, head *llama.ValueHead, pairs *Pairs, batch int, pad int32, progress func(done int)) (chosen, rejected []float64) {
	s := &modelScorer{m: m, head: head, acts: m.NewActs(2*batch, roundUp(pairs.MaxLen())), rows: 2 * batch, pad: pad}
	return scorePairs(s, pairs, batch, progress)
}

func scorePairs(s *modelScorer, pairs *Pairs, batch int, progress func(done int)) (chosen, rejected []float64) {
	for lo := 0; lo < pairs.Len(); lo += batch {
		hi := min(lo+batch, pairs.Len())
		seqs := make([][]int32, 2*(hi-lo))
		for i := lo; i < hi; i++ {
			c, r := pairs.Pair(i)
			seqs[i-lo], seqs[hi-lo+i-lo] = c.IDs, r.IDs
		}
		scores, _ := s.Score(seqs) // a model scorer has no failure
		chosen = append(chosen, scores[:hi-lo]...)
		rejected = append(rejected, scores[hi-lo:]...)
		if progress != nil {
			progress(hi)
		}
	}
	return chosen, rejected
}

// PairStats sums up the scores of pairs.
func PairStats(chosen, rejected []float64) PairResult {
	r := PairResult{Pairs: len(chosen)}
	if len(chosen) == 0 {
		return r
	}
	r.Loss, _, _, r.Accuracy = rlhf.RankLoss(chosen, rejected)
	for i, c := range chosen {
		r.MeanMargin += (c - rejected[i]) / float64(len(chosen))
	}
	return r
}

// PadID is the id batches are padded with: the tokenizer's pad, else its
// EOS, else 0.
func PadID(tok *spm.Processor) int32 {
	if id := tok.SpecialID("pad"); id >= 0 {
		return int32(id)
	}
	return int32(max(0, tok.SpecialID("eos")))
}
