package eval

import "math/bits"

// This file reproduces the random draws behind LLaMA-Factory's few-shot
// exemplars. For every question it calls datasets' Dataset.shuffle()
// without a seed on the dev split, which takes its seed from NumPy's global
// generator (seeded by transformers.set_seed with the evaluation seed, 42
// by default): the state word at the generator's position (the first word
// once the position has run off the end), after which it draws one
// np.random.random() to move on. That seed starts a fresh
// np.random.default_rng (PCG64 through a SeedSequence), whose permutation
// of the dev rows orders them; the first n_shot are the exemplars.

// npGlobal is NumPy's legacy global generator (MT19937, np.random.seed).
type npGlobal struct {
	key [624]uint32
	pos int
}

func newNPGlobal(seed uint32) *npGlobal {
	g := &npGlobal{}
	g.key[0] = seed
	for i := 1; i < len(g.key); i++ {
		prev := g.key[i-1]
		g.key[i] = 1812433253*(prev^(prev>>30)) + uint32(i)
	}
	g.pos = len(g.key)
	return g
}

func (g *npGlobal) twist() {
	const n, m = 624, 397
	for i := 0; i < n; i++ {
		y := g.key[i]&0x80000000 | g.key[(i+1)%n]&0x7fffffff
		v := g.key[(i+m)%n] ^ y>>1
		if y&1 != 0 {
			v ^= 0x9908b0df
		}
		g.key[i] = v
	}
	g.pos = 0
}

func (g *npGlobal) next() uint32 {
	if g.pos >= len(g.key) {
		g.twist()
	}
	y := g.key[g.pos]
	g.pos++
	y ^= y >> 11
	y ^= y << 7 & 0x9d2c5680
	y ^= y << 15 & 0xefc60000
	y ^= y >> 18
	return y
}

// shuffleSeed is what an unseeded Dataset.shuffle() takes from the global
// generator, moving it on by one np.random.random() (two 32-bit words).
func (g *npGlobal) shuffleSeed() uint32 {
	s := g.key[0]
	if g.pos < len(g.key) {
		s = g.key[g.pos]
	}
	g.next()
	g.next()
	return s
}

// pcg64 is NumPy's PCG64 bit generator (XSL-RR output on a 128-bit LCG).
type pcg64 struct {
	hi, lo       uint64 // state
	incHi, incLo uint64
	half         uint32 // the upper half of the last 64-bit draw, kept for next32
	hasHalf      bool
}

const pcgMulHi, pcgMulLo = 2549297995355413924, 4865540595714422341

func (p *pcg64) step() {
	hi, lo := bits.Mul64(p.lo, pcgMulLo)
	hi += p.hi*pcgMulLo + p.lo*pcgMulHi
	var c uint64
	p.lo, c = bits.Add64(lo, p.incLo, 0)
	p.hi, _ = bits.Add64(hi, p.incHi, c)
}

func (p *pcg64) next64() uint64 {
	p.step()
	return bits.RotateLeft64(p.hi^p.lo, -int(p.hi>>58))
}

func (p *pcg64) next32() uint32 {
	if p.hasHalf {
		p.hasHalf = false
		return p.half
	}
	v := p.next64()
	p.half, p.hasHalf = uint32(v>>32), true
	return uint32(v)
}

// interval draws uniformly from [0, max] by masked rejection, as NumPy's
// shuffle does.
func (p *pcg64) interval(max uint64) uint64 {
	if max == 0 {
		return 0
	}
	mask := max
	for s := uint(1); s < 64; s <<= 1 {
		mask |= mask >> s
	}
	for {
		var v uint64
		if max <= 0xffffffff {
			v = uint64(p.next32()) & mask
		} else {
			v = p.next64() & mask
		}
		if v <= max {
			return v
		}
	}
}

// newDefaultRNG is np.random.default_rng(seed) for a 32-bit seed: a
// SeedSequence hashes it into a pool of four words, which generates the
// 128-bit state and increment PCG64 is seeded with.
func newDefaultRNG(seed uint32) *pcg64 {
	const (
		initA, multA = 0x43b0d7e5, 0x931e8875
		initB, multB = 0x8b51f9dd, 0x58f38ded
		mixL, mixR   = 0xca01f9dd, 0x4973f715
	)
	hashConst := uint32(initA)
	hashmix := func(v uint32) uint32 {
		v ^= hashConst
		hashConst *= multA
		v *= hashConst
		return v ^ v>>16
	}
	mix := func(x, y uint32) uint32 {
		r := mixL*x - mixR*y
		return r ^ r>>16
	}
	var pool [4]uint32
	for i := range pool {
		e := uint32(0)
		if i == 0 {
			e = seed
		}
		pool[i] = hashmix(e)
	}
	for src := range pool {
		for dst := range pool {
			if src != dst {
				pool[dst] = mix(pool[dst], hashmix(pool[src]))
			}
		}
	}
	hashConst = initB
	var words [8]uint32
	for i := range words {
		v := pool[i%4] ^ hashConst
		hashConst *= multB
		v *= hashConst
		words[i] = v ^ v>>16
	}
	u64 := func(i int) uint64 { return uint64(words[2*i]) | uint64(words[2*i+1])<<32 }
	initHi, initLo, seqHi, seqLo := u64(0), u64(1), u64(2), u64(3)
	p := &pcg64{incHi: seqHi<<1 | seqLo>>63, incLo: seqLo<<1 | 1}
	p.step()
	var c uint64
	p.lo, c = bits.Add64(p.lo, initLo, 0)
	p.hi, _ = bits.Add64(p.hi, initHi, c)
	p.step()
	return p
}

// permutation is Generator.permutation(n): a Fisher-Yates shuffle of
// 0..n-1 from the last place down.
func (p *pcg64) permutation(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	for i := n - 1; i >= 1; i-- {
		j := int(p.interval(uint64(i)))
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// ShotDrawer picks each question's few-shot exemplars as LLaMA-Factory's
// evaluator does: one unseeded shuffle of the dev rows per question, its
// first n rows, drawn in order from one stream across all subjects.
type ShotDrawer struct{ g *npGlobal }

// NewShotDrawer starts the stream from the evaluation seed (LLaMA-Factory's
// default is 42).
func NewShotDrawer(seed uint32) *ShotDrawer { return &ShotDrawer{newNPGlobal(seed)} }

// Draw returns the indices of the n exemplars (fewer when dev has fewer
// rows) for the next question, out of dev rows. An empty dev split draws
// nothing, as an empty dataset's shuffle does not.
func (d *ShotDrawer) Draw(dev, n int) []int {
	if dev == 0 {
		return nil
	}
	perm := newDefaultRNG(d.g.shuffleSeed()).permutation(dev)
	return perm[:min(n, dev)]
}
