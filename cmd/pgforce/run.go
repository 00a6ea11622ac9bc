package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/pgforce/pgforce/worker"
	"github.com/pgforce/pgforce/worker/config"
)

func init() {
	register(command{
		name:    "run",
		summary: "run the sync worker (settings from DATABASE_URL, SALESFORCE_*, PGFORCE_*)",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			fs := newFlagSet("run", stderr)
			fs.Usage = func() { fmt.Fprint(stderr, "Usage: pgforce run\n\n", config.Help) }
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			cfg, err := config.Load(ctx)
			if err != nil {
				return err
			}
			level, err := cfg.Level()
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
			// SIGTERM cancels ctx; Run then finishes the batches in flight,
			// stores positions and returns nil, so the exit code is 0.
			return worker.Run(ctx, cfg, log)
		},
	})
}
