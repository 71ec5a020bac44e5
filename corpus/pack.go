package corpus

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"zhllama/internal/atomicfile"
	"zhllama/internal/pipeline"
	"zhllama/spm"
)

// PackIndex is index.json of a packed token directory.
type PackIndex struct {
	Format          string      `json:"format"`
	DType           string      `json:"dtype"`
	VocabSize       int         `json:"vocab_size"`
	CutoffLen       int         `json:"cutoff_len"`
	BOSID           int         `json:"bos_id"`
	EOSID           int         `json:"eos_id"`
	Tokenizer       string      `json:"tokenizer"`
	TokenizerSHA256 string      `json:"tokenizer_sha256"`
	Inputs          []string    `json:"inputs"`
	Documents       int64       `json:"documents"`
	Tokens          int64       `json:"tokens"` // tokens in blocks
	Blocks          int64       `json:"blocks"`
	DroppedTokens   int64       `json:"dropped_tokens"` // the last partial block
	Skipped         int64       `json:"skipped_records"`
	Shards          []PackShard `json:"shards"`
	Complete        bool        `json:"complete"`
	Resume          *packResume `json:"resume,omitempty"`
}

// errEnded is what a producer returns when emit reports the run is ending.
var errEnded = errors.New("ended")

// PackShard is one file of whole blocks.
type PackShard struct {
	File   string `json:"file"`
	Blocks int64  `json:"blocks"`
}

// packResume is where an interrupted run continues: the documents already
// packed and the tokens that did not fill a block yet.
type packResume struct {
	DocumentsDone int64   `json:"documents_done"`
	Carry         []int32 `json:"carry"`
}

const packFormat = "zhllama-tokens-v1"

// PackOptions control Pack.
type PackOptions struct {
	Tokenizer   string
	Inputs      []string
	OutputDir   string
	CutoffLen   int
	ShardTokens int // tokens per shard file, rounded down to whole blocks
	Threads     int
	Strict      bool
	Paragraphs  bool // plain text: a blank-line-separated paragraph is one document
	Log         io.Writer
	// Bad is told about skipped records.
	Bad func(Location, error)
	// stopAfterShards ends the run early, as an interruption would (tests).
	stopAfterShards int
}

