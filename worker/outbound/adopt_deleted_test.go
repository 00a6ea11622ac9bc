package outbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// A poll reads deleted records too (queryAll). A record deleted in
// Salesforce that held the external id an application's new row holds is
// not that row's record (an upsert by the field creates a new one; deleted
// records are not matched), yet the poll's adoption by upsert_field gives
// the row the deleted record's Id, and the merge then marks the
// application's new, still unsent row deleted, or under hard_delete
// deletes it.
func TestAPolledDeletedRecordDoesNotAdoptANewRowByItsExternalID(t *testing.T) {
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard_delete %v", hard), func(t *testing.T) {
			b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
			b.exec(t, `UPDATE pgforce.mapping SET hard_delete = $2 WHERE id = $1`, b.accountID, hard)
			ctx := context.Background()
			res, err := b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Old", "Ext_Id__c": "EXT-1"})})
			require.NoError(t, err)
			require.NoError(t, res[0].Err())
			del, err := b.sf.Delete(ctx, []string{res[0].ID})
			require.NoError(t, err)
			require.NoError(t, del[0].Err())
			// The load's watermark, less the poll's overlap, comes before
			// the deletion: the first poll reads the deleted record.
			_, err = b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Live"})})
			require.NoError(t, err)

			var row int
			b.scalar(t, &row, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('New row', 'EXT-1') RETURNING id`)
			b.syncAccountIn(t, "poll")
			_, err = b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Marker"})})
			require.NoError(t, err)
			eventually(t, 15*time.Second, "a poll after the load", func() bool {
				var n int
				b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE name = 'Marker'`)
				return n == 1
			})
			var state string
			b.scalar(t, &state, `SELECT coalesce((SELECT format('sfid %s, isdeleted %s', coalesce(sfid, 'NULL'), isdeleted)
				FROM salesforce.account WHERE id = $1), 'row gone')`, row)
			require.Equal(t, "sfid NULL, isdeleted f", state, "the application's new row, its insert still queued")
		})
	}
}
