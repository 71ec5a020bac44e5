package corpus

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Packed is a packed token directory opened for training: its shards are
// memory-mapped, so blocks are read without copying files into memory.
type Packed struct {
	Index  *PackIndex
	shards [][]byte
	starts []int64 // first block of each shard
	width  int
}

// OpenPacked maps every shard of a complete packed directory.
func OpenPacked(dir string) (*Packed, error) {
	idx, err := ReadPackIndex(dir)
	if err != nil {
		return nil, err
	}
	if !idx.Complete {
		return nil, fmt.Errorf("%s: the pack is unfinished; run data pack again with the same options to complete it", dir)
	}
	p := &Packed{Index: idx, width: 2}
	if idx.DType == "uint32" {
		p.width = 4
	}
	blockBytes := int64(idx.CutoffLen * p.width)
	var start int64
	for _, sh := range idx.Shards {
		path := filepath.Join(dir, sh.File)
		f, err := os.Open(path)
		if err != nil {
			p.Close()
			return nil, err
		}
		st, err := f.Stat()
		if err == nil && st.Size() != sh.Blocks*blockBytes {
			err = fmt.Errorf("%s is %d bytes, index.json says %d blocks of %d bytes", path, st.Size(), sh.Blocks, blockBytes)
		}
		var data []byte
		if err == nil && st.Size() > 0 {
			data, err = syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		}
		f.Close()
		if err != nil {
			p.Close()
			return nil, err
		}
		p.shards = append(p.shards, data)
		p.starts = append(p.starts, start)
		start += sh.Blocks
	}
	return p, nil
}

// Blocks is the number of blocks.
func (p *Packed) Blocks() int64 { return p.Index.Blocks }

// Block copies block i into dst (which must hold CutoffLen ids) and returns it.
func (p *Packed) Block(i int64, dst []int32) ([]int32, error) {
	if i < 0 || i >= p.Index.Blocks {
		return nil, fmt.Errorf("block %d is outside 0..%d", i, p.Index.Blocks-1)
	}
	s := len(p.starts) - 1
	for s > 0 && p.starts[s] > i {
		s--
	}
	n := p.Index.CutoffLen
	off := (i - p.starts[s]) * int64(n*p.width)
	b := p.shards[s][off : off+int64(n*p.width)]
	return decodeBlock(dst[:n], b, p.width), nil
}

// Close unmaps the shards.
func (p *Packed) Close() error {
	var first error
	for _, d := range p.shards {
		if d != nil {
			if err := syscall.Munmap(d); err != nil && first == nil {
				first = err
			}
		}
	}
	p.shards = nil
	return first
}
