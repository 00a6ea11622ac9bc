package pgtest

import (
	"context"
	"fmt"

	"github.com/pgforce/pgforce/internal/pgcluster"
)

// envHint is added to every error about a missing server, because a test run
// has one more way out than a demo: pointing at an existing server.
const envHint = " (or set " + EnvDatabaseURL + " to a server the tests may create databases on)"

// Options tunes a cluster started by Start.
type Options struct {
	// Settings are extra postgresql.conf settings; they override the
	// defaults (fsync=off, wal_level=logical, ...).
	Settings map[string]string
}

// Cluster is a running throwaway Postgres server listening only on a unix
// socket inside its own temporary directory. The server itself is started
// by internal/pgcluster, which `pgforce demo` shares.
type Cluster = pgcluster.Cluster

// DefaultSettings are the settings of a test cluster: durable-enough for
// tests, fast, and ready for logical replication (the worker streams the
// outbox through a publication).
func DefaultSettings() map[string]string { return pgcluster.DefaultSettings() }

// Bindir returns the directory holding initdb and postgres: `pg_config
// --bindir` when pg_config is installed, else Debian's default location.
func Bindir() (string, error) {
	dir, err := pgcluster.Bindir()
	if err != nil {
		return "", fmt.Errorf("pgtest: %w%s", err, envHint)
	}
	return dir, nil
}

// Start initialises and starts a throwaway cluster. The caller must Stop it.
// The server also receives SIGQUIT when the calling process dies, so a
// crashed test binary does not leave it running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: opts.Settings, TempPrefix: "pgforce-pgtest-"})
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w%s", err, envHint)
	}
	return c, nil
}
