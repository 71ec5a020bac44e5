package spm

// Unigram encoding: the Viterbi path through every segmentation of the
// normalized text into pieces, scored by the pieces' log probabilities.
// A character no piece covers becomes an unknown token scored ten below the
// lowest piece; user-defined symbols score so high they always win.

const unkPenalty = 10.0

// byteTrie maps byte strings to piece ids with one hash lookup per byte.
type byteTrie struct {
	next map[uint64]int32 // node<<8|byte -> child node
	id   []int32          // piece id at node, or -1
}

func newByteTrie(pieces map[string]int32) *byteTrie {
	t := &byteTrie{next: make(map[uint64]int32, 4*len(pieces)), id: []int32{-1}}
	for piece, id := range pieces {
		node := int32(0)
		for i := 0; i < len(piece); i++ {
			k := uint64(node)<<8 | uint64(piece[i])
			child, ok := t.next[k]
			if !ok {
				child = int32(len(t.id))
				t.id = append(t.id, -1)
				t.next[k] = child
			}
			node = child
		}
		t.id[node] = id
	}
	return t
}

type bestNode struct {
	score float32
	start int32 // -1 while unreached
	id    int32
}

func (p *Processor) encodeUnigram(norm []byte, s *Scratch, out []token) []token {
	n := len(norm)
	best := s.uni[:0]
	for i := 0; i <= n; i++ {
		best = append(best, bestNode{start: -1, id: -1})
	}
	best[0].start = 0
	unkScore := p.minScore - unkPenalty
	for start := 0; start < n; {
		here := best[start].score
		mblen := min(oneCharLen(norm[start]), n-start)
		single := false
		node := int32(0)
		for pos := start; pos < n; pos++ {
			child, ok := p.trie.next[uint64(node)<<8|uint64(norm[pos])]
			if !ok {
				break
			}
			node = child
			id := p.trie.id[node]
			if id < 0 || p.types[id] == Unused {
				continue
			}
			length := pos + 1 - start
			// sentencepiece's score expression is a double (the user-defined
			// bonus is), so the sum and the comparison are done in double and
			// only the stored best is rounded to float; ties depend on this.
			var score float64
			if p.types[id] == UserDefined {
				score = float64(float32(length)*p.maxScore) - 0.1
			} else {
				score = float64(p.scores[id])
			}
			cand := score + float64(here)
			if t := &best[pos+1]; t.start == -1 || cand > float64(t.score) {
				*t = bestNode{score: float32(cand), start: int32(start), id: id}
			}
			if length == mblen {
				single = true
			}
		}
		if !single {
			cand := unkScore + here
			if t := &best[start+mblen]; t.start == -1 || cand > t.score {
				*t = bestNode{score: cand, start: int32(start), id: p.unkID}
			}
		}
		start += mblen
	}
	// Walk back from the end, then reverse in place.
	first := len(out)
	for end := n; end > 0; {
		b := best[end]
		out = append(out, token{start: b.start, end: int32(end), id: b.id})
		end = int(b.start)
	}
	for i, j := first, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	s.uni = best
	return out
}
