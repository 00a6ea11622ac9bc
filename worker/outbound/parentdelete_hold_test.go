package outbound_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	var con int
	a1, oldID, newID := b.oldAndNewAccounts(t)

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

// A Contact moves to another Account while its changes wait behind an open
// conflict, and the Account it left is deleted. The delete rightly waits
// for the move (sent first, it took the Contact with it), so for the
// conflict to be settled; it waited with nothing anywhere to say so, the
// row gone from Postgres and the Account alive in Salesforce. pgforce.status
// counts it among the Account's changes held behind a conflict, as it
// counts the Contact's, and pgforce.error names the conflict. The move is
// a change of the lookup, or of a relationship column naming the new
// Account by its external id.
func TestAnAccountDeleteHeldForAContactMoveBehindAConflictCountsAsBlocked(t *testing.T) {
	for _, move := range []string{"accountid = '<new Id>'", "account__r__ext_id__c = 'new'"} {
		t.Run(strings.Fields(move)[0], func(t *testing.T) {
			b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
			b.exec(t, `UPDATE pgforce.mapping SET conflict = 'manual' WHERE id = $1`, b.contactID)
			b.start(t, fastOptions())
			var con int
			a1, oldID, newID := b.oldAndNewAccounts(t)
			b.scalar(t, &con, `INSERT INTO salesforce.contact (lastname, accountid) VALUES ('Mover', $1) RETURNING id`, oldID)
			conID := b.waitSfid(t, "contact", con)
			eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })

			// The conflict opens in the transaction of the move, as a
			// change event of the Contact arriving then would: the move is
			// never sent before it.
			b.exec(t, `BEGIN;
				UPDATE salesforce.contact SET `+strings.ReplaceAll(move, "<new Id>", newID)+`, lastname = 'Postgres' WHERE id = `+itoa(con)+`;
				SELECT pgforce.inbound_filter(`+itoa(b.contactID)+`, `+itoa(con)+`, '{"lastname": "Salesforce"}', now(), false);
				DELETE FROM salesforce.account WHERE id = `+itoa(a1)+`;
				COMMIT`)
			blocked := func(sobject string) int {
				var n int
				b.scalar(t, &n, `SELECT outbound_blocked FROM pgforce.status WHERE sobject = $1`, sobject)
				return n
			}
			require.Equal(t, 1, blocked("Contact"), "the move waits behind the conflict")
			require.Equal(t, 1, blocked("Account"), "the delete waits behind the Contact's conflict")
			require.Len(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Id = '"+oldID+"'"), 1, "the delete is held")

			var conflict int64
			b.scalar(t, &conflict, `SELECT id FROM pgforce.error WHERE mapping_id = $1 AND record_id = $2 AND error_code = 'CONFLICT' AND state = 'open'`, b.contactID, con)
			b.exec(t, `SELECT pgforce.resolve($1, 'postgres')`, conflict)
			eventually(t, 15*time.Second, "the old account deleted in Salesforce", func() bool {
				return len(b.sfRecords(t, "SELECT Id FROM Account WHERE Id = '"+oldID+"'")) == 0
			})
			require.Equal(t, newID, b.sfField(t, "Contact", conID, "AccountId"), "the Contact moved before its old Account went")
			require.Zero(t, blocked("Account"))
			require.Zero(t, blocked("Contact"))
		})
	}
}
