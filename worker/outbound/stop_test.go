package outbound_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/syncbuf"
	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/outbound"
)

// SIGTERM while the API budget holds writes back: nothing is in flight to
// Salesforce, so the worker stops at once (the budget may not free up for
// hours: the daily allocation is a rolling 24 hours), and the changes it
// had claimed are left for the next worker, not held for the claim lease.
func TestAWorkerStopsPromptlyWhileTheAPIBudgetHoldsItsWrites(t *testing.T) {
	b := setup(t, setupOptions{})
	var used atomic.Int64
	used.Store(60_000)
	opts := fastOptions()
	opts.ClaimLease = time.Minute
	opts.Budget = budget.New(func() (int, int) { return int(used.Load()), 100_000 }, 50)
	opts.Budget.SetProbe(nil, 100*time.Millisecond)
	var logs syncbuf.Buffer
	svc := outbound.New(b.pool, b.sf, slog.New(slog.NewTextHandler(&logs, nil)), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { used.Store(0); cancel() })

	var row int
	b.scalar(t, &row, `INSERT INTO salesforce.account (name) VALUES ('Held') RETURNING id`)
	eventually(t, 10*time.Second, "the hold logged", func() bool { return strings.Contains(logs.String(), "writes held") })

	cancel() // SIGTERM
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the worker did not stop within 5s of SIGTERM while its writes were held by the API budget")
	}
	var claimed int
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce.outbox WHERE claimed_at IS NOT NULL`)
	require.Zero(t, claimed, "the stopped worker's claims are handed back")
}

// SIGTERM while a Bulk job runs in Salesforce: a real org may take many
// minutes over a job (it queues them), longer than any stop timeout
// (Kubernetes kills after 30 s). The worker stops at once and leaves the
// job's changes to whoever sees the job end; nothing is lost or sent
// beside the job.
func TestAWorkerStopsPromptlyWhileItsBulkJobRuns(t *testing.T) {
	b := setup(t, setupOptions{bulkDelay: 8 * time.Second})
	const n = 50
	b.syncedAccounts(t, n, "Bulk")
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 20`)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 7`)
	opts := fastOptions()
	opts.BulkBatchSize = 40
	svc := outbound.New(b.pool, b.sf, testLogger(t), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(cancel)
	eventually(t, 10*time.Second, "a bulk job running", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbound_bulk_job`)
		return n > 0
	})
	time.Sleep(200 * time.Millisecond)
	cancel() // SIGTERM
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the worker did not stop within 5s of SIGTERM while its Bulk job ran")
	}
	// Another worker finishes the work once the job has ended.
	b.start(t, opts)
	eventually(t, 60*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
	var notSynced int
	b.scalar(t, &notSynced, `SELECT count(*) FROM salesforce.account WHERE _hc_lastop IS DISTINCT FROM 'SYNCED'`)
	require.Zero(t, notSynced)
	for _, r := range b.sfRecords(t, "SELECT Id, AnnualRevenue FROM Account") {
		v, _ := r.Get("AnnualRevenue")
		require.Contains(t, []string{"7", "7.0", "7.00"}, fmt.Sprint(v), r.ID())
	}
}
