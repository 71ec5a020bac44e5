// Package mmap maps files read-only into memory, so that the format
// readers (safetensors, GGUF) hand out tensors that are the file's pages:
// nothing is copied, and the kernel can drop and reread them under memory
// pressure.
package mmap

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
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

// Release tells the kernel that the whole pages within b, a part of what
// Map returned, are not needed for now: they leave the process's resident
// set, and a later read faults them back in from the file. b must come
// from Map: on other memory the pages would read back as zeros. An error
// only means the pages stay.
func Release(b []byte) {
	if len(b) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&b[0]))
	lo := (start + page - 1) &^ (page - 1)
	hi := (start + uintptr(len(b))) &^ (page - 1)
	if hi <= lo {
		return
	}
	_ = syscall.Madvise(b[lo-start:hi-start], syscall.MADV_DONTNEED)
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
