package eval

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"zhllama/corpus"
)

// The multiple-choice benchmarks.
const (
	TaskCEval = "ceval"
	TaskCMMLU = "cmmlu"
	TaskMMLU  = "mmlu"
)

// Subject is one exam of a benchmark.
type Subject struct {
	Key      string // the name in file names: "computer_network"
	Name     string // what the prompt calls it: the Chinese name (C-Eval, CMMLU) or the English words (MMLU)
	Category string // STEM, Social Sciences, Humanities or Other
}

// Question is one multiple-choice question.
type Question struct {
	Question string
	Choices  [4]string // A, B, C, D
	Answer   string    // "A" to "D"; "" where the split gives no answers (C-Eval's test)
}

// Letters are the choices' letters.
var Letters = [4]string{"A", "B", "C", "D"}

func checkTask(task string) error {
	switch task {
	case TaskCEval, TaskCMMLU, TaskMMLU:
		return nil
	}
	return fmt.Errorf("unknown task %q: the tasks are %s, %s and %s", task, TaskCEval, TaskCMMLU, TaskMMLU)
}

// Splits lists a task's splits: dev holds the few-shot exemplars.
func Splits(task string) ([]string, error) {
	if err := checkTask(task); err != nil {
		return nil, err
	}
	if task == TaskCMMLU {
		return []string{"dev", "test"}, nil
	}
	return []string{"dev", "val", "test"}, nil
}

func sortSubjects(s []Subject) {
	sort.Slice(s, func(i, j int) bool { return s[i].Key < s[j].Key })
}

// Subjects lists a task's subjects in the order LLaMA-Factory evaluates
// them. A mapping.json in dir in LLaMA-Factory's layout ({"subject":
// {"name", "category"}}) decides, in its order. Otherwise C-Eval's come
// from its subject_mapping.json (subject: [English name, Chinese name,
// category]) in name order, its "Social Science" called Social Sciences and
// a subject without a category (clinical_medicine, as published) Other, as
// LLaMA-Factory's own mapping has them; CMMLU's and MMLU's are built in.
func Subjects(task, dir string) ([]Subject, error) {
	if err := checkTask(task); err != nil {
		return nil, err
	}
	lf := filepath.Join(dir, "mapping.json")
	if _, err := os.Stat(lf); err == nil {
		return readLFMapping(lf)
	}
	switch task {
	case TaskCMMLU:
		return slices.Clone(cmmluSubjects), nil
	case TaskMMLU:
		return mmluSubjects(), nil
	}
	path := filepath.Join(dir, "subject_mapping.json")
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: C-Eval's subject mapping is missing (a mapping.json in LLaMA-Factory's layout will do too)", path)
		}
		return nil, err
	}
	var m map[string][]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: want {\"subject\": [English name, Chinese name, category]}: %w", path, err)
	}
	var out []Subject
	for k, v := range m {
		if len(v) < 2 || len(v) > 3 || v[1] == "" {
			return nil, fmt.Errorf("%s: subject %q: want [English name, Chinese name, category], got %q", path, k, v)
		}
		cat := "Other"
		if len(v) == 3 {
			switch v[2] {
			case "Social Science":
				cat = "Social Sciences"
			case "STEM", "Humanities", "Other":
				cat = v[2]
			default:
				return nil, fmt.Errorf("%s: subject %q: category %q is not STEM, Social Science, Humanities or Other", path, k, v[2])
			}
		}
		out = append(out, Subject{k, v[1], cat})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no subject", path)
	}
	sortSubjects(out)
	return out, nil
}

// readLFMapping reads LLaMA-Factory's mapping.json, keeping its order.
func readLFMapping(path string) ([]Subject, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bad := func(e any) error {
		return fmt.Errorf("%s: want {\"subject\": {\"name\": ..., \"category\": ...}, ...}: %v", path, e)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, bad("not a JSON object")
	}
	var out []Subject
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, bad(err)
		}
		key, _ := t.(string)
		var v struct{ Name, Category string }
		if err := dec.Decode(&v); err != nil {
			return nil, bad(fmt.Sprintf("subject %q: %v", key, err))
		}
		if v.Name == "" {
			return nil, bad(fmt.Sprintf("subject %q has no name", key))
		}
		if !slices.Contains(mcCategories[1:], v.Category) {
			return nil, fmt.Errorf("%s: subject %q: category %q is not one of %s", path, key, v.Category, strings.Join(mcCategories[1:], ", "))
		}
		out = append(out, Subject{key, v.Name, v.Category})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no subject", path)
	}
	return out, nil
}

