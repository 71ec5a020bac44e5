package main

import (
	"fmt"
	"os"
	"strings"

	"zhllama/train"
)

func trainCommand() *command {
	return &command{name: "train", summary: "pt, sft, rm, dpo, kto or ppo: full, freeze, LoRA or QLoRA, with LLaMA-Factory's keys",
		usage: "[CONFIG.yaml] [--key value ...]",
		help:  "Keys (in the YAML file, or as flags that override it):\n  " + strings.Join(train.Keys(), "\n  ") + "\n",
		run:   trainRun}
}

func trainRun(args []string) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Printf("usage: zhllama train [CONFIG.yaml] [--key value ...]\n\nkeys:\n  %s\n", strings.Join(train.Keys(), "\n  "))
		return nil
	}
	path := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		path, args = args[0], args[1:]
	}
	c, ignored, err := train.Parse(path, args)
	if err != nil {
		return usageError{err.Error()}
	}
	if len(ignored) > 0 {
		fmt.Fprintf(os.Stderr, "note: keys with no effect here (training runs in float32 on the CPU): %s\n", strings.Join(ignored, ", "))
	}
	t, err := train.New(c, os.Stderr)
	if err != nil {
		return err
	}
	defer t.Close()
	if c.ResumeFromCheckpoint != "" && c.ResumeFromCheckpoint != "false" {
		if err := t.Resume(c.ResumeFromCheckpoint); err != nil {
			return err
		}
	}
	// Ctrl-C or SIGTERM: the run saves a checkpoint after the current step
	// and exits with 130 or 143.
	ctx, stop, exit := interruptible()
	defer stop()
	err = t.Run(ctx)
	if err == nil {
		fmt.Fprintf(os.Stderr, "wrote %s (metrics.jsonl, training_loss.svg)\n", c.OutputDir)
	}
	return exit(err)
}
