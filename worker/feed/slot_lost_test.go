package feed_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/worker/feed"
)

// An operator who bounds the WAL a replication slot may hold back
// (max_slot_wal_keep_size, the usual guard against a worker stopped for a
// day filling the disk) gets the slot invalidated when the worker stays
// away longer than that. The slot still exists (wal_status = 'lost') but
// can no longer stream. The outbox is the queue, not the slot, so a worker
// that starts again loses nothing by making its slot anew: it must stream
// again rather than stay in notify+poll mode for ever (which also makes
// every capturing transaction notify, and commit one at a time).
func TestFeedStreamsAgainAfterItsSlotWasInvalidatedWhileTheWorkerWasStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := pgtest.NewDB(t)
	conn := db.Conn
	_, err := conn.Exec(ctx, `ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SELECT pg_reload_conf()`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), `ALTER SYSTEM RESET max_slot_wal_keep_size`)
		_, _ = conn.Exec(context.Background(), `SELECT pg_reload_conf()`)
	})

	// The slot a worker left when it was stopped.
	slot := feed.SlotName(db.Name)
	_, err = conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	require.NoError(t, err)

	// A day of other writes while no worker runs.
	require.Eventually(t, func() bool {
		_, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS filler (g int, pad text);
			INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
			SELECT pg_switch_wal();`)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, `CHECKPOINT`)
		require.NoError(t, err)
		var status string
		require.NoError(t, conn.QueryRow(ctx, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&status))
		return status == "lost"
	}, 60*time.Second, 10*time.Millisecond, "the slot is invalidated")

	cfg, err := pgx.ParseConfig(db.ConnString)
	require.NoError(t, err)
	f := feed.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), feed.Options{RetryStream: 500 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		return mode == feed.ModeLogicalReplication
	}, 15*time.Second, 50*time.Millisecond, "the feed streams again from a slot made anew")
	mode, detail := f.Mode()
	t.Logf("mode %s: %s", mode, detail)
	cancel()
	require.NoError(t, <-done)
}
