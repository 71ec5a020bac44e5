// Package textcheck recognizes text files that are not UTF-8, the most
// common mistake with Chinese data: files in GBK or GB18030 read as UTF-8
// give a vocabulary, or tokens, of mojibake.
package textcheck

import "fmt"

// Lines counts a file's lines and those that are not valid UTF-8.
type Lines struct {
	Name       string
	Total, Bad int64
}

// Early is how many lines are judged before the rest of the file is read.
const Early = 1000

// Err is an error when at least half of the lines counted are not UTF-8,
// naming the file and the command that converts it.
func (l *Lines) Err() error {
	if l.Bad == 0 || l.Bad*2 < l.Total {
		return nil
	}
	return fmt.Errorf("%s: %d of the first %d lines are not valid UTF-8: is it GBK or GB18030? Convert it first: iconv -f gb18030 -t utf-8 %s > %s.utf8", l.Name, l.Bad, l.Total, l.Name, l.Name)
}
