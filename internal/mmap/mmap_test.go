package mmap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Released pages read back as the file holds them.
func TestRelease(t *testing.T) {
	want := make([]byte, 5*os.Getpagesize()+123)
	for i := range want {
		want[i] = byte(i*7 + i/251)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Map(path)
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(b)
	if !bytes.Equal(b, want) {
		t.Fatal("mapped bytes differ from the file")
	}
	Release(b[100 : len(b)-50])
	Release(b[10:20]) // within one page: nothing to release
	Release(nil)
	if !bytes.Equal(b, want) {
		t.Fatal("released pages read back differently")
	}
}
