package outbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

var selfRefAccountColumns = `[{"name":"Id","type":"id","length":18,"keyPrefix":"001"},{"name":"Name","type":"string","length":255},
 {"name":"Ext_Id__c","type":"string","length":64},
 {"name":"ParentId","type":"reference","referenceTo":["Account"],"relationshipName":"Parent"}]`

// setupSelfRef maps Account read_write with ParentId and Heroku Connect's
// parent__r__ext_id__c column, and Contact with AccountId.
func setupSelfRef(t *testing.T, upsert string) *bundle {
	t.Helper()
	b := newBundle(t, sim.Config{Schema: simSchema})
	ctx := context.Background()
	var up any
	if upsert != "" {
		up = upsert
	}
	require.NoError(t, b.pool.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields, mode, upsert_field)
		VALUES ('Account', '{Name,Ext_Id__c,ParentId}', 'read_write', $1) RETURNING id`, up).Scan(&b.accountID))
	require.NoError(t, b.pool.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields, mode)
		VALUES ('Contact', '{LastName,Email,AccountId}', 'read_write') RETURNING id`).Scan(&b.contactID))
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, b.accountID, selfRefAccountColumns)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, b.contactID, contactColumns)
	b.exec(t, `ALTER TABLE salesforce.account ADD COLUMN parent__r__ext_id__c varchar(64)`)
	b.exec(t, `ALTER TABLE salesforce.contact ADD COLUMN account__r__ext_id__c varchar(64)`)
	b.exec(t, `SELECT pgforce._install_triggers($1)`, b.accountID)
	b.exec(t, `SELECT pgforce._install_triggers($1)`, b.contactID)
	b.exec(t, `UPDATE pgforce.mapping SET state = 'synced'`)
	return b
}

// A child Account inserted before its parent, in the same transaction,
// naming it by external id, arrives linked.
func TestAChildAccountInsertedBeforeItsParentInOneTransactionArrivesLinked(t *testing.T) {
	b := setupSelfRef(t, "")
	b.start(t, fastOptions())
	ids := b.insertInOneTx(t,
		`INSERT INTO salesforce.account (name, ext_id__c, parent__r__ext_id__c) VALUES ('Child', 'c-1', 'p-1') RETURNING id`,
		`INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Parent', 'p-1') RETURNING id`)
	childID := b.waitSfid(t, "account", ids[0])
	parentID := b.waitSfid(t, "account", ids[1])
	require.Equal(t, parentID, b.sfField(t, "Account", childID, "ParentId"))
}

// Two Accounts inserted in one transaction, each naming the other as its
// parent by external id: neither can be created with its parent set, so
// Salesforce must at least be given the chance to say so. They must not
// stay PENDING for ever with nothing in pgforce.error to say why.
func TestTwoAccountsNamingEachOtherAsParentDoNotWaitForEver(t *testing.T) {
	b := setupSelfRef(t, "")
	b.start(t, fastOptions())
	ids := b.insertInOneTx(t,
		`INSERT INTO salesforce.account (name, ext_id__c, parent__r__ext_id__c) VALUES ('A', 'a', 'b') RETURNING id`,
		`INSERT INTO salesforce.account (name, ext_id__c, parent__r__ext_id__c) VALUES ('B', 'b', 'a') RETURNING id`)
	a1, a2 := ids[0], ids[1]
	eventually(t, 15*time.Second, "each row synced or failed with an error", func() bool {
		var settled int
		b.scalar(t, &settled, `SELECT count(*) FROM salesforce.account a WHERE a.id = ANY($1)
			AND (a.sfid IS NOT NULL OR EXISTS (SELECT FROM pgforce.error e WHERE e.mapping_id = $2 AND e.record_id = a.id AND e.state = 'open'))`,
			[]int{a1, a2}, b.accountID)
		return settled == 2
	})
}

