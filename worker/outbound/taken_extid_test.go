package outbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The application inserts a row whose upsert_field value a synced row
// already holds, in another case, which Salesforce matches all the same
// (Heroku Connect's advice is never to reuse one; its unique index refuses
// it). The upsert updates that row's record, and the write-back, finding
// two rows for one record, deleted the older row: one another table names
// by id here, whose foreign key then refused the write-back of every batch,
// the other insert of the statement with it. The older row keeps its
// record instead, and the new one is an error that names it; the other
// insert goes through.
func TestAnInsertReusingAnotherRowsExternalIDFailsAndLeavesThatRowItsRecord(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	var held int
	b.scalar(t, &held, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Established', 'EXT-1') RETURNING id`)
	sfid := b.waitSfid(t, "account", held)
	b.exec(t, `CREATE TABLE public.orders (account_id integer REFERENCES salesforce.account (id))`)
	b.exec(t, `INSERT INTO public.orders VALUES ($1)`, held)

	var dup, fresh int
	b.scalar(t, &dup, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Reused', 'ext-1') RETURNING id`)
	b.scalar(t, &fresh, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Fresh', 'EXT-2') RETURNING id`)
	b.waitSfid(t, "account", fresh)

	var code, message, lastop string
	eventually(t, 10*time.Second, "the reused external id's error", func() bool {
		return b.openErrorsOfRow(t, dup) == 1
	})
	b.scalar(t, &code, `SELECT error_code FROM pgforce.error WHERE record_id = $1`, dup)
	b.scalar(t, &message, `SELECT message FROM pgforce.error WHERE record_id = $1`, dup)
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, dup)
	require.Equal(t, "DUPLICATE_VALUE", code)
	require.Contains(t, message, "Ext_Id__c duplicates value on record with id: "+sfid)
	require.Contains(t, message, "row "+itoa(held)+" of salesforce.account")
	require.Equal(t, "FAILED", lastop)

	var name, heldSfid string
	b.scalar(t, &name, `SELECT name FROM salesforce.account WHERE id = $1`, held)
	b.scalar(t, &heldSfid, `SELECT sfid FROM salesforce.account WHERE id = $1`, held)
	require.Equal(t, "Established", name)
	require.Equal(t, sfid, heldSfid)
	require.Equal(t, "Reused", b.sfField(t, "Account", sfid, "Name"), "the upsert wrote the record, which the older row takes from Salesforce")
	require.Len(t, b.sfRecords(t, `SELECT Id FROM Account WHERE Ext_Id__c = 'EXT-1'`), 1)
	require.Equal(t, 0, b.backlog(t))

	// Given a value of its own, the row goes, and its error is settled.
	b.exec(t, `UPDATE salesforce.account SET ext_id__c = 'EXT-3' WHERE id = $1`, dup)
	own := b.waitSfid(t, "account", dup)
	require.NotEqual(t, sfid, own)
	eventually(t, 10*time.Second, "the error settled", func() bool {
		return b.openErrorsOfRow(t, dup) == 0
	})
}

// The record of the row holding the value was deleted in Salesforce a
// moment ago, and its row does not say so yet: the upsert creates a record
// (a deleted one is not matched), so the insert goes.
func TestAnInsertReusingTheExternalIDOfARecordJustDeletedInSalesforceGoes(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	b.reuseDeletedExternalID(t, "EXT-1")
}

// reuseDeletedExternalID inserts an Account with external id ext, deletes
// its record in Salesforce (its row does not hear of it here), and inserts
// another row with ext, which must get a record of its own: the rows, and
// the old and new records' Ids.
func (b *bundle) reuseDeletedExternalID(t *testing.T, ext string) (first, second int, oldID, newID string) {
	t.Helper()
	b.scalar(t, &first, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('First', $1) RETURNING id`, ext)
	oldID = b.waitSfid(t, "account", first)
	res, err := b.sf.Delete(context.Background(), []string{oldID})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	b.scalar(t, &second, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Second', $1) RETURNING id`, ext)
	newID = b.waitSfid(t, "account", second)
	require.NotEqual(t, oldID, newID)
	return first, second, oldID, newID
}
