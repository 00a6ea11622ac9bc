package outbound_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// hookedUpdate is the real client, with a hook run around the next
// Collections update: before it reaches Salesforce, or after Salesforce
// committed it but before the worker has its answer.
type hookedUpdate struct {
	*salesforce.Client
	before, after atomic.Pointer[func()]
}

func (h *hookedUpdate) Update(ctx context.Context, recs []salesforce.Record) ([]salesforce.SaveResult, error) {
	if f := h.before.Swap(nil); f != nil {
		(*f)()
	}
	res, err := h.Client.Update(ctx, recs)
	if f := h.after.Swap(nil); f != nil {
		(*f)()
	}
	return res, err
}

// inflightSetup maps Account both ways (CDC in, outbound through h) under
// policy, with one record "Before" synced, and returns its row id and sfid.
func inflightSetup(t *testing.T, policy string) (*bundle, *hookedUpdate, int, string) {
	b := setup(t, setupOptions{})
	b.exec(t, `UPDATE pgforce.mapping SET conflict = $2 WHERE id = $1`, b.accountID, policy)
	b.streamAccountIn(t)
	h := &hookedUpdate{Client: b.sf}
	b.startWithClient(t, h, fastOptions())
	id, sfid := b.insertedAndEchoed(t)
	return b, h, id, sfid
}

// uiEditApplied edits Name in Salesforce as a person would and waits until
// the inbound worker has applied that change event to the row (its
// systemmodstamp reached the edit's).
func (b *bundle) uiEditApplied(t *testing.T, sfid string, id int, name string) {
	require.NoError(t, b.sim.UIEdit(context.Background(), "Account", sfid, map[string]any{"Name": name}))
	stamp, err := salesforce.ParseDateTime(b.sfField(t, "Account", sfid, "SystemModstamp").(string))
	require.NoError(t, err)
	eventually(t, 10*time.Second, "the Salesforce edit applied", func() bool {
		var applied bool
		b.scalar(t, &applied, `SELECT systemmodstamp >= $2 FROM salesforce.account WHERE id = $1`, id, stamp)
		return applied
	})
}

func (b *bundle) bothSides(t *testing.T, id int, sfid string) (pg, sf string) {
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	b.afterEventsSoFar(t)
	time.Sleep(500 * time.Millisecond)
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	b.scalar(t, &pg, `SELECT name FROM salesforce.account WHERE id = $1`, id)
	sf, _ = b.sfField(t, "Account", sfid, "Name").(string)
	return pg, sf
}

// salesforce_wins (and newest_wins, the Salesforce edit being the later
// one): Salesforce's edit of a field lands while the Postgres change of the
// same field is in flight, before it. The write already on its way
// replaces Salesforce's value there, and its echo brought it back into the
// row: Salesforce's edit was lost on both sides. Its value is sent again
// after the write in flight.
func TestASalesforceEditLandingWhileAPostgresWriteOfTheFieldIsInFlightWinsUnderItsPolicy(t *testing.T) {
	for _, policy := range []string{"salesforce_wins", "newest_wins"} {
		t.Run(policy, func(t *testing.T) {
			b, h, id, sfid := inflightSetup(t, policy)
			var rowThen string
			before := func() {
				b.uiEditApplied(t, sfid, id, "From Salesforce")
				b.scalar(t, &rowThen, `SELECT name FROM salesforce.account WHERE id = $1`, id)
			}
			h.before.Store(&before)
			b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres' WHERE id = $1`, id)
			pg, sf := b.bothSides(t, id, sfid)
			t.Logf("row after the Salesforce edit was applied: %q; at the end: Postgres %q, Salesforce %q", rowThen, pg, sf)
			require.Equal(t, "From Salesforce", sf, "Salesforce's later edit wins under %s (Postgres has %q)", policy, pg)
			require.Equal(t, "From Salesforce", pg)
		})
	}
}

