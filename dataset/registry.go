package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ReadRegistry reads a dataset_info.json.
func ReadRegistry(path string) (map[string]Layout, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reg map[string]Layout
	if err := json.Unmarshal(b, &reg); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(b[:se.Offset], []byte("\n"))
			col := int(se.Offset) - bytes.LastIndexByte(b[:se.Offset], '\n') - 1
			return nil, fmt.Errorf("%s:%d:%d: %w", path, line, col, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for name, d := range reg {
		if d.Formatting == "" {
			d.Formatting = "alpaca"
			reg[name] = d
		}
		if d.Formatting != "alpaca" && d.Formatting != "sharegpt" {
			return nil, fmt.Errorf("%s: dataset %q has formatting %q; zhllama reads alpaca and sharegpt", path, name, d.Formatting)
		}
	}
	return reg, nil
}

// Lookup returns the named dataset of a registry, with its file's path
// resolved against the registry's directory.
func Lookup(registryPath, name string) (Layout, string, error) {
	reg, err := ReadRegistry(registryPath)
	if err != nil {
		return Layout{}, "", err
	}
	d, ok := reg[name]
	if !ok {
		names := make([]string, 0, len(reg))
		for n := range reg {
			names = append(names, n)
		}
		sort.Strings(names)
		return Layout{}, "", fmt.Errorf("%s has no dataset %q (it has %d: %s ...)", registryPath, name, len(names), strings.Join(names[:min(8, len(names))], ", "))
	}
	if d.FileName == "" {
		return Layout{}, "", fmt.Errorf("%s: dataset %q has no file_name", registryPath, name)
	}
	return d, filepath.Join(filepath.Dir(registryPath), d.FileName), nil
}

// Resolve finds a dataset as LLaMA-Factory users name it: a file (or
// directory) as given, with an empty layout to be guessed from its records,
// else a name in dir/dataset_info.json.
func Resolve(dir, name string) (Layout, string, error) {
	if _, err := os.Stat(name); err == nil {
		return Layout{}, name, nil
	}
	reg := filepath.Join(dir, "dataset_info.json")
	if _, err := os.Stat(reg); err != nil {
		return Layout{}, "", fmt.Errorf("dataset %s: no such file, and no %s to look the name up in (set dataset_dir)", name, reg)
	}
	return Lookup(reg, name)
}
