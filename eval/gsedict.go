//go:build gsedict

package eval

import (
	"fmt"

	"github.com/go-ego/gse"
)

// EmbeddedDict says whether this build carries gse's dictionary.
const EmbeddedDict = true

func loadEmbeddedDict(seg *gse.Segmenter) error {
	if err := seg.LoadDictEmbed("zh_s"); err != nil {
		return fmt.Errorf("loading gse's Chinese dictionary: %w", err)
	}
	return nil
}
