package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// stealMeter measures the share of this machine's CPU time that the host
// of a virtual machine gave to other guests (the steal column of
// /proc/stat) while a benchmark ran. The benchmarks print it beside their
// ratios: measured through a steal of more than a few percent, a ratio
// says more about the neighbours than about the code.
type stealMeter struct {
	steal, total uint64
	ok           bool
}

// stealWarn is the share past which the benchmarks warn.
const stealWarn = 0.05

// readSteal reads the machine-wide steal and total ticks; ok is false
// where /proc/stat has no steal column (not Linux, or a kernel without it).
func readSteal() stealMeter {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return stealMeter{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseSteal(line)
}

// parseSteal reads the "cpu" line of /proc/stat.
func parseSteal(line string) stealMeter {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return stealMeter{}
	}
	var m stealMeter
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return stealMeter{}
		}
		if i < 8 { // user … steal; guest time is already counted in user
			m.total += v
		}
		if i == 7 {
			m.steal = v
		}
	}
	m.ok = true
	return m
}

// share is the steal since m as a fraction of all CPU time since m.
func (m stealMeter) share() (float64, bool) {
	now := readSteal()
	if !m.ok || !now.ok || now.total <= m.total {
		return 0, false
	}
	return float64(now.steal-m.steal) / float64(now.total-m.total), true
}

// stealReport collects the steal of each side of a comparison.
type stealReport []sideSteal

type sideSteal struct {
	side  string
	share float64
}

// add records the steal since m for side, where it could be measured; a
// side measured again (in several rounds) keeps its largest share.
func (r *stealReport) add(side string, m stealMeter) {
	s, ok := m.share()
	if !ok {
		return
	}
	for i := range *r {
		if (*r)[i].side == side {
			(*r)[i].share = max((*r)[i].share, s)
			return
		}
	}
	*r = append(*r, sideSteal{side, s})
}

// note is the line the benchmarks print ("" where nothing was measured),
// with a warning where a side is past stealWarn; res, if not nil, gets
// each share as steal_<side>.
func (r stealReport) note(res map[string]any) string {
	if len(r) == 0 {
		return ""
	}
	var parts []string
	warn := false
	for _, e := range r {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", e.side, 100*e.share))
		warn = warn || e.share > stealWarn
		if res != nil {
			res["steal_"+e.side] = e.share
		}
	}
	note := "host steal during the runs: " + strings.Join(parts, ", ")
	if warn {
		note += fmt.Sprintf(" — over %.0f%%: the host gave these CPUs to other guests, so the times and ratios are unreliable; run again when the machine is quiet", 100*stealWarn)
	}
	return note
}
