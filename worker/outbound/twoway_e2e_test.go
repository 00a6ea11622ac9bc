package outbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/inbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// streamAccountIn has the inbound worker describe, load and stream the
// Account mapping (the Contact one paused) and waits until it is synced;
// with the outbound worker started, Account syncs both ways.
func (b *bundle) streamAccountIn(t *testing.T) {
	t.Helper()
	b.syncAccountIn(t, "cdc")
}

// syncAccountIn runs the real inbound worker for the account mapping only,
// reading changes the way inbound says ('cdc' or 'poll'), and waits until
// the mapping is loaded.
func (b *bundle) syncAccountIn(t *testing.T, inbound string) {
	t.Helper()
	b.exec(t, `UPDATE pgforce.mapping SET inbound = $2, state = 'new' WHERE id = $1`, b.accountID, inbound)
	b.exec(t, `UPDATE pgforce.mapping SET paused = true WHERE id = $1`, b.contactID)
	b.startInbound(t)
	b.waitMappingSynced(t, b.accountID)
}

// waitMappingSynced waits until the inbound worker has described and
// loaded mapping id.
func (b *bundle) waitMappingSynced(t *testing.T, id int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("mapping %d synced", id), func() bool {
		var st string
		b.scalar(t, &st, `SELECT state FROM pgforce.mapping WHERE id = $1`, id)
		return st == "synced"
	})
}

// startInbound runs the real inbound worker (CDC) until the test ends.
func (b *bundle) startInbound(t *testing.T) {
	t.Helper()
	t.Cleanup(b.runInbound(t))
}

// runInbound runs the real inbound worker until the function it returns is
// called, which waits for it to stop.
func (b *bundle) runInbound(t *testing.T) (stop func()) {
	t.Helper()
	return b.runInboundWith(t, b.sf)
}

// runInboundWith runs the inbound service as runInbound does, reaching
// Salesforce through sf.
func (b *bundle) runInboundWith(t *testing.T, sf *salesforce.Client) (stop func()) {
	t.Helper()
	return b.runInboundWithOptions(t, sf, func(*inbound.Options) {})
}

// runInboundWithOptions is runInboundWith with the options edit makes.
func (b *bundle) runInboundWithOptions(t *testing.T, sf *salesforce.Client, edit func(*inbound.Options)) (stop func()) {
	t.Helper()
	bud := budget.New(sf.APIUsage, 50)
	opts := inbound.Options{
		Lease: 2 * time.Second, SafetyInterval: 300 * time.Millisecond, RetryBackoff: 100 * time.Millisecond,
		MaxPollInterval: 300 * time.Millisecond, BatchSize: 500,
	}
	edit(&opts)
	svc, err := inbound.New(b.pool, sf, bud, testLogger(t), opts)
	require.NoError(t, err)
	return runUntilStopped(t, "inbound service", svc.Run)
}