// Two Salesforce edits of the field land while the Postgres write is in
// flight: the first took the field out of the entry in flight, and the
// second, finding no entry in flight that carried it, queued nothing, so
// the write in flight had the last word on both sides. The latest edit is
// sent after it.
func TestTwoSalesforceEditsWhileAPostgresWriteIsInFlightBothWinInTurn(t *testing.T) {
	b, h, id, sfid := inflightSetup(t, "salesforce_wins")
	before := func() {
		b.uiEditApplied(t, sfid, id, "From Salesforce 1")
		b.uiEditApplied(t, sfid, id, "From Salesforce 2")
	}
	h.before.Store(&before)
	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres' WHERE id = $1`, id)
	pg, sf := b.bothSides(t, id, sfid)
	require.Equal(t, "From Salesforce 2", sf, "Salesforce's latest edit wins (Postgres has %q)", pg)
	require.Equal(t, "From Salesforce 2", pg)
}

// postgres_wins: Salesforce's edit lands right after the Postgres write of
// the same field, before the worker has recorded that write. The policy
// keeps the Postgres value in the row; nothing sent it again once the
// write in flight was recorded, and the two sides differed for good. It is
// sent again.
func TestPostgresWinsWithItsWriteInFlightLeavesBothSidesHoldingPostgresValue(t *testing.T) {
	b, h, id, sfid := inflightSetup(t, "postgres_wins")
	after := func() { b.uiEditApplied(t, sfid, id, "From Salesforce") }
	h.after.Store(&after)
	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres' WHERE id = $1`, id)
	pg, sf := b.bothSides(t, id, sfid)
	require.Equal(t, "From Postgres", pg)
	require.Equal(t, pg, sf, "postgres_wins: Salesforce should hold the Postgres value too")
}

// manual: the same timing records a conflict. Settled with 'postgres', it
// sent nothing, since the Postgres change was written and its entry
// deleted while the conflict was open: it sends the row's value.
func TestResolvingForPostgresAConflictWhoseWriteWasInFlightSendsTheRowsValue(t *testing.T) {
	b, h, id, sfid := inflightSetup(t, "manual")
	after := func() { b.uiEditApplied(t, sfid, id, "From Salesforce") }
	h.after.Store(&after)
	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres' WHERE id = $1`, id)
	var errID int64
	eventually(t, 10*time.Second, "a conflict", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND error_code = 'CONFLICT' AND state = 'open'`, id).Scan(&errID) == nil
	})
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	b.exec(t, `SELECT pgforce.resolve($1, 'postgres')`, errID)
	pg, sf := b.bothSides(t, id, sfid)
	require.Equal(t, "From Postgres", pg)
	require.Equal(t, pg, sf, "resolved for Postgres: Salesforce should hold the Postgres value")
}

// A row the application deletes is deleted in Salesforce. The next poll
// (queryAll, which reads deleted records) found no row for the record and
// inserted one, flagged isdeleted: the deleted row came back. Neither a
// poll nor a change event brings it back.
func TestAPollDoesNotBringBackARowTheApplicationDeleted(t *testing.T) {
	for _, mode := range []string{"cdc", "poll"} {
		t.Run(mode, func(t *testing.T) {
			b := setup(t, setupOptions{})
			b.syncAccountIn(t, mode)
			b.start(t, fastOptions())
			var id int
			b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Doomed') RETURNING id`)
			sfid := b.waitSfid(t, "account", id)
			eventually(t, 10*time.Second, "synced", func() bool { return b.backlog(t) == 0 })
			time.Sleep(time.Second)
			b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, id)
			eventually(t, 10*time.Second, "deleted in Salesforce", func() bool { return len(b.sfRecords(t, "SELECT Id FROM Account WHERE Id = '"+sfid+"'")) == 0 })
			time.Sleep(2 * time.Second) // several polls
			var rows []string
			b.scalar(t, &rows, `SELECT coalesce(array_agg(id || ' ' || sfid || ' isdeleted=' || isdeleted), '{}') FROM salesforce.account`)
			require.Empty(t, rows, "the application deleted the row")
		})
	}
}
