package outbound_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// Two rows without sfid hold the same upsert_field value (a table pgforce
// made has no unique index on it; the application inserted the row twice)
// while the record with that external id exists in Salesforce. The read
// that finds the record by its external id gives it to both rows at once,
// which the unique index on sfid refuses: outside the merge's isolation of
// bad records, the whole load fails, again on every retry, and the mapping
// never syncs. Before adoption the record was simply a row of its own.
func TestTwoRowsWithTheSameExternalIDDoNotStopTheLoad(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	res, err := b.sf.Create(context.Background(), []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "In Salesforce", "Ext_Id__c": "EXT-1"}),
		salesforce.NewRecord("Account", map[string]any{"Name": "Another"}),
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	b.exec(t, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Twice 1', 'EXT-1'), ('Twice 2', 'EXT-1')`)

	b.exec(t, `UPDATE pgforce.mapping SET inbound = 'poll', state = 'new' WHERE id = $1`, b.accountID)
	b.exec(t, `UPDATE pgforce.mapping SET paused = true WHERE id = $1`, b.contactID)
	b.startInbound(t)
	deadline := time.Now().Add(20 * time.Second)
	var st, detail string
	for time.Now().Before(deadline) {
		b.scalar(t, &st, `SELECT state || '|' || coalesce(state_detail, '') FROM pgforce.mapping WHERE id = $1`, b.accountID)
		if strings.HasPrefix(st, "synced|") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	detail = st
	var other int
	b.scalar(t, &other, `SELECT count(*) FROM salesforce.account WHERE name = 'Another'`)
	require.Equal(t, 1, other, "the load never applied the other record; mapping: %s", detail)
}

// The same two rows, and the record's create event (CDC): the event's
// adoption gives the Id to both rows, the unique index on sfid refuses it,
// and the record is an open inbound error that is never stored.
func TestTwoRowsWithTheSameExternalIDDoNotMakeTheCreateEventAnError(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.streamAccountIn(t)
	b.exec(t, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Twice 1', 'EXT-1'), ('Twice 2', 'EXT-1')`)
	res, err := b.sf.Create(context.Background(), []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "In Salesforce", "Ext_Id__c": "EXT-1"})})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	id := res[0].ID
	eventually(t, 15*time.Second, "the create event handled", func() bool {
		var n int
		b.scalar(t, &n, `SELECT (SELECT count(*) FROM salesforce.account WHERE sfid = $1) + (SELECT count(*) FROM pgforce.error WHERE sfid = $1)`, id)
		return n > 0
	})
	require.Empty(t, b.openErrors(t))
}
