package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"zhllama/internal/mpi"
	"zhllama/train"
)

func trainCommand() *command {
	return &command{name: "train", summary: "pt, sft, rm, dpo, kto or ppo: full, freeze, LoRA or QLoRA, with LLaMA-Factory's keys",
		usage: "[CONFIG.yaml] [--key value ...]",
		help:  "Keys (in the YAML file, or as flags that override it):\n  " + strings.Join(train.Keys(), "\n  ") + "\n",
		run:   trainRun}
}

func trainRun(args []string) (err error) {
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
	if err := mpi.Init(); err != nil {
		return err
	}
	var comm train.Comm
	if mpi.Size() > 1 {
		comm = mpi.World{}
		defer func() {
			// A rank that fails takes the others down with the reason;
			// they may be waiting for it in a collective.
			if err != nil && !errors.Is(err, train.ErrInterrupted) {
				mpi.Abort(err.Error())
			}
			mpi.Finalize()
		}()
	} else {
		defer mpi.Finalize()
	}
	t, err := train.NewOn(c, os.Stderr, comm)
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
	if err == nil && mpi.Rank() == 0 {
		fmt.Fprintf(os.Stderr, "wrote %s (metrics.jsonl, training_loss.svg)\n", c.OutputDir)
	}
	return exit(err)
}
