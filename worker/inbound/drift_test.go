package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// driftCheck is a finished pgforce.drift_check row.
type driftCheck struct {
	records, rows, missing, stale, extra, recent int64
	sample                                       map[string][]string
	requestedBy                                  string
}

// waitDriftCheck waits until check id has finished and returns it.
func (e *env) waitDriftCheck(id int64) driftCheck {
	e.t.Helper()
	var c driftCheck
	e.eventually(20*time.Second, func() (bool, string) {
		var finished *time.Time
		var errText *string
		err := e.pool.QueryRow(context.Background(), `SELECT finished_at, error, coalesce(salesforce_records, 0), coalesce(table_rows, 0),
			coalesce(missing, 0), coalesce(stale, 0), coalesce(extra, 0), coalesce(recent, 0), coalesce(sample, '{}'), requested_by
			FROM pgforce.drift_check WHERE id = $1`, id).Scan(&finished, &errText, &c.records, &c.rows, &c.missing, &c.stale, &c.extra, &c.recent, &c.sample, &c.requestedBy)
		require.NoError(e.t, err)
		require.Nil(e.t, errText, "the check failed")
		return finished != nil, fmt.Sprintf("drift check %d not finished", id)
	})
	return c
}

// A drift check compares the table with Salesforce by Id and
// SystemModstamp: a record without its row, a row older than its record
// and a row whose record is gone are found, counted with a sample of their
// Ids, and read again, which repairs them. A check after that finds nothing.
func TestADriftCheckFindsTheRowsThatDifferFromSalesforceAndRepairsThem(t *testing.T) {
	for _, mode := range []string{"cdc", "poll", "bulk"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			// Records changed within the overlap before a check are left out
			// of it; these were made a moment ago.
			e.opts.Overlap = time.Millisecond
			if mode == "bulk" {
				// The check reads through a Bulk query as well.
				e.opts.BulkThreshold = 2
				mode = "cdc"
			}
			ids := e.create("Account", map[string]any{"Name": "Lost"}, map[string]any{"Name": "Behind"}, map[string]any{"Name": "Fine"})
			id := e.mapSynced("Account", []string{"Name"}, mode)
			const gone = "001R0000009ZZZZIAA"
			// Drift, made the way only the worker's role could: a row deleted
			// by hand, one set back, one for a record that does not exist.
			e.exec(`BEGIN; SET LOCAL pgforce.origin = 'salesforce';
				DELETE FROM salesforce.account WHERE name = 'Lost';
				UPDATE salesforce.account SET name = 'Old', systemmodstamp = systemmodstamp - interval '1 hour' WHERE name = 'Behind';
				INSERT INTO salesforce.account (sfid, name, systemmodstamp, isdeleted) VALUES ('` + gone + `', 'Ghost', now() - interval '1 hour', false);
				COMMIT`)
			e.sim.ResetCalls()
			var check int64
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift($1::integer)`, id).Scan(&check))
			c := e.waitDriftCheck(check)
			bulkQueries := e.calls("POST /services/data/vXX.X/jobs/query")
			require.Equal(t, driftCheck{records: 3, rows: 3, missing: 1, stale: 1, extra: 1, requestedBy: c.requestedBy,
				sample: map[string][]string{"missing": {ids[0]}, "stale": {ids[1]}, "extra": {gone}}}, c)

			e.waitValue("account", ids[0], "name", "Lost")
			e.waitValue("account", ids[1], "name", "Behind")
			e.waitValue("account", gone, "isdeleted", "true")
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift($1::integer)`, id).Scan(&check))
			c = e.waitDriftCheck(check)
			require.Equal(t, driftCheck{records: 3, rows: 3, requestedBy: c.requestedBy, sample: map[string][]string{}}, c)
			require.Equal(t, 0, e.count(`SELECT drift FROM pgforce.status WHERE mapping_id = $1`, id))
			if e.opts.BulkThreshold == 2 {
				require.Equal(t, int64(1), bulkQueries, "the check read through a Bulk query")
			} else {
				require.Zero(t, bulkQueries)
			}
		})
	}
}