// Pack tokenizes every document of the inputs as [BOS] ids [EOS],
// concatenates them and cuts the stream into blocks of CutoffLen tokens,
// written as little-endian uint16 (or uint32 for large vocabularies) shards
// with index.json. A run that was interrupted continues where its last
// shard ended; the result is the same as an uninterrupted run.
func Pack(o PackOptions) (*PackIndex, error) {
	if o.CutoffLen < 2 {
		return nil, fmt.Errorf("--cutoff_len=%d: give the block length in tokens, e.g. 1024", o.CutoffLen)
	}
	if len(o.Inputs) == 0 {
		return nil, errors.New("no --input files")
	}
	if o.ShardTokens <= 0 {
		o.ShardTokens = 64 << 20
	}
	if o.Threads <= 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	model, err := spm.Load(o.Tokenizer)
	if err != nil {
		return nil, err
	}
	p, err := spm.NewProcessor(model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Tokenizer, err)
	}
	bos, eos := p.SpecialID("bos"), p.SpecialID("eos")
	if bos < 0 || eos < 0 {
		return nil, fmt.Errorf("%s has no bos or eos piece to frame documents with", o.Tokenizer)
	}
	raw := model.Marshal()
	sum := sha256.Sum256(raw)
	idx := &PackIndex{
		Format: packFormat, DType: "uint16", VocabSize: p.Size(), CutoffLen: o.CutoffLen, BOSID: bos, EOSID: eos,
		Tokenizer: "tokenizer.model", TokenizerSHA256: hex.EncodeToString(sum[:]), Inputs: o.Inputs,
	}
	if p.Size() > 1<<16 {
		idx.DType = "uint32"
	}
	if err := os.MkdirAll(o.OutputDir, 0o755); err != nil {
		return nil, err
	}
	indexPath := filepath.Join(o.OutputDir, "index.json")
	resume := &packResume{}
	if old, err := ReadPackIndex(o.OutputDir); err == nil {
		switch {
		case old.Complete:
			return nil, fmt.Errorf("%s already holds a complete pack: choose another --output_dir or remove it", o.OutputDir)
		case old.TokenizerSHA256 != idx.TokenizerSHA256 || old.CutoffLen != idx.CutoffLen || !slices.Equal(old.Inputs, idx.Inputs) || old.Resume == nil:
			return nil, fmt.Errorf("%s holds an unfinished pack made with other inputs, tokenizer or cutoff_len: remove it or use the same options to resume", o.OutputDir)
		}
		idx, resume = old, old.Resume
		fmt.Fprintf(logOf(o), "resuming after %d documents, %d shards\n", resume.DocumentsDone, len(idx.Shards))
		// A shard that was being written when the run stopped is redone.
		stale, _ := filepath.Glob(filepath.Join(o.OutputDir, ".tokens-*.tmp*"))
		for _, f := range stale {
			os.Remove(f)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(o.OutputDir, "tokenizer.model"), raw); err != nil {
		return nil, err
	}

	blocksPerShard := max(1, o.ShardTokens/o.CutoffLen)
	width := 2
	if idx.DType == "uint32" {
		width = 4
	}
	carry := slices.Clone(resume.Carry)
	// The shard being written streams to a temporary file, renamed when
	// full: memory does not grow with the shard size.
	var shard *atomicfile.File
	shardBlocks := 0
	docsDone := resume.DocumentsDone
	shardsWritten := 0
	flushShard := func() error {
		if shardBlocks == 0 {
			return nil
		}
		name := fmt.Sprintf("tokens-%05d.bin", len(idx.Shards))
		if err := shard.Commit(); err != nil {
			return err
		}
		shard = nil
		idx.Shards = append(idx.Shards, PackShard{File: name, Blocks: int64(shardBlocks)})
		idx.Blocks += int64(shardBlocks)
		idx.Tokens += int64(shardBlocks * o.CutoffLen)
		shardBlocks = 0
		// The carry and the count of documents describe the stream after
		// this shard: exactly where a resumed run starts.
		idx.Documents = docsDone
		idx.Resume = &packResume{DocumentsDone: docsDone, Carry: carry}
		shardsWritten++
		return writeIndex(indexPath, idx)
	}
	var blockBuf []byte
	addBlock := func(block []int32) error {
		if shard == nil {
			var err error
			name := fmt.Sprintf("tokens-%05d.bin", len(idx.Shards))
			if shard, err = atomicfile.Create(filepath.Join(o.OutputDir, name)); err != nil {
				return err
			}
		}
		blockBuf = blockBuf[:0]
		for _, id := range block {
			if width == 2 {
				blockBuf = binary.LittleEndian.AppendUint16(blockBuf, uint16(id))
			} else {
				blockBuf = binary.LittleEndian.AppendUint32(blockBuf, uint32(id))
			}
		}
		shardBlocks++
		_, err := shard.Write(blockBuf)
		return err
	}
	defer func() {
		if shard != nil {
			shard.Abort()
		}
	}()
	errStopped := errors.New("stopped")
	prog := &packProgress{w: o.Log, start: time.Now(), last: time.Now()}
	for _, in := range o.Inputs {
		if st, err := os.Stat(in); err == nil {
			prog.total += st.Size()
		}
	}
	var skipped int64
	err = forEachDocument(o, p, bos, eos, resume.DocumentsDone, &prog.read, func(doc []int32) error {
		carry = append(carry, doc...)
		docsDone++
		for len(carry) >= o.CutoffLen {
			if err := addBlock(carry[:o.CutoffLen]); err != nil {
				return err
			}
			carry = carry[o.CutoffLen:]
			if shardBlocks == blocksPerShard {
				carry = slices.Clone(carry)
				if err := flushShard(); err != nil {
					return err
				}
				if o.stopAfterShards > 0 && shardsWritten >= o.stopAfterShards {
					return errStopped
				}
			}
		}
		prog.update(docsDone, idx.Tokens+int64(shardBlocks*o.CutoffLen), false)
		return nil
	}, &skipped)
	if errors.Is(err, errStopped) {
		return idx, nil
	}
	if err != nil {
		return nil, err
	}
	carry = slices.Clone(carry)
	if err := flushShard(); err != nil {
		return nil, err
	}
	idx.Documents = docsDone
	idx.DroppedTokens = int64(len(carry))
	idx.Skipped += skipped
	idx.Complete, idx.Resume = true, nil
	if err := writeIndex(indexPath, idx); err != nil {
		return nil, err
	}
	prog.update(docsDone, idx.Tokens, true)
	if idx.Blocks == 0 {
		return idx, fmt.Errorf("the inputs hold %d tokens, fewer than one block of --cutoff_len=%d", idx.DroppedTokens, o.CutoffLen)
	}
	return idx, nil
}

func logOf(o PackOptions) io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}

func writeIndex(path string, idx *PackIndex) error { return atomicfile.WriteJSON(path, idx) }

