package train

import (
	"os"
	"path/filepath"
	"testing"
)

// A YAML config never panics the parser: every problem is an error.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("stage: sft\nmodel_name_or_path: m\ndataset: a, b\nlora_target:\n  - q_proj\n  - v_proj\noutput_dir: o\nlearning_rate: 1.0e-4\nbf16: true\npacking: false\n"))
	f.Add([]byte("model_name_or_path: [m\n"))
	f.Add([]byte("num_train_epochs: 3.0\nper_device_train_batch_size: 8\nval_size: 0.1\nseed: 42\nresume_from_checkpoint: true\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		Parse(path, nil)
	})
}
