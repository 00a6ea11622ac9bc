package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var gadgetFields = []string{"Name", "Price__c", "Ratio__c", "Count__c", "When__c", "Day__c", "At__c", "Flag__c", "Tags__c", "Code__c"}

func gadget(i int) map[string]any {
	return map[string]any{
		"Name":     fmt.Sprintf("Gadget %d", i),
		"Price__c": jsonNumber(fmt.Sprintf("1234567890123456.%02d", i%100)),
		"Ratio__c": jsonNumber("12.345"),
		"Count__c": i,
		"When__c":  "2024-03-10T01:59:59.123Z",
		"Day__c":   "2024-02-29",
		"At__c":    "13:14:15.678Z",
		"Flag__c":  i%2 == 0,
		"Tags__c":  "red;blue",
		"Code__c":  "C" + fmt.Sprint(i),
	}
}

// checkGadget asserts exact conversions of every type.
func (e *env) checkGadget(sfid string, i int) {
	e.t.Helper()
	require.Equal(e.t, fmt.Sprintf("1234567890123456.%02d", i%100), e.value("gadget__c", sfid, "price__c"), "currency keeps all 18 digits")
	require.Equal(e.t, "12.345", e.value("gadget__c", sfid, "ratio__c"))
	require.Equal(e.t, fmt.Sprint(i), e.value("gadget__c", sfid, "count__c"))
	require.Equal(e.t, "2024-03-10 01:59:59.123+00", e.value("gadget__c", sfid, "when__c"))
	require.Equal(e.t, "2024-02-29", e.value("gadget__c", sfid, "day__c"))
	require.Equal(e.t, "13:14:15.678", e.value("gadget__c", sfid, "at__c"))
	require.Equal(e.t, fmt.Sprint(i%2 == 0), e.value("gadget__c", sfid, "flag__c"))
	require.Equal(e.t, "red;blue", e.value("gadget__c", sfid, "tags__c"))
	require.Equal(e.t, "C"+fmt.Sprint(i), e.value("gadget__c", sfid, "code__c"))
}

func (e *env) seedGadgets(n int) string {
	e.t.Helper()
	first, err := e.sim.Seed(context.Background(), "Gadget__c", n, gadget)
	require.NoError(e.t, err)
	return first
}

func TestSmallObjectLoadsThroughRESTWithExactValues(t *testing.T) {
	e := newEnv(t)
	e.opts.BulkThreshold = 1000
	e.seedGadgets(30)
	e.mapSynced("Gadget__c", gadgetFields, "cdc")
	require.Zero(t, e.calls("POST /services/data/vXX.X/jobs/query"), "under the threshold no bulk job is made")
	require.Equal(t, 30, e.count(`SELECT count(*) FROM salesforce.gadget__c`))
	var sfid string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT sfid FROM salesforce.gadget__c WHERE name = 'Gadget 7'`).Scan(&sfid))
	e.checkGadget(sfid, 7)
	var colType string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'salesforce.gadget__c'::regclass AND attname = 'price__c'`).Scan(&colType))
	require.Equal(t, "numeric(18,2)", colType)
}

