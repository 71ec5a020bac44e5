package eval

import (
	"os"
	"path/filepath"
	"testing"
)

// The benchmark readers take outside files: a CSV of any bytes, in each
// task's layout, and C-Eval's subject mapping, read or refused, never a
// panic; what is read has four choices and an answer from A to D or none.
func FuzzReadBenchmark(f *testing.F) {
	f.Add([]byte("id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n"), []byte(`{"s": ["S", "科目", "STEM"]}`))
	f.Add([]byte(",Question,A,B,C,D,Answer\n0,\"q\"\"x\",1,2,3,4,B\n"), []byte(`{"s": ["S"]}`))
	f.Add([]byte("q,a,b,c,d,C\n"), []byte(`[]`))
	f.Fuzz(func(t *testing.T, csv, mapping []byte) {
		dir := t.TempDir()
		for _, d := range []string{"dev", "val", "test"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		write := func(path string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, path), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("subject_mapping.json", mapping)
		write("val/s_val.csv", csv)
		write("test/s_test.csv", csv)
		write("test/s.csv", csv)
		Subjects(TaskCEval, dir)
		for _, c := range []struct{ task, split string }{{TaskCEval, "val"}, {TaskMMLU, "test"}, {TaskCMMLU, "test"}} {
			qs, err := ReadSplit(c.task, dir, "s", c.split)
			if err != nil {
				continue
			}
			for _, q := range qs {
				switch q.Answer {
				case "", "A", "B", "C", "D":
				default:
					t.Fatalf("%s: answer %q read", c.task, q.Answer)
				}
			}
		}
	})
}