// A mapping's drift_check_interval schedules checks: one is due when that
// long has passed since the last was asked for, or since the mapping was
// made; drift_check_values makes them compare values.
func TestDriftChecksRunOnTheMappingsSchedule(t *testing.T) {
	e := newEnv(t)
	e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.drift_check`), "the default day has not passed")
	e.exec(`UPDATE pgforce.mapping SET created_at = now() - interval '2 days', drift_check_interval = '1 day', drift_check_values = true WHERE id = $1`, id)
	var check int64
	e.eventually(10*time.Second, func() (bool, string) {
		err := e.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.drift_check WHERE mapping_id = $1`, id).Scan(&check)
		return err == nil, fmt.Sprint("no scheduled check: ", err)
	})
	c := e.waitDriftCheck(check)
	require.Equal(t, "schedule", c.requestedBy)
	require.Equal(t, int64(1), c.records)
	require.Equal(t, int64(1), c.recent, "made a moment ago, the record is left out and counted as recent")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.drift_check WHERE id = $1 AND compare_values AND different = 0`, check),
		"drift_check_values: the scheduled check compared values")
	// Not again until another day has passed.
	time.Sleep(time.Second)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.drift_check WHERE mapping_id = $1`, id))
}

// A drift check waits for the load budget; run in the poll loop, it held up
// polling for as long as the budget stayed between the load's share and
// the poll's.
func TestADriftCheckWaitingForTheLoadBudgetHoldsUpNoPoll(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapSynced("Account", []string{"Name"}, "poll")
	// pgforce may use 50% of 100,000: loads stop at 40,000, polls at 45,000.
	e.sim.SetAPIUsage(42000)
	_, err := e.sf.Limits(context.Background())
	require.NoError(t, err)
	// Polling still works at this usage.
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Polled"}))
	e.waitValue("account", ids[0], "name", "Polled")

	e.exec(`SELECT pgforce.check_drift($1::integer)`, id)
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Polled again"}))
	e.waitValue("account", ids[0], "name", "Polled again")
}

