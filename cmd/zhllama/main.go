// Command zhllama takes raw Chinese text and a LLaMA-2 checkpoint to a
// Chinese chat model. Each stage is a subcommand; see 'zhllama help'.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
)

// command is one entry of the command table: a leaf runs, a group dispatches.
type command struct {
	name    string
	summary string
	usage   string // arguments after the command path
	help    string // longer description, flags are appended by the leaf
	run     func(args []string) error
	sub     []*command
}

// usageError marks errors in how a command was called; they exit with 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitError ends the command with its own exit status: 130 or 143 after
// an interruption by SIGINT or SIGTERM (128 + the signal, as shells report
// it), so that 'train && export' or a scheduler sees it did not finish.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// interruptible is a context that Ctrl-C or SIGTERM cancels, and a function
// that wraps an error with the exit status the signal calls for.
func interruptible() (ctx context.Context, stop func(), exit func(error) error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value
	go func() {
		if sig, ok := <-ch; ok {
			got.Store(sig)
			cancel()
		}
	}()
	stop = func() { signal.Stop(ch); close(ch); cancel() }
	exit = func(err error) error {
		sig, _ := got.Load().(os.Signal)
		switch {
		case err == nil || sig == nil:
			return err
		case sig == syscall.SIGTERM:
			return exitError{143, err}
		}
		return exitError{130, err}
	}
	return ctx, stop, exit
}

var version = "0.1.0"

func commands() *command {
	return &command{
		name:    "zhllama",
		summary: "build Chinese LLaMA-2 models: tokenizer, data, training, chat",
		sub: []*command{
			tokenizerCommand(),
			dataCommand(),
			modelCommand(),
			trainCommand(),
			exportCommand(),
			generateCommand(),
			chatCommand(),
			serveCommand(),
			demoCommand(),
			runCommand(),
			evalCommand(),
			scoreCommand(),
			downloadCommand(),
			benchCommand(),
			{name: "version", summary: "print the version", run: func([]string) error {
				fmt.Println("zhllama", version)
				return nil
			}},
		},
	}
}

func main() {
	os.Exit(profiled(func() int { return run(os.Args[1:], os.Stdout, os.Stderr) }))
}

// profiled runs f, writing a CPU profile to $ZHLLAMA_CPUPROFILE and, at the
// end, an allocation profile to $ZHLLAMA_MEMPROFILE when set (for `go tool
// pprof`): where a command's time and memory go, without a rebuild.
func profiled(f func() int) int {
	if path := os.Getenv("ZHLLAMA_MEMPROFILE"); path != "" {
		defer writeHeapProfile(path)
	}
	path := os.Getenv("ZHLLAMA_CPUPROFILE")
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "zhllama: ZHLLAMA_CPUPROFILE: %v\n", err)
		return 1
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintf(os.Stderr, "zhllama: ZHLLAMA_CPUPROFILE: %v\n", err)
		return 1
	}
	defer pprof.StopCPUProfile()
	return f()
}

// writeHeapProfile writes the allocations made so far (`go tool pprof
// -sample_index=alloc_space` shows what a run allocated in all).
func writeHeapProfile(path string) {
	runtime.GC() // the profile counts allocations up to the last collection
	out, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(out, 0)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "zhllama: ZHLLAMA_MEMPROFILE: %v\n", err)
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	root := commands()
	if len(args) > 0 && args[0] == "help" {
		c, path := find(root, args[1:])
		printHelp(stdout, c, path)
		return 0
	}
	c, path := find(root, args)
	rest := args[len(path)-1:]
	if c.run == nil {
		if len(rest) > 0 && !isHelp(rest[0]) {
			fmt.Fprintf(stderr, "zhllama: unknown command %q\n\n", strings.Join(append(path[1:], rest[0]), " "))
			printHelp(stderr, c, path)
			return 2
		}
		printHelp(stdout, c, path)
		return 0
	}
	if err := c.run(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "zhllama %s: %v\n", strings.Join(path[1:], " "), err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "run 'zhllama help %s' for usage\n", strings.Join(path[1:], " "))
			return 2
		}
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" }

// find walks the command table along args and returns the deepest command
// and its path of names.
func find(root *command, args []string) (*command, []string) {
	c, path := root, []string{root.name}
	for _, a := range args {
		var next *command
		for _, s := range c.sub {
			if s.name == a {
				next = s
			}
		}
		if next == nil {
			break
		}
		c, path = next, append(path, a)
	}
	return c, path
}

func printHelp(w io.Writer, c *command, path []string) {
	name := strings.Join(path, " ")
	if c.run != nil {
		fmt.Fprintf(w, "usage: %s %s\n\n%s\n", name, c.usage, c.summary)
		if c.help != "" {
			fmt.Fprintf(w, "\n%s", c.help)
		}
		return
	}
	fmt.Fprintf(w, "%s: %s\n\nusage: %s <command> [arguments]\n\ncommands:\n", name, c.summary, name)
	for _, s := range c.sub {
		fmt.Fprintf(w, "  %-10s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\nrun '%s <command> --help' for details\n", name)
}

// flagSet returns a flag set that reports errors instead of exiting and
// prints the command's help on -h.
func flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args of a command that takes flags only; on --help it
// prints the flags and returns flag.ErrHelp. Any other argument is a usage
// error: a value with spaces that was not quoted would otherwise end the
// flags there and drop every later one.
func parseFlags(fs *flag.FlagSet, args []string, usage string) error {
	_, err := parseArgs(fs, args, usage, 0, 0)
	return err
}

// parseArgs parses flags and between min and max positional arguments
// (max < 0: any number), which may stand anywhere among the flags;
// everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string, usage string, min, max int) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Printf("usage: zhllama %s %s\n\nflags:\n", fs.Name(), usage)
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return nil, err
		}
		if err != nil {
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case max >= 0 && len(pos) > max && max == 0:
		return nil, usagef("unexpected argument %q: every value belongs to a flag, and a value with spaces needs quotes (--prompt \"你好 世界\")", pos[0])
	case max >= 0 && len(pos) > max:
		return nil, usagef("unexpected argument %q: usage: zhllama %s %s", pos[max], fs.Name(), usage)
	case len(pos) < min:
		return nil, usagef("missing argument: usage: zhllama %s %s", fs.Name(), usage)
	}
	return pos, nil
}

// refuseOverwrite is a usage error when a command would write over one of
// its inputs: out itself (a file, or a directory given as an input) or the
// files it writes in out. The input would be lost, or replaced while it is
// still read.
func refuseOverwrite(outFlag, out string, writes []string, inputs ...string) error {
	targets := []string{out}
	for _, w := range writes {
		targets = append(targets, filepath.Join(out, w))
	}
	for _, in := range inputs {
		for _, t := range targets {
			if in != "" && samePath(t, in) {
				return usagef("%s %s would write over the input %s: write the result elsewhere", outFlag, out, in)
			}
		}
	}
	return nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// samePath reports whether a and b name the same file: the same file on
// disk when both exist, else the same absolute path.
func samePath(a, b string) bool {
	sa, ea := os.Stat(a)
	sb, eb := os.Stat(b)
	if ea == nil && eb == nil {
		return os.SameFile(sa, sb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
