package spm

import "zhllama/internal/atomicfile"

// TrainFiles trains a model and writes PREFIX.model and PREFIX.vocab, each
// through a temporary file, so an interrupted run leaves no partial output.
func TrainFiles(c TrainConfig) (*Model, error) {
	m, err := Train(c)
	if err != nil {
		return nil, err
	}
	if err := m.Save(c.ModelPrefix + ".model"); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(c.ModelPrefix+".vocab", WriteVocab(m, c.VocabularyOutputPieceScore)); err != nil {
		return nil, err
	}
	return m, nil
}
