package serve

import (
	"bytes"
	"encoding/json"
	"math"
)

// fields are a request's JSON fields, read one by one so that a wrong type
// or range is answered with the field's name. null counts as absent;
// unknown fields are ignored.
type fields map[string]json.RawMessage

func (f fields) has(name string) bool {
	v, ok := f[name]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// into decodes a present field into v; want says what it should be.
func (f fields) into(name string, v any, want string) error {
	if err := json.Unmarshal(f[name], v); err != nil {
		return badRequest(name, "%s must be %s", name, want)
	}
	return nil
}

// num reads a number in [lo, hi], def when absent.
func (f fields) num(name string, def, lo, hi float64) (float64, error) {
	if !f.has(name) {
		return def, nil
	}
	var x float64
	if err := f.into(name, &x, "a number"); err != nil {
		return 0, err
	}
	if math.IsNaN(x) || x < lo || x > hi {
		return 0, badRequest(name, "%s %g is out of range: use a number from %g to %g", name, x, lo, hi)
	}
	return x, nil
}

// integer reads a whole number in [lo, hi], def when absent.
func (f fields) integer(name string, def, lo, hi int) (int, error) {
	if !f.has(name) {
		return def, nil
	}
	var x float64
	if err := f.into(name, &x, "an integer"); err != nil {
		return 0, err
	}
	if x != math.Trunc(x) || x < float64(lo) || x > float64(hi) {
		return 0, badRequest(name, "%s %v is out of range: use an integer from %d to %d", name, x, lo, hi)
	}
	return int(x), nil
}

func (f fields) boolean(name string) (bool, error) {
	var b bool
	if !f.has(name) {
		return false, nil
	}
	return b, f.into(name, &b, "true or false")
}

func (f fields) str(name, def string) (string, error) {
	if !f.has(name) {
		return def, nil
	}
	var s string
	return s, f.into(name, &s, "a string")
}

// strings reads a string or a list of strings.
func (f fields) strings(name string) ([]string, error) {
	if !f.has(name) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(f[name], &one) == nil {
		return []string{one}, nil
	}
	var many []string
	return many, f.into(name, &many, "a string or a list of strings")
}
