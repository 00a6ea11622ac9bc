package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pgforce/pgforce/internal/demo"
	"github.com/pgforce/pgforce/sim"
)

func init() {
	register(command{
		name:    "demo",
		summary: "run Postgres, a seeded simulated org and the worker together, with a live status view",
		run:     runDemo,
	})
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	cfg := demo.Config{}
	fs.IntVar(&cfg.Accounts, "accounts", 5000, "Accounts in the demo org")
	fs.IntVar(&cfg.Contacts, "contacts", 15000, "Contacts, linked to the Accounts")
	fs.IntVar(&cfg.Opportunities, "opportunities", 2000, "Opportunities, linked to the Accounts")
	fs.StringVar(&cfg.SimListen, "sim-listen", "127.0.0.1:8642", "address of the simulated org (port 0 picks a free port)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", "127.0.0.1:9187", "address of the worker's /healthz and /metrics")
	fs.DurationVar(&cfg.For, "for", 0, "stop after the live view has run this long (default: until Ctrl-C)")
	fs.DurationVar(&cfg.Refresh, "refresh", 0, "how often the progress and status views refresh (default 500ms)")
	plain := fs.Bool("plain", false, "print plain lines instead of redrawing (the default when stdout is not a terminal)")
	fs.StringVar(&cfg.Only, "only", "", "run one part, for separate services (docker/compose.yaml): "+
		"'sim' serves the seeded demo org; 'mappings' creates the mappings in DATABASE_URL against the org in SALESFORCE_* and watches them")
	fs.StringVar(&cfg.SimURL, "sim-url", "", "with --only sim: the URL clients reach the simulator at, if not its listen address")
	fs.StringVar(&cfg.PublicSimURL, "public-sim-url", "", "the simulator URL to print in the instructions, if users reach it at another address")
	fs.StringVar(&cfg.PsqlCommand, "psql-command", "", "the command to print for connecting with psql, if not psql \"$DATABASE_URL\"")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: pgforce demo [options]\n\n"+
			"Starts a throwaway Postgres 15, a simulated org seeded with demo data, and the worker, creates the\n"+
			"mappings and shows their status live; Ctrl-C stops everything and removes the data. With\n"+
			"DATABASE_URL set it uses that server instead, in a database of its own that it drops on exit.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Accounts < 0 || cfg.Contacts < 0 || cfg.Opportunities < 0 {
		return fmt.Errorf("%w: sizes must not be negative", errUsage)
	}
	if cfg.Accounts == 0 && cfg.Contacts+cfg.Opportunities > 0 {
		return fmt.Errorf("%w: Contacts and Opportunities need at least one Account (--accounts)", errUsage)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the pgforce binary to run the worker from: %w", err)
	}
	cfg.WorkerExe = exe
	cfg.DatabaseURL = os.Getenv("DATABASE_URL")
	cfg.Org = demo.Login{
		URL:          os.Getenv("SALESFORCE_LOGIN_URL"),
		ClientID:     demoEnvOr("SALESFORCE_CLIENT_ID", sim.DefaultClientID),
		ClientSecret: demoEnvOr("SALESFORCE_CLIENT_SECRET", sim.DefaultClientSecret),
		Username:     demoEnvOr("SALESFORCE_USERNAME", sim.DefaultUsername),
		Password:     demoEnvOr("SALESFORCE_PASSWORD", sim.DefaultPassword),
	}
	if cfg.Only == demo.OnlyMappings && cfg.Org.URL == "" {
		return fmt.Errorf("%w: --only mappings needs SALESFORCE_LOGIN_URL, the simulator's URL", errUsage)
	}
	cfg.Out = stdout
	cfg.Redraw = !*plain && isTerminal(stdout)
	return demo.Run(ctx, cfg)
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func demoEnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
