package spm

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"zhllama/internal/pipeline"
)

// LineOptions control EncodeLines and DecodeLines.
type LineOptions struct {
	Format         string // encode: output piece|id; decode: input piece|id
	AddBOS, AddEOS bool   // encode only
	Threads        int    // 0 means GOMAXPROCS
}

// EncodeLines encodes each line of r into one line of w, as spm_encode does,
// using several goroutines while keeping the output in input order.
func (p *Processor) EncodeLines(r io.Reader, w io.Writer, o LineOptions) error {
	if o.Format != "piece" && o.Format != "id" {
		return fmt.Errorf("output format %q: use piece or id", o.Format)
	}
	bos, eos := -1, -1
	if o.AddBOS {
		if bos = p.SpecialID("bos"); bos < 0 {
			return fmt.Errorf("--add_bos: the model has no bos piece")
		}
	}
	if o.AddEOS {
		if eos = p.SpecialID("eos"); eos < 0 {
			return fmt.Errorf("--add_eos: the model has no eos piece")
		}
	}
	return mapLines(r, w, o.Threads, func() func(dst []byte, line string) []byte {
		var s Scratch
		var ids []int
		return func(dst []byte, line string) []byte {
			if o.Format == "piece" {
				pieces := p.EncodePieces(line)
				if bos >= 0 {
					pieces = append([]string{p.IDToPiece(bos)}, pieces...)
				}
				if eos >= 0 {
					pieces = append(pieces, p.IDToPiece(eos))
				}
				return append(dst, strings.Join(pieces, " ")...)
			}
			ids = ids[:0]
			if bos >= 0 {
				ids = append(ids, bos)
			}
			ids = p.AppendIDs(ids, line, &s)
			if eos >= 0 {
				ids = append(ids, eos)
			}
			for i, id := range ids {
				if i > 0 {
					dst = append(dst, ' ')
				}
				dst = strconv.AppendInt(dst, int64(id), 10)
			}
			return dst
		}
	})
}

// DecodeLines decodes each line of r (space-separated ids or pieces) into one
// line of w, as spm_decode does.
func (p *Processor) DecodeLines(r io.Reader, w io.Writer, o LineOptions) error {
	if o.Format != "piece" && o.Format != "id" {
		return fmt.Errorf("input format %q: use piece or id", o.Format)
	}
	var mu sync.Mutex
	var firstErr error
	err := mapLines(r, w, o.Threads, func() func(dst []byte, line string) []byte {
		return func(dst []byte, line string) []byte {
			fields := strings.Fields(line)
			if o.Format == "piece" {
				return append(dst, p.DecodePieces(fields)...)
			}
			ids := make([]int, len(fields))
			for i, f := range fields {
				v, err := strconv.Atoi(f)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%q is not an id (use --input_format=piece for pieces)", f)
					}
					mu.Unlock()
					return dst
				}
				ids[i] = v
			}
			text, err := p.Decode(ids)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			return append(dst, text...)
		}
	})
	if err != nil {
		return err
	}
	return firstErr
}

// mapLines applies f to every line of r in parallel and writes the results,
// one line each, in input order.
func mapLines(r io.Reader, w io.Writer, threads int, newF func() func(dst []byte, line string) []byte) error {
	threads = threadCount(threads)
	fs := make([]func([]byte, string) []byte, threads)
	for i := range fs {
		fs[i] = newF()
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	err := batchLines(r, threads, func(worker int, lines []string) []byte {
		var buf []byte
		for _, l := range lines {
			buf = append(fs[worker](buf, l), '\n')
		}
		return buf
	}, func(b []byte) error {
		_, err := bw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

func threadCount(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// batchLines reads r in batches of lines, runs work on them in parallel
// (worker is the goroutine's index) and hands the results to sink in input
// order. Lines lose their trailing newline only.
func batchLines(r io.Reader, threads int, work func(worker int, lines []string) []byte, sink func([]byte) error) error {
	produce := func(emit func([]string) bool) error {
		br := bufio.NewReaderSize(r, 1<<20)
		var lines []string
		size := 0
		for {
			s, err := br.ReadString('\n')
			if s != "" {
				lines = append(lines, strings.TrimSuffix(s, "\n"))
				size += len(s)
				if len(lines) >= 512 || size >= 256<<10 {
					if !emit(lines) {
						return nil
					}
					lines, size = nil, 0
				}
			}
			if err == io.EOF {
				if len(lines) > 0 {
					emit(lines)
				}
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	return pipeline.Ordered(threads, produce, work, sink)
}
