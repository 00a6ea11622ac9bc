package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// A Postgres restart or failover cuts every connection of the worker:
// Salesforce changes made afterwards still reach the table, without a
// restart of the worker.
func TestSalesforceChangesAfterEveryWorkerConnectionWasCutStillArrive(t *testing.T) {
	for _, mode := range []string{"cdc", "poll"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			ids := e.create("Account", map[string]any{"Name": "Before"})
			e.mapSynced("Account", []string{"Name"}, mode)
			e.start()
			e.waitValue("account", ids[0], "name", "Before")
			ctx := context.Background()
			for i := 0; i < 5; i++ {
				_, err := e.db.Conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE pid <> pg_backend_pid() AND datname = current_database()`)
				require.NoError(t, err)
				time.Sleep(100 * time.Millisecond)
			}
			// The test's own pool lost its connections too (the worker's
			// pool is the same one; dead connections are what a restart
			// leaves it).
			e.pool.Reset()
			res, err := e.sf.Update(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Id": ids[0], "Name": "After"})})
			require.NoError(t, err)
			require.NoError(t, res[0].Err())
			e.waitValue("account", ids[0], "name", "After")
		})
	}
}