// ReadPackIndex reads dir/index.json.
func ReadPackIndex(dir string) (*PackIndex, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, err
	}
	var idx PackIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "index.json"), err)
	}
	if idx.Format != packFormat {
		return nil, fmt.Errorf("%s: format %q is not %s", filepath.Join(dir, "index.json"), idx.Format, packFormat)
	}
	return &idx, nil
}

// ReadBlock returns block i of a packed directory.
func ReadBlock(dir string, idx *PackIndex, i int64) ([]int32, error) {
	width := int64(2)
	if idx.DType == "uint32" {
		width = 4
	}
	for _, sh := range idx.Shards {
		if i >= sh.Blocks {
			i -= sh.Blocks
			continue
		}
		f, err := os.Open(filepath.Join(dir, sh.File))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		buf := make([]byte, int64(idx.CutoffLen)*width)
		if _, err := f.ReadAt(buf, i*int64(len(buf))); err != nil {
			return nil, fmt.Errorf("%s: block %d: %w", sh.File, i, err)
		}
		return decodeBlock(make([]int32, idx.CutoffLen), buf, int(width)), nil
	}
	return nil, fmt.Errorf("block %d is past the last of %d blocks", i, idx.Blocks)
}

type packProgress struct {
	w     io.Writer
	start time.Time
	last  time.Time
	read  atomic.Int64 // input bytes read
	total int64        // input bytes in all
}

func (p *packProgress) update(docs, tokens int64, force bool) {
	if p.w == nil || (!force && time.Since(p.last) < 2*time.Second) {
		return
	}
	p.last = time.Now()
	el := time.Since(p.start).Seconds()
	line := fmt.Sprintf("packed %d documents, %d tokens in blocks, %.0f tokens/s", docs, tokens, float64(tokens)/max(el, 1e-9))
	if read := p.read.Load(); p.total > 0 && read > 0 && !force {
		frac := min(float64(read)/float64(p.total), 1)
		eta := time.Duration(el * (1 - frac) / frac * float64(time.Second)).Round(time.Second)
		line += fmt.Sprintf(", %.1f%% of the input, ETA %s", 100*frac, eta)
	}
	fmt.Fprintln(p.w, line)
}

// forEachDocument reads the inputs in order, skips the first skip
// documents, tokenizes the rest on o.Threads goroutines and calls fn with
// each one's [BOS] ids [EOS] in input order.
func forEachDocument(o PackOptions, p *spm.Processor, bos, eos int, skip int64, bytesRead *atomic.Int64, fn func(doc []int32) error, skipped *int64) error {
	scratch := make([]spm.Scratch, o.Threads)
	ids := make([][]int, o.Threads)
	produce := func(emit func([]string) bool) error {
		var texts []string
		size := 0
		seen := int64(0)
		for _, in := range o.Inputs {
			n, err := Read(in, ReadOptions{Paragraphs: o.Paragraphs, Strict: o.Strict, Bad: o.Bad, BytesRead: bytesRead}, func(rec Record, loc Location) error {
				text, err := DocumentText(rec)
				if err != nil {
					return fmt.Errorf("%s: %w", loc, err)
				}
				if seen++; seen <= skip {
					return nil // packed before an interruption
				}
				texts = append(texts, text)
				size += len(text)
				if len(texts) >= 256 || size >= 1<<20 {
					if !emit(texts) {
						return errEnded
					}
					texts, size = nil, 0
				}
				return nil
			})
			*skipped += int64(n)
			if errors.Is(err, errEnded) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		if len(texts) > 0 {
			emit(texts)
		}
		return nil
	}
	work := func(w int, texts []string) [][]int32 {
		docs := make([][]int32, len(texts))
		for i, t := range texts {
			ids[w] = p.AppendIDs(append(ids[w][:0], bos), t, &scratch[w])
			ids[w] = append(ids[w], eos)
			d := make([]int32, len(ids[w]))
			for k, id := range ids[w] {
				d[k] = int32(id)
			}
			docs[i] = d
		}
		return docs
	}
	return pipeline.Ordered(o.Threads, produce, work, func(docs [][]int32) error {
		for _, d := range docs {
			if err := fn(d); err != nil {
				return err
			}
		}
		return nil
	})
}

// decodeBlock reads little-endian ids of width bytes from b into dst.
func decodeBlock(dst []int32, b []byte, width int) []int32 {
	for k := range dst {
		if width == 2 {
			dst[k] = int32(binary.LittleEndian.Uint16(b[2*k:]))
		} else {
			dst[k] = int32(binary.LittleEndian.Uint32(b[4*k:]))
		}
	}
	return dst
}
