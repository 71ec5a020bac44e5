package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"zhllama/gguf"
	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/template"
)

func chatCommand() *command {
	return &command{name: "chat", summary: "talk to a model in the terminal, the history rendered by a chat template, the answer streamed",
		usage: "--model D [--adapter A] [--template T] [--system S] [--max_new_tokens N --temperature T --top_p P --top_k K --repetition_penalty R --seed S --kv_cache_dtype float32|float16]",
		help:  "Type a message and Enter. /clear forgets the conversation, /system TEXT sets the system prompt (and clears), /exit or end of input quits.\nCtrl-C stops an answer being written; at the prompt it quits.\n",
		run:   chat}
}

// conversation is a chat's state: the system prompt and the turns so far
// (user and assistant alternating).
type conversation struct {
	tpl    template.Prompter
	tok    *spm.Processor
	system string
	turns  []template.Message
}

// prompt renders the conversation with a new user message for the model
// to answer: every turn through the template, the answer's slot left open.
// Turns are dropped from the oldest while the prompt leaves fewer than
// room tokens of the context; dropped says how many.
func (c *conversation) prompt(user string, ctx, room int) (ids []int32, dropped int, err error) {
	msgs := append(append([]template.Message(nil), c.turns...), template.Message{Role: template.User, Content: user})
	for {
		ids, err = c.tpl.Prompt(c.tok, msgs, c.system)
		if err != nil {
			return nil, 0, err
		}
		if len(ids)+room <= ctx || len(msgs) == 1 {
			break
		}
		msgs, dropped = msgs[2:], dropped+2
	}
	if len(ids) >= ctx {
		return nil, dropped, fmt.Errorf("the message alone has %d tokens with the template, and the model's context is %d: shorten it", len(ids), ctx)
	}
	return ids, dropped, nil
}

// addTemplateFlag adds --template: a built-in template that overrides the
// model's own chat_template.
func addTemplateFlag(fs *flag.FlagSet) *string {
	return fs.String("template", "", "chat template: "+strings.Join(template.Names(), ", ")+
		" (default: the model's chat_template from tokenizer_config.json, else "+defaultChatTemplate+")")
}

const defaultChatTemplate = "llama2_zh"

// chatPrompter is the template conversations are rendered with: the one
// named, else the chat_template of the adapter's or the model's
// tokenizer_config.json (written by train and export) or of a GGUF file,
// else the default; desc says which, for the user.
func chatPrompter(name string, mf modelFlags) (pr template.Prompter, desc string, err error) {
	if name == "" {
		for _, dir := range []string{*mf.adapter, *mf.dir} {
			if dir == "" {
				continue
			}
			var src, where string
			if isGGUF(dir) {
				where = dir
				src, err = gguf.ChatTemplate(dir)
			} else {
				where = filepath.Join(dir, "tokenizer_config.json")
				src, err = hfdir.ChatTemplate(dir)
			}
			if err != nil {
				return nil, "", err
			}
			if src == "" {
				continue
			}
			if pr, err = template.ForChatTemplate(src); err != nil {
				return nil, "", fmt.Errorf("%s: %w; choose a built-in one with --template", where, err)
			}
			if t, ok := pr.(*template.Template); ok {
				return pr, "the model's chat_template, template " + t.Name, nil
			}
			return pr, "the model's own chat_template", nil
		}
		name = defaultChatTemplate
	}
	tpl, err := template.Get(name)
	if err != nil {
		return nil, "", usagef("--template: %v", err)
	}
	return tpl, "template " + name, nil
}

func chat(args []string) error {
	fs := flagSet("chat")
	mf := addModelFlags(fs)
	tplName := addTemplateFlag(fs)
	system := fs.String("system", "", "system prompt")
	sf := addSamplingFlags(fs, llama.Sampling{MaxNewTokens: 512, Temperature: 0.95, TopP: 0.7, TopK: 50})
	if err := parseFlags(fs, args, "--model D [flags]"); err != nil {
		return err
	}
	// The template first: a bad one fails before the model loads.
	tpl, tplDesc, err := chatPrompter(*tplName, mf)
	if err != nil {
		return err
	}
	m, p, s, err := sf.load(mf)
	if err != nil {
		return err
	}
	// Ctrl-C stops the answer being written; at the prompt it ends the chat.
	var generating, stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		for range sig {
			if !generating.Load() {
				fmt.Fprintln(os.Stderr)
				os.Exit(130)
			}
			stop.Store(true)
		}
	}()
	conv := &conversation{tpl: tpl, tok: p, system: *system}
	in := bufio.NewReader(os.Stdin)
	fmt.Fprintf(os.Stderr, "chat with %s (%s); /clear, /system TEXT, /exit\n", *mf.dir, tplDesc)
	for turn := 0; ; turn++ {
		fmt.Fprint(os.Stderr, "> ")
		line, err := in.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			fmt.Fprintln(os.Stderr)
			return nil
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case line == "/exit" || line == "/quit":
			return nil
		case line == "/clear":
			conv.turns = nil
			fmt.Fprintln(os.Stderr, "(conversation cleared)")
			continue
		case line == "/system" || strings.HasPrefix(line, "/system "):
			conv.system, conv.turns = strings.TrimSpace(strings.TrimPrefix(line, "/system")), nil
			fmt.Fprintf(os.Stderr, "(system prompt set to %q; conversation cleared)\n", conv.system)
			continue
		case strings.HasPrefix(line, "/"):
			fmt.Fprintf(os.Stderr, "(unknown command %s: /clear, /system TEXT, /exit)\n", strings.Fields(line)[0])
			continue
		}
		ctx := m.Config.MaxPositionEmbeddings
		ids, dropped, err := conv.prompt(line, ctx, min(s.MaxNewTokens, ctx/2))
		if err != nil {
			fmt.Fprintf(os.Stderr, "(%v)\n", err)
			continue
		}
		if dropped > 0 {
			fmt.Fprintf(os.Stderr, "(the conversation passed the context of %d tokens: the oldest %d turns are left out)\n", ctx, dropped)
			conv.turns = conv.turns[dropped:]
		}
		s.Seed = *sf.seed + uint64(turn)
		var answer strings.Builder
		d := p.NewDetokenizer()
		stop.Store(false)
		generating.Store(true)
		_, err = m.Generate(ids, s, func(id int) bool {
			if slices.Contains(s.StopIDs, id) {
				return false
			}
			piece := d.Add(id)
			fmt.Print(piece)
			answer.WriteString(piece)
			return !stop.Load()
		})
		generating.Store(false)
		rest := d.Flush()
		fmt.Print(rest)
		answer.WriteString(rest)
		fmt.Println()
		if err != nil {
			return err
		}
		if stop.Load() {
			fmt.Fprintln(os.Stderr, "(stopped)")
		}
		conv.turns = append(conv.turns, template.Message{Role: template.User, Content: line}, template.Message{Role: template.Assistant, Content: answer.String()})
	}
}
