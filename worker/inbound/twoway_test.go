package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

func TestInboundChangeKeepsPendingPostgresEditOfAnotherFieldAndPolicyDecidesSameField(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100", "Industry": "Banking"})
	id := e.mapping("Account", []string{"Name", "Phone", "Industry"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = 'postgres_wins' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")

	// A user edit waits in the outbox (no outbound worker runs here).
	e.exec(`UPDATE salesforce.account SET phone = '555-0199', industry = 'Energy' WHERE sfid = $1`, ids[0])
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Acme Corp", "Industry": "Retail"}))
	e.waitValue("account", ids[0], "name", "Acme Corp")
	require.Equal(t, "555-0199", e.value("account", ids[0], "phone"), "the pending Postgres edit of another field survives")
	require.Equal(t, "Energy", e.value("account", ids[0], "industry"), "postgres_wins keeps the Postgres value of a field edited on both sides")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id), "the Postgres change is still queued")
}

// A row is PENDING while a change of it waits for Salesforce. An inbound
// change that leaves a queued change in place keeps it PENDING; one whose
// value wins over the only queued change (salesforce_wins) settles the row,
// which then says SYNCED.
func TestInboundChangeMarksRowSyncedOnlyWhenNothingOfItIsLeftQueued(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100"})
	id := e.mapping("Account", []string{"Name", "Phone"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = 'salesforce_wins' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	ctx := context.Background()

	// No outbound worker runs: the Postgres edit stays queued.
	e.exec(`UPDATE salesforce.account SET name = 'From Postgres' WHERE sfid = $1`, ids[0])
	require.Equal(t, "PENDING", e.value("account", ids[0], "_hc_lastop"))
	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Phone": "555-0199"}))
	e.waitValue("account", ids[0], "phone", "555-0199")
	require.Equal(t, "PENDING", e.value("account", ids[0], "_hc_lastop"), "the name change is still queued")

	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Name": "From Salesforce"}))
	e.waitValue("account", ids[0], "name", "From Salesforce")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id))
	require.Equal(t, "SYNCED", e.value("account", ids[0], "_hc_lastop"), "nothing is left to send")
}

