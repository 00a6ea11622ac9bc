package outbound_test

// Values reach Salesforce exactly as Postgres holds them, on every path,
// through the simulator.

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

var rvSchema = &sim.Schema{Objects: []sim.ObjectDef{{
	Name: "Gadget__c",
	Fields: []sim.FieldDef{
		{Name: "Price__c", Type: "currency", Precision: 18, Scale: 2},
		{Name: "Ratio__c", Type: "percent", Precision: 5, Scale: 3},
		{Name: "Count__c", Type: "double", Precision: 18, Scale: 0},
		{Name: "Qty__c", Type: "int", Precision: 10},
		{Name: "When__c", Type: "datetime"},
		{Name: "Day__c", Type: "date"},
		{Name: "At__c", Type: "time"},
		{Name: "Flag__c", Type: "boolean"},
		{Name: "Tags__c", Type: "multipicklist", PicklistValues: []string{"red", "green", "blue"}},
		{Name: "Code__c", Type: "string", Length: 10},
		{Name: "Note__c", Type: "textarea", Length: 32000},
	},
}}}

var rvFields = []string{"Name", "Price__c", "Ratio__c", "Count__c", "Qty__c", "When__c", "Day__c", "At__c", "Flag__c", "Tags__c", "Code__c", "Note__c"}

type rvBundle struct {
	bundle
	gadgetID int
}

