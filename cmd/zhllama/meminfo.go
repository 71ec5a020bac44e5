package main

import (
	"os"
	"strconv"
	"strings"
)

// meminfo is /proc/meminfo's field key in bytes (0 where unknown):
// MemTotal, or MemAvailable, the kernel's estimate of what can be
// allocated without swapping.
func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
