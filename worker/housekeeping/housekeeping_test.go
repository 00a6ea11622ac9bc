package housekeeping_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/worker/housekeeping"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The worker prunes its org's expired history when it starts and then
// every interval, in batches, until none is left; history of the
// retention period stays.
func TestRunPrunesTheOrgsExpiredHistoryAtStartAndEveryInterval(t *testing.T) {
	db := pgtest.NewDB(t)
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, db.ConnString)
	require.NoError(t, err)
	defer pool.Close()
	var m int
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Account', '{Name}') RETURNING id`).Scan(&m))
	resolved := func(age string, n int) {
		_, err := pool.Exec(ctx, `INSERT INTO pgforce.error (mapping_id, direction, operation, message, state, resolved_at)
			SELECT $1, 'outbound', 'update', 'refused', 'resolved', now() - $2::interval FROM generate_series(1, $3::integer)`, m, age, n)
		require.NoError(t, err)
	}
	count := func() int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pgforce.error`).Scan(&n))
		return n
	}
	resolved("40 days", 25)
	resolved("1 day", 3)

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- housekeeping.Run(runCtx, pool, slog.New(slog.NewTextHandler(io.Discard, nil)),
			housekeeping.Options{Interval: 200 * time.Millisecond, Batch: 10})
	}()
	require.Eventually(t, func() bool { return count() == 3 }, 5*time.Second, 20*time.Millisecond, "pruned at start, 10 at a time")

	resolved("35 days", 4)
	require.Eventually(t, func() bool { return count() == 3 }, 5*time.Second, 20*time.Millisecond, "pruned again an interval later")
	cancel()
	require.NoError(t, <-done)
}
