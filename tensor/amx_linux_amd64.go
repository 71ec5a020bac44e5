package tensor

import (
	"os"
	"syscall"

	"golang.org/x/sys/cpu"
)

// Linux's arch_prctl request for an extended state component and AMX's
// tile data component (asm/prctl.h, the XSAVE feature numbers).
const (
	archReqXcompPerm = 0x1023
	xfeatureTileData = 18
)

// amxAllowed says whether the AMX kernels may run: the CPU has AMX-TILE
// and AMX-INT8, ZHLLAMA_NOAMX is not 1, and the kernel grants this
// process the tile state (Linux 5.16 on; a tile instruction without it
// faults). Go's signal stacks (32 KB) hold the larger signal frame the
// grant implies.
func amxAllowed() bool {
	if !cpu.X86.HasAMXTile || !cpu.X86.HasAMXInt8 || os.Getenv("ZHLLAMA_NOAMX") == "1" {
		return false
	}
	_, _, errno := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archReqXcompPerm, xfeatureTileData, 0)
	return errno == 0
}
