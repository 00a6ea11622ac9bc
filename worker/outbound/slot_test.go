package outbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	pgforcesql "github.com/pgforce/pgforce/sql"
)

// Slot names are global to the server. Org x's worker on database <db>
// took pgforce_<db>_x, which is also the default slot of a database named
// <db>_x on the same server (app and org staging against app_staging):
// the second of the two workers to start polled. Both stream.
func TestTheSlotsOfAnOrgAndOfAnotherDatabaseDoNotCollide(t *testing.T) {
	b := setup(t, setupOptions{})
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('x', 'x_sf')`)

	// A second pgforce database on the same server, named <db>_x.
	ctx := context.Background()
	other := b.db.Name + "_x"
	admin, err := pgx.Connect(ctx, pgtest.AdminConnString(t))
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{other}.Sanitize())
	require.NoError(t, err)
	cfg, err := pgxpool.ParseConfig(b.db.ConnString)
	require.NoError(t, err)
	cfg.ConnConfig.Database = other
	pool2, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		pool2.Close()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			_, _ = admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, other)
			if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{other}.Sanitize()+" WITH (FORCE)"); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	conn2, err := pool2.Acquire(ctx)
	require.NoError(t, err)
	_, _, err = pgforcesql.Install(ctx, conn2.Conn())
	require.NoError(t, err)
	conn2.Release()

	// The default org's worker of <db>_x, then org x's worker of <db>.
	opts := fastOptions()
	opts.WorkerID = "db2-default"
	b.startWith(t, pool2, opts)
	eventually(t, 10*time.Second, "<db>_x's worker streaming", func() bool {
		var mode string
		_ = pool2.QueryRow(ctx, `SELECT feed_mode FROM pgforce.outbound_worker`).Scan(&mode)
		return mode == "logical_replication"
	})
	opts = fastOptions()
	opts.Org = "x"
	opts.WorkerID = "db1-x"
	b.start(t, opts)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var mode, detail string
		_ = b.pool.QueryRow(ctx, `SELECT feed_mode, coalesce(feed_detail, '') FROM pgforce.outbound_worker WHERE worker = 'db1-x'`).Scan(&mode, &detail)
		if mode == "logical_replication" {
			return
		}
		if time.Now().After(deadline) {
			var slots []string
			require.NoError(t, admin.QueryRow(ctx, `SELECT array_agg(slot_name || ' (database ' || database || ')') FROM pg_replication_slots`).Scan(&slots))
			t.Fatalf("org x's worker of %s does not stream: %s (%s); slots: %v", b.db.Name, mode, detail, slots)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
