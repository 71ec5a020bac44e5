package spm

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// charsMap is a precompiled normalization map as stored in
// NormalizerSpec.precompiled_charsmap: a little-endian uint32 giving the size
// in bytes of a double-array trie, the trie's 32-bit units, then a blob of
// NUL-terminated replacement strings that the trie's values point into.
type charsMap struct {
	units []uint32
	repl  string
}

func parseCharsMap(b []byte) (*charsMap, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("precompiled_charsmap is %d bytes, too short for its header", len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if n%4 != 0 || uint64(n) > uint64(len(b)-4) {
		return nil, fmt.Errorf("precompiled_charsmap declares a %d-byte trie but holds %d bytes", n, len(b)-4)
	}
	cm := &charsMap{units: make([]uint32, n/4), repl: string(b[4+n:])}
	for i := range cm.units {
		cm.units[i] = binary.LittleEndian.Uint32(b[4+4*i:])
	}
	if len(cm.units) == 0 {
		return nil, fmt.Errorf("precompiled_charsmap has an empty trie")
	}
	return cm, nil
}

// Double-array unit fields (darts-clone layout).
func unitHasLeaf(u uint32) bool  { return (u>>8)&1 == 1 }
func unitValue(u uint32) uint32  { return u & (1<<31 - 1) }
func unitLabel(u uint32) uint32  { return u & (1<<31 | 0xff) }
func unitOffset(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }

// longestMatch returns the length of the longest key that prefixes s and the
// replacement it maps to, or 0 when no key matches.
func (cm *charsMap) longestMatch(s string) (int, string) {
	units := cm.units
	pos := unitOffset(units[0])
	best, bestVal := 0, uint32(0)
	for i := 0; i < len(s); i++ {
		c := uint32(s[i])
		pos ^= c
		if int(pos) >= len(units) {
			break
		}
		u := units[pos]
		if unitLabel(u) != c {
			break
		}
		pos ^= unitOffset(u)
		if unitHasLeaf(u) {
			if int(pos) >= len(units) {
				break
			}
			best, bestVal = i+1, unitValue(units[pos])
		}
	}
	if best == 0 {
		return 0, ""
	}
	return best, cm.replacement(bestVal)
}

func (cm *charsMap) replacement(off uint32) string {
	if int(off) >= len(cm.repl) {
		return ""
	}
	r := cm.repl[off:]
	if i := strings.IndexByte(r, 0); i >= 0 {
		return r[:i]
	}
	return r
}
