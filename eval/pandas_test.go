package eval

import (
	"slices"
	"testing"
)

// Columns as pandas 1.5.3 (Debian's python3-pandas) reads them, str() of
// each cell; pandas 2 reads "None" as missing too.
func TestPandasText(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"1", "2"}, []string{"1", "2"}},
		{[]string{"1", "2.5"}, []string{"1.0", "2.5"}},
		{[]string{"True", "False"}, []string{"True", "False"}},
		{[]string{"True", "x"}, []string{"True", "x"}},
		{[]string{"true", "False"}, []string{"True", "False"}},
		{[]string{"TRUE", "FALSE"}, []string{"True", "False"}},
		{[]string{"True", "NA"}, []string{"True", "nan"}},
		{[]string{"1", "NA"}, []string{"1.0", "nan"}},
		{[]string{"inf", "-Infinity", "2"}, []string{"inf", "-inf", "2.0"}},
		{[]string{"+inf", "INF"}, []string{"inf", "inf"}},
		{[]string{"1_000", "2"}, []string{"1_000", "2"}},
		{[]string{"0x10", "2"}, []string{"0x10", "2"}},
		{[]string{" 5", "6"}, []string{"5", "6"}},
		{[]string{"\t4", "5"}, []string{"4", "5"}},
		{[]string{"1e400", "1"}, []string{"1e400", "1"}},
		{[]string{"1e-400", "1"}, []string{"0.0", "1.0"}},
		{[]string{"5.", "6"}, []string{"5.0", "6.0"}},
		{[]string{".5", "1"}, []string{"0.5", "1.0"}},
		{[]string{"1,5", "2"}, []string{"1,5", "2"}},
		{[]string{"-0", "1"}, []string{"0", "1"}},
		{[]string{"-5", "+7"}, []string{"-5", "7"}},
		{[]string{"1.0e5", " 3 "}, []string{"100000.0", "3.0"}},
		{[]string{"1.5E3", "2"}, []string{"1500.0", "2.0"}},
		{[]string{"9223372036854775808", "1"}, []string{"9223372036854775808", "1"}},
		{[]string{"12345678901234567890123", "1"}, []string{"12345678901234567890123", "1"}},
		{[]string{"0.1", "0.2", "1e16", "1.5e-5", "123456.75"}, []string{"0.1", "0.2", "1e+16", "1.5e-05", "123456.75"}},
		{[]string{"", "NULL", "None", "n/a"}, []string{"nan", "nan", "nan", "nan"}},
		{[]string{"网络层", "21"}, []string{"网络层", "21"}},
	} {
		if got := pandasText(c.in); !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, pandas %q", c.in, got, c.want)
		}
	}
}