// A row with no systemmodstamp (its record created by the worker, its
// change event not read yet) whose record Salesforce does not have is
// extra.
func TestADriftCheckFindsARowWithoutSystemModstampWhoseRecordIsGone(t *testing.T) {
	e := newEnv(t)
	e.opts.Overlap = time.Millisecond
	e.create("Account", map[string]any{"Name": "Fine"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	const gone = "001R0000009ZZZZIAA"
	e.exec(`BEGIN; SET LOCAL pgforce.origin = 'salesforce';
		INSERT INTO salesforce.account (sfid, name, systemmodstamp, isdeleted) VALUES ('` + gone + `', 'Ghost', NULL, false);
		COMMIT`)
	var check int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift($1::integer)`, id).Scan(&check))
	c := e.waitDriftCheck(check)
	require.Equal(t, int64(1), c.extra, "the row of a record Salesforce does not have is extra: %+v", c)
}

// A record whose row the application deleted, the delete queued, is no
// drift: read again, the row came back.
func TestADriftCheckDoesNotBringBackARowTheApplicationDeleted(t *testing.T) {
	e := newEnv(t)
	e.opts.Overlap = time.Millisecond
	ids := e.create("Account", map[string]any{"Name": "Acme"}, map[string]any{"Name": "Keep"})
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	time.Sleep(50 * time.Millisecond)

	// No outbound worker runs here: the delete stays queued.
	e.exec(`DELETE FROM salesforce.account WHERE sfid = $1`, ids[0])
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1 AND op = 'delete'`, id))
	var check int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift($1::integer)`, id).Scan(&check))
	c := e.waitDriftCheck(check)
	time.Sleep(time.Second) // the re-reads it queued
	require.Zero(t, e.count(`SELECT count(*) FROM salesforce.account WHERE sfid = $1 AND NOT isdeleted`, ids[0]),
		"the row the application deleted came back; drift check: %+v", c)
	require.Zero(t, c.missing, "a record whose row's delete is queued is no drift")
}

// A drift check that keeps meeting a passing failure is tried again later;
// returned from the stream's side work, it restarted the stream over and
// over, and change events waited.
func TestAFailingDriftCheckDoesNotStopChangeEvents(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	// The REST query endpoint answers 503 (the check's COUNT() and query use
	// it; the change events do not).
	e.sim.Inject(sim.Fault{Path: "/services/data/v62.0/query", Status: 503})
	e.exec(`SELECT pgforce.check_drift($1::integer)`, id)
	time.Sleep(6 * time.Second)
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Streamed"}))
	e.eventually(2*time.Second, func() (bool, string) {
		v := e.value("account", ids[0], "name")
		return v == "Streamed", "name is " + v
	})
}

// A drift check asked for with compare_values also reads every mapped
// field and finds rows whose values differ from their record's under an
// equal SystemModstamp (a row edited with capture switched off, a formula
// whose inputs changed elsewhere), which a stamp comparison cannot see;
// it reads them again. Values the merge would store alike (an Amount of
// 1000 in a numeric(18,2) column, dates, booleans, nulls) are no drift,
// and neither is a row whose own change is queued for Salesforce.
func TestADriftCheckComparingValuesFindsRowsEditedUnderAnEqualSystemModstamp(t *testing.T) {
	for _, mode := range []string{"rest", "bulk"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.opts.Overlap = time.Millisecond
			if mode == "bulk" {
				e.opts.BulkThreshold = 2
			}
			ids := e.create("Opportunity",
				map[string]any{"Name": "Edited", "StageName": "Prospecting", "CloseDate": "2026-12-01", "Amount": 1000, "Probability": 10},
				map[string]any{"Name": "Queued", "StageName": "Prospecting", "CloseDate": "2026-12-01"},
				map[string]any{"Name": "Fine", "StageName": "Closed Won", "CloseDate": "2026-01-31", "Amount": 12.5})
			fields := []string{"Name", "StageName", "CloseDate", "Amount", "Probability", "IsWon", "Description"}
			id := e.mapping("Opportunity", fields, "cdc")
			e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
			e.start()
			e.waitState(id, "synced")
			time.Sleep(50 * time.Millisecond)

			// Edited the way only the worker's role could, leaving the stamp.
			e.exec(`BEGIN; SET LOCAL pgforce.origin = 'salesforce';
				UPDATE salesforce.opportunity SET amount = 999, name = 'Changed by hand' WHERE sfid = '` + ids[0] + `';
				COMMIT`)
			// No outbound worker runs here: this change stays queued.
			e.exec(`UPDATE salesforce.opportunity SET name = 'Mine' WHERE sfid = $1`, ids[1])

			var check int64
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift($1::integer)`, id).Scan(&check))
			c := e.waitDriftCheck(check)
			require.Equal(t, driftCheck{records: 3, rows: 3, requestedBy: c.requestedBy, sample: map[string][]string{}}, c,
				"a check of Ids and stamps sees no difference")
			var different *int64
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT different FROM pgforce.drift_check WHERE id = $1`, check).Scan(&different))
			require.Nil(t, different, "values were not compared")

			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift('Opportunity', compare_values => true)`).Scan(&check))
			c = e.waitDriftCheck(check)
			require.Equal(t, driftCheck{records: 3, rows: 3, requestedBy: c.requestedBy, sample: map[string][]string{"different": {ids[0]}}}, c)
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT different FROM pgforce.drift_check WHERE id = $1`, check).Scan(&different))
			require.Equal(t, int64(1), *different)
			require.Equal(t, 1, e.count(`SELECT drift FROM pgforce.status WHERE mapping_id = $1`, id))

			e.waitValue("opportunity", ids[0], "name", "Edited")
			e.waitValue("opportunity", ids[0], "amount", "1000.00")
			require.Equal(t, "Mine", e.value("opportunity", ids[1], "name"), "the queued change is kept")
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift($1::integer, true)`, id).Scan(&check))
			c = e.waitDriftCheck(check)
			require.Equal(t, driftCheck{records: 3, rows: 3, requestedBy: c.requestedBy, sample: map[string][]string{}}, c)
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT different FROM pgforce.drift_check WHERE id = $1`, check).Scan(&different))
			require.Equal(t, int64(0), *different)
			if mode == "bulk" {
				require.NotZero(t, e.calls("POST /services/data/vXX.X/jobs/query"), "the checks read through Bulk queries")
			}
		})
	}
}