// rvSetup starts the simulator with Gadget__c, maps it read_write and has
// the real inbound worker describe and load it (CDC), then starts the
// outbound worker. bulkThreshold > 0 sets the mapping's bulk_threshold.
func rvSetup(t *testing.T, bulkThreshold int, inboundMode string) *rvBundle {
	t.Helper()
	ctx := context.Background()
	b := &rvBundle{bundle: *newBundle(t, sim.Config{Schema: rvSchema})}
	pool := b.pool
	var bt any
	if bulkThreshold > 0 {
		bt = bulkThreshold
	}
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields, mode, inbound, bulk_threshold)
		VALUES ('Gadget__c', $1, 'read_write', $2, $3) RETURNING id`, rvFields, inboundMode, bt).Scan(&b.gadgetID))
	b.startInbound(t)
	b.waitMappingSynced(t, b.gadgetID)
	return b
}

// get reads one column of the row as text.
func (b *rvBundle) get(t *testing.T, id int, col string) string {
	t.Helper()
	var v *string
	b.scalar(t, &v, fmt.Sprintf(`SELECT %s::text FROM salesforce.gadget__c WHERE id = $1`, col), id)
	if v == nil {
		return "<null>"
	}
	return *v
}

// A datetime written in a session whose time zone had an offset with
// seconds at that date (Europe/Amsterdam before 1937: +00:19:32) is
// captured by to_jsonb as "1930-05-01T12:19:32+00:19:32" and sent as the
// instant it is. A value Salesforce cannot hold (infinity) fails its own
// record, with an error that names it, and the rest is sent.
func TestAnOddDatetimeIsSentAndOneSalesforceCannotHoldFailsOnItsOwn(t *testing.T) {
	b := rvSetup(t, 0, "cdc")
	b.start(t, fastOptions())
	ctx := context.Background()
	conn, err := b.pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SET TimeZone = 'Europe/Amsterdam'`)
	require.NoError(t, err)
	var old, endless, other int
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO salesforce.gadget__c (name, when__c) VALUES ('old', '1930-05-01 12:00:00+00') RETURNING id`).Scan(&old))
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO salesforce.gadget__c (name, when__c) VALUES ('endless', 'infinity') RETURNING id`).Scan(&endless))
	_, err = conn.Exec(ctx, `RESET TimeZone`)
	require.NoError(t, err)
	conn.Release()
	b.scalar(t, &other, `INSERT INTO salesforce.gadget__c (name) VALUES ('other') RETURNING id`)

	b.waitSfid(t, "gadget__c", other)
	oldID := b.waitSfid(t, "gadget__c", old)
	require.Equal(t, "1930-05-01T12:00:00.000+0000", b.sfField(t, "Gadget__c", oldID, "When__c"))
	var msg string
	eventually(t, 10*time.Second, "the error of the infinite datetime", func() bool {
		return b.pool.QueryRow(ctx, `SELECT message FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, endless).Scan(&msg) == nil
	})
	require.Contains(t, msg, "When__c")
	require.Contains(t, msg, "infinity")
	require.Equal(t, "FAILED", b.get(t, endless, "_hc_lastop"))
}

type rvCase struct {
	col, field string
	pg         string // SQL literal
	want       any    // as the REST API returns it
}

var rvCases = []rvCase{
	{"note__c", "Note__c", `E'he said "hi", then\nleft, ok'`, "he said \"hi\", then\nleft, ok"},
	{"name", "Name", `'Zürich ✓ 😀 ''q'''`, "Zürich ✓ 😀 'q'"},
	{"code__c", "Code__c", `'  x  '`, "  x  "},
	{"note__c", "Note__c", `E'a\r\nb'`, "a\r\nb"},
	{"price__c", "Price__c", `1234567890123456.78`, json.Number("1234567890123456.78")},
	{"price__c", "Price__c", `-0.01`, json.Number("-0.01")},
	{"ratio__c", "Ratio__c", `12.345`, json.Number("12.345")},
	{"qty__c", "Qty__c", `-2147483648`, json.Number("-2147483648")},
	{"when__c", "When__c", `'2024-03-10 01:59:59.123-05:30'`, "2024-03-10T07:29:59.123+0000"},
	{"day__c", "Day__c", `'2024-02-29'`, "2024-02-29"},
	{"at__c", "At__c", `'23:59:59.999'`, "23:59:59.999Z"},
	{"flag__c", "Flag__c", `false`, false},
	{"tags__c", "Tags__c", `'red;blue'`, "red;blue"},
	{"code__c", "Code__c", `NULL`, nil},
	{"code__c", "Code__c", `''`, nil},
	{"code__c", "Code__c", `'#N/A'`, "#N/A"},
}

// rvRoundTrip inserts one row per case with other values set, lets it
// sync, then updates the case's column to the case's value (all rows in
// one statement, so that bulk_threshold can send them in one Bulk job) and
// checks what Salesforce holds.
func rvRoundTrip(t *testing.T, bulk bool) {
	threshold := 0
	if bulk {
		threshold = 2
	}
	b := rvSetup(t, threshold, "cdc")
	opts := fastOptions()
	opts.BulkBatchSize = len(rvCases)
	b.start(t, opts)
	ids := make([]int, len(rvCases))
	for i := range rvCases {
		b.scalar(t, &ids[i], `INSERT INTO salesforce.gadget__c (name, note__c, code__c, price__c, ratio__c, qty__c, when__c, day__c, at__c, flag__c, tags__c)
			VALUES ('row '||$1::int, 'n', 'c', 1, 1, 1, '2020-01-01 00:00:00+00', '2020-01-01', '01:00:00', true, 'green') RETURNING id`, i)
	}
	sfids := make([]string, len(ids))
	for i, id := range ids {
		sfids[i] = b.waitSfid(t, "gadget__c", id)
	}
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	b.sim.ResetCalls()
	var sets []string
	for i, c := range rvCases {
		sets = append(sets, fmt.Sprintf("UPDATE salesforce.gadget__c SET %s = %s WHERE id = %d", c.col, c.pg, ids[i]))
	}
	// One transaction, so the whole backlog is there at the first claim.
	tx, err := b.pool.Begin(context.Background())
	require.NoError(t, err)
	for _, s := range sets {
		_, err := tx.Exec(context.Background(), s)
		require.NoError(t, err, s)
	}
	require.NoError(t, tx.Commit(context.Background()))
	eventually(t, 15*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	var errs []string
	rows, err := b.pool.Query(context.Background(), `SELECT coalesce(error_code,'')||': '||coalesce(message,'') FROM pgforce.error`)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		errs = append(errs, s)
	}
	rows.Close()
	require.Empty(t, errs)
	calls := b.sim.Calls()
	t.Logf("calls: %v", calls)
	if bulk {
		require.NotZero(t, calls["POST /services/data/vXX.X/jobs/ingest"], "the updates went as a Bulk job")
	}
	var bad []string
	for i, c := range rvCases {
		got := b.sfField(t, "Gadget__c", sfids[i], c.field)
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", c.want) {
			bad = append(bad, fmt.Sprintf("%s = %s: Salesforce has %#v, want %#v", c.col, c.pg, got, c.want))
		}
	}
	require.Empty(t, bad)
}

// Each value, updated in Postgres, is what Salesforce then holds, through
// Collections and through a Bulk API 2.0 job.
func TestValuesReachSalesforceExactlyThroughCollections(t *testing.T) { rvRoundTrip(t, false) }
func TestValuesReachSalesforceExactlyThroughBulk(t *testing.T)        { rvRoundTrip(t, true) }
