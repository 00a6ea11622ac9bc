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
			log := slog.New(logHandler(stderr, level))
			// SIGTERM cancels ctx; Run then finishes the batches in flight,
			// stores positions and returns nil, so the exit code is 0.
			return worker.Run(ctx, cfg, log)
		},
	})
}

// logHandler writes the worker's log as JSON lines. Durations are written
// as Go prints them ("8s", "250ms"): JSON has no duration, and slog wrote
// them as nanoseconds ("retry_in":8000000000), which nobody reads at a
// glance.
func logHandler(w io.Writer, level slog.Level) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}})
}
