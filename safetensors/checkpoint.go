package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"zhllama/internal/atomicfile"
)

// Index is model.safetensors.index.json: which shard holds each tensor.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// IndexName is the index file of a sharded checkpoint.
const IndexName = "model.safetensors.index.json"

// Checkpoint is a model directory's weights: model.safetensors, or the
// shards its index names.
type Checkpoint struct {
	Dir   string
	files []*File
	where map[string]*File
}

// OpenDir opens the weights of a Hugging Face model directory.
func OpenDir(dir string) (*Checkpoint, error) {
	c := &Checkpoint{Dir: dir, where: map[string]*File{}}
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		c.add(f)
		return c, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, IndexName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s has neither model.safetensors nor %s", dir, IndexName)
	}
	if err != nil {
		return nil, err
	}
	var idx Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, IndexName), err)
	}
	shards := map[string]bool{}
	for _, s := range idx.WeightMap {
		shards[s] = true
	}
	names := make([]string, 0, len(shards))
	for s := range shards {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		f, err := Open(filepath.Join(dir, s))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.add(f)
	}
	for name, shard := range idx.WeightMap {
		f := c.where[name]
		if f == nil || filepath.Base(f.Path) != shard {
			c.Close()
			return nil, fmt.Errorf("%s says tensor %s is in %s, but it is not there", IndexName, name, shard)
		}
	}
	return c, nil
}

func (c *Checkpoint) add(f *File) {
	c.files = append(c.files, f)
	for i := range f.Tensors {
		c.where[f.Tensors[i].Name] = f
	}
}

// Names lists every tensor, sorted.
func (c *Checkpoint) Names() []string {
	names := make([]string, 0, len(c.where))
	for n := range c.where {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Tensor returns the named tensor, or an error naming what is missing.
func (c *Checkpoint) Tensor(name string) (*Tensor, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %s in the checkpoint (%d tensors)", c.Dir, name, len(c.where))
	}
	t, _ := f.Tensor(name)
	return t, nil
}

// Expect returns the named tensor if it has the given shape; the error
// names the tensor, the expected and the found shape.
func (c *Checkpoint) Expect(name string, shape ...int) (*Tensor, error) {
	t, err := c.Tensor(name)
	if err != nil {
		return nil, err
	}
	if len(t.Shape) != len(shape) {
		return nil, fmt.Errorf("tensor %s has shape %v, expected %v", name, t.Shape, shape)
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			return nil, fmt.Errorf("tensor %s has shape %v, expected %v", name, t.Shape, shape)
		}
	}
	return t, nil
}

// Close unmaps every file.
func (c *Checkpoint) Close() error {
	var first error
	for _, f := range c.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// WriteDir writes tensors to dir as model.safetensors, or, when they
// exceed maxShard bytes, as model-0000K-of-0000N.safetensors shards with
// an index, the way transformers' save_pretrained does.
func WriteDir(dir string, metadata map[string]string, tensors []Source, maxShard int64) error {
	var groups [][]Source
	var cur []Source
	var curSize, total int64
	for _, t := range tensors {
		n := int64(t.DType.Size())
		for _, d := range t.Shape {
			n *= int64(d)
		}
		total += n
		if maxShard > 0 && len(cur) > 0 && curSize+n > maxShard {
			groups = append(groups, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, t)
		curSize += n
	}
	groups = append(groups, cur)
	if len(groups) == 1 {
		os.Remove(filepath.Join(dir, IndexName))
		return Write(filepath.Join(dir, "model.safetensors"), metadata, groups[0])
	}
	idx := Index{Metadata: map[string]any{"total_size": total}, WeightMap: map[string]string{}}
	for k, g := range groups {
		name := "model-" + pad5(k+1) + "-of-" + pad5(len(groups)) + ".safetensors"
		if err := Write(filepath.Join(dir, name), metadata, g); err != nil {
			return err
		}
		for _, t := range g {
			idx.WeightMap[t.Name] = name
		}
	}
	return atomicfile.WriteJSON(filepath.Join(dir, IndexName), idx)
}

func pad5(n int) string {
	s := strconv.Itoa(n)
	for len(s) < 5 {
		s = "0" + s
	}
	return s
}
