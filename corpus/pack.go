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
	InputFiles      []PackInput `json:"input_files,omitempty"` // sizes and times, so that a resume sees edits
	Paragraphs      bool        `json:"paragraphs"`
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

// PackInput is an input file as a pack found it.
type PackInput struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"mod_time_ns"`
}

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
	k, err := startPack(o, p, raw, bos, eos)
	if err != nil {
		return nil, err
	}
	defer k.abort()
	prog := &packProgress{w: o.Log, start: time.Now(), last: time.Now()}
	for _, in := range o.Inputs {
		if st, err := os.Stat(in); err == nil {
			prog.total += st.Size()
		}
	}
	var skipped int64
	err = forEachDocument(o, p, bos, eos, k.docsDone, &prog.read, func(doc []int32) error {
		if err := k.addDocument(doc); err != nil {
			return err
		}
		prog.update(k.docsDone, k.idx.Tokens+int64(k.shardBlocks*o.CutoffLen), false)
		return nil
	}, &skipped)
	if errors.Is(err, errStopped) {
		return k.idx, nil
	}
	if err != nil {
		return nil, err
	}
	if k.idx.Blocks == 0 && k.shardBlocks == 0 {
		// Nothing to write: no index either, so the folder is not taken.
		os.Remove(k.indexPath)
		os.Remove(filepath.Join(o.OutputDir, "tokenizer.model"))
		os.Remove(o.OutputDir) // only if it is empty
		return nil, fmt.Errorf("the inputs hold %d tokens in %d documents, fewer than one block of cutoff_len %d", len(k.carry), k.docsDone, o.CutoffLen)
	}
	idx, err := k.finish(skipped)
	if err != nil {
		return nil, err
	}
	prog.update(k.docsDone, idx.Tokens, true)
	return idx, nil
}

// errStopped ends a run early after stopAfterShards shards (tests).
var errStopped = errors.New("stopped")

// packer writes the block stream into shards and keeps index.json telling
// where a resumed run starts.
type packer struct {
	o              PackOptions
	idx            *PackIndex
	indexPath      string
	width          int // bytes per id
	blocksPerShard int
	carry          []int32 // tokens past the last whole block
	// The shard being written streams to a temporary file, renamed when
	// full: memory does not grow with the shard size.
	shard         *atomicfile.File
	shardBlocks   int
	docsDone      int64
	shardsWritten int
	blockBuf      []byte
}

// startPack writes the tokenizer and picks up an unfinished pack made with
// the same options, or starts a new one.
func startPack(o PackOptions, p *spm.Processor, raw []byte, bos, eos int) (*packer, error) {
	sum := sha256.Sum256(raw)
	idx := &PackIndex{
		Format: packFormat, DType: "uint16", VocabSize: p.Size(), CutoffLen: o.CutoffLen, BOSID: bos, EOSID: eos,
		Tokenizer: "tokenizer.model", TokenizerSHA256: hex.EncodeToString(sum[:]), Inputs: o.Inputs, Paragraphs: o.Paragraphs,
	}
	if p.Size() > 1<<16 {
		idx.DType = "uint32"
	}
	for _, in := range o.Inputs {
		st, err := os.Stat(in)
		if err != nil {
			return nil, err
		}
		idx.InputFiles = append(idx.InputFiles, PackInput{Size: st.Size(), ModTime: st.ModTime().UnixNano()})
	}
	if err := os.MkdirAll(o.OutputDir, 0o755); err != nil {
		return nil, err
	}
	// A shard that was being written when a run stopped is redone.
	stale, _ := filepath.Glob(filepath.Join(o.OutputDir, ".tokens-*.tmp*"))
	for _, f := range stale {
		os.Remove(f)
	}
	resume := &packResume{}
	if old, err := ReadPackIndex(o.OutputDir); err == nil {
		if old.Complete {
			return nil, fmt.Errorf("%s already holds a complete pack: choose another --output_dir or remove it", o.OutputDir)
		}
		if why := resumeMismatch(old, idx); why != "" {
			return nil, fmt.Errorf("%s holds an unfinished pack made %s: run again with the options it was made with to resume it, or remove it", o.OutputDir, why)
		}
		idx, resume = old, old.Resume
		fmt.Fprintf(logOf(o), "resuming after %d documents, %d shards\n", resume.DocumentsDone, len(idx.Shards))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(o.OutputDir, "tokenizer.model"), raw); err != nil {
		return nil, err
	}
	k := &packer{o: o, idx: idx, indexPath: filepath.Join(o.OutputDir, "index.json"), width: 2,
		blocksPerShard: max(1, o.ShardTokens/o.CutoffLen), carry: slices.Clone(resume.Carry), docsDone: resume.DocumentsDone}
	if idx.DType == "uint32" {
		k.width = 4
	}
	return k, nil
}

// resumeMismatch says how an unfinished pack's options differ from a new
// run's: everything that shapes the token stream must be the same.
func resumeMismatch(old, now *PackIndex) string {
	switch {
	case old.Resume == nil:
		return "by an older version, without a resume point"
	case old.TokenizerSHA256 != now.TokenizerSHA256:
		return "with another tokenizer"
	case old.CutoffLen != now.CutoffLen:
		return fmt.Sprintf("with cutoff_len %d, not %d", old.CutoffLen, now.CutoffLen)
	case !slices.Equal(old.Inputs, now.Inputs):
		return fmt.Sprintf("from the inputs %v, not %v", old.Inputs, now.Inputs)
	case old.Paragraphs != now.Paragraphs:
		return fmt.Sprintf("with paragraphs %v, not %v (documents are paragraphs or lines)", old.Paragraphs, now.Paragraphs)
	}
	for i, in := range old.InputFiles {
		if i < len(now.InputFiles) && in != now.InputFiles[i] {
			return fmt.Sprintf("before %s changed (size %d then, %d now, or its time)", now.Inputs[i], in.Size, now.InputFiles[i].Size)
		}
	}
	return ""
}

// addDocument appends a framed document to the stream, writing the whole
// blocks it completes.
func (k *packer) addDocument(doc []int32) error {
	n := k.o.CutoffLen
	k.carry = append(k.carry, doc...)
	k.docsDone++
	for len(k.carry) >= n {
		if err := k.addBlock(k.carry[:n]); err != nil {
			return err
		}
		k.carry = k.carry[n:]
		if k.shardBlocks == k.blocksPerShard {
			k.carry = slices.Clone(k.carry)
			if err := k.flushShard(); err != nil {
				return err
			}
			if k.o.stopAfterShards > 0 && k.shardsWritten >= k.o.stopAfterShards {
				return errStopped
			}
		}
	}
	return nil
}

func (k *packer) addBlock(block []int32) error {
	if k.shard == nil {
		var err error
		name := fmt.Sprintf("tokens-%05d.bin", len(k.idx.Shards))
		if k.shard, err = atomicfile.Create(filepath.Join(k.o.OutputDir, name)); err != nil {
			return err
		}
	}
	k.blockBuf = k.blockBuf[:0]
	for _, id := range block {
		if k.width == 2 {
			k.blockBuf = binary.LittleEndian.AppendUint16(k.blockBuf, uint16(id))
		} else {
			k.blockBuf = binary.LittleEndian.AppendUint32(k.blockBuf, uint32(id))
		}
	}
	k.shardBlocks++
	_, err := k.shard.Write(k.blockBuf)
	return err
}

// flushShard renames the full shard into place and records the stream
// after it in index.json: exactly where a resumed run starts.
func (k *packer) flushShard() error {
	if k.shardBlocks == 0 {
		return nil
	}
	name := fmt.Sprintf("tokens-%05d.bin", len(k.idx.Shards))
	if err := k.shard.Commit(); err != nil {
		return err
	}
	k.shard = nil
	idx := k.idx
	idx.Shards = append(idx.Shards, PackShard{File: name, Blocks: int64(k.shardBlocks)})
	idx.Blocks += int64(k.shardBlocks)
	idx.Tokens += int64(k.shardBlocks * k.o.CutoffLen)
	k.shardBlocks = 0
	idx.Documents = k.docsDone
	idx.Resume = &packResume{DocumentsDone: k.docsDone, Carry: k.carry}
	k.shardsWritten++
	return writeIndex(k.indexPath, idx)
}

// finish writes the last shard and marks the index complete.
func (k *packer) finish(skipped int64) (*PackIndex, error) {
	k.carry = slices.Clone(k.carry)
	if err := k.flushShard(); err != nil {
		return nil, err
	}
	idx := k.idx
	idx.Documents = k.docsDone
	idx.DroppedTokens = int64(len(k.carry))
	idx.Skipped += skipped
	idx.Complete, idx.Resume = true, nil
	return idx, writeIndex(k.indexPath, idx)
}

// abort drops a shard left half-written.
func (k *packer) abort() {
	if k.shard != nil {
		k.shard.Abort()
	}
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
