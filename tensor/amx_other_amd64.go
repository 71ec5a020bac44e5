//go:build !linux

package tensor

// amxAllowed is false where the tile state cannot be asked for.
func amxAllowed() bool { return false }
