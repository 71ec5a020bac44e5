package main

import (
	"fmt"
	"os"

	"zhllama/hub"
)

func downloadCommand() *command {
	return &command{name: "download", summary: "download a model or dataset repository from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN)",
		usage: "REPO_ID [--repo-type model|dataset] [--revision R] [--include GLOB ...] --local_dir D", run: download}
}

func download(args []string) error {
	fs := flagSet("download")
	repoType := fs.String("repo-type", "model", "model or dataset")
	revision := fs.String("revision", "main", "branch, tag or commit")
	var include listFlag
	fs.Var(&include, "include", "only files matching this glob (repeatable), e.g. '*.safetensors'")
	localDir := fs.String("local_dir", "", "directory to download into")
	workers := fs.Int("max_workers", 8, "files downloaded at once")
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		args = append(args[1:], args[0]) // the repository may come first
	}
	pos, err := parseArgs(fs, args, "REPO_ID [flags] --local_dir D", 1, 1)
	if err != nil {
		return err
	}
	repo := pos[0]
	if *localDir == "" {
		return usagef("give one REPO_ID and --local_dir")
	}
	// Checked here so that the message names the flag.
	if t := *repoType; t != "" && t != "model" && t != "dataset" {
		return fmt.Errorf("--repo-type=%s: use model or dataset", *repoType)
	}
	h := hub.New()
	h.Log = os.Stderr
	ctx, stop, exit := interruptible()
	defer stop()
	files, err := h.Download(ctx, hub.DownloadOptions{RepoID: repo, RepoType: *repoType, Revision: *revision,
		Include: include, LocalDir: *localDir, Workers: *workers})
	if err != nil {
		return exit(err)
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	fmt.Printf("%s: %d files, %.1f MB in %s (from %s)\n", repo, len(files), float64(total)/1e6, *localDir, h.Endpoint)
	return nil
}