// A Salesforce edit made right after the outbound worker wrote the same
// record (its CDC echo still on the way, or its result not yet recorded)
// reaches Postgres, whatever the timing.
func TestSalesforceEditRightAfterOurWriteOfTheSameRecordReachesPostgres(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	b.streamAccountIn(t)
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('Race 0', 'Energy') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)
	// The CDC echo of the insert often arrives before the Id is written
	// back, and the inbound worker then creates a row for it: that row is
	// merged into the user's row, never left as a duplicate.
	var rows int
	b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account`)
	require.Equal(t, 1, rows, "one row for the one record")

	for i := 1; i <= 12; i++ {
		pg := fmt.Sprintf("Race %d from Postgres", i)
		b.exec(t, `UPDATE salesforce.account SET name = $2 WHERE id = $1`, id, pg)
		eventually(t, 10*time.Second, "Postgres edit in Salesforce", func() bool { return b.sfField(t, "Account", sfid, "Name") == pg })
		time.Sleep(time.Duration(i%4) * 40 * time.Millisecond)
		sf := fmt.Sprintf("Race %d from Salesforce", i)
		field, col := "Name", "name"
		if i%2 == 0 {
			field, col = "Industry", "industry"
			sf = []string{"Banking", "Retail", "Energy", "Chemicals"}[i/2%4]
		}
		require.NoError(t, b.sim.UIEdit(ctx, "Account", sfid, map[string]any{field: sf}))
		eventually(t, 10*time.Second, fmt.Sprintf("round %d: Salesforce edit of %s in Postgres", i, field), func() bool {
			var v string
			b.scalar(t, &v, fmt.Sprintf(`SELECT coalesce(%s, '') FROM salesforce.account WHERE id = $1`, col), id)
			return v == sf
		})
	}
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	var lastop string
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "SYNCED", lastop)
}

// The status a row shows follows its sync, not whoever wrote it last: a
// user's row is PENDING until the outbound worker's write succeeds and
// stays SYNCED when the CDC echo of that write is applied; a row whose
// update failed stays FAILED, with its error, when Salesforce changes
// another field of the record.
func TestRowEndsSyncedAfterOutboundSuccessAndEchoAndFailedRowStaysFailedAfterInboundWrite(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	b.streamAccountIn(t)
	lastop := func(id int) (op, hcErr string) {
		b.scalar(t, &op, `SELECT coalesce(_hc_lastop, '') FROM salesforce.account WHERE id = $1`, id)
		b.scalar(t, &hcErr, `SELECT coalesce(_hc_err, '') FROM salesforce.account WHERE id = $1`, id)
		return op, hcErr
	}

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('Status', 'Energy') RETURNING id`)
	op, _ := lastop(id)
	require.Equal(t, "PENDING", op)
	b.start(t, fastOptions())
	sfid := b.waitSfid(t, "account", id)
	b.exec(t, `UPDATE salesforce.account SET name = 'Status 2' WHERE id = $1`, id)
	eventually(t, 10*time.Second, "update in Salesforce", func() bool { return b.sfField(t, "Account", sfid, "Name") == "Status 2" })
	// The echo of the update carries our own write; once it is applied
	// (systemmodstamp caught up with Salesforce's), the row says SYNCED.
	eventually(t, 10*time.Second, "echo applied and row SYNCED", func() bool {
		var applied bool
		b.scalar(t, &applied, `SELECT systemmodstamp IS NOT NULL FROM salesforce.account WHERE id = $1`, id)
		op, _ := lastop(id)
		return applied && op == "SYNCED" && b.backlog(t) == 0
	})
	time.Sleep(500 * time.Millisecond)
	op, _ = lastop(id)
	require.Equal(t, "SYNCED", op, "the echo leaves a synced row synced")

	// An update Salesforce refuses (a validation rule) fails the row.
	b.exec(t, `UPDATE salesforce.account SET name = 'BAD name' WHERE id = $1`, id)
	eventually(t, 10*time.Second, "row FAILED", func() bool { op, _ := lastop(id); return op == "FAILED" })
	_, hcErr := lastop(id)
	require.NotEmpty(t, hcErr)

	// Salesforce changes another field: the value arrives, the failure stays.
	require.NoError(t, b.sim.UIEdit(ctx, "Account", sfid, map[string]any{"Industry": "Retail"}))
	eventually(t, 10*time.Second, "Salesforce edit in Postgres", func() bool {
		var v string
		b.scalar(t, &v, `SELECT coalesce(industry, '') FROM salesforce.account WHERE id = $1`, id)
		return v == "Retail"
	})
	op, after := lastop(id)
	require.Equal(t, "FAILED", op, "an inbound write does not settle an open error")
	require.Equal(t, hcErr, after)
	var open int
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, id)
	require.Equal(t, 1, open)
}

// A field edited on both sides while the mapping was paused is settled by
// the conflict policy once it is resumed, not by which side got to write
// first: the Postgres change waits until the Salesforce edit, replayed to
// the inbound side (or read by the poll made at once on resume), has been
// through the policy.
func TestAFieldEditedOnBothSidesWhilePausedIsSettledByTheConflictPolicyOnResume(t *testing.T) {
	for _, tc := range []struct{ policy, inbound string }{
		{"salesforce_wins", "cdc"}, {"manual", "cdc"}, {"salesforce_wins", "poll"}, {"manual", "poll"},
	} {
		policy := tc.policy
		t.Run(policy+" "+tc.inbound, func(t *testing.T) {
			b := setup(t, setupOptions{})
			ctx := context.Background()
			b.exec(t, `UPDATE pgforce.mapping SET conflict = $2 WHERE id = $1`, b.accountID, policy)
			b.syncAccountIn(t, tc.inbound)
			b.start(t, fastOptions())
			id, sfid := b.insertedAndEchoed(t)

			b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
			time.Sleep(500 * time.Millisecond) // both sides see the pause
			b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres' WHERE id = $1`, id)
			require.NoError(t, b.sim.UIEdit(ctx, "Account", sfid, map[string]any{"Name": "From Salesforce"}))
			b.exec(t, `SELECT pgforce.resume($1::integer)`, b.accountID)

			if policy == "manual" {
				eventually(t, 10*time.Second, "a conflict to settle", func() bool { return b.openConflicts(t, b.accountID, id) == 1 })
				require.Equal(t, "From Salesforce", b.sfField(t, "Account", sfid, "Name"), "held until it is settled")
				return
			}
			eventually(t, 10*time.Second, "both sides hold Salesforce's edit", func() bool {
				var name string
				b.scalar(t, &name, `SELECT name FROM salesforce.account WHERE id = $1`, id)
				return name == "From Salesforce" && b.backlog(t) == 0
			})
			require.Equal(t, "From Salesforce", b.sfField(t, "Account", sfid, "Name"))
		})
	}
}

