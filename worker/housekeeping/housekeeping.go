// Package housekeeping prunes the history the worker's org has finished
// with: resolved errors and past drift checks older than the org's
// history_retention, and what interrupted drift checks and reloads left
// behind (see sql/127_retention.sql). Left alone, pgforce.error and
// pgforce.drift_check grew for as long as pgforce ran.
package housekeeping

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configures Run.
type Options struct {
	// Org is the pgforce.org whose history is pruned (default "default").
	Org string
	// Interval is how often it is pruned (default 1 hour); the first time
	// is at start.
	Interval time.Duration
	// Batch is how many rows of each kind one transaction deletes at most
	// (default 10,000).
	Batch int
}

// Run prunes opts.Org's history at start and every opts.Interval until ctx
// ends. A failure is logged and tried again at the next interval: history
// kept a little longer harms nothing.
func Run(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, opts Options) error {
	if opts.Org == "" {
		opts.Org = "default"
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Hour
	}
	if opts.Batch <= 0 {
		opts.Batch = 10000
	}
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	for {
		n, err := Prune(ctx, pool, opts.Org, opts.Batch)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("housekeeping: pruning history failed; trying again later", "org", opts.Org, "err", err, "retry_in", opts.Interval)
		case n > 0:
			log.Info("housekeeping: pruned history", "org", opts.Org, "rows", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Prune deletes org's expired history, batch rows of each kind per
// transaction until none is left, and returns how many rows it deleted.
func Prune(ctx context.Context, pool *pgxpool.Pool, org string, batch int) (int64, error) {
	var total int64
	for {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT pgforce.prune_history($1, $2)`, org, batch).Scan(&n); err != nil {
			return total, err
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}
