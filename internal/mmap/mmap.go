// Package mmap maps files read-only into memory, so that the format
// readers (safetensors, GGUF) hand out tensors that are the file's pages:
// nothing is copied, and the kernel can drop and reread them under memory
// pressure.
package mmap

import (
	"fmt"
	"os"
	"syscall"
)

// Map maps the file at path; an empty file is nil. Errors name the file.
func Map(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return nil, nil
	}
	b, err := syscall.Mmap(int(fh.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Unmap releases what Map returned; nil is a no-op.
func Unmap(b []byte) error {
	if b == nil {
		return nil
	}
	return syscall.Munmap(b)
}

// Open maps path and parses the bytes with parse; when parsing fails the
// mapping is released and the error names the file.
func Open[T any](path string, parse func([]byte) (T, error)) (T, []byte, error) {
	var zero T
	b, err := Map(path)
	if err != nil {
		return zero, nil, err
	}
	v, err := parse(b)
	if err != nil {
		Unmap(b)
		return zero, nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, b, nil
}