func TestLargeObjectLoadsThroughBulkWithExactValues(t *testing.T) {
	e := newEnv(t)
	e.opts.BulkThreshold = 1000
	e.opts.BulkPageSize = 700
	e.seedGadgets(2500)
	e.mapSynced("Gadget__c", gadgetFields, "cdc")
	require.Equal(t, int64(1), e.calls("POST /services/data/vXX.X/jobs/query"), "at the threshold the load is one bulk query job")
	require.Equal(t, int64(1), e.calls("GET /services/data/vXX.X/query"), "the only REST query is the COUNT()")
	require.Equal(t, 2500, e.count(`SELECT count(*) FROM salesforce.gadget__c`))
	for _, i := range []int{0, 1, 1234, 2499} {
		var sfid string
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT sfid FROM salesforce.gadget__c WHERE name = $1`, fmt.Sprintf("Gadget %d", i)).Scan(&sfid))
		e.checkGadget(sfid, i)
	}
	// And change events keep the same exact conversions.
	ids := e.create("Gadget__c", gadget(3001))
	e.waitValue("gadget__c", ids[0], "name", "Gadget 3001")
	e.checkGadget(ids[0], 3001)
}

func TestValueThatDoesNotFitBecomesErrorRowAndRestOfBatchAppliesThroughREST(t *testing.T) {
	testValueThatDoesNotFit(t, false)
}

func TestValueThatDoesNotFitBecomesErrorRowAndRestOfBatchAppliesThroughBulk(t *testing.T) {
	testValueThatDoesNotFit(t, true)
}

func testValueThatDoesNotFit(t *testing.T, bulk bool) {
	e := newEnv(t)
	if bulk {
		e.opts.BulkThreshold = 10
		e.opts.BulkPageSize = 15
	}
	for i := 0; i < 40; i++ {
		n := 10
		if i == 17 {
			n = -1 // the user's CHECK below refuses it
		}
		e.create("Account", map[string]any{"Name": fmt.Sprintf("A%d", i), "NumberOfEmployees": n, "Site": "site"})
	}
	id := e.mapping("Account", []string{"Name", "NumberOfEmployees", "Site"}, "cdc")
	// The table exists before the load when the user prepared it; a
	// constraint of theirs is what this load trips over.
	e.start()
	e.waitState(id, "synced")
	e.stop()
	e.exec(`BEGIN; SET LOCAL pgforce.origin = 'salesforce'; DELETE FROM salesforce.account; COMMIT`)
	e.exec(`ALTER TABLE salesforce.account ADD CONSTRAINT positive_staff CHECK (numberofemployees >= 0)`)
	e.exec(`SELECT pgforce.reload($1::integer)`, id)
	e.start()
	e.waitState(id, "synced")
	require.Equal(t, 39, e.count(`SELECT count(*) FROM salesforce.account`), "the other 39 records of the batch applied")
	if bulk {
		require.Equal(t, int64(2), e.calls("POST /services/data/vXX.X/jobs/query"), "both loads went through Bulk")
	}
	var msg, op, sfid string
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT message, operation, sfid FROM pgforce.error WHERE mapping_id = $1 AND direction = 'inbound'`, id).Scan(&msg, &op, &sfid))
	require.Contains(t, msg, "positive_staff")
	require.Equal(t, "load", op)
	require.NotEmpty(t, sfid)

	// A change event with a value too long for its column (narrowed here
	// by hand, past the status trigger that names it) becomes an error row
	// too, and the stream goes on.
	e.exec(`DROP TRIGGER pgforce_status_update ON salesforce.account`)
	e.exec(`ALTER TABLE salesforce.account ALTER COLUMN site TYPE varchar(5)`)
	e.exec(`SELECT pgforce._install_triggers($1)`, id)
	ids := e.create("Account",
		map[string]any{"Name": "Long", "Site": "a site far too long"},
		map[string]any{"Name": "Short", "Site": "ok"})
	e.waitValue("account", ids[1], "site", "ok")
	e.eventually(5*time.Second, func() (bool, string) {
		n := e.count(`SELECT count(*) FROM pgforce.error WHERE mapping_id = $1 AND operation = 'cdc' AND sfid = $2 AND message LIKE '%too long%'`, id, ids[0])
		return n == 1, fmt.Sprintf("%d cdc error rows for %s", n, ids[0])
	})
	require.Equal(t, "<missing>", e.value("account", ids[0], "name"))
	require.Equal(t, 2, e.count(`SELECT open_errors::int FROM pgforce.status WHERE mapping_id = $1`, id), "pgforce.status counts both")
}