// insertedAndEchoed inserts an Account row "Before", waits until the
// worker has created its record and the create's change event has come
// back to the row, and returns the row's id and the record's Id.
func (b *bundle) insertedAndEchoed(t *testing.T) (int, string) {
	t.Helper()
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Before') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)
	eventually(t, 10*time.Second, "the echo applied", func() bool {
		var stamped bool
		b.scalar(t, &stamped, `SELECT systemmodstamp IS NOT NULL FROM salesforce.account WHERE id = $1`, id)
		return stamped && b.backlog(t) == 0
	})
	return id, sfid
}

// openConflicts counts the open conflicts of row id of mapping m.
func (b *bundle) openConflicts(t *testing.T, m, id int) int {
	t.Helper()
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.error WHERE mapping_id = $1 AND record_id = $2 AND error_code = 'CONFLICT' AND state = 'open'`, m, id)
	return n
}

// openErrorsOfRow counts the open errors of the row id of any mapping.
func (b *bundle) openErrorsOfRow(t *testing.T, id int) int {
	t.Helper()
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, id)
	return n
}

// openErrors lists the open errors, for a failure message.

func (b *bundle) openErrors(t *testing.T) []string {
	t.Helper()
	var errs []string
	b.scalar(t, &errs, `SELECT coalesce(array_agg(direction || ' ' || operation || ' ' || coalesce(sfid, '') || ': ' || message ORDER BY id), '{}')
		FROM pgforce.error WHERE state = 'open'`)
	return errs
}

// afterEventsSoFar waits until a change event made now in Salesforce has
// reached Postgres, and with it every event before it.
func (b *bundle) afterEventsSoFar(t *testing.T) {
	t.Helper()
	var sfid string
	b.scalar(t, &sfid, `SELECT sfid FROM salesforce.account WHERE sfid IS NOT NULL ORDER BY id LIMIT 1`)
	require.NoError(t, b.sim.UIEdit(context.Background(), "Account", sfid, map[string]any{"Industry": "Marker"}))
	eventually(t, 10*time.Second, "the marker edit applied", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE sfid = $1 AND industry = 'Marker'`, sfid)
		return n == 1
	})
}

// A table kept from Heroku Connect has a unique index on its external id.
// Inserted without sfid, a row is upserted by that field, and the record's
// create event, often ahead of the Id's write-back, found no row by sfid
// and tried a second row, which the index refused: an open error for a
// change that synced. The event finds the row by the upsert field.
func TestTheCreateEventOfAnUpsertedRowFindsItsRowByTheUpsertField(t *testing.T) {
	for _, lose := range []bool{false, true} {
		t.Run(fmt.Sprintf("answer lost %v", lose), func(t *testing.T) {
			b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
			b.exec(t, `CREATE UNIQUE INDEX hcu_idx_account_ext_id__c ON salesforce.account (ext_id__c)`)
			b.streamAccountIn(t)
			n := 40
			if lose {
				n = 1
				b.sim.Inject(sim.Fault{Method: "PATCH", LoseAnswer: true, Count: 1})
			}
			b.start(t, fastOptions())
			b.exec(t, `INSERT INTO salesforce.account (name, ext_id__c) SELECT 'New ' || i, 'EXT-' || i FROM generate_series(1, $1) i`, n)
			eventually(t, 20*time.Second, "every insert synced", func() bool {
				var synced int
				b.scalar(t, &synced, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL AND _hc_lastop = 'SYNCED'`)
				return synced == n && b.backlog(t) == 0
			})
			b.afterEventsSoFar(t)
			require.Empty(t, b.openErrors(t))
			var rows int
			b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account`)
			require.Equal(t, n, rows)
			require.Len(t, b.sfRecords(t, "SELECT Id FROM Account"), n)
		})
	}
}
