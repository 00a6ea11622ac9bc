package outbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/outbound"
)

// A Postgres restart or failover ends every connection the worker has:
// its pool, the LISTEN and wake-up lock connections, the replication
// stream. Changes made afterwards still reach Salesforce promptly,
// without a restart of the worker (the ones made before it took
// milliseconds).
func TestChangesMadeAfterEveryWorkerConnectionWasCutStillSyncPromptly(t *testing.T) {
	b := setup(t, setupOptions{})
	svc := outbound.New(b.pool, b.sf, testLogger(t), fastOptions())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	eventually(t, 10*time.Second, "streaming", func() bool { return b.feedStatus(t) == "logical_replication" })
	var first int
	b.scalar(t, &first, `INSERT INTO salesforce.account (name) VALUES ('Before') RETURNING id`)
	b.waitSfid(t, "account", first)

	// A restart takes a moment: the worker's reconnections fail too.
	var keep uint32
	b.scalar(t, &keep, `SELECT $1::integer`, int(b.db.Conn.PgConn().PID()))
	for i := 0; i < 5; i++ {
		b.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE pid <> pg_backend_pid() AND pid <> $1 AND (datname = current_database() OR backend_type = 'walsender')`, keep)
		time.Sleep(100 * time.Millisecond)
	}
	// The test's own statements go through the connection it kept.
	conn := b.db.Conn
	var row int
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO salesforce.account (name) VALUES ('After') RETURNING id`).Scan(&row))
	var sfid string
	eventually(t, 10*time.Second, "the insert reaches Salesforce", func() bool {
		var s *string
		require.NoError(t, conn.QueryRow(ctx, `SELECT sfid FROM salesforce.account WHERE id = $1`, row).Scan(&s))
		if s != nil {
			sfid = *s
		}
		return sfid != ""
	})
	started := time.Now()
	_, err := conn.Exec(ctx, `UPDATE salesforce.account SET industry = 'Energy' WHERE id = $1`, row)
	require.NoError(t, err)
	deadline := time.Now().Add(45 * time.Second)
	for b.sfField(t, "Account", sfid, "Industry") != "Energy" {
		require.True(t, time.Now().Before(deadline), "the update never reached Salesforce")
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(started)
	t.Logf("an update made just after the connections were cut reached Salesforce after %s", took)
	require.Less(t, took, 5*time.Second, "the update waited for the safety poll")

	cancel()
	stopped = true
	require.NoError(t, <-done)
	eventually(t, 10*time.Second, "the stopped worker's slot is not in use", func() bool {
		var active bool
		require.NoError(t, conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_replication_slots WHERE database = current_database() AND active)`).Scan(&active))
		return !active
	})
}
