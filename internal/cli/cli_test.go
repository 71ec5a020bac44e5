package cli

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func parse(args ...string) ([]string, error) {
	bools := map[string]bool{"byte_fallback": true, "split_digits": true, "add_dummy_prefix": true}
	var got []string
	err := Parse(args, func(name string) (bool, error) {
		if name == "nope" {
			return false, errors.New("unknown flag --nope")
		}
		return bools[name], nil
	}, func(name, value string) error {
		got = append(got, name+"="+value)
		return nil
	})
	return got, err
}

func TestParseForms(t *testing.T) {
	got, err := parse("--vocab_size", "123", "--byte_fallback", "--split_digits=false", "--add_dummy_prefix", "false",
		"-input=a,b", "--model_prefix", "--odd", "--byte_fallback")
	want := []string{"vocab_size=123", "byte_fallback=true", "split_digits=false", "add_dummy_prefix=false",
		"input=a,b", "model_prefix=--odd", "byte_fallback=true"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v\nwant %v", got, err, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"--vocab_size"}, "--vocab_size needs a value"},
		{[]string{"--nope", "1"}, "unknown flag --nope"},
		{[]string{"--vocab_size=1", "--nope=2", "stray"}, "unknown flag --nope"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
