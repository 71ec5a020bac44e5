package eval_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/eval"
	"zhllama/hfdir"
	"zhllama/internal/testenv"
	"zhllama/internal/testenv/spmtest"
	"zhllama/llama"
	"zhllama/template"

	"github.com/parquet-go/parquet-go"
)

// writeFiles writes name -> content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, p, []byte(text))
	}
}

// cevalFixture is C-Eval's layout with two subjects, one without a
// category (as clinical_medicine is published).
func cevalFixture(t *testing.T) string {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"subject_mapping.json": `{"computer_network": ["Computer Network", "计算机网络", "STEM"], "clinical_medicine": ["Clinical Medicine", "临床医学"]}`,
		"dev/computer_network_dev.csv": "id,question,A,B,C,D,answer,explanation\n" +
			"0,TCP属于哪一层____。,网络层,传输层,应用层,链路层,B,1. TCP是传输层协议。\n" +
			"1,HTTP默认端口是____。,21,80,25,53,B,\n" +
			"2,IPv4地址长度为____位。,16,32,64,128,B,\n" +
			"3,DNS的作用是____。,域名解析,文件传输,邮件发送,远程登录,A,\n" +
			"4,以太网帧的最小长度是____字节。,32,46,64,128,C,\"最小帧长64字节，\n含首部和校验。\"\n",
		"val/computer_network_val.csv": "id,question,A,B,C,D,answer\n" +
			"0,ARP协议的作用是____。,IP地址到MAC地址,MAC地址到IP地址,域名到IP地址,端口到进程,A\n" +
			"1,下列属于私有地址的是____。,8.8.8.8,192.168.1.1,1.1.1.1,114.114.114.114,B\n" +
			"2,UDP是____的协议。,面向连接,无连接,可靠,有拥塞控制,B\n",
		"dev/clinical_medicine_dev.csv": "id,question,A,B,C,D,answer,explanation\n" +
			"0,正常成人心率为____次/分。,40-60,60-100,100-120,120-140,B,\n" +
			"1,胰岛素由____分泌。,胰岛A细胞,胰岛B细胞,肝细胞,肾上腺,B,\n" +
			"2,缺铁性贫血属于____贫血。,小细胞低色素性,大细胞性,正常细胞性,溶血性,A,\n" +
			"3,人体最大的器官是____。,肝,肺,皮肤,心,C,\n" +
			"4,维生素C缺乏引起____。,夜盲症,佝偻病,脚气病,坏血病,D,\n",
		"val/clinical_medicine_val.csv": "id,question,A,B,C,D,answer\n" +
			"0,成人正常体温约为____。,35℃,37℃,39℃,41℃,B\n" +
			"1,血红蛋白的主要功能是____。,运输氧气,凝血,免疫,消化,A\n" +
			"2,青霉素主要作用于____。,病毒,细菌,真菌,寄生虫,B\n",
	})
	return dir
}

