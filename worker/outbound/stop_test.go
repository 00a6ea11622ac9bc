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
	"github.com/pgforce/pgforce/worker/salesforce"
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

// gatedQuery holds the first SOQL query (the catch-up check that prepares
// a batch, see checkCatchUp) until open is closed, saying so on entered.
type gatedQuery struct {
	*salesforce.Client
	entered, open chan struct{}
	once          atomic.Bool
}

func (g *gatedQuery) Query(ctx context.Context, soql string, fn func(salesforce.Record) error) error {
	if g.once.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.open
	}
	return g.Client.Query(ctx, soql, fn)
}

// runUntilStopped runs a service through sf and returns the SIGTERM of it
// and the channel Run's result comes on.
func (b *bundle) runUntilStopped(t *testing.T, sf outbound.Salesforce, opts outbound.Options) (func(), chan error) {
	t.Helper()
	svc := outbound.New(b.pool, sf, testLogger(t), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(cancel)
	return cancel, done
}

func waitStopped(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the worker did not stop within 15s of SIGTERM")
	}
}

// requireSentOnceBy checks that the stopped worker left the changes queued,
// has a following worker send them, and checks that they went in one job
// of its own (before are the states of the jobs there were already) and
// that every record has them.
func (b *bundle) requireSentOnceBy(t *testing.T, opts outbound.Options, before []string) {
	t.Helper()
	var queued, claimed int
	b.scalar(t, &queued, `SELECT count(*) FROM pgforce.outbox`)
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce.outbox WHERE claimed_at IS NOT NULL`)
	require.NotZero(t, queued, "the changes are still queued")
	require.Zero(t, claimed, "the stopped worker handed its claims back")
	b.start(t, opts)
	eventually(t, 30*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
	require.ElementsMatch(t, append(before, "JobComplete"), b.ingestStates(t), "only the following worker's job ran")
	for id, v := range b.revenues(t) {
		require.Equal(t, "7.00", v, id)
	}
}

// SIGTERM while a batch of a Bulk backlog is being prepared: nothing of it
// has reached Salesforce. The stopping worker opened a job for it all the
// same, which it could only abort at once, and one whose abort did not take
// ran after the next worker had sent the same changes again. It opens no
// job; the batch waits, unsent, for the next worker, which sends it once.
func TestASigtermDuringBulkPreparationOpensNoJob(t *testing.T) {
	const n = 40
	b, opts := slowBulkJobOf(t, n, "Preparing")
	// With an inbound watermark, preparing a batch asks Salesforce what it
	// changed meanwhile: that query is where the batch is held.
	b.exec(t, `UPDATE pgforce.mapping SET inbound_watermark = now() WHERE id = $1`, b.accountID)
	g := &gatedQuery{Client: b.sf, entered: make(chan struct{}), open: make(chan struct{})}
	sigterm, done := b.runUntilStopped(t, g, opts)
	waitFor(t, g.entered, "a batch being prepared")
	sigterm()
	close(g.open)
	waitStopped(t, done)
	require.Empty(t, b.ingestStates(t), "Bulk jobs opened by a worker told to stop")
	b.requireSentOnceBy(t, opts, nil)
}

// gatedUpload holds the first Bulk upload until open is closed, saying so
// on entered, and fails every abort, as Salesforce does for a job that has
// started.
type gatedUpload struct {
	*salesforce.Client
	entered, open chan struct{}
	once          atomic.Bool
}

func (g *gatedUpload) UploadIngestData(ctx context.Context, jobID string, columns []string, write func(*salesforce.CSVWriter) error) error {
	if g.once.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.open
	}
	return g.Client.UploadIngestData(ctx, jobID, columns, write)
}

func (g *gatedUpload) AbortIngestJob(ctx context.Context, jobID string) (*salesforce.JobInfo, error) {
	return nil, &salesforce.APIError{HTTPStatus: 400, ErrorCode: "INVALIDJOBSTATE", Message: "the job cannot be aborted"}
}

// SIGTERM while a Bulk job's data is uploading: the worker closed the job
// and then, not waiting for it, aborted it; an abort that did not take let
// the job run, and the next worker, once it had ended, sent its changes a
// second time. A job that is never closed never runs: the changes wait,
// unsent, for the next worker, which sends them once.
func TestASigtermDuringABulkUploadLeavesTheJobUnclosed(t *testing.T) {
	const n = 40
	b, opts := slowBulkJobOf(t, n, "Uploading")
	g := &gatedUpload{Client: b.sf, entered: make(chan struct{}), open: make(chan struct{})}
	sigterm, done := b.runUntilStopped(t, g, opts)
	waitFor(t, g.entered, "a Bulk upload")
	sigterm()
	close(g.open)
	waitStopped(t, done)
	require.Equal(t, []string{"Open"}, b.ingestStates(t), "the stopping worker's job was closed")
	b.requireSentOnceBy(t, opts, []string{"Open"})
}
