package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// driftCheck is a finished pgforce.drift_check row.
type driftCheck struct {
	records, rows, missing, stale, extra int64
	sample                               map[string][]string
	requestedBy                          string
}

// waitDriftCheck waits until check id has finished and returns it.
func (e *env) waitDriftCheck(id int64) driftCheck {
	e.t.Helper()
	var c driftCheck
	e.eventually(20*time.Second, func() (bool, string) {
		var finished *time.Time
		var errText *string
		err := e.pool.QueryRow(context.Background(), `SELECT finished_at, error, coalesce(salesforce_records, 0), coalesce(table_rows, 0),
			coalesce(missing, 0), coalesce(stale, 0), coalesce(extra, 0), coalesce(sample, '{}'), requested_by
			FROM pgforce.drift_check WHERE id = $1`, id).Scan(&finished, &errText, &c.records, &c.rows, &c.missing, &c.stale, &c.extra, &c.sample, &c.requestedBy)
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
// made.
func TestDriftChecksRunOnTheMappingsSchedule(t *testing.T) {
	e := newEnv(t)
	e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.drift_check`), "the default day has not passed")
	e.exec(`UPDATE pgforce.mapping SET created_at = now() - interval '2 days', drift_check_interval = '1 day' WHERE id = $1`, id)
	var check int64
	e.eventually(10*time.Second, func() (bool, string) {
		err := e.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.drift_check WHERE mapping_id = $1`, id).Scan(&check)
		return err == nil, fmt.Sprint("no scheduled check: ", err)
	})
	c := e.waitDriftCheck(check)
	require.Equal(t, "schedule", c.requestedBy)
	require.Equal(t, int64(1), c.records)
	// Not again until another day has passed.
	time.Sleep(time.Second)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.drift_check WHERE mapping_id = $1`, id))
}
