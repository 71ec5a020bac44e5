package clean

import (
	"math"
	"unicode"
)

// MinHash signatures over character shingles, and banded LSH to find
// near-duplicates: documents whose estimated Jaccard similarity reaches the
// threshold are duplicates of the first one seen.

const numPerm = 64

type signature [numPerm]uint32

func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

var permSeeds = func() (s [numPerm]uint64) {
	for i := range s {
		s[i] = mix64(uint64(i+1) * 0x9e3779b97f4a7c15)
	}
	return
}()

// minhash signs the set of k-character shingles of s (letters, digits and
// Han only, so spacing and punctuation do not hide a copy).
func minhash(s string, k int) (signature, bool) {
	var rs []rune
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			rs = append(rs, unicode.ToLower(r))
		}
	}
	var sig signature
	for i := range sig {
		sig[i] = math.MaxUint32
	}
	if len(rs) == 0 {
		return sig, false
	}
	k = min(k, len(rs))
	for i := 0; i+k <= len(rs); i++ {
		var h uint64 = 1469598103934665603
		for _, r := range rs[i : i+k] {
			h = (h ^ uint64(r)) * 1099511628211
		}
		h = mix64(h)
		for j := range sig {
			if v := uint32(mix64(h ^ permSeeds[j])); v < sig[j] {
				sig[j] = v
			}
		}
	}
	return sig, true
}

// lshParams picks bands × rows ≤ numPerm whose S-curve threshold
// (1/bands)^(1/rows) is closest to t.
func lshParams(t float64) (bands, rows int) {
	best := math.Inf(1)
	for r := 1; r <= numPerm; r++ {
		b := numPerm / r
		if d := math.Abs(math.Pow(1/float64(b), 1/float64(r)) - t); d < best {
			best, bands, rows = d, b, r
		}
	}
	return bands, rows
}

// nearDup is a streaming LSH index of the documents kept so far.
type nearDup struct {
	threshold   float64
	bands, rows int
	buckets     []map[uint64][]int32 // per band: band hash -> kept documents
	sigs        []signature
}

func newNearDup(threshold float64) *nearDup {
	// Bands tuned below the threshold find nearly all pairs above it; the
	// signature comparison then decides.
	b, r := lshParams(max(0.3, threshold-0.15))
	n := &nearDup{threshold: threshold, bands: b, rows: r, buckets: make([]map[uint64][]int32, b)}
	for i := range n.buckets {
		n.buckets[i] = map[uint64][]int32{}
	}
	return n
}

func (n *nearDup) bandKey(sig *signature, band int) uint64 {
	h := uint64(band) + 1
	for _, v := range sig[band*n.rows : (band+1)*n.rows] {
		h = mix64(h ^ uint64(v))
	}
	return h
}

func similarity(a, b *signature) float64 {
	same := 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
	}
	return float64(same) / numPerm
}

// add returns the index of a kept document the signature nearly
// duplicates, or -1 after keeping it.
func (n *nearDup) add(sig signature) int {
	keys := make([]uint64, n.bands)
	for band := range keys {
		keys[band] = n.bandKey(&sig, band)
		for _, cand := range n.buckets[band][keys[band]] {
			if similarity(&sig, &n.sigs[cand]) >= n.threshold {
				return int(cand)
			}
		}
	}
	id := int32(len(n.sigs))
	n.sigs = append(n.sigs, sig)
	for band, k := range keys {
		n.buckets[band][k] = append(n.buckets[band][k], id)
	}
	return -1
}
