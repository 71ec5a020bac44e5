package serve

import (
	"fmt"
	"net/http"
	"unicode/utf8"

	"zhllama/llama"
	"zhllama/spm"
	"zhllama/template"
)

// TemplateRenderer renders conversations with a chat template (a built-in
// one, or a model's own Jinja chat_template), as LLaMA-Factory's API
// takes them: an optional leading system message, then user (or tool) and
// assistant turns alternating, ending with the user's.
type TemplateRenderer struct {
	T   template.Prompter
	Tok *spm.Processor
}

// Encode is the prompt's ids, the assistant's turn open.
func (r TemplateRenderer) Encode(msgs []template.Message) ([]int32, error) {
	system := ""
	if len(msgs) > 0 && msgs[0].Role == "system" {
		system, msgs = msgs[0].Content, msgs[1:]
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("no user message: give at least one after the system message")
	}
	for i, m := range msgs {
		want := i%2 == 0
		isUser := m.Role == template.User || m.Role == template.Observation
		if isUser != want || m.Role == "system" {
			return nil, fmt.Errorf("roles must alternate user/assistant/user/... after an optional first system message, and end with user; message %d is %s", i, m.Role)
		}
	}
	if len(msgs)%2 == 0 {
		return nil, fmt.Errorf("the last message is the assistant's: end with a user message")
	}
	return r.T.Prompt(r.Tok, msgs, system)
}

func (s *Server) tokenize(w http.ResponseWriter, r *http.Request) error {
	f, err := decodeBody(r)
	if err != nil {
		return err
	}
	content, err := f.str("content", "")
	if err != nil {
		return err
	}
	addSpecial, err := f.boolean("add_special")
	if err != nil {
		return err
	}
	parseSpecial := true
	if f.has("parse_special") {
		if parseSpecial, err = f.boolean("parse_special"); err != nil {
			return err
		}
	}
	withPieces, err := f.boolean("with_pieces")
	if err != nil {
		return err
	}
	p := s.o.Tok
	var ids []int32
	if addSpecial {
		if bos := p.SpecialID("bos"); bos >= 0 {
			ids = append(ids, int32(bos))
		}
	}
	if parseSpecial {
		for _, id := range p.EncodeSpecial(content) {
			ids = append(ids, int32(id))
		}
	} else {
		for _, id := range p.Encode(content) {
			ids = append(ids, int32(id))
		}
	}
	if !withPieces {
		writeJSON(w, http.StatusOK, map[string]any{"tokens": ids})
		return nil
	}
	out := make([]map[string]any, len(ids))
	for i, id := range ids {
		piece := s.e.tokenLogprob(int(id), 0)
		var pv any = piece.Token
		if len(piece.Bytes) > 0 && !utf8.ValidString(string(bytesOf(piece.Bytes))) {
			pv = piece.Bytes
		}
		if p.Type(int(id)) == spm.Control {
			pv = p.IDToPiece(int(id))
		}
		out[i] = map[string]any{"id": id, "piece": pv}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
	return nil
}

func bytesOf(ints []int) []byte {
	b := make([]byte, len(ints))
	for i, v := range ints {
		b[i] = byte(v)
	}
	return b
}

func (s *Server) detokenize(w http.ResponseWriter, r *http.Request) error {
	f, err := decodeBody(r)
	if err != nil {
		return err
	}
	var ids []int32
	if f.has("tokens") {
		if err := f.into("tokens", &ids, "a list of token ids"); err != nil {
			return err
		}
	}
	for i, id := range ids {
		if id < 0 || int(id) >= s.o.Tok.Size() {
			return badRequest("tokens", "tokens[%d] = %d is not a token id (0 to %d)", i, id, s.o.Tok.Size()-1)
		}
	}
	text, _ := s.o.Tok.DecodeSpecial(spm.Ints(ids)) // the ids are checked above
	writeJSON(w, http.StatusOK, map[string]any{"content": text})
	return nil
}

func (s *Server) applyTemplate(w http.ResponseWriter, r *http.Request) error {
	f, err := decodeBody(r)
	if err != nil {
		return err
	}
	msgs, err := parseMessages(f)
	if err != nil {
		return err
	}
	ids, err := s.o.Renderer.Encode(msgs)
	if err != nil {
		return badRequest("messages", "messages: %v", err)
	}
	text, err := s.o.Tok.DecodeSpecial(spm.Ints(ids))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"prompt": text})
	return nil
}

// scorer reads a reward model's value head at each text's last token.
type scorer struct {
	head *llama.ValueHead
	acts *llama.Acts
	rows int // what acts was made for
	vals []float32
}

// scoreEvaluation is LLaMA-Factory's reward API: {"model", "messages":
// [texts], "max_length"} → {"scores": [...]}, one per text, each text
// read with its special tokens (<s>, </s>) and no BOS added.
func (s *Server) scoreEvaluation(w http.ResponseWriter, r *http.Request) error {
	if s.score.head == nil {
		return &apiError{status: http.StatusNotImplemented, typ: "not_supported_error",
			msg: "this model has no value head (value_head.safetensors): serve a reward model from zhllama train --stage rm"}
	}
	f, err := decodeBody(r)
	if err != nil {
		return err
	}
	var texts []string
	if !f.has("messages") {
		return badRequest("messages", "messages is required: a list of texts to score")
	}
	if err := f.into("messages", &texts, "a list of strings"); err != nil {
		return err
	}
	if len(texts) == 0 {
		return badRequest("messages", "messages is empty: give at least one text")
	}
	maxLen, err := f.integer("max_length", s.e.Ctx(), 1, s.e.Ctx())
	if err != nil {
		return err
	}
	seqs := make([][]int32, len(texts))
	for i, t := range texts {
		ids := spm.Int32s(s.o.Tok.EncodeSpecial(t))
		if len(ids) == 0 {
			return badRequest(fmt.Sprintf("messages[%d]", i), "messages[%d] is empty: nothing to score", i)
		}
		seqs[i] = ids[:min(len(ids), maxLen)]
	}
	scores := make([]float64, len(seqs))
	if err := s.e.Do(r.Context(), func() {
		for i, q := range seqs {
			scores[i] = s.score.one(s.o.Model, q)
		}
	}); err != nil {
		return &apiError{status: http.StatusServiceUnavailable, typ: "unavailable_error", msg: err.Error()}
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": randomID("scoreeval-"), "object": "score.evaluation", "model": s.o.Alias, "scores": scores})
	return nil
}

// one is the value head's output at ids' last token.
func (sc *scorer) one(m *llama.Model, ids []int32) float64 {
	if sc.acts == nil || sc.rows < len(ids) {
		sc.acts, sc.rows = m.NewActs(1, len(ids)), len(ids)
	}
	sc.acts.Reshape(&m.Config, 1, len(ids))
	m.Forward(sc.acts, ids, nil)
	if cap(sc.vals) < len(ids) {
		sc.vals = make([]float32, len(ids))
	}
	sc.head.Forward(sc.vals[:len(ids)], sc.acts.Hidden, len(ids))
	return float64(sc.vals[len(ids)-1])
}
