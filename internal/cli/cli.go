// Package cli reads the arguments of commands that take another tool's
// flags by name (spm_train's): --name=value, --name value, or a bare
// boolean --name, with one rule for when a boolean takes the next argument.
package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse reads args in order and calls set with each flag's name and value.
// One leading dash will do, as with spm_train. kind reports whether a name
// is a boolean flag, or an error for a name that is not a flag. A bare
// boolean flag is true unless the next argument is a boolean word
// (--add_dummy_prefix false); any other flag takes the next argument.
func Parse(args []string, kind func(name string) (isBool bool, err error), set func(name, value string) error) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return fmt.Errorf("unexpected argument %q: flags look like --name=value", a)
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		isBool, err := kind(name)
		if err != nil {
			return err
		}
		if !hasVal {
			switch {
			case isBool && (i+1 >= len(args) || !isBoolWord(args[i+1])):
				val = "true"
			case i+1 < len(args):
				i++
				val = args[i]
			default:
				return fmt.Errorf("flag --%s needs a value", name)
			}
		}
		if err := set(name, val); err != nil {
			return err
		}
	}
	return nil
}

func isBoolWord(s string) bool {
	_, err := strconv.ParseBool(s)
	return err == nil
}