// Salesforce deletes an Account's Contacts with it (a cascade delete).
func TestDeletingAnAccountInSalesforceDeletesItsContacts(t *testing.T) {
	b := newBundle(t, sim.Config{Schema: simSchema})
	acc := b.createRecords(t, "Account", 1, func(int) map[string]any { return map[string]any{"Name": "Parent"} })[0]
	con := b.createRecords(t, "Contact", 1, func(int) map[string]any { return map[string]any{"LastName": "Child", "AccountId": acc} })[0]
	res, err := b.sf.Delete(context.Background(), []string{acc})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Contact WHERE Id = '"+con+"'"), "the contact went with its account")
}

// The application moves a Contact to another Account and deletes the
// Account it left, in one transaction. Salesforce deletes an Account's
// Contacts with it, so the move must reach Salesforce before the delete:
// sent after it, the Contact was deleted with its old Account and the move
// failed with ENTITY_IS_DELETED.
func TestAContactMovedAwayFromAnAccountDeletedInTheSameTransactionSurvives(t *testing.T) {
	testMovedAway(t, func(newID string) string { return "accountid = '" + newID + "'" })
}

// The same, the Contact moved through Heroku Connect's relationship column.
func TestAContactMovedByExternalIDAwayFromAnAccountDeletedInTheSameTransactionSurvives(t *testing.T) {
	testMovedAway(t, func(string) string { return "account__r__ext_id__c = 'new'" })
}

func testMovedAway(t *testing.T, set func(newID string) string) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	var con int
	a1, oldID, newID := b.oldAndNewAccounts(t)
	b.scalar(t, &con, `INSERT INTO salesforce.contact (lastname, accountid) VALUES ('Mover', $1) RETURNING id`, oldID)
	conID := b.waitSfid(t, "contact", con)

	b.exec(t, `BEGIN; UPDATE salesforce.contact SET `+set(newID)+` WHERE id = `+itoa(con)+`;
		DELETE FROM salesforce.account WHERE id = `+itoa(a1)+`; COMMIT`)
	eventually(t, 15*time.Second, "the outbox drained", func() bool { return b.backlog(t) == 0 })
	var open int
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE state = 'open'`)
	var msgs []string
	b.scalar(t, &msgs, `SELECT coalesce(array_agg(error_code || ': ' || message), '{}') FROM pgforce.error WHERE state = 'open'`)
	require.Zero(t, open, "no error: %v", msgs)
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Id = '"+oldID+"'"), "the old account is deleted")
	recs := b.sfRecords(t, "SELECT Id, AccountId FROM Contact WHERE Id = '"+conID+"'")
	require.Len(t, recs, 1, "the contact that moved away still exists")
	v, _ := recs[0].Get("AccountId")
	require.Equal(t, newID, v)
}

func itoa(i int) string { return fmt.Sprint(i) }

// An Account deleted in Salesforce keeps its row, flagged isdeleted, with
// its external id; a new Account takes the same external id. A Contact
// naming that external id belongs to the live Account, not to the deleted
// one (Salesforce refuses a link to a deleted record).
func TestAChildNamingAnExternalIDIsLinkedToTheLiveParentNotADeletedOne(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	p1, _, _, newID := b.reuseDeletedExternalID(t, "e1")
	var con int
	// The delete reaches the first row (a poll or the change event).
	b.exec(t, `BEGIN; SELECT set_config('pgforce.origin', 'salesforce', true);
		UPDATE salesforce.account SET isdeleted = true WHERE id = `+itoa(p1)+`; COMMIT`)

	b.scalar(t, &con, `INSERT INTO salesforce.contact (lastname, account__r__ext_id__c) VALUES ('Child', 'e1') RETURNING id`)
	eventually(t, 10*time.Second, "the contact synced or failed", func() bool {
		var lastop string
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.contact WHERE id = $1`, con)
		return lastop != "PENDING"
	})
	var msgs []string
	b.scalar(t, &msgs, `SELECT coalesce(array_agg(error_code || ': ' || message), '{}') FROM pgforce.error WHERE state = 'open'`)
	require.Empty(t, msgs)
	conID := b.rowSfid(t, "contact", con)
	require.Equal(t, newID, b.sfField(t, "Contact", conID, "AccountId"))
}

