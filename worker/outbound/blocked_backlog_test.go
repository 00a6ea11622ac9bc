package outbound_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// modeCounter is a slog handler that counts the feed's switches to
// backlog mode (the slot dropped for a Bulk drain).
type modeCounter struct {
	backlog *atomic.Int64
	mu      *sync.Mutex
}

func (h modeCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h modeCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "outbound feed mode" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "mode" && a.Value.String() == "backlog" {
			h.backlog.Add(1)
		}
		return true
	})
	return nil
}
func (h modeCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h modeCounter) WithGroup(string) slog.Handler      { return h }

// Changes that wait behind an open conflict are not a backlog the worker
// can drain: a claim hands none of them out. Counted as one all the same,
// once there are bulk_threshold of them every drain cycle "starts a Bulk
// drain": it drops the replication slot (and ANALYZEs the outbox), claims
// nothing, and creates the slot again, whose stream then wakes the worker
// for another such cycle, for as long as the record stays blocked (until
// someone resolves it, days maybe). The slot must stay while nothing is
// drained.
func TestChangesBlockedBehindAConflictDoNotChurnTheReplicationSlot(t *testing.T) {
	b := setup(t, setupOptions{})
	// A small threshold stands for the default 10,000 blocked changes.
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 5 WHERE id = $1`, b.accountID)
	row, _ := queuedUpdate(t, b, "manual")
	filter(t, b, row, map[string]any{"name": "From Salesforce"}, time.Now(), false)
	var backlogSwitches atomic.Int64
	b.startWithLog(t, fastOptions(), slog.New(modeCounter{backlog: &backlogSwitches, mu: &sync.Mutex{}}))
	eventually(t, 10*time.Second, "streaming", func() bool { return b.feedStatus(t) == "logical_replication" })

	// The application goes on updating the row: each change waits
	// behind the conflict.
	for i := 0; i < 10; i++ {
		b.exec(t, `UPDATE salesforce.account SET industry = $2 WHERE id = $1`, row, "I"+string(rune('a'+i)))
	}
	var blocked int
	eventually(t, 10*time.Second, "the changes are blocked", func() bool {
		b.scalar(t, &blocked, `SELECT outbound_blocked FROM pgforce.status WHERE mapping_id = $1`, b.accountID)
		return blocked == 11
	})
	time.Sleep(500 * time.Millisecond)

	// Nothing is written to the database from here on.
	before := backlogSwitches.Load()
	time.Sleep(3 * time.Second)
	churn := backlogSwitches.Load() - before
	t.Logf("slot dropped for a 'Bulk drain' %d times in 3s with %d blocked changes and nothing to send", churn, blocked)
	require.Zero(t, churn, "the slot is dropped and created again over and over while nothing can be drained")
}

// The same with a backlog of children that wait for a parent whose
// mapping is paused: each pass claims them (a Bulk claim, from
// bulk_threshold on), defers them and ends, and the next pass is due a
// MinBackoff later. Dropping the slot for that claim and creating it
// again made the new stream wake the worker at once, so the children
// were claimed as fast as the slot could be made, not once a MinBackoff.
func TestABulkBacklogOfChildrenWaitingForAPausedParentIsNotClaimedOverAndOver(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 5 WHERE id = $1`, b.contactID)
	b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
	count := b.countClaims(t, b.contactID)
	var backlogSwitches atomic.Int64
	b.startWithLog(t, fastOptions(), slog.New(modeCounter{backlog: &backlogSwitches, mu: &sync.Mutex{}}))
	eventually(t, 10*time.Second, "streaming", func() bool { return b.feedStatus(t) == "logical_replication" })
	_, con := b.insertParentAndChild(t)
	for i := 0; i < 9; i++ {
		b.exec(t, `INSERT INTO salesforce.contact (lastname, account__r__ext_id__c) VALUES ('Sibling', 'ext-1')`)
	}
	eventually(t, 10*time.Second, "the child claimed", func() bool { return count(con) > 0 })
	time.Sleep(300 * time.Millisecond)
	before, switches := count(con), backlogSwitches.Load()
	time.Sleep(time.Second)
	t.Logf("claims of a waiting child in a second: %d; slot dropped %d times", count(con)-before, backlogSwitches.Load()-switches)
	require.Zero(t, backlogSwitches.Load()-switches, "the slot is dropped and made again for passes that send nothing")
	// One claim a MinBackoff (50 ms here) at most.
	require.Less(t, count(con)-before, 40, "claims of the waiting child in a second")
}