// tinyModel is a random model with LLaMA-2's tokenizer and room for the
// fixture's prompts.
func tinyModel(t *testing.T) *llama.Model {
	t.Helper()
	p := spmtest.Processor(t, "tokenizers/llama2/tokenizer.model")
	c, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.MaxPositionEmbeddings = 1024
	dir := t.TempDir()
	if err := hfdir.Init(c, p.Model(), dir, hfdir.InitOptions{Seed: 3, DType: "float32"}); err != nil {
		t.Fatal(err)
	}
	m, err := hfdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The subjects, their names and categories, and the questions as read.
func TestMCReadCEvalLayout(t *testing.T) {
	dir := cevalFixture(t)
	d, err := eval.LoadMC(eval.TaskCEval, dir, "val")
	if err != nil {
		t.Fatal(err)
	}
	want := []eval.Subject{{Key: "clinical_medicine", Name: "临床医学", Category: "Other"}, {Key: "computer_network", Name: "计算机网络", Category: "STEM"}}
	if len(d.Subjects) != 2 || d.Subjects[0].Subject != want[0] || d.Subjects[1].Subject != want[1] {
		t.Fatalf("subjects %+v", d.Subjects)
	}
	cn := d.Subjects[1]
	if len(cn.Dev) != 5 || len(cn.Eval) != 3 || d.Questions() != 6 {
		t.Fatalf("%d dev, %d val, %d in all", len(cn.Dev), len(cn.Eval), d.Questions())
	}
	q := cn.Eval[1]
	if q.Question != "下列属于私有地址的是____。" || q.Choices != [4]string{"8.8.8.8", "192.168.1.1", "1.1.1.1", "114.114.114.114"} || q.Answer != "B" {
		t.Errorf("question %+v", q)
	}
	if cn.Dev[4].Choices[3] != "128" || cn.Dev[4].Answer != "C" {
		t.Errorf("a dev row with a quoted, multi-line explanation: %+v", cn.Dev[4])
	}
}

// The prompt of a question is LLaMA-Factory's layout: the exemplars the
// NumPy draws give (across subjects, in order), each "question\nA. ..\nB.
// ..\nC. ..\nD. ..\n答案：" with its letter as the assistant's turn, the
// system text opening the first turn; encoded with the chat template.
func TestMCPromptLayout(t *testing.T) {
	p := spmtest.Processor(t, "tokenizers/llama2/tokenizer.model")
	d, err := eval.LoadMC(eval.TaskCEval, cevalFixture(t), "val")
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := template.Get("llama2")
	if err != nil {
		t.Fatal(err)
	}
	prompts, err := d.Prompts(p, eval.MCOptions{Lang: "zh", NShot: 2, Template: tpl, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	// clinical_medicine's three questions take the first three draws
	// ([4 2 3 1 0], [3 0 1 2 4], [1 0 4 ...]); computer_network's first
	// question the fourth ([0 4 1 ...]).
	if got := [][]int{prompts[0][0].Shots, prompts[0][1].Shots, prompts[0][2].Shots, prompts[1][0].Shots}; !slices.EqualFunc(got, [][]int{{4, 2}, {3, 0}, {1, 0}, {0, 4}}, slices.Equal) {
		t.Fatalf("exemplars %v", got)
	}
	q := prompts[1][0]
	want := []template.Message{
		{Role: "user", Content: "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\nTCP属于哪一层____。\nA. 网络层\nB. 传输层\nC. 应用层\nD. 链路层\n答案："},
		{Role: "assistant", Content: "B"},
		{Role: "user", Content: "以太网帧的最小长度是____字节。\nA. 32\nB. 46\nC. 64\nD. 128\n答案："},
		{Role: "assistant", Content: "C"},
		{Role: "user", Content: "ARP协议的作用是____。\nA. IP地址到MAC地址\nB. MAC地址到IP地址\nC. 域名到IP地址\nD. 端口到进程\n答案："},
		{Role: "assistant", Content: "A"},
	}
	if !slices.Equal(q.Messages, want) {
		t.Fatalf("messages\n%q\nwant\n%q", q.Messages, want)
	}
	// LLaMA-2's template: <s>[INST] user [/INST] answer</s> per exemplar,
	// then <s>[INST] question [/INST], each text piece encoded alone.
	var ids []int32
	add := func(text string) {
		for _, id := range p.Encode(text) {
			ids = append(ids, int32(id))
		}
	}
	bos, eos := int32(p.SpecialID("bos")), int32(p.SpecialID("eos"))
	ids = append(ids, bos)
	add("[INST] 以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\nTCP属于哪一层____。\nA. 网络层\nB. 传输层\nC. 应用层\nD. 链路层\n答案： [/INST]")
	add("B")
	ids = append(ids, eos, bos)
	add("[INST] 以太网帧的最小长度是____字节。\nA. 32\nB. 46\nC. 64\nD. 128\n答案： [/INST]")
	add("C")
	ids = append(ids, eos, bos)
	add("[INST] ARP协议的作用是____。\nA. IP地址到MAC地址\nB. MAC地址到IP地址\nC. 域名到IP地址\nD. 端口到进程\n答案： [/INST]")
	if !slices.Equal(q.IDs, ids) || q.Answer != "A" {
		t.Errorf("ids\n%v\nwant\n%v", q.IDs, ids)
	}

	// English, no exemplars: the system text alone opens the question.
	msgs, err := eval.MCMessages("en", "abstract algebra", nil, eval.Question{Question: "Find 2+2.", Choices: [4]string{"1", "2", "3", "4"}, Answer: "D"})
	if err != nil || len(msgs) != 2 || msgs[0].Content != "The following are multiple choice questions (with answers) about abstract algebra.\n\nFind 2+2.\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:" || msgs[1].Content != "D" {
		t.Errorf("en: %q %v", msgs, err)
	}
	if _, err := eval.MCMessages("fr", "x", nil, eval.Question{}); err == nil {
		t.Error("an unknown language was taken")
	}
	// The letters' tokens: the last id of each letter encoded alone.
	c, err := eval.ChoiceIDs(p)
	if err != nil || c != [4]int32{int32(p.Encode("A")[0]), int32(p.Encode("B")[0]), int32(p.Encode("C")[0]), int32(p.Encode("D")[0])} {
		t.Errorf("choice ids %v %v", c, err)
	}
}

// Each prediction is the letter whose token has the highest logit at the
// prompt's last position, as a full forward pass over the prompt alone
// computes it; batching does not change them.
func TestMCPredictIsArgmaxOfLetterLogits(t *testing.T) {
	p := spmtest.Processor(t, "tokenizers/llama2/tokenizer.model")
	m := tinyModel(t)
	d, err := eval.LoadMC(eval.TaskCEval, cevalFixture(t), "val")
	if err != nil {
		t.Fatal(err)
	}
	tpl, _ := template.Get("empty")
	prompts, err := d.Prompts(p, eval.MCOptions{Lang: "zh", NShot: 3, Template: tpl, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	choices, err := eval.ChoiceIDs(p)
	if err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(prompts[0]), prompts[1]...)
	// The questions all end in the same cue, and a random model gives
	// them one letter; prompts ending otherwise, of other lengths, check
	// that each row of a batch is read for its own prompt.
	for _, text := range []string{"Once upon a time", "1 2 3", "中文的一行。", "The answer is", "x", "A B C D E F G"} {
		var ids []int32
		for _, id := range p.Encode(text) {
			ids = append(ids, int32(id))
		}
		all = append(all, eval.MCPrompt{IDs: ids})
	}
	n := 0
	one, err := eval.Predict(m, choices, all, 1, func(k int) { n += k })
	if err != nil || n != len(all) {
		t.Fatalf("%v, %d done", err, n)
	}
	four, err := eval.Predict(m, choices, all, 5, nil)
	if err != nil || !slices.Equal(one, four) {
		t.Fatalf("batch 1 %v, batch 5 %v (%v)", one, four, err)
	}
	v := m.Config.VocabSize
	margin := float32(1e9)
	for i, q := range all {
		tt := len(q.IDs)
		a := m.NewActs(1, tt)
		m.Forward(a, q.IDs, nil)
		logits := make([]float32, tt*v)
		m.Logits(a, logits)
		last := logits[(tt-1)*v:]
		best := 0
		for k, c := range choices {
			if last[c] > last[choices[best]] {
				best = k
			}
		}
		for k, c := range choices {
			if k != best {
				margin = min(margin, last[choices[best]]-last[c])
			}
		}
		if one[i] != eval.Letters[best] {
			t.Errorf("question %d: predicted %s, the forward pass's letter logits %v say %s", i, one[i], []float32{last[choices[0]], last[choices[1]], last[choices[2]], last[choices[3]]}, eval.Letters[best])
		}
	}
	t.Logf("%d prompts, predictions %v, smallest margin %.3g", len(all), one, margin)
	if slices.Equal(one[1:], one[:len(one)-1]) {
		t.Errorf("every prompt got %s: the check cannot tell the rows apart", one[0])
	}
	if _, err := eval.Predict(m, [4]int32{1, 2, 3, int32(v)}, all[:1], 1, nil); err == nil {
		t.Error("a choice token outside the vocabulary was taken")
	}
}

// results.json as LLaMA-Factory's json.dump(indent=2) writes it, and
// results.log as its score lines; the accuracy counts only known answers.
func TestMCResultFiles(t *testing.T) {
	r := &eval.MCResult{
		Subjects: []eval.Subject{{Key: "law", Name: "法学", Category: "Humanities"}, {Key: "physician", Name: "医师资格", Category: "Other"}, {Key: "logic", Name: "逻辑学", Category: "Humanities"}},
		Preds:    [][]string{{"A", "B", "C"}, {"D"}, {}},
		Answers:  [][]string{{"A", "C", "C"}, {"A"}, {}},
	}
	wantJSON := "{\n  \"law\": {\n    \"0\": \"A\",\n    \"1\": \"B\",\n    \"2\": \"C\"\n  },\n  \"physician\": {\n    \"0\": \"D\"\n  },\n  \"logic\": {}\n}"
	if got := string(r.JSON()); got != wantJSON {
		t.Errorf("results.json\n%s\nwant\n%s", got, wantJSON)
	}
	wantLog := "        Average: 50.00\n     Humanities: 66.67\n          Other: 0.00"
	if got := r.Table(); got != wantLog {
		t.Errorf("results.log\n%q\nwant\n%q", got, wantLog)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Save(dir); err != nil {
		t.Fatalf("an empty save_dir: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "results.json")); string(b) != wantJSON {
		t.Errorf("saved results.json %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "results.log")); string(b) != wantLog {
		t.Errorf("saved results.log %q", b)
	}
	if err := r.Save(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a second save over the first: %v", err)
	}
	// No answer known (C-Eval's test split): no accuracy, a sentence.
	r.Answers = [][]string{{"", "", ""}, {""}, {}}
	if s := r.Table(); len(r.Scores()) != 0 || !strings.Contains(s, "not scored") {
		t.Errorf("no answers: %q", s)
	}
}

// The shared copies of C-Eval and CMMLU read whole: subjects, questions,
// answers.
func TestMCReadSharedBenchmarks(t *testing.T) {
	for _, c := range []struct {
		task, dir, split         string
		subjects, dev, questions int
	}{
		{eval.TaskCEval, "eval/ceval-exam", "val", 52, 260, 1346},
		{eval.TaskCMMLU, "eval/cmmlu", "test", 67, 335, 11582},
	} {
		d, err := eval.LoadMC(c.task, testenv.Path(t, c.dir), c.split)
		if err != nil {
			t.Fatal(err)
		}
		dev, answered := 0, 0
		cats := map[string]int{}
		for _, s := range d.Subjects {
			dev += len(s.Dev)
			cats[s.Category]++
			for _, q := range s.Eval {
				if q.Answer != "" {
					answered++
				}
			}
		}
		if len(d.Subjects) != c.subjects || dev != c.dev || d.Questions() != c.questions || answered != c.questions {
			t.Errorf("%s: %d subjects, %d dev, %d questions (%d answered); want %d, %d, %d", c.task, len(d.Subjects), dev, d.Questions(), answered, c.subjects, c.dev, c.questions)
		}
		t.Logf("%s %s: %d subjects, categories %v", c.task, c.split, len(d.Subjects), cats)
	}
	if _, err := eval.LoadMC(eval.TaskCEval, testenv.Path(t, "eval/ceval-exam"), "test"); err == nil || !strings.Contains(err.Error(), "accountant_test.csv") {
		t.Errorf("a split the copy lacks: %v", err)
	}
}

// Bad input is named: the file and line, the column, the answer, the task.
func TestMCBadInput(t *testing.T) {
	dir := cevalFixture(t)
	bad := func(files map[string]string, task, split string, want ...string) {
		t.Helper()
		writeFiles(t, dir, files)
		_, err := eval.LoadMC(task, dir, split)
		if err == nil {
			t.Errorf("no error; want %q", want)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
	}
	good := map[string]string{"val/computer_network_val.csv": "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n"}
	bad(map[string]string{"val/computer_network_val.csv": "id,question,A,B,D,answer\n0,q,a,b,d,A\n"}, eval.TaskCEval, "val", "computer_network_val.csv:1", `no column "C"`)
	bad(map[string]string{"val/computer_network_val.csv": "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n1,q,a,b,c,d,E\n"}, eval.TaskCEval, "val", "computer_network_val.csv:3", `answer "E" is not A, B, C or D`)
	bad(map[string]string{"val/computer_network_val.csv": "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n1,q,a,b,c,d,\n"}, eval.TaskCEval, "val", "computer_network_val.csv:3", "no answer")
	bad(map[string]string{"val/computer_network_val.csv": "id,question,A,B,C,D,answer\n0,q,a,b,c\n"}, eval.TaskCEval, "val", "computer_network_val.csv:2", "5 fields")
	bad(map[string]string{"val/computer_network_val.csv": "id,question,A,B,C,D,answer\n0,\"q,a,b,c,d,A\n"}, eval.TaskCEval, "val", "computer_network_val.csv")
	writeFiles(t, dir, good)
	bad(map[string]string{"dev/clinical_medicine_dev.csv": "id,question,A,B,C,D\n0,q,a,b,c,d\n"}, eval.TaskCEval, "val", "clinical_medicine_dev.csv", "no answers")
	writeFiles(t, dir, map[string]string{"dev/clinical_medicine_dev.csv": "id,question,A,B,C,D,answer\n0,q,a,b,c,d,B\n"})
	bad(nil, eval.TaskCEval, "test", "clinical_medicine_test.csv: no such file")
	bad(map[string]string{"subject_mapping.json": `{"law": ["Law", "法学", "Sciences"]}`}, eval.TaskCEval, "val", "subject_mapping.json", `"Sciences"`)
	bad(nil, "gaokao", "val", `unknown task "gaokao"`, "ceval, cmmlu and mmlu")
	bad(nil, eval.TaskCMMLU, "val", "cmmlu has no val split")
	bad(nil, eval.TaskCEval, "dev", "exemplars")
	// MMLU's rows have no header and six fields.
	mm := t.TempDir()
	writeFiles(t, mm, map[string]string{"dev/anatomy_dev.csv": "q,a,b,c,d,A\nq,a,b,c,A\n"})
	if _, err := eval.ReadSplit(eval.TaskMMLU, mm, "anatomy", "dev"); err == nil || !strings.Contains(err.Error(), "anatomy_dev.csv:2: 5 fields") {
		t.Errorf("a short MMLU row: %v", err)
	}
	// CMMLU's header names Question and Answer.
	cm := t.TempDir()
	writeFiles(t, cm, map[string]string{"dev/arts.csv": ",question,A,B,C,D,answer\n0,q,a,b,c,d,A\n"})
	if _, err := eval.ReadSplit(eval.TaskCMMLU, cm, "arts", "dev"); err == nil || !strings.Contains(err.Error(), `no column "Question"`) {
		t.Errorf("CMMLU without Question: %v", err)
	}
}

// Cells read as pandas reads them for LLaMA-Factory: numbers in a numeric
// column written back as Python writes them, missing-value words as nan;
// text kept as it is.
func TestMCCellsAsPandasReadsThem(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"test/college_mathematics_test.csv": "" +
		"\"What is 1/2, as a decimal?\",1,0.50,007,None,A\n" +
		"Which is prime?,2,1e-5,+8,x,B\n" +
		"Pick one.,1e16,NA,9,True,C\n" +
		"Text stays.,  3 ,0.0001, 10,true,D\n"})
	qs, err := eval.ReadSplit(eval.TaskMMLU, dir, "college_mathematics", "test")
	if err != nil {
		t.Fatal(err)
	}
	want := [][4]string{
		{"1.0", "0.5", "7", "nan"},
		{"2.0", "1e-05", "8", "x"},
		{"1e+16", "nan", "9", "True"},
		{"3.0", "0.0001", "10", "true"},
	}
	for i, q := range qs {
		if q.Choices != want[i] {
			t.Errorf("row %d: %q, want %q", i, q.Choices, want[i])
		}
	}
	if len(qs) != 4 || qs[0].Question != "What is 1/2, as a decimal?" || qs[2].Question != "Pick one." || qs[3].Answer != "D" {
		t.Errorf("questions %q %q", qs[0].Question, qs[2].Question)
	}
}

type pqCEval struct {
	ID       int32  `parquet:"id"`
	Question string `parquet:"question"`
	A        string `parquet:"A"`
	B        string `parquet:"B"`
	C        string `parquet:"C"`
	D        string `parquet:"D"`
	Answer   string `parquet:"answer"`
}

type pqMMLU struct {
	Question string   `parquet:"question"`
	Subject  string   `parquet:"subject"`
	Choices  []string `parquet:"choices,list"`
	Answer   int64    `parquet:"answer"`
}

// The Parquet files of the benchmarks' Hub copies: C-Eval's
// ({subject}/{split}-*.parquet, test answers empty) and MMLU's (choices as
// a list, the answer an index, val named validation, in {split}/ folders).
func TestMCReadParquetHubCopies(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"mapping.json": `{"law": {"name": "法学", "category": "Humanities"}}`})
	write := func(path string, rows any) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch r := rows.(type) {
		case []pqCEval:
			err = parquet.WriteFile(path, r)
		case []pqMMLU:
			err = parquet.WriteFile(path, r)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "law", "dev-00000-of-00001.parquet"), []pqCEval{{0, "问题一", "甲", "乙", "丙", "丁", "C"}})
	write(filepath.Join(dir, "law", "test-00000-of-00001.parquet"), []pqCEval{{0, "问题二", "1", "2", "3", "4", ""}, {1, "问题三", "a", "b", "c", "d", ""}})
	d, err := eval.LoadMC(eval.TaskCEval, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	s := d.Subjects[0]
	if s.Name != "法学" || len(s.Dev) != 1 || s.Dev[0].Answer != "C" || len(s.Eval) != 2 || s.Eval[1] != (eval.Question{Question: "问题三", Choices: [4]string{"a", "b", "c", "d"}}) {
		t.Errorf("C-Eval from Parquet: %+v", s)
	}
	mm := t.TempDir()
	writeFiles(t, mm, map[string]string{"mapping.json": `{"virology": {"name": "virology", "category": "Other"}}`})
	write(filepath.Join(mm, "virology", "dev", "0000.parquet"), []pqMMLU{{"Q0", "virology", []string{"w", "x", "y", "z"}, 3}})
	write(filepath.Join(mm, "virology", "validation", "0000.parquet"), []pqMMLU{{"Q1", "virology", []string{"a", "b", "c", "d"}, 1}})
	d, err = eval.LoadMC(eval.TaskMMLU, mm, "val")
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Subjects[0]; s.Dev[0].Answer != "D" || s.Eval[0] != (eval.Question{Question: "Q1", Choices: [4]string{"a", "b", "c", "d"}, Answer: "B"}) {
		t.Errorf("MMLU from Parquet: %+v", s)
	}
	write(filepath.Join(mm, "virology", "validation", "0000.parquet"), []pqMMLU{{"Q1", "virology", []string{"a", "b", "c"}, 1}})
	if _, err := eval.LoadMC(eval.TaskMMLU, mm, "val"); err == nil || !strings.Contains(err.Error(), "0000.parquet: row 1: 3 choices") {
		t.Errorf("three choices: %v", err)
	}
	write(filepath.Join(mm, "virology", "validation", "0000.parquet"), []pqMMLU{{"Q1", "virology", []string{"a", "b", "c", "d"}, 4}})
	if _, err := eval.LoadMC(eval.TaskMMLU, mm, "val"); err == nil || !strings.Contains(err.Error(), "row 1: answer 4") {
		t.Errorf("answer index 4: %v", err)
	}
}
