//go:build !gsedict

package eval

import (
	"errors"

	"github.com/go-ego/gse"
)

// EmbeddedDict says whether this build carries gse's dictionary.
const EmbeddedDict = false

func loadEmbeddedDict(*gse.Segmenter) error {
	return errors.New("no word dictionary: give jieba's dict.txt (it comes with jieba: python3 -c 'import jieba, os; print(os.path.join(os.path.dirname(jieba.__file__), \"dict.txt\"))' prints where), or build zhllama with -tags gsedict to embed gse's dictionary (33 MB more; its words differ from jieba's in about 2%)")
}
