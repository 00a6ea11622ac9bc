package outbound_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// gatedJobInfo blocks every IngestJobInfo call until open is closed,
// saying so on entered the first time.
type gatedJobInfo struct {
	*salesforce.Client
	entered chan struct{}
	open    chan struct{}
	once    atomic.Bool
}

func (g *gatedJobInfo) IngestJobInfo(ctx context.Context, id string) (*salesforce.JobInfo, error) {
	if g.once.CompareAndSwap(false, true) {
		close(g.entered)
	}
	<-g.open
	return g.Client.IngestJobInfo(ctx, id)
}

// gatedUpdate is noSecondJob whose first Collections update, once armed,
// says so on entered and waits until open is closed; it counts the
// records every update sends once armed.
type gatedUpdate struct {
	noSecondJob
	armed   atomic.Bool
	once    atomic.Bool
	entered chan struct{}
	open    chan struct{}
	sent    atomic.Int32
}

func (g *gatedUpdate) Update(ctx context.Context, recs []salesforce.Record) ([]salesforce.SaveResult, error) {
	if g.armed.Load() {
		g.sent.Add(int32(len(recs)))
		if g.once.CompareAndSwap(false, true) {
			close(g.entered)
			<-g.open
		}
	}
	return g.noSecondJob.Client.Update(ctx, recs)
}

// The entries of a Bulk job in doubt go back once it has ended, once: a
// reclaim that read the job before another released them (the worker's
// own, its heartbeat's, another worker's) released them again, after the
// worker had claimed them anew and while it was sending them, and they
// were sent a second time beside that batch, whose outcome was then not
// recorded.
func TestTheEntriesOfABulkJobInDoubtAreReleasedOnceItEnds(t *testing.T) {
	const n = 40
	b, opts := slowBulkJobOf(t, n, "Twice")
	opts.WorkerID = "w1"
	b.closeInDoubt()
	w1 := &gatedUpdate{noSecondJob: noSecondJob{Client: b.sf, jobs: &atomic.Int32{}}, entered: make(chan struct{}), open: make(chan struct{})}
	b.startWithClient(t, w1, opts)
	eventually(t, 10*time.Second, "the job left in doubt", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbound_bulk_job WHERE orphaned`)
		return n == 1
	})
	w1.armed.Store(true)

	// A second worker (of another org: it sends nothing of this one) whose
	// reclaim reads the orphaned job and then waits for Salesforce.
	w2 := &gatedJobInfo{Client: b.sf, entered: make(chan struct{}), open: make(chan struct{})}
	opts2 := fastOptions()
	opts2.WorkerID, opts2.Org = "w2", "elsewhere"
	b.startWithClient(t, w2, opts2)
	select {
	case <-w2.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("w2 did not look at the job")
	}

	// Meanwhile the job ends; w1's own reclaim hands its entries back, and
	// w1 claims them again and sends them through Collections.
	select {
	case <-w1.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("w1 did not send the batch again")
	}
	var claims []time.Time
	b.scalar(t, &claims, `SELECT array_agg(DISTINCT claimed_at) FROM pgforce.outbox WHERE claimed_by = 'w1'`)
	require.Len(t, claims, 1)
	claimedAt := claims[0]

	close(w2.open) // w2's reclaim goes on with the job it read
	time.Sleep(time.Second)
	var still int
	b.scalar(t, &still, `SELECT count(*) FROM pgforce.outbox WHERE claimed_by = 'w1' AND claimed_at = $1`, claimedAt)
	close(w1.open)
	eventually(t, 15*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	t.Logf("records sent through Collections after the job ended: %d (for %d changes)", w1.sent.Load(), n)
	require.Equal(t, n, still, "the entries of the batch in flight stay claimed by it")
	require.Equal(t, int32(n), w1.sent.Load(), "each change sent once after the job ended")
}
