package outbound_test

import (
	"testing"
	"time"
)

// A Contact whose insert Salesforce refused has no record there: nothing
// of it can go with its old Account. The application moves it to another
// Account (the update waits behind the failed insert, for the user to fix
// it) and deletes the Account it left. The delete must reach Salesforce:
// held back for the Contact's move, which cannot be sent while its insert
// has failed, it waited as long as that error stayed open, the row gone
// from Postgres, the Account alive in Salesforce, and nothing anywhere to
// say why.
func TestAnAccountDeleteIsNotHeldForAContactThatHasNoRecordInSalesforce(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	var a1, a2, con int
	b.scalar(t, &a1, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Old', 'old') RETURNING id`)
	b.scalar(t, &a2, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('New', 'new') RETURNING id`)
	oldID, newID := b.waitSfid(t, "account", a1), b.waitSfid(t, "account", a2)

	// Refused: LastName is required.
	b.scalar(t, &con, `INSERT INTO salesforce.contact (email, accountid) VALUES ('x@example.com', $1) RETURNING id`, oldID)
	eventually(t, 15*time.Second, "the contact's insert failed", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pgforce.error WHERE mapping_id = $1 AND record_id = $2 AND state = 'open'`, b.contactID, con)
		return n == 1
	})

	b.exec(t, `BEGIN; UPDATE salesforce.contact SET accountid = '`+newID+`' WHERE id = `+itoa(con)+`;
		DELETE FROM salesforce.account WHERE id = `+itoa(a1)+`; COMMIT`)
	eventually(t, 15*time.Second, "the old account deleted in Salesforce", func() bool {
		return len(b.sfRecords(t, "SELECT Id FROM Account WHERE Id = '"+oldID+"'")) == 0
	})
}
