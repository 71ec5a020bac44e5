// Package corpus reads the text and instruction data people train on —
// plain text, JSON arrays, JSON Lines (gzip or zstd compressed or not) and
// Parquet — and turns it into training-ready token blocks.
package corpus

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"unicode/utf8"
	"zhllama/internal/textcheck"

	"github.com/klauspost/compress/zstd"
)

// Location names a record's place in its file.
type Location struct {
	File    string
	Line    int  // 1-based; for JSON arrays, the line where the element starts
	Item    int  // 0-based index of the record in its file
	InArray bool // an element of a JSON array, which can share its line with others
}

func (l Location) String() string {
	if l.InArray {
		return fmt.Sprintf("%s:%d (element %d)", l.File, l.Line, l.Item)
	}
	return fmt.Sprintf("%s:%d", l.File, l.Line)
}

// Record is one JSON object, or {"text": line} for plain text.
type Record map[string]any

// ReadOptions control how files are read.
type ReadOptions struct {
	// Paragraphs makes a blank-line-separated paragraph one plain-text
	// document instead of each line.
	Paragraphs bool
	// Strict stops at the first malformed record instead of skipping it.
	Strict bool
	// Bad, if set, is told about each skipped record.
	Bad func(loc Location, err error)
	// BytesRead, if set, counts the bytes read from the file (compressed
	// bytes for compressed files), for progress reports.
	BytesRead *atomic.Int64
}

// countingReader adds what it reads to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// Open opens a file, decompressing .gz and .zst transparently.
func Open(path string) (io.ReadCloser, error) {
	return openCounted(path, nil)
}

func openCounted(path string, counter *atomic.Int64) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var src io.Reader = f
	if counter != nil {
		src = countingReader{f, counter}
	}
	switch {
	case strings.HasSuffix(path, ".gz"):
		zr, err := gzip.NewReader(src)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: not a gzip file: %w", path, err)
		}
		return struct {
			io.Reader
			io.Closer
		}{zr, f}, nil
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: not a zstd file: %w", path, err)
		}
		return struct {
			io.Reader
			io.Closer
		}{zr, closerFunc(func() error { zr.Close(); return f.Close() })}, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{src, f}, nil
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

// Format is how a file's records are laid out.
type Format int

// File formats.
const (
	FormatText Format = iota
	FormatJSON
	FormatJSONL
)

// DetectFormat decides from the name (.txt, .json, .jsonl, .gz stripped)
// and, when the name says nothing, from the first non-blank byte.
func DetectFormat(path string, head []byte) Format {
	name := strings.TrimSuffix(strings.TrimSuffix(path, ".gz"), ".zst")
	switch filepath.Ext(name) {
	case ".jsonl", ".ndjson":
		return FormatJSONL
	case ".txt", ".text":
		return FormatText
	}
	trimmed := bytes.TrimLeft(head, " \t\r\n\ufeff")
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		return FormatJSON
	case len(trimmed) > 0 && trimmed[0] == '{':
		return FormatJSONL
	}
	return FormatText
}

// ErrStop, returned by a callback, ends reading without an error.
var ErrStop = errors.New("stop")

// Read calls fn for each record of the file at path, streaming: memory does
// not grow with the file. Malformed records are skipped (reported to
// o.Bad) unless o.Strict. It returns the number of records skipped.
func Read(path string, o ReadOptions, fn func(Record, Location) error) (skipped int, err error) {
	if strings.HasSuffix(path, ".parquet") {
		err := readParquet(path, fn)
		if errors.Is(err, ErrStop) {
			err = nil
		}
		return 0, err
	}
	rc, err := openCounted(path, o.BytesRead)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<20)
	head, _ := br.Peek(512)
	bad := func(loc Location, e error) error {
		skipped++
		if o.Strict {
			return fmt.Errorf("%s: %w", loc, e)
		}
		if o.Bad != nil {
			o.Bad(loc, e)
		}
		return nil
	}
	switch DetectFormat(path, head) {
	case FormatJSON:
		err = readJSONArray(path, br, fn, bad)
	case FormatJSONL:
		err = readJSONL(path, br, fn, bad)
	default:
		err = readText(path, br, o.Paragraphs, fn)
	}
	if errors.Is(err, ErrStop) {
		err = nil
	}
	return skipped, err
}

