package serve

import (
	"context"
	"errors"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// OpenAI's own Go SDK talks to the server unchanged: chat completions
// whole and streamed, a text completion, the model list, and a wrong key
// as the SDK's *openai.Error with status 401.
func TestOpenAISDK(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.APIKeys = []string{"sk-test"} })
	ctx := context.Background()
	client := openai.NewClient(option.WithBaseURL(hs.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("你是助手"), openai.UserMessage("你好")},
		MaxTokens:   openai.Int(10),
		Temperature: openai.Float(0),
	}
	ids, err := s.o.Renderer.Encode(parseTestMessages(t, `[{"role":"system","content":"你是助手"},{"role":"user","content":"你好"}]`))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := greedy(t, s, ids, 10)

	resp, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != want || resp.Model != "tiny" || resp.Usage.PromptTokens != int64(len(ids)) {
		t.Errorf("chat: %+v, want content %q", resp, want)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != want || acc.Usage.CompletionTokens == 0 || chunks < 3 {
		t.Errorf("stream of %d chunks: %+v, usage %+v; want %q", chunks, acc.Choices, acc.Usage, want)
	}

	comp, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model:       "tiny",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("从前有一座山")},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if wantText, _ := greedy(t, s, s.o.Tok.ModelInput("从前有一座山"), 8); len(comp.Choices) != 1 || comp.Choices[0].Text != wantText {
		t.Errorf("completion: %+v, want %q", comp.Choices, wantText)
	}

	models, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(models.Data) != 1 || models.Data[0].ID != "tiny" {
		t.Errorf("models: %+v", models.Data)
	}

	bad := openai.NewClient(option.WithBaseURL(hs.URL+"/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
	_, err = bad.Chat.Completions.New(ctx, params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Type != "authentication_error" {
		t.Errorf("wrong key: %v", err)
	}
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "tiny", Messages: params.Messages, N: openai.Int(2)})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "n" {
		t.Errorf("n=2: %v", err)
	}
}
