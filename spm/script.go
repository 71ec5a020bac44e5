package spm

import (
	"sort"
	"unicode"
)

// Unicode scripts as small integers, for the trainer's rule that a piece
// must not mix scripts.
const (
	scriptAny      = -1 // matches every script (digits unless split_by_number)
	scriptCommon   = 0
	scriptInherit  = 1
	scriptHan      = 2
	firstNamedCode = 3
)

type scriptRange struct {
	lo, hi rune
	code   int16
}

var scriptTable = buildScriptTable()

func buildScriptTable() []scriptRange {
	names := make([]string, 0, len(unicode.Scripts))
	for name := range unicode.Scripts {
		names = append(names, name)
	}
	sort.Strings(names)
	var rs []scriptRange
	next := int16(firstNamedCode)
	for _, name := range names {
		var code int16
		switch name {
		case "Common":
			code = scriptCommon
		case "Inherited":
			code = scriptInherit
		case "Han", "Hiragana", "Katakana":
			// The trainer treats Japanese kana as Han.
			code = scriptHan
		default:
			code = next
			next++
		}
		t := unicode.Scripts[name]
		add := func(lo, hi, stride rune) {
			if stride == 1 {
				rs = append(rs, scriptRange{lo, hi, code})
				return
			}
			for c := lo; c <= hi; c += stride {
				rs = append(rs, scriptRange{c, c, code})
			}
		}
		for _, r := range t.R16 {
			add(rune(r.Lo), rune(r.Hi), rune(r.Stride))
		}
		for _, r := range t.R32 {
			add(rune(r.Lo), rune(r.Hi), rune(r.Stride))
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	return rs
}

// scriptOf returns the script code of r; unassigned code points are Common.
func scriptOf(r rune) int {
	if r == 0x30FC { // KATAKANA-HIRAGANA PROLONGED SOUND MARK
		return scriptHan
	}
	i := sort.Search(len(scriptTable), func(i int) bool { return scriptTable[i].hi >= r })
	if i < len(scriptTable) && scriptTable[i].lo <= r {
		return int(scriptTable[i].code)
	}
	return scriptCommon
}