// A poll, like every full-record read (resync, re-read, reload), carries
// every field of a record, not only those Salesforce changed. A field whose
// Salesforce value is still what it was before the Postgres edit (the
// queued change's old value) was not changed in Salesforce: the Postgres
// edit stays in the row and in the outbox, whatever the policy, and is no
// conflict. A field changed on both sides is still the policy's to decide.
func TestAPollThatReadsAWholeRecordKeepsAPostgresEditOfAFieldSalesforceDidNotChange(t *testing.T) {
	for _, tc := range []struct {
		policy   string
		industry string // the field changed on both sides, after the poll
		conflict bool
	}{
		{"salesforce_wins", "Retail", false},
		// The Salesforce edit is the later one.
		{"newest_wins", "Retail", false},
		{"manual", "Energy", true},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100", "Industry": "Banking"})
			id := e.mapping("Account", []string{"Name", "Phone", "Industry"}, "poll")
			e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = $2 WHERE id = $1`, id, tc.policy)
			e.start()
			e.waitState(id, "synced")

			// Two queued changes of phone (no outbound worker runs here), the
			// second also of industry.
			e.exec(`UPDATE salesforce.account SET phone = '555-0150' WHERE sfid = $1`, ids[0])
			e.exec(`UPDATE salesforce.account SET phone = '555-0199', industry = 'Energy' WHERE sfid = $1`, ids[0])
			// Made a minute before the Salesforce edit: SystemModstamp has
			// milliseconds only, and newest_wins must see Salesforce's as later.
			e.exec(`UPDATE pgforce.outbox SET created_at = created_at - interval '1 minute' WHERE mapping_id = $1`, id)
			require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Name": "Acme Corp", "Industry": "Retail"}))
			e.waitValue("account", ids[0], "name", "Acme Corp")

			require.Equal(t, "555-0199", e.value("account", ids[0], "phone"), "Salesforce never changed phone: the Postgres edit stays")
			require.Equal(t, 2, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1 AND new ? 'phone'`, id),
				"both queued changes of phone are still to be sent")
			require.Equal(t, tc.industry, e.value("account", ids[0], "industry"))
			if tc.conflict {
				var fields []string
				require.NoError(t, e.pool.QueryRow(ctx, `SELECT fields FROM pgforce.error WHERE mapping_id = $1 AND error_code = 'CONFLICT'`, id).Scan(&fields))
				require.Equal(t, []string{"industry"}, fields, "only the field changed on both sides is in dispute")
			} else {
				require.Zero(t, e.count(`SELECT count(*) FROM pgforce.error WHERE mapping_id = $1`, id))
				require.Zero(t, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1 AND new ? 'industry'`, id),
					"Salesforce's industry won")
			}
			require.Equal(t, "PENDING", e.value("account", ids[0], "_hc_lastop"))
		})
	}
}

// The first of two queued changes of a field is in flight (claimed by the
// outbound side) and has reached Salesforce, whose result is not recorded
// yet. A poll then reads the value that write sent, which is the old value
// of the change queued after it: Salesforce did not change the field, and
// the later change is kept and sent.
func TestAPollThatReadsTheValueOfAnInFlightPostgresWriteKeepsTheChangeQueuedAfterIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100"})
	id := e.mapping("Account", []string{"Name", "Phone"}, "poll")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = 'salesforce_wins' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")

	e.exec(`UPDATE salesforce.account SET phone = '555-0150' WHERE sfid = $1`, ids[0])
	e.exec(`UPDATE pgforce.outbox SET claimed_at = now(), claimed_by = 'test' WHERE mapping_id = $1`, id)
	e.exec(`UPDATE salesforce.account SET phone = '555-0199' WHERE sfid = $1`, ids[0])
	res, err := e.sf.Update(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Id": ids[0], "Phone": "555-0150"})})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Name": "Acme Corp"}))
	e.waitValue("account", ids[0], "name", "Acme Corp")

	require.Equal(t, "555-0199", e.value("account", ids[0], "phone"))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1 AND claimed_at IS NULL AND new ? 'phone'`, id),
		"the change queued after the write in flight is still to be sent")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.error WHERE mapping_id = $1`, id))
}

// Whether Salesforce changed a field is asked of the values, not of their
// text: a poll reads numbers, datetimes, dates, times and flags as
// Salesforce writes them, which is not how Postgres prints them.
func TestAPollKeepsQueuedPostgresEditsOfNumbersDatesAndFlagsSalesforceDidNotChange(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Gadget__c", gadget(7))
	id := e.mapping("Gadget__c", gadgetFields, "poll")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = 'salesforce_wins' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")

	e.exec(`UPDATE salesforce.gadget__c SET price__c = 1.5, ratio__c = 1.25, count__c = 8, when__c = '2025-01-01 00:00:00+00',
		day__c = '2025-01-02', at__c = '01:02:03', flag__c = true WHERE sfid = $1`, ids[0])
	require.NoError(t, e.sim.UIEdit(context.Background(), "Gadget__c", ids[0], map[string]any{"Code__c": "D7"}))
	e.waitValue("gadget__c", ids[0], "code__c", "D7")

	for col, want := range map[string]string{"price__c": "1.50", "ratio__c": "1.250", "count__c": "8",
		"when__c": "2025-01-01 00:00:00+00", "day__c": "2025-01-02", "at__c": "01:02:03", "flag__c": "true"} {
		require.Equal(t, want, e.value("gadget__c", ids[0], col), col)
	}
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id))
	require.Equal(t, 7, e.count(`SELECT count(*) FROM pgforce.outbox o, jsonb_object_keys(o.new) k WHERE o.mapping_id = $1`, id),
		"every queued field is still to be sent")
}

// A full read of a record older than the row (a newer version was applied
// first) writes nothing, so it must not act on the queued Postgres changes
// either: no change is dropped and no conflict is recorded.
func TestAStaleWholeRecordReadNeitherDropsQueuedChangesNorRecordsConflicts(t *testing.T) {
	for _, policy := range []string{"salesforce_wins", "manual"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100"}, map[string]any{"Name": "Globex"})
			id := e.mapping("Account", []string{"Name", "Phone"}, "poll")
			e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = $2 WHERE id = $1`, id, policy)
			e.start()
			e.waitState(id, "synced")

			// The row holds a version newer than any the poll will read.
			require.NoError(t, pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL pgforce.origin = 'salesforce'`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE salesforce.account SET systemmodstamp = now() + interval '1 hour' WHERE sfid = $1`, ids[0])
				return err
			}))
			e.exec(`UPDATE salesforce.account SET phone = '555-0199' WHERE sfid = $1`, ids[0])
			require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Phone": "555-0142"}))
			// Edited after the first record, the second is read with it or later.
			require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[1], map[string]any{"Name": "Globex Corp"}))
			e.waitValue("account", ids[1], "name", "Globex Corp")

			require.Equal(t, "555-0199", e.value("account", ids[0], "phone"))
			require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id), "the queued change is kept")
			require.Zero(t, e.count(`SELECT count(*) FROM pgforce.error WHERE mapping_id = $1`, id), "no conflict is recorded")
		})
	}
}

// With hard_delete, a record deleted in Salesforce loses its row when a
// resync reads it deleted (queryAll), also when the row has changes queued
// for Salesforce (they find no row to send).
func TestAResyncRemovesTheRowOfADeletedRecordWithQueuedChangesUnderHardDelete(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', hard_delete = true WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	e.stop()
	e.exec(`UPDATE salesforce.account SET name = 'Acme 2' WHERE sfid = $1`, ids[0])

	// The delete reaches the worker only through the resync of a gap
	// overflow: its own event is skipped.
	res, err := e.sf.Delete(context.Background(), ids)
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	evs := e.sim.Events(0, 1<<20)
	e.exec(`UPDATE pgforce.mapping SET cdc_replay_id = $2 WHERE id = $1`, id, fmt.Sprint(evs[len(evs)-1].ReplayID))
	require.NoError(t, e.sim.ForceGap("Account", "GAP_OVERFLOW"))
	e.start()
	e.eventually(10*time.Second, func() (bool, string) {
		n := e.count(`SELECT count(*) FROM salesforce.account`)
		return n == 0, fmt.Sprint(n, " rows left")
	})
}

// Changes captured while a mapping was read_write are still sent after it
// is made read_only; a Salesforce edit of the same field that comes after
// them goes through the conflict policy like any other, and under
// salesforce_wins the queued Postgres change is dropped, not sent over it.
func TestASalesforceEditAfterAMappingIsMadeReadOnlyWinsOverChangesStillQueued(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "A"})
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	e.exec(`UPDATE salesforce.account SET name = 'B' WHERE sfid = $1`, ids[0])
	e.stop()
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_only' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")

	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "C"}))
	e.waitValue("account", ids[0], "name", "C")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id), "B is not sent over C")
}