// The application moves a Contact to another Account through Heroku
// Connect's relationship column while Salesforce moves it elsewhere
// (AccountId edited). Both changed the Contact's parent: under
// salesforce_wins Salesforce's parent stays, under manual a conflict waits.
// The relationship column is the lookup's other spelling, not a field of
// its own that both sides may change without meeting.
func TestAParentChangedOnBothSidesThroughTheRelationshipColumnIsAConflict(t *testing.T) {
	testParentChangedOnBothSides(t, func(string) string { return "account__r__ext_id__c = 'b'" })
}

// The same with the lookup column itself (the control).
func TestAParentChangedOnBothSidesThroughTheLookupColumnIsAConflict(t *testing.T) {
	testParentChangedOnBothSides(t, func(bID string) string { return "accountid = '" + bID + "'" })
}

func testParentChangedOnBothSides(t *testing.T, set func(bID string) string) {
	for _, policy := range []string{"salesforce_wins", "manual", "postgres_wins"} {
		t.Run(policy, func(t *testing.T) {
			b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
			ctx := context.Background()
			b.exec(t, `UPDATE pgforce.mapping SET conflict = $1, inbound = 'cdc', state = 'new'`, policy)
			ids, con, conID := b.accountsAndAChildOfTheFirst(t, "a", "b", "c")
			aID, bID, cID := ids[0], ids[1], ids[2]
			eventually(t, 10*time.Second, "the echo applied", func() bool {
				var acc *string
				b.scalar(t, &acc, `SELECT accountid FROM salesforce.contact WHERE id = $1`, con)
				return acc != nil && *acc == aID && b.backlog(t) == 0
			})

			b.exec(t, `SELECT pgforce.pause($1::integer)`, b.contactID)
			time.Sleep(500 * time.Millisecond)
			b.exec(t, `UPDATE salesforce.contact SET `+set(bID)+` WHERE id = $1`, con)
			require.NoError(t, b.sim.UIEdit(ctx, "Contact", conID, map[string]any{"AccountId": cID}))
			b.exec(t, `SELECT pgforce.resume($1::integer)`, b.contactID)

			if policy == "manual" {
				eventually(t, 10*time.Second, "a conflict to settle", func() bool {
					return b.openConflicts(t, b.contactID, con) == 1 || b.sfField(t, "Contact", conID, "AccountId") != cID
				})
				require.Equal(t, cID, b.sfField(t, "Contact", conID, "AccountId"), "held until it is settled")
				// Settled for Postgres, the parent Postgres named goes.
				b.exec(t, `SELECT pgforce.resolve(id, 'postgres') FROM pgforce.error WHERE record_id = $1 AND mapping_id = $2 AND error_code = 'CONFLICT' AND state = 'open'`, con, b.contactID)
				eventually(t, 10*time.Second, "Postgres's parent sent", func() bool {
					return b.backlog(t) == 0 && b.sfField(t, "Contact", conID, "AccountId") == bID
				})
				return
			}
			if policy == "postgres_wins" {
				eventually(t, 10*time.Second, "Postgres's parent on both sides", func() bool {
					var acc *string
					b.scalar(t, &acc, `SELECT accountid FROM salesforce.contact WHERE id = $1`, con)
					ok := b.backlog(t) == 0 && acc != nil && *acc == bID && b.sfField(t, "Contact", conID, "AccountId") == bID
					if !ok {
						var dbg string
						b.scalar(t, &dbg, `SELECT coalesce((SELECT jsonb_agg(to_jsonb(o) - 'xid') FROM pgforce.outbox o)::text, '[]') || ' row=' || coalesce((SELECT to_jsonb(c)::text FROM salesforce.contact c WHERE id = $1), '') || ' errors=' || coalesce((SELECT jsonb_agg(jsonb_build_object('code', error_code, 'state', state, 'msg', message))::text FROM pgforce.error), '[]')`, con)
						t.Logf("B=%s C=%s sf=%s %s", bID, cID, b.sfField(t, "Contact", conID, "AccountId"), dbg)
					}
					return ok
				})
				return
			}
			eventually(t, 10*time.Second, "the outbox drained", func() bool { return b.backlog(t) == 0 })
			time.Sleep(time.Second)
			require.Equal(t, cID, b.sfField(t, "Contact", conID, "AccountId"), "Salesforce's parent wins")
			var acc string
			b.scalar(t, &acc, `SELECT accountid FROM salesforce.contact WHERE id = $1`, con)
			require.Equal(t, cID, acc)
		})
	}
}

