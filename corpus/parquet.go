package corpus

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
)

// readParquet calls fn for each row of a Parquet file (how Hugging Face
// datasets are often published), as a record of its columns. Rows are
// read a batch at a time.
func readParquet(path string, fn func(Record, Location) error) (err error) {
	defer func() {
		// The Parquet library panics on some malformed files: report, don't crash.
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: malformed Parquet file: %v", path, r)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("%s: not a Parquet file: %w", path, err)
	}
	r := parquet.NewGenericReader[map[string]any](pf, pf.Schema())
	defer r.Close()
	rows := make([]map[string]any, 256)
	item := 0
	for {
		for i := range rows {
			rows[i] = map[string]any{}
		}
		n, err := r.Read(rows)
		for _, row := range rows[:n] {
			// Line numbers do not exist in Parquet: the row number stands in.
			if ferr := fn(Record(row), Location{File: path, Line: item + 1, Item: item}); ferr != nil {
				return ferr
			}
			item++
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: row %d: %w", path, item+1, err)
		}
	}
}
