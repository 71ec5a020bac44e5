package llama

import (
	"zhllama/hfdir"
	"zhllama/spm"
)

// InitWithTokenizer is Init as 'zhllama model init' calls it: the
// vocabulary size and special ids come from tok, whose files are written
// beside. Exported for the external tests of this directory.
func InitWithTokenizer(c Config, tok *spm.Model, dir string, o InitOptions) error {
	p, err := spm.NewProcessor(tok)
	if err != nil {
		return err
	}
	c.VocabSize = p.Size()
	if id := p.SpecialID("bos"); id >= 0 {
		c.BOSTokenID = id
	}
	if id := p.SpecialID("eos"); id >= 0 {
		c.EOSTokenID = id
	}
	if err := Init(c, dir, o); err != nil {
		return err
	}
	pad := ""
	if id := p.SpecialID("pad"); id >= 0 {
		pad = p.IDToPiece(id)
	}
	return hfdir.WriteTokenizer(dir, tok, pad)
}
