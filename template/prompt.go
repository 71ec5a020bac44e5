package template

// PromptIDs renders msgs, the last of them an answer to come, and keeps
// every turn but that last one: the ids a model continues to write the
// answer (LLaMA-Factory's encode_oneturn prompt). The last message's
// content is not used.
func (t *Template) PromptIDs(tok Tokenizer, msgs []Message, system, tools string) ([]int32, error) {
	enc, err := t.EncodeMessages(tok, msgs, system, tools)
	if err != nil {
		return nil, err
	}
	var ids []int32
	for _, e := range enc[:len(enc)-1] {
		for _, id := range e {
			ids = append(ids, int32(id))
		}
	}
	return ids, nil
}
