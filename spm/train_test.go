package spm

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"

	"zhllama/internal/testenv"
)

// splitCorpus writes the first part of a shared corpus for training and the
// rest for evaluation, and returns the evaluation lines.
func splitCorpus(t *testing.T, rel string, trainFrac float64) (train, held string, heldLines []string) {
	t.Helper()
	data, err := os.ReadFile(testenv.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	cut := int(float64(len(lines)) * trainFrac)
	dir := t.TempDir()
	train, held = filepath.Join(dir, "train.txt"), filepath.Join(dir, "held.txt")
	if err := os.WriteFile(train, []byte(strings.Join(lines[:cut], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(held, []byte(strings.Join(lines[cut:], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return train, held, lines[cut:]
}

func spmTrain(t *testing.T, args ...string) {
	t.Helper()
	bin := testenv.Tool(t, "spm_train", "sentencepiece")
	out, err := exec.Command(bin, append(args, "--minloglevel=2")...).CombinedOutput()
	if err != nil {
		t.Fatalf("spm_train %v: %v\n%s", args, err, out)
	}
}

func countTokens(t *testing.T, model string, lines []string) int {
	t.Helper()
	n := 0
	for _, l := range spmEncode(t, model, "id", lines) {
		n += len(strings.Fields(l))
	}
	return n
}

// trainBoth trains with spm_train and with Train on the same flags and
// returns both model paths.
func trainBoth(t *testing.T, flags ...string) (ref, ours string) {
	t.Helper()
	dir := t.TempDir()
	spmTrain(t, append(flags, "--model_prefix="+filepath.Join(dir, "ref"))...)
	c, err := ParseTrainArgs(append(flags, "--model_prefix="+filepath.Join(dir, "ours")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TrainFiles(c); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "ref.model"), filepath.Join(dir, "ours.model")
}

// checkEncodesLikeSentencepiece encodes lines with our processor and with
// spm_encode on the same model file.
func checkEncodesLikeSentencepiece(t *testing.T, model string, lines []string) {
	t.Helper()
	p := processorFor(t, model)
	want := spmEncode(t, model, "id", lines)
	var s Scratch
	compareLines(t, lines, want, func(i int) string { return formatIDs(p.AppendIDs(nil, lines[i], &s)) })
}

// checkCompression fails when our model needs over 1% more tokens than
// spm_train's on the held-out lines.
func checkCompression(t *testing.T, ref, ours string, held []string) {
	t.Helper()
	nr, no := countTokens(t, ref, held), countTokens(t, ours, held)
	t.Logf("held-out tokens: spm_train %d, zhllama %d (%+.2f%%)", nr, no, 100*(float64(no)/float64(nr)-1))
	if float64(no) > 1.01*float64(nr) {
		t.Errorf("zhllama's vocabulary needs %d tokens, spm_train's %d: more than 1%% worse", no, nr)
	}
}

// checkSamePrefix compares the first n pieces (the special ones) and the
// sizes of the two models, and returns ours.
func checkSamePrefix(t *testing.T, ref, ours string, n int) *Model {
	t.Helper()
	mr, err := Load(ref)
	if err != nil {
		t.Fatal(err)
	}
	mo, err := Load(ours)
	if err != nil {
		t.Fatal(err)
	}
	if len(mr.Pieces) != len(mo.Pieces) {
		t.Fatalf("sizes %d and %d", len(mr.Pieces), len(mo.Pieces))
	}
	for i := 0; i < n; i++ {
		if mr.Pieces[i].Piece != mo.Pieces[i].Piece || mr.Pieces[i].Type != mo.Pieces[i].Type {
			t.Fatalf("piece %d: %q %v, spm_train has %q %v", i, mo.Pieces[i].Piece, mo.Pieces[i].Type, mr.Pieces[i].Piece, mr.Pieces[i].Type)
		}
	}
	return mo
}

func TestTrainChineseCompressesLikeSpmTrain(t *testing.T) {
	train, _, held := splitCorpus(t, "corpus/songci_simplified_1MB.txt", 0.8)
	ref, ours := trainBoth(t, "--input="+train, "--model_type=bpe", "--vocab_size=6000",
		"--character_coverage=0.9995", "--normalization_rule_name=identity", "--byte_fallback")
	checkEncodesLikeSentencepiece(t, ours, held)
	checkCompression(t, ref, ours, held)
	// The special pieces and the alphabet's size are spm_train's.
	checkSamePrefix(t, ref, ours, 259)
}

func TestTrainEnglishWithOptions(t *testing.T) {
	train, _, held := splitCorpus(t, "corpus/botchan.txt", 0.7)
	flags := []string{"--input=" + train, "--model_type=bpe", "--vocab_size=3000", "--normalization_rule_name=identity",
		"--split_digits", "--byte_fallback", "--user_defined_symbols=<sep>,<cls>", "--control_symbols=<ctl>",
		"--pad_id=3", "--max_sentencepiece_length=8", "--remove_extra_whitespaces=false"}
	ref, ours := trainBoth(t, flags...)
	held = append(held, "a <sep> b<cls>c 12345 <ctl> 😀 tabs\tand  spaces")
	checkEncodesLikeSentencepiece(t, ours, held)
	checkCompression(t, ref, ours, held)
	mo := checkSamePrefix(t, ref, ours, 4+3+256)
	for _, p := range mo.Pieces {
		if p.Type == Normal && len([]rune(p.Piece)) > 8 {
			t.Errorf("piece %q is longer than --max_sentencepiece_length", p.Piece)
		}
		if p.Type == Normal && len(p.Piece) > 1 && strings.ContainsAny(p.Piece, "0123456789") {
			t.Errorf("piece %q has a digit despite --split_digits", p.Piece)
		}
	}
	// The .vocab file is spm_train's format.
	vr, _ := os.ReadFile(strings.TrimSuffix(ref, ".model") + ".vocab")
	vo, _ := os.ReadFile(strings.TrimSuffix(ours, ".model") + ".vocab")
	lr, lo := strings.Split(string(vr), "\n"), strings.Split(string(vo), "\n")
	for i := 0; i < 300; i++ {
		if strings.SplitN(lr[i], "\t", 2)[1] != strings.SplitN(lo[i], "\t", 2)[1] {
			t.Errorf("vocab line %d: %q, spm_train writes %q", i, lo[i], lr[i])
		}
	}
}

func TestTrainReadsGzipAndSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	text, err := os.ReadFile(testenv.Path(t, "corpus/botchan.txt"))
	if err != nil {
		t.Fatal(err)
	}
	half := bytes.IndexByte(text[len(text)/2:], '\n') + len(text)/2 + 1
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(text[half:])
	zw.Close()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt.gz")
	os.WriteFile(a, text[:half], 0o644)
	os.WriteFile(b, gz.Bytes(), 0o644)
	whole := filepath.Join(dir, "whole.txt")
	os.WriteFile(whole, text, 0o644)
	train := func(input string) *Model {
		c, err := ParseTrainArgs([]string{"--input", input, "--model_prefix", filepath.Join(dir, "m"), "--model_type", "bpe",
			"--vocab_size", "1000", "--normalization_rule_name", "identity", "--num_threads", "2"})
		if err != nil {
			t.Fatal(err)
		}
		m, err := Train(c)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1, m2 := train(a+","+b), train(whole)
	for i := range m1.Pieces {
		if m1.Pieces[i].Piece != m2.Pieces[i].Piece {
			t.Fatalf("piece %d differs between split+gzip input (%q) and the whole file (%q)", i, m1.Pieces[i].Piece, m2.Pieces[i].Piece)
		}
	}
}

func TestTrainSamplesSentences(t *testing.T) {
	dir := t.TempDir()
	c, err := ParseTrainArgs([]string{"--input=" + testenv.Path(t, "corpus/botchan.txt"), "--model_prefix=" + filepath.Join(dir, "m"),
		"--model_type=bpe", "--vocab_size=500", "--normalization_rule_name=identity", "--input_sentence_size=1000"})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	c.Log = &log
	if _, err := Train(c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "(1000 used)") {
		t.Errorf("log does not report the sample:\n%s", log.String())
	}
}

func TestTrainErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("\n\n"), 0o644)
	spaces := filepath.Join(dir, "spaces.txt")
	testenv.WriteFile(t, spaces, []byte("   \n\t\t\n\n    \n"))
	corpus := testenv.Path(t, "corpus/songci_simplified_1MB.txt")
	base := []string{"--model_prefix=" + filepath.Join(dir, "m"), "--model_type=bpe", "--normalization_rule_name=identity"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--input=" + empty, "--vocab_size=100"}, "no usable sentence"},
		{[]string{"--input=" + corpus, "--vocab_size=100"}, "use --vocab_size=4"},
		{[]string{"--input=" + corpus, "--vocab_size=100", "--model_type=unigram"}, "--model_type=bpe"},
		{[]string{"--input=" + filepath.Join(dir, "missing.txt"), "--vocab_size=100"}, "missing.txt"},
		{[]string{"--input=" + corpus, "--vocab_size=200000"}, "too high"},
		{[]string{"--input=" + corpus, "--vocab_size=8000", "--character_coverage=0.5"}, "character_coverage"},
		{[]string{"--input=" + corpus, "--vocab_size=100", "--byte_fallback"}, "they need 259 ids (256 of them the byte pieces"},
		{[]string{"--input=" + spaces, "--vocab_size=100"}, "no characters to learn pieces from"},
		{[]string{"--input=" + corpus, "--vocab_size=100", "--model_prefix=" + filepath.Join(dir, "nodir", "m")}, "does not exist"},
	}
	for _, c := range cases {
		cfg, err := ParseTrainArgs(append(base, c.args...))
		if err == nil {
			_, err = TrainFiles(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "m.model")); err == nil {
		t.Error("a failed run left a model behind")
	}
	for _, args := range [][]string{{"--no_such_flag=1"}, {"--vocab_size=abc"}, {"--vocab_size"}, {"stray"}} {
		if _, err := ParseTrainArgs(args); err == nil {
			t.Errorf("%v parsed without error", args)
		}
	}
}

func TestParseTrainArgsForms(t *testing.T) {
	c, err := ParseTrainArgs([]string{"--vocab_size", "123", "--byte_fallback", "--split_digits=false", "--add_dummy_prefix", "false",
		"-input=a,b", "--user_defined_symbols=x,y"})
	if err != nil {
		t.Fatal(err)
	}
	if c.VocabSize != 123 || !c.ByteFallback || c.SplitDigits || c.AddDummyPrefix || len(c.Input) != 2 || len(c.UserDefinedSymbols) != 2 {
		t.Errorf("parsed %+v", c)
	}
}

// spm_train's default normalization, nmt_nfkc: our compiled map goes into
// the model, and sentencepiece encodes with it as we do.
func TestTrainWithNmtNFKC(t *testing.T) {
	train, _, held := splitCorpus(t, "corpus/wagahaiwa_nekodearu.txt", 0.8)
	held = append(held, "ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ　１２３ ① ㍿ \u200b ctrl\x01 tab\there")
	ref, ours := trainBoth(t, "--input="+train, "--model_type=bpe", "--vocab_size=4000", "--character_coverage=0.9995")
	m, err := Load(ours)
	if err != nil {
		t.Fatal(err)
	}
	if m.Normalizer.String(NormName, "") != "nmt_nfkc" || len(m.Normalizer.String(NormPrecompiledCharsmap, "")) == 0 {
		t.Fatal("model lacks the nmt_nfkc charsmap")
	}
	checkEncodesLikeSentencepiece(t, ours, held)
	checkCompression(t, ref, ours, held)
}

// The vocabulary does not depend on the number of threads.
func TestTrainIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	var vocabs []string
	for _, threads := range []string{"1", "2", "3"} {
		c, err := ParseTrainArgs([]string{"--input=" + testenv.Path(t, "corpus/songci_simplified_1MB.txt"), "--model_prefix=" + filepath.Join(dir, "m"),
			"--model_type=bpe", "--vocab_size=5000", "--normalization_rule_name=identity", "--num_threads=" + threads})
		if err != nil {
			t.Fatal(err)
		}
		m, err := Train(c)
		if err != nil {
			t.Fatal(err)
		}
		vocabs = append(vocabs, string(WriteVocab(m, true)))
	}
	if vocabs[0] != vocabs[1] || vocabs[1] != vocabs[2] {
		t.Error("vocabularies differ between thread counts")
	}
}

// Chinese text in GBK trains a vocabulary of mojibake: it is refused with
// the file named and the conversion to run; a few bad lines only warn.
func TestTrainRefusesGBK(t *testing.T) {
	dir := t.TempDir()
	text, err := os.ReadFile(testenv.Path(t, "corpus/songci_simplified_1MB.txt"))
	if err != nil {
		t.Fatal(err)
	}
	gbk, err := simplifiedchinese.GB18030.NewEncoder().Bytes(text[:bytes.LastIndexByte(text[:200000], '\n')+1])
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "gbk.txt")
	testenv.WriteFile(t, in, gbk)
	c, err := ParseTrainArgs([]string{"--input=" + in, "--model_prefix=" + filepath.Join(dir, "m"), "--model_type=bpe", "--vocab_size=2000", "--hard_vocab_limit=false"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TrainFiles(c); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") || !strings.Contains(err.Error(), "iconv -f gb18030") {
		t.Errorf("GBK input: %v", err)
	}
	mixed := filepath.Join(dir, "mixed.txt")
	testenv.WriteFile(t, mixed, append(append([]byte(nil), text[:100000]...), "\xff\xfe bad line\n"...))
	c.Input, c.VocabSize = []string{mixed}, 3000
	var log bytes.Buffer
	c.Log = &log
	if _, err := TrainFiles(c); err != nil || !strings.Contains(log.String(), "1 lines are not valid UTF-8") {
		t.Errorf("one bad line: %v\n%s", err, log.String())
	}
}
