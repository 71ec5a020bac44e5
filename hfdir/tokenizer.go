// Package hfdir holds the files of a Hugging Face model directory that
// zhllama writes and reads: here tokenizer_config.json and
// special_tokens_map.json beside tokenizer.model (config.json, PEFT
// adapters and value heads are to move in later).
package hfdir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"zhllama/internal/atomicfile"
	"zhllama/spm"
)

// addedToken is transformers' serialized AddedToken.
type addedToken struct {
	Type       string `json:"__type,omitempty"`
	Content    string `json:"content"`
	LStrip     bool   `json:"lstrip"`
	Normalized bool   `json:"normalized"`
	RStrip     bool   `json:"rstrip"`
	SingleWord bool   `json:"single_word"`
}

type tokenizerConfig struct {
	AddBOSToken               bool            `json:"add_bos_token"`
	AddEOSToken               bool            `json:"add_eos_token"`
	BOSToken                  addedToken      `json:"bos_token"`
	ChatTemplate              string          `json:"chat_template,omitempty"`
	CleanUpTokenizationSpaces bool            `json:"clean_up_tokenization_spaces"`
	EOSToken                  addedToken      `json:"eos_token"`
	ModelMaxLength            json.RawMessage `json:"model_max_length"`
	PadToken                  *string         `json:"pad_token"`
	SPModelKwargs             struct{}        `json:"sp_model_kwargs"`
	TokenizerClass            string          `json:"tokenizer_class"`
	UnkToken                  addedToken      `json:"unk_token"`
	UseFast                   bool            `json:"use_fast"`
}

type specialTokensMap struct {
	BOSToken addedToken `json:"bos_token"`
	EOSToken addedToken `json:"eos_token"`
	PadToken string     `json:"pad_token,omitempty"`
	UnkToken addedToken `json:"unk_token"`
}

// veryLargeInteger is transformers' "no limit" model_max_length (int(1e30)).
const veryLargeInteger = "1000000000000000019884624838656"

// WriteTokenizer writes dir/tokenizer.model, tokenizer_config.json (a slow
// LlamaTokenizer that adds <s> but not </s>, with the Jinja chatTemplate
// when not empty) and special_tokens_map.json. pad names the pad piece, or
// is empty for none.
func WriteTokenizer(dir string, m *spm.Model, pad, chatTemplate string) error {
	p, err := spm.NewProcessor(m)
	if err != nil {
		return err
	}
	piece := func(which, def string) string {
		if id := p.SpecialID(which); id >= 0 {
			return p.IDToPiece(id)
		}
		return def
	}
	tok := func(s string, typed bool) addedToken {
		t := addedToken{Content: s, Normalized: true}
		if typed {
			t.Type = "AddedToken"
		}
		return t
	}
	bos, eos, unk := piece("bos", "<s>"), piece("eos", "</s>"), p.IDToPiece(p.UnkID())
	if pad != "" && p.PieceToID(pad) == p.UnkID() && pad != unk {
		return fmt.Errorf("pad token %q is not a piece of the model", pad)
	}
	cfg := tokenizerConfig{
		AddBOSToken: true, BOSToken: tok(bos, true), EOSToken: tok(eos, true),
		ModelMaxLength: json.RawMessage(veryLargeInteger), TokenizerClass: "LlamaTokenizer",
		UnkToken: tok(unk, true), ChatTemplate: chatTemplate,
	}
	if pad != "" {
		cfg.PadToken = &pad
	}
	stm := specialTokensMap{BOSToken: tok(bos, false), EOSToken: tok(eos, false), PadToken: pad, UnkToken: tok(unk, false)}
	if err := m.Save(filepath.Join(dir, "tokenizer.model")); err != nil {
		return err
	}
	for name, v := range map[string]any{"tokenizer_config.json": cfg, "special_tokens_map.json": stm} {
		if err := atomicfile.WriteJSON(filepath.Join(dir, name), v); err != nil {
			return err
		}
	}
	return nil
}

// SaveTokenizer writes p's tokenizer files to dir, with its pad piece if
// it has one, and chatTemplate if not empty.
func SaveTokenizer(dir string, p *spm.Processor, chatTemplate string) error {
	return WriteTokenizer(dir, p.Model(), padPiece(p), chatTemplate)
}

// ChatTemplate is the Jinja chat_template of dir's tokenizer_config.json,
// or "" when it has none (or no such file).
func ChatTemplate(dir string) (string, error) {
	o, err := ReadTokenizerOptions(dir)
	return o.ChatTemplate, err
}

// TokenizerDir is the first of dirs that holds a tokenizer.model: an
// adapter's (a resized vocabulary comes with it) before its base's.
func TokenizerDir(dirs ...string) string {
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "tokenizer.model")); err == nil {
			return d
		}
	}
	return dirs[len(dirs)-1]
}

// TokenizerOptions are what a directory's tokenizer_config.json says
// beside the pieces: whether encoding adds BOS and EOS, and the chat
// template, if any.
type TokenizerOptions struct {
	AddBOS, AddEOS bool
	ChatTemplate   string
}

// ReadTokenizerOptions reads dir/tokenizer_config.json; without one, BOS
// is added and EOS not, as LlamaTokenizer does. A chat_template given as
// a list of named templates yields the one named default.
func ReadTokenizerOptions(dir string) (TokenizerOptions, error) {
	o := TokenizerOptions{AddBOS: true}
	path := filepath.Join(dir, "tokenizer_config.json")
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return o, nil
	}
	if err != nil {
		return o, err
	}
	var raw struct {
		AddBOS       *bool           `json:"add_bos_token"`
		AddEOS       *bool           `json:"add_eos_token"`
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return o, fmt.Errorf("%s: %w", path, err)
	}
	if raw.AddBOS != nil {
		o.AddBOS = *raw.AddBOS
	}
	if raw.AddEOS != nil {
		o.AddEOS = *raw.AddEOS
	}
	if len(raw.ChatTemplate) > 0 && string(raw.ChatTemplate) != "null" {
		if json.Unmarshal(raw.ChatTemplate, &o.ChatTemplate) != nil {
			var named []struct{ Name, Template string }
			if err := json.Unmarshal(raw.ChatTemplate, &named); err != nil {
				return o, fmt.Errorf("%s: chat_template is neither a string nor a list of named templates", path)
			}
			i := slices.IndexFunc(named, func(t struct{ Name, Template string }) bool { return t.Name == "default" })
			if i < 0 {
				return o, fmt.Errorf("%s: chat_template lists no template named \"default\"", path)
			}
			o.ChatTemplate = named[i].Template
		}
	}
	return o, nil
}
