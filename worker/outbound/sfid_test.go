package outbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// A role that may write only the Account table sets a row's sfid to the Id
// of an Opportunity, then deletes or updates the row. Salesforce deletes by
// Id whatever the object, so the worker deleted the Opportunity. Such a
// change is refused as an error of its row instead, and nothing is sent.
func TestAChangeOfARowWhoseSfidNamesAnotherObjectsRecordIsRefused(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	res, err := b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Opportunity",
		map[string]any{"Name": "Big deal", "StageName": "Prospecting", "CloseDate": "2030-01-01"})})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	opp := res[0].ID
	b.syncedAccounts(t, 2, "Acme")

	b.exec(t, fmt.Sprintf(`UPDATE salesforce.account SET sfid = '%s' WHERE name = 'Acme 1'`, opp))
	b.exec(t, `DELETE FROM salesforce.account WHERE name = 'Acme 1'`)
	b.exec(t, fmt.Sprintf(`UPDATE salesforce.account SET sfid = '%s' WHERE name = 'Acme 0'`, opp))
	b.exec(t, `UPDATE salesforce.account SET name = 'Renamed' WHERE name = 'Acme 0'`)
	b.start(t, fastOptions())
	eventually(t, 10*time.Second, "both changes refused", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pgforce.error WHERE error_code = 'INVALID_ID_FIELD' AND sfid = $1 AND state = 'open'`, opp)
		return n == 2 && b.backlog(t) == 0
	})
	require.Len(t, b.sfRecords(t, "SELECT Id FROM Opportunity WHERE Id = '"+opp+"'"), 1, "the Opportunity is still there")
	require.Equal(t, "Big deal", b.sfField(t, "Opportunity", opp, "Name"))
}
