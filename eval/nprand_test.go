package eval

import (
	"math/big"
	"slices"
	"testing"
)

// The vectors below were produced with NumPy 1.24 (Debian's python3-numpy).

// The seeds an unseeded Dataset.shuffle() takes after np.random.seed(42),
// call after call: np.random.get_state()'s key[pos] (key[0] at pos 624),
// then one np.random.random().
func TestShuffleSeedsFollowNumPy(t *testing.T) {
	g := newNPGlobal(42)
	if g.key[1] != 3107752595 || g.key[2] != 1895908407 {
		t.Fatalf("seeded state %d %d", g.key[1], g.key[2])
	}
	var seeds []uint32
	for range 700 {
		seeds = append(seeds, g.shuffleSeed())
	}
	want := map[int]uint32{0: 42, 1: 4170412009, 2: 3342822751, 3: 1210243767, 4: 1412570585,
		310: 3446775024, 311: 1432291794, 312: 723970371, 697: 2164162392, 698: 2333437766, 699: 2597629884}
	for i, w := range want {
		if seeds[i] != w {
			t.Errorf("seed %d: %d, NumPy %d", i, seeds[i], w)
		}
	}
}

// np.random.default_rng(seed): PCG64's state and increment, raw draws
// and permutations.
func TestDefaultRNGFollowsNumPy(t *testing.T) {
	for _, c := range []struct {
		seed       uint32
		state, inc string
		raw        []uint64
		p5, p10    []int
	}{
		{0, "35399562948360463058890781895381311971", "87136372517582989555478159403783844777",
			[]uint64{11749869230777074271, 4976686463289251617, 755828109848996024}, []int{2, 4, 3, 0, 1}, []int{4, 6, 2, 7, 3, 5, 9, 0, 8, 1}},
		{1, "207833532711051698738587646355624148094", "194290289479364712180083596243593368443",
			nil, []int{4, 0, 1, 2, 3}, []int{8, 4, 7, 0, 1, 2, 5, 9, 6, 3}},
		{42, "274674114334540486603088602300644985544", "332724090758049132448979897138935081983",
			[]uint64{14276969152011380360, 8095878257575067585, 15838336090824644132}, []int{4, 2, 3, 1, 0}, []int{5, 6, 0, 7, 3, 2, 4, 9, 1, 8}},
		{1608637542, "107115998670217526497733559304326512310", "329886527662262354868939953269103301195",
			nil, []int{3, 2, 0, 1, 4}, []int{8, 0, 3, 5, 6, 7, 2, 9, 1, 4}},
		{4294967295, "101204197857318639069773211696183556762", "290547968807786152992028972051586286075",
			[]uint64{4647538520743280031, 4041050679407036418, 5299467714154781845}, []int{0, 4, 3, 2, 1}, []int{0, 1, 4, 8, 3, 7, 5, 6, 2, 9}},
	} {
		p := newDefaultRNG(c.seed)
		u128 := func(hi, lo uint64) string {
			v := new(big.Int).Lsh(new(big.Int).SetUint64(hi), 64)
			return v.Or(v, new(big.Int).SetUint64(lo)).String()
		}
		if s, i := u128(p.hi, p.lo), u128(p.incHi, p.incLo); s != c.state || i != c.inc {
			t.Errorf("seed %d: state %s inc %s, NumPy %s %s", c.seed, s, i, c.state, c.inc)
		}
		for k, w := range c.raw {
			if v := p.next64(); v != w {
				t.Errorf("seed %d: draw %d is %d, NumPy %d", c.seed, k, v, w)
			}
		}
		if got := newDefaultRNG(c.seed).permutation(5); !slices.Equal(got, c.p5) {
			t.Errorf("seed %d: permutation(5) %v, NumPy %v", c.seed, got, c.p5)
		}
		if got := newDefaultRNG(c.seed).permutation(10); !slices.Equal(got, c.p10) {
			t.Errorf("seed %d: permutation(10) %v, NumPy %v", c.seed, got, c.p10)
		}
	}
	want := []int{65, 30, 42, 89, 94, 44, 83, 79, 88, 28, 1, 2, 67, 95, 56, 37, 50, 97, 58, 32, 74, 81, 98, 52, 57, 70, 27, 54, 99, 35, 53, 23, 73, 21, 47, 39, 78, 40, 14, 10, 72, 51, 33, 69, 92, 9, 26, 49, 90, 75, 15, 93, 80, 86, 25, 63, 60, 82, 16, 34, 55, 45, 31, 18, 24, 61, 17, 91, 20, 3, 6, 59, 29, 87, 41, 11, 64, 96, 62, 85, 12, 19, 4, 7, 8, 68, 46, 36, 5, 77, 48, 43, 76, 84, 66, 71, 13, 22, 38, 0}
	if got := newDefaultRNG(3446775024).permutation(100); !slices.Equal(got, want) {
		t.Errorf("permutation(100) %v", got)
	}
}

// Three exemplars out of five dev rows for four questions in a row, as
// NumPy composes the draws above.
func TestShotDrawerSequence(t *testing.T) {
	d := NewShotDrawer(42)
	for i, want := range [][]int{{4, 2, 3}, {3, 0, 1}, {1, 0, 4}, {0, 4, 1}} {
		if got := d.Draw(5, 3); !slices.Equal(got, want) {
			t.Errorf("question %d: %v, NumPy %v", i, got, want)
		}
	}
	if got := d.Draw(0, 3); got != nil {
		t.Errorf("an empty dev split gave %v", got)
	}
	if got := d.Draw(2, 5); len(got) != 2 {
		t.Errorf("two dev rows gave %v", got)
	}
}
