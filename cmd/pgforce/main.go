// Command pgforce is the single binary of pgforce: it installs the SQL
// control plane, runs the sync worker, and runs the Salesforce simulator.
//
// Each subcommand lives in its own file and registers itself in init, so
// that the files stay independent and `pgforce help` lists exactly the
// commands that exist.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string
	// run receives the arguments after the subcommand name. It must return
	// when ctx is cancelled (SIGINT or SIGTERM).
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("pgforce: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by how the command was called; main prints
// it with a hint instead of as a failure of the work itself.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" {
		// What every other command takes for help, and what people type first.
		name = "help"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "pgforce: unknown command %q\n\n", args[0])
		printHelp(stderr)
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "pgforce %s: %v\nRun 'pgforce %s -h' for its options.\n", c.name, err, c.name)
		return 2
	default:
		fmt.Fprintf(stderr, "pgforce %s: %v\n", c.name, err)
		return 1
	}
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "pgforce keeps Salesforce and Postgres in two-way sync.")
	fmt.Fprintln(w, "\nUsage: pgforce <command> [options]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'pgforce <command> -h' for a command's options.")
}

func init() {
	register(command{
		name:    "help",
		summary: "show this list of commands, or a command's options: pgforce help <command>",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			if len(args) == 0 {
				printHelp(stdout)
				return nil
			}
			// What people type after reading the list: the command's -h.
			c, ok := commands[args[0]]
			if !ok || len(args) > 1 || c.name == "help" {
				return fmt.Errorf("%w: no command %q; 'pgforce help' lists them", errUsage, strings.Join(args, " "))
			}
			return c.run(ctx, []string{"-h"}, stdout, stderr)
		},
	})
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// that dispatch decides the exit code.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pgforce "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns a flag error into errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
