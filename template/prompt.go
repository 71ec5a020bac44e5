package template

import "zhllama/spm"

// Prompter renders a conversation that ends with a user's message into the
// ids of the prompt a model answers: a built-in Template, or a model's own
// Jinja chat_template.
type Prompter interface {
	Prompt(p *spm.Processor, msgs []Message, system string) ([]int32, error)
}

// Prompt is the ids of msgs followed by the assistant's turn, left open:
// the prompt training's examples had before each answer.
func (t *Template) Prompt(p *spm.Processor, msgs []Message, system string) ([]int32, error) {
	return t.PromptIDs(p, append(msgs[:len(msgs):len(msgs)], Message{Role: Assistant}), system, "")
}

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