func readText(path string, br *bufio.Reader, paragraphs bool, fn func(Record, Location) error) error {
	line, item := 0, 0
	var para []string
	paraStart := 0
	enc := textcheck.Lines{Name: path}
	flush := func() error {
		if len(para) == 0 {
			return nil
		}
		text := strings.Join(para, "\n")
		para = para[:0]
		item++
		return fn(Record{"text": text}, Location{File: path, Line: paraStart, Item: item - 1})
	}
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			line++
			s = strings.TrimRight(s, "\r\n")
			if line <= textcheck.Early {
				if enc.Total++; !utf8.ValidString(s) {
					enc.Bad++
				}
				if line == textcheck.Early {
					if eerr := enc.Err(); eerr != nil {
						return eerr
					}
				}
			}
			switch {
			case paragraphs && strings.TrimSpace(s) == "":
				if ferr := flush(); ferr != nil {
					return ferr
				}
			case paragraphs:
				if len(para) == 0 {
					paraStart = line
				}
				para = append(para, s)
			case s != "":
				item++
				if ferr := fn(Record{"text": s}, Location{File: path, Line: line, Item: item - 1}); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			if eerr := enc.Err(); eerr != nil {
				return eerr
			}
			return flush()
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line+1, err)
		}
	}
}

func readJSONL(path string, br *bufio.Reader, fn func(Record, Location) error, bad func(Location, error) error) error {
	line, item := 0, 0
	for {
		b, err := br.ReadBytes('\n') // no limit on a line's length
		if len(b) > 0 {
			line++
			b = bytes.TrimSpace(b)
			if len(b) > 0 {
				loc := Location{File: path, Line: line, Item: item}
				var rec Record
				if jerr := json.Unmarshal(b, &rec); jerr != nil || rec == nil {
					if jerr == nil {
						jerr = errors.New("not a JSON object")
					}
					if berr := bad(loc, fmt.Errorf("malformed JSON line: %v", jerr)); berr != nil {
						return berr
					}
				} else {
					item++
					if ferr := fn(rec, loc); ferr != nil {
						return ferr
					}
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line+1, err)
		}
	}
}

// lineCounter counts the newlines that pass through it, so that a JSON
// array's elements can be located. Queries come in increasing offsets, so
// it keeps only the newlines past the last one asked about.
type lineCounter struct {
	r     io.Reader
	read  int64
	base  int     // newlines before the kept ones
	lines []int64 // offsets of newlines not yet passed by a query
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			c.lines = append(c.lines, c.read+int64(i))
		}
	}
	c.read += int64(n)
	return n, err
}

// lineAt returns the 1-based line of byte offset off.
func (c *lineCounter) lineAt(off int64) int {
	k := 0
	for k < len(c.lines) && c.lines[k] < off {
		k++
	}
	c.base += k
	c.lines = append(c.lines[:0], c.lines[k:]...)
	return c.base + 1
}

func readJSONArray(path string, br *bufio.Reader, fn func(Record, Location) error, bad func(Location, error) error) error {
	lc := &lineCounter{r: br}
	dec := json.NewDecoder(lc)
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: not a JSON array: %v", path, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%s: expected a JSON array, found %v", path, tok)
	}
	item := 0
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			// The array cannot be resynchronized after a syntax error.
			return fmt.Errorf("%s:%d: malformed JSON in array element %d: %v", path, lc.lineAt(dec.InputOffset()), item, err)
		}
		loc := Location{File: path, Line: lc.lineAt(dec.InputOffset() - int64(len(raw))), Item: item, InArray: true}
		var rec Record
		if err := json.Unmarshal(raw, &rec); err != nil || rec == nil {
			if err == nil {
				err = errors.New("not a JSON object")
			}
			if berr := bad(loc, fmt.Errorf("array element %d: %v", item, err)); berr != nil {
				return berr
			}
			item++
			continue
		}
		item++
		if err := fn(rec, loc); err != nil {
			return err
		}
	}
	return nil
}
