package spm

import "fmt"

// MergeReport says what Merge did.
type MergeReport struct {
	BaseSize, MergedSize int
	Added, Skipped       []int // per added model: pieces appended, pieces already present
	PadID                int   // id of the pad piece, -1 when none was asked for
}

// Merge appends to a copy of base every piece of each model in adds that base
// does not have yet, in that model's order, with score 0 and type NORMAL —
// the rule Chinese-LLaMA-Alpaca uses to extend LLaMA's vocabulary. The base
// pieces, trainer spec and normalizer spec are unchanged. A non-empty pad is
// appended first, as a NORMAL piece with score 0 (where Chinese-LLaMA-2 has
// its <pad>), unless base already has it.
func Merge(base *Model, adds []*Model, pad string) (*Model, MergeReport, error) {
	out := base.Clone()
	rep := MergeReport{BaseSize: len(base.Pieces), PadID: -1}
	have := make(map[string]int, len(base.Pieces))
	for i, p := range base.Pieces {
		have[p.Piece] = i
	}
	if pad != "" {
		if id, ok := have[pad]; ok {
			rep.PadID = id
		} else {
			rep.PadID = len(out.Pieces)
			have[pad] = rep.PadID
			out.Pieces = append(out.Pieces, NewPiece(pad, 0, Normal))
		}
	}
	for k, add := range adds {
		added, skipped := 0, 0
		for _, p := range add.Pieces {
			if _, ok := have[p.Piece]; ok {
				skipped++
				continue
			}
			if p.Piece == "" {
				return nil, rep, fmt.Errorf("added model %d has an empty piece", k+1)
			}
			have[p.Piece] = len(out.Pieces)
			out.Pieces = append(out.Pieces, NewPiece(p.Piece, 0, Normal))
			added++
		}
		rep.Added = append(rep.Added, added)
		rep.Skipped = append(rep.Skipped, skipped)
	}
	rep.MergedSize = len(out.Pieces)
	if err := out.Validate(); err != nil {
		return nil, rep, fmt.Errorf("merged model is invalid: %w", err)
	}
	return out, rep, nil
}