// splitFiles finds the files of a subject's split: the benchmark's CSV
// layout (C-Eval and MMLU: DIR/{split}/{subject}_{split}.csv, MMLU's
// archive also under DIR/data; CMMLU: DIR/{split}/{subject}.csv), else the
// Parquet files of a Hub copy under DIR/{subject}: {split}-*.parquet,
// *-{split}.parquet or {split}/*.parquet (MMLU's val also as validation).
func splitFiles(task, dir, subject, split string) ([]string, error) {
	var csvs []string
	if task == TaskCMMLU {
		csvs = []string{filepath.Join(dir, split, subject+".csv")}
	} else {
		name := subject + "_" + split + ".csv"
		csvs = []string{filepath.Join(dir, split, name), filepath.Join(dir, "data", split, name)}
	}
	for _, p := range csvs {
		if _, err := os.Stat(p); err == nil {
			return []string{p}, nil
		}
	}
	names := []string{split}
	if task == TaskMMLU && split == "val" {
		names = append(names, "validation")
	}
	sub := filepath.Join(dir, subject)
	for _, n := range names {
		for _, pat := range []string{n + "-*.parquet", "*-" + n + ".parquet", filepath.Join(n, "*.parquet")} {
			m, _ := filepath.Glob(filepath.Join(sub, pat))
			if len(m) > 0 {
				sort.Strings(m)
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("%s: no such file, nor Parquet files of subject %s's %s split under %s", csvs[0], subject, split, sub)
}

// ReadSplit reads one subject's split. In a file either every question has
// an answer, A to D, or none has (C-Eval's test split); the dev split,
// which holds the exemplars, needs answers.
func ReadSplit(task, dir, subject, split string) ([]Question, error) {
	splits, err := Splits(task)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(splits, split) {
		return nil, fmt.Errorf("task %s has no %s split; its splits are %s", task, split, strings.Join(splits, ", "))
	}
	files, err := splitFiles(task, dir, subject, split)
	if err != nil {
		return nil, err
	}
	var out []Question
	for _, f := range files {
		var qs []Question
		if strings.HasSuffix(f, ".parquet") {
			qs, err = readParquetQuestions(f)
		} else {
			qs, err = readCSVQuestions(task, f)
		}
		if err != nil {
			return nil, err
		}
		if split == "dev" && len(qs) > 0 && qs[0].Answer == "" {
			return nil, fmt.Errorf("%s: the dev split has no answers, and the exemplars need them", f)
		}
		out = append(out, qs...)
	}
	return out, nil
}

// row is one question's cells and where it stands.
type row struct {
	cells map[string]string // question, A-D, answer
	where string            // file:line
}

// toQuestions checks the answers and makes the questions.
func toQuestions(rows []row, hasAnswer bool) ([]Question, error) {
	out := make([]Question, len(rows))
	answered := -1 // -1: not known yet, 0: no answers, 1: answers
	for i, r := range rows {
		q := Question{Question: r.cells["question"]}
		for k, l := range Letters {
			q.Choices[k] = r.cells[l]
		}
		if hasAnswer {
			a := r.cells["answer"]
			switch {
			case a == "" && answered != 1:
				answered = 0
			case slices.Contains(Letters[:], a) && answered != 0:
				answered = 1
				q.Answer = a
			case a == "":
				return nil, fmt.Errorf("%s: no answer, and the questions before it have answers", r.where)
			case slices.Contains(Letters[:], a):
				return nil, fmt.Errorf("%s: answer %s, and the questions before it have none", r.where, a)
			default:
				return nil, fmt.Errorf("%s: answer %q is not A, B, C or D", r.where, a)
			}
		}
		out[i] = q
	}
	return out, nil
}

// readCSVQuestions reads a benchmark CSV: C-Eval's (header
// id,question,A,B,C,D[,answer][,explanation]), CMMLU's (header
// ,Question,A,B,C,D,Answer) or MMLU's (no header: question,A,B,C,D,answer).
// Cells become the text LLaMA-Factory's loaders give the prompt: pandas
// reads the file, so a column of numbers is formatted back as numbers
// ("1" in a column with "0.5" is "1.0") and pandas' missing-value words
// ("", "NA", "None", "null", ...) read as "nan".
func readCSVQuestions(task, path string) ([]Question, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	var recs [][]string
	var lines []int
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		recs, lines = append(recs, rec), append(lines, line)
	}
	// cols maps our names to columns; header names them as the file does.
	cols := map[string]int{}
	names := map[string]string{"question": "question", "A": "A", "B": "B", "C": "C", "D": "D", "answer": "answer"}
	start := 1
	switch task {
	case TaskMMLU:
		start = 0
		for i, n := range []string{"question", "A", "B", "C", "D", "answer"} {
			cols[n] = i
		}
	default:
		if task == TaskCMMLU {
			names["question"], names["answer"] = "Question", "Answer"
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("%s: empty: want a header row naming the columns", path)
		}
		for i, h := range recs[0] {
			for n, want := range names {
				if h == want {
					cols[n] = i
				}
			}
		}
		for _, n := range []string{"question", "A", "B", "C", "D"} {
			if _, ok := cols[n]; !ok {
				return nil, fmt.Errorf("%s:%d: no column %q: the header has %q", path, lines[0], names[n], recs[0])
			}
		}
	}
	_, hasAnswer := cols["answer"]
	width := len(cols)
	if start == 1 {
		width = len(recs[0])
	}
	for i := start; i < len(recs); i++ {
		if len(recs[i]) != width {
			what := "the header's"
			if start == 0 {
				what = "MMLU's question,A,B,C,D,answer:"
			}
			return nil, fmt.Errorf("%s:%d: %d fields, and %s %d", path, lines[i], len(recs[i]), what, width)
		}
	}
	rows := make([]row, len(recs)-start)
	for n, c := range cols {
		col := make([]string, len(rows))
		for i := range rows {
			col[i] = recs[start+i][c]
		}
		if n != "answer" {
			col = pandasText(col)
		}
		for i := range rows {
			if rows[i].cells == nil {
				rows[i] = row{cells: map[string]string{}, where: fmt.Sprintf("%s:%d", path, lines[start+i])}
			}
			rows[i].cells[n] = col[i]
		}
	}
	return toQuestions(rows, hasAnswer)
}

// pandasNA are the cells pandas.read_csv (2.x) reads as missing by default.
var pandasNA = map[string]bool{"": true, "#N/A": true, "#N/A N/A": true, "#NA": true, "-1.#IND": true,
	"-1.#QNAN": true, "-NaN": true, "-nan": true, "1.#IND": true, "1.#QNAN": true, "<NA>": true, "N/A": true,
	"NA": true, "NULL": true, "NaN": true, "None": true, "n/a": true, "nan": true, "null": true}

// pandasText gives a CSV column's cells as str() of what pandas reads:
// missing cells are NaN ("nan"); a column of integers without a missing
// cell is int64 (uint64 past it); a column of numbers is float64, written
// as Python writes floats; a column of True/False words without a missing
// cell is bool; anything else, an integer past uint64 or a float past
// float64's range included, keeps its text. (pandas' own decimal parser
// can differ from the correctly rounded one in the 17th digit: numbers
// with that many digits may print differently.)
func pandasText(col []string) []string {
	out := make([]string, len(col))
	ints, floats, bools, missing := true, true, true, false
	iv := make([]string, len(col))
	fv := make([]float64, len(col))
	for i, s := range col {
		if pandasNA[s] {
			missing = true
			continue
		}
		t := strings.TrimSpace(s)
		if u := strings.TrimPrefix(t, "+"); isDigits(strings.TrimPrefix(u, "-")) {
			if v, err := strconv.ParseInt(u, 10, 64); err == nil {
				iv[i], fv[i] = strconv.FormatInt(v, 10), float64(v)
			} else if v, err := strconv.ParseUint(u, 10, 64); err == nil {
				iv[i], fv[i] = strconv.FormatUint(v, 10), float64(v)
			} else {
				ints, floats = false, false
			}
		} else {
			ints = false
			if f, ok := pandasFloat(t); ok {
				fv[i] = f
			} else {
				floats = false
			}
		}
		switch s {
		case "True", "TRUE", "true", "False", "FALSE", "false":
		default:
			bools = false
		}
	}
	for i, s := range col {
		switch {
		case pandasNA[s]:
			out[i] = "nan"
		case ints && !missing:
			out[i] = iv[i]
		case floats:
			out[i] = pyFloat(fv[i])
		case bools && !missing:
			out[i] = map[bool]string{true: "True", false: "False"}[strings.EqualFold(s, "true")]
		default:
			out[i] = s
		}
	}
	return out
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// pandasFloat parses a number as pandas' CSV reader does: decimal, with an
// exponent, or inf/infinity with a sign; no hexadecimal, no underscores.
func pandasFloat(s string) (float64, bool) {
	if s == "" || strings.ContainsAny(s, "xX_pP") {
		return 0, false
	}
	switch strings.ToLower(strings.TrimLeft(s, "+-")) {
	case "inf", "infinity":
		if strings.HasPrefix(s, "-") {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	case "nan":
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && (!errors.Is(err, strconv.ErrRange) || math.IsInf(f, 0)) {
		return 0, false // not a number, or past float64 (underflow reads as 0)
	}
	return f, true
}

// pyFloat writes f as Python's repr does: the shortest digits that read
// back, positional from 1e-4 up to 1e16 (with ".0" for whole numbers),
// scientific outside.
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if f != 0 && (exp < -4 || exp >= 16) {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// readParquetQuestions reads a Hub copy's Parquet file: columns
// question (or Question), A-D (or choices, a list of four) and answer (or
// Answer: a letter, or MMLU's index 0-3), any of them missing.
func readParquetQuestions(path string) ([]Question, error) {
	var rows []row
	hasAnswer := false
	_, err := corpus.Read(path, corpus.ReadOptions{Strict: true}, func(rec corpus.Record, loc corpus.Location) error {
		where := fmt.Sprintf("%s: row %d", path, loc.Item+1)
		get := func(names ...string) (any, bool) {
			for _, n := range names {
				if v, ok := rec[n]; ok {
					return v, true
				}
			}
			return nil, false
		}
		r := row{cells: map[string]string{}, where: where}
		q, ok := get("question", "Question")
		if !ok {
			return fmt.Errorf("%s: no column question: the columns are %s", where, strings.Join(recordKeys(rec), ", "))
		}
		r.cells["question"] = pyStr(q)
		if list, ok := rec["choices"].([]any); ok {
			if len(list) != 4 {
				return fmt.Errorf("%s: %d choices, want 4", where, len(list))
			}
			for k, l := range Letters {
				r.cells[l] = pyStr(list[k])
			}
		} else {
			for _, l := range Letters {
				v, ok := rec[l]
				if !ok {
					return fmt.Errorf("%s: no column %s (nor choices): the columns are %s", where, l, strings.Join(recordKeys(rec), ", "))
				}
				r.cells[l] = pyStr(v)
			}
		}
		if a, ok := get("answer", "Answer"); ok {
			hasAnswer = true
			switch v := a.(type) {
			case string:
				r.cells["answer"] = v
			case nil:
			default:
				n, err := strconv.Atoi(pyStr(v))
				if err != nil || n < 0 || n > 3 {
					return fmt.Errorf("%s: answer %v is not A-D nor an index 0-3", where, v)
				}
				r.cells["answer"] = Letters[n]
			}
		}
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return toQuestions(rows, hasAnswer)
}

func recordKeys(rec corpus.Record) []string {
	var ks []string
	for k := range rec {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// pyStr is Python's str() of a Parquet value, as the prompt formats it.
func pyStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "None"
	case bool:
		return map[bool]string{true: "True", false: "False"}[x]
	case float64:
		return pyFloat(x)
	case float32:
		return pyFloat(float64(x))
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}