func TestBulkLoadIntoAnEmptyTableStampsRowsSyncedCapturesNothingAndLeavesTheTriggersOn(t *testing.T) {
	e := newEnv(t)
	e.opts.BulkThreshold = 1000
	e.opts.BulkPageSize = 700
	e.seedGadgets(2500)
	id := e.mapping("Gadget__c", gadgetFields, "cdc")
	// read_write: capture triggers are on the table too, and the load must
	// queue nothing for Salesforce.
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	require.Equal(t, int64(1), e.calls("POST /services/data/vXX.X/jobs/query"))
	require.Equal(t, 2500, e.count(`SELECT count(*) FROM salesforce.gadget__c WHERE _hc_lastop = 'SYNCED' AND _hc_err IS NULL`))
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id))
	require.Zero(t, e.count(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'salesforce.gadget__c'::regclass
		AND tgname LIKE 'pgforce%' AND tgenabled <> 'O'`), "every pgforce trigger is enabled after the load")
	require.NotZero(t, e.count(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'salesforce.gadget__c'::regclass AND tgname LIKE 'pgforce%'`))

	var indexDef string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT indexdef FROM pg_indexes
		WHERE schemaname = 'salesforce' AND indexname = 'hc_idx_gadget__c_systemmodstamp'`).Scan(&indexDef),
		"the SystemModstamp index left out during the load is there again")
	require.Equal(t, "CREATE INDEX hc_idx_gadget__c_systemmodstamp ON salesforce.gadget__c USING btree (systemmodstamp)", indexDef)

	// The triggers work again: a user edit is PENDING and captured.
	e.exec(`UPDATE salesforce.gadget__c SET code__c = 'EDITED' WHERE name = 'Gadget 42'`)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce.gadget__c WHERE name = 'Gadget 42' AND _hc_lastop = 'PENDING'`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id))
}

func TestLoadBuildsTheSystemModstampIndexAnInterruptedLoadLeftOut(t *testing.T) {
	e := newEnv(t)
	e.opts.BulkThreshold = 1000
	e.opts.BulkPageSize = 700
	e.seedGadgets(1500)
	id := e.mapSynced("Gadget__c", gadgetFields, "cdc")
	e.stop()
	// What a worker that died in the middle of a deferred load leaves: rows,
	// no SystemModstamp index, the mapping still loading.
	e.exec(`DROP INDEX salesforce.hc_idx_gadget__c_systemmodstamp`)
	e.exec(`SELECT pgforce.reload($1::integer)`, id)
	e.start()
	e.waitState(id, "synced")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pg_indexes WHERE schemaname = 'salesforce' AND indexname = 'hc_idx_gadget__c_systemmodstamp'`))
	require.Equal(t, 1500, e.count(`SELECT count(*) FROM salesforce.gadget__c`))
}

// Text with CR LF line breaks (as browsers send a text area) reads the same
// through every path: the first load copies Bulk results straight into the
// table, and a reload merges them through the worker's own CSV reader.
func TestTextWithCRLFLineBreaksReadsTheSameThroughEveryLoadPath(t *testing.T) {
	e := newEnv(t)
	e.opts.BulkThreshold = 1
	ids := e.create("Account", map[string]any{"Name": "a\r\nb"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	require.Equal(t, "a\r\nb", e.value("account", ids[0], "name"), "the first load")

	jobs := e.calls("POST /services/data/vXX.X/jobs/query")
	// Changed here (as the worker, read_only refuses others), so the reload
	// shows what it read.
	e.exec(`BEGIN; SET LOCAL pgforce.origin = 'salesforce'; UPDATE salesforce.account SET name = 'changed' WHERE sfid = '` + ids[0] + `'; COMMIT`)
	e.exec(`SELECT pgforce.reload($1::integer)`, id)
	e.eventually(15*time.Second, func() (bool, string) {
		st, _ := e.state(id)
		return st == "synced" && e.calls("POST /services/data/vXX.X/jobs/query") > jobs, "state " + st
	})
	e.waitValue("account", ids[0], "name", "a\r\nb")
}
