// Package atomicfile writes files so that a reader never sees half of one:
// the data goes to a temporary file beside the target, which is renamed.
package atomicfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File is a file being written under a temporary name. Write to it, then
// Commit to move it into place, or Abort to drop it.
type File struct {
	*bufio.Writer
	f    *os.File
	path string
}

// Create starts writing path through a temporary file in the same directory.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	return &File{Writer: bufio.NewWriterSize(f, 1<<20), f: f, path: path}, nil
}

// Commit flushes, syncs and renames the file into place; on failure the
// temporary file is removed.
func (a *File) Commit() error {
	err := a.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(a.f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(a.f.Name(), a.path)
	}
	if err != nil {
		os.Remove(a.f.Name())
		return fmt.Errorf("writing %s: %w", a.path, err)
	}
	return nil
}

// WriteExactly runs write on the file and checks that it wrote n bytes:
// the streamed parts of a format (a tensor) whose size the header already
// promised. what names the part in the error.
func (a *File) WriteExactly(what string, n int64, write func(w io.Writer) error) error {
	cw := &countWriter{w: a}
	if err := write(cw); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if cw.n != n {
		return fmt.Errorf("%s: wrote %d bytes, needs %d", what, cw.n, n)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Abort drops the temporary file. It is safe after Commit.
func (a *File) Abort() {
	a.f.Close()
	os.Remove(a.f.Name())
}

// WriteFile writes data to path through a temporary file.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// WriteJSON writes v as indented JSON (HTML characters unescaped) to path.
func WriteJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return WriteFile(path, buf.Bytes())
}
