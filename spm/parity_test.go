package spm

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

// sharedModels are the real models every parity test runs.
var sharedModels = []string{
	"tokenizers/llama2/tokenizer.model",
	"tokenizers/chinese-llama2/tokenizer.model",
	"tokenizers/chinese_sp/chinese_sp.model",
	"tokenizers/sentencepiece-tests/test_model.model",
	"tokenizers/sentencepiece-tests/test_ja_model.model",
}

// hostileLines are inputs that stress normalization and the encoders.
func hostileLines() []string {
	long := strings.Repeat("中文English混合 text, 数字12345 and emoji 😀👩‍👩‍👧 ", 1700)[:100_000]
	return []string{
		"", " ", "   ", "\t", "  leading and trailing  ", "many     spaces\t\ttabs \t mixed",
		"ctrl\x01\x02\x07\x1b[0m\x7f chars", "nul\x00byte", "\r carriage\r return\r",
		"emoji 😀😃🎉 and ZWJ 👨‍👩‍👧‍👦 👩🏽‍💻 flags 🇨🇳🇺🇸", "combining e\u0301 a\u0308 \u0915\u094d\u0937",
		"ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ　１２３　！？（）", "半角ｶﾀｶﾅ と ㍿ ㌔ ①②③ ⅣⅤ ﬁ ﬀ",
		"rare CJK 𠀀𠀁𪚥𫝀 𰻞𰻞面", "literal <s> and </s> and <unk> and <pad> tokens",
		"▁ literal ▁▁ lower blocks ▁x▁", "\u200b zero \u200c width \u200d joiners \ufeff bom",
		"\u00a0nbsp\u3000ideographic\u2028line\u2029para", "digits 0123456789 ٠١٢٣ ０１２",
		"mixed 我爱北京天安门 I love Beijing 東京タワー ёжик", "\uFFFD replacement \uFFFF nonchar",
		"tab\tinside\tand   space", "日本語のテキストとカタカナ・ひらがな", long,
		"invalid \xff\xfe utf8 \xc3\x28 \xe2\x82 \xf0\x9f\x98 end", "\x80\x81 leading continuation",
		"surrogate \xed\xa0\x80 overlong \xc0\xaf", "<0xE4> literal byte piece text",
	}
}

// corpusLines returns every line of the shared corpora and pretraining texts
// (the gzipped corpus is capped at maxGz bytes), plus the hostile lines.
func corpusLines(t *testing.T, maxGz int64) []string {
	t.Helper()
	dir := testenv.Path(t, "corpus")
	var lines []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	for _, rel := range []string{"pretrain/wiki_demo.txt", "pretrain/en_article_tail500.txt", "pretrain/fever.txt", "pretrain/medical_corpus.txt"} {
		paths = append(paths, testenv.Path(t, rel))
	}
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = f
		if strings.HasSuffix(path, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			r = io.LimitReader(zr, maxGz)
		}
		data, err := io.ReadAll(r)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ls := strings.Split(string(data), "\n")
		if strings.HasSuffix(path, ".gz") && len(ls) > 1 {
			ls = ls[:len(ls)-1] // drop the line the cap may have cut
		}
		lines = append(lines, ls...)
	}
	return append(lines, hostileLines()...)
}

// spmEncode runs spm_encode over lines and returns its output lines.
func spmEncode(t *testing.T, model, format string, lines []string) []string {
	t.Helper()
	return runLines(t, testenv.Tool(t, "spm_encode", "sentencepiece"), lines, "--model", model, "--output_format", format)
}

// runLines feeds lines to a reference command and returns one output line per input line.
func runLines(t *testing.T, bin string, lines []string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, stderr.String())
	}
	res := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(res) != len(lines) {
		t.Fatalf("%s gave %d lines for %d", bin, len(res), len(lines))
	}
	return res
}

func formatIDs(ids []int) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, id)
	}
	return b.String()
}

func TestEncodeParityWithSentencepiece(t *testing.T) {
	maxGz := int64(4 << 20)
	if os.Getenv("ZHLLAMA_FULL_PARITY") != "" {
		maxGz = 1 << 40
	}
	lines := corpusLines(t, maxGz)
	for _, rel := range sharedModels {
		t.Run(filepath.Base(filepath.Dir(rel))+"/"+filepath.Base(rel), func(t *testing.T) {
			path := testenv.Path(t, rel)
			p := processorFor(t, path)
			want := spmEncode(t, path, "id", lines)
			wantPieces := spmEncode(t, path, "piece", lines)
			var s Scratch
			compareLines(t, lines, want, func(i int) string { return formatIDs(p.AppendIDs(nil, lines[i], &s)) })
			compareLines(t, lines, wantPieces, func(i int) string { return strings.Join(p.EncodePieces(lines[i]), " ") })
		})
	}
}

// compareLines checks got(i) against want[i] for every input, shows the first
// differences and fails with their count.
func compareLines(t *testing.T, inputs, want []string, got func(i int) string) {
	t.Helper()
	bad := 0
	for i := range inputs {
		if g := got(i); g != want[i] {
			if bad++; bad <= 5 {
				t.Errorf("%q:\n got %s\nwant %s", trunc(inputs[i]), trunc(g), trunc(want[i]))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lines differ from the reference", bad, len(inputs))
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func TestDecodeParityWithSentencepiece(t *testing.T) {
	lines := corpusLines(t, 256<<10)
	bin := testenv.Tool(t, "spm_decode", "sentencepiece")
	for _, rel := range sharedModels {
		t.Run(filepath.Base(filepath.Dir(rel))+"/"+filepath.Base(rel), func(t *testing.T) {
			path := testenv.Path(t, rel)
			p := processorFor(t, path)
			// Encoded lines, then random id sequences: bytes out of order,
			// control and unknown ids, pieces that start with U+2581.
			rng := rand.New(rand.NewPCG(1, uint64(len(rel))))
			var idLines []string
			var ids [][]int
			for _, line := range lines {
				e := p.Encode(line)
				ids = append(ids, e)
			}
			newline := p.PieceToID("<0x0A>") // would split spm_decode's output line
			for range 2000 {
				n := rng.IntN(12)
				var e []int
				for len(e) < n {
					id := rng.IntN(p.Size())
					if rng.IntN(4) == 0 {
						id = rng.IntN(min(300, p.Size()))
					}
					if id != newline || id == p.UnkID() {
						e = append(e, id)
					}
				}
				ids = append(ids, e)
			}
			for _, e := range ids {
				idLines = append(idLines, formatIDs(e))
			}
			want := runLines(t, bin, idLines, "--model", path, "--input_format", "id")
			compareLines(t, idLines, want, func(i int) string {
				got, err := p.Decode(ids[i])
				if err != nil {
					t.Fatal(err)
				}
				return got
			})
		})
	}
}