// A move through the relationship column, queued while Salesforce edits
// another field of the Contact, reaches Salesforce: streamed or polled,
// Salesforce's record still names the old parent, which is no change of it.
func TestAMoveThroughTheRelationshipColumnSurvivesASalesforceEditOfAnotherField(t *testing.T) {
	for _, mode := range []string{"cdc", "poll"} {
		t.Run(mode, func(t *testing.T) {
			b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
			ctx := context.Background()
			b.exec(t, `UPDATE pgforce.mapping SET inbound = $1, state = 'new', poll_interval = '10 seconds'`, mode)
			ids, con, conID := b.accountsAndAChildOfTheFirst(t, "a", "b")
			aID, bID := ids[0], ids[1]
			eventually(t, 15*time.Second, "the record read back", func() bool {
				var acc *string
				b.scalar(t, &acc, `SELECT accountid FROM salesforce.contact WHERE id = $1`, con)
				return acc != nil && *acc == aID && b.backlog(t) == 0
			})
			b.exec(t, `SELECT pgforce.pause($1::integer)`, b.contactID)
			time.Sleep(500 * time.Millisecond)
			b.exec(t, `UPDATE salesforce.contact SET account__r__ext_id__c = 'b' WHERE id = $1`, con)
			require.NoError(t, b.sim.UIEdit(ctx, "Contact", conID, map[string]any{"Email": "sf@example.com"}))
			b.exec(t, `SELECT pgforce.resume($1::integer)`, b.contactID)
			eventually(t, 15*time.Second, "both sides hold both edits", func() bool {
				var email *string
				b.scalar(t, &email, `SELECT email FROM salesforce.contact WHERE id = $1`, con)
				return email != nil && *email == "sf@example.com" && b.backlog(t) == 0 && b.sfField(t, "Contact", conID, "AccountId") == bID
			})
		})
	}
}

// accountsAndAChildOfTheFirst starts both directions on the Account and
// Contact mappings, inserts an Account per external id (named by it in
// upper case) and a Contact linked to the first through its relationship
// column, and waits for their Ids: the Accounts', the Contact's row id and
// its Id.
func (b *bundle) accountsAndAChildOfTheFirst(t *testing.T, extIDs ...string) ([]string, int, string) {
	t.Helper()
	b.startInbound(t)
	b.waitMappingSynced(t, b.accountID)
	b.waitMappingSynced(t, b.contactID)
	b.start(t, fastOptions())
	var ids []string
	for _, ext := range extIDs {
		var row int
		b.scalar(t, &row, `INSERT INTO salesforce.account (name, ext_id__c) VALUES (upper($1), $1) RETURNING id`, ext)
		ids = append(ids, b.waitSfid(t, "account", row))
	}
	var con int
	b.scalar(t, &con, `INSERT INTO salesforce.contact (lastname, account__r__ext_id__c) VALUES ('Child', $1) RETURNING id`, extIDs[0])
	return ids, con, b.waitSfid(t, "contact", con)
}

// oldAndNewAccounts creates Accounts 'Old' (ext_id__c 'old') and 'New'
// ('new') in Postgres and waits for their records, for a child to move
// from the first to the second: it returns Old's row id and both Ids.
func (b *bundle) oldAndNewAccounts(t *testing.T) (oldRow int, oldID, newID string) {
	t.Helper()
	var newRow int
	b.scalar(t, &oldRow, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Old', 'old') RETURNING id`)
	b.scalar(t, &newRow, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('New', 'new') RETURNING id`)
	return oldRow, b.waitSfid(t, "account", oldRow), b.waitSfid(t, "account", newRow)
}
