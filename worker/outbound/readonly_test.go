package outbound_test

import (
	"testing"
	"time"
)

// An insert that Salesforce refused, ignored, then fixed by an update of the
// row: the update of a record that never reached Salesforce goes as an
// insert of the whole row, which carries isdeleted = false, a field the
// describe marks non-createable. Values taken from the row are left out
// when Salesforce does not let them be set, not refused.
func TestFixingARefusedInsertByAnUpdateSendsTheRow(t *testing.T) {
	b := setup(t, setupOptions{})
	b.syncAccountIn(t, "poll") // the real describe writes the columns (IsDeleted among them)
	b.start(t, fastOptions())
	var row int
	b.scalar(t, &row, `INSERT INTO salesforce.account (name) VALUES ('BAD name') RETURNING id`)
	errID := b.waitOpenError(t, row, "insert")
	b.exec(t, `SELECT pgforce.ignore($1)`, errID)
	b.exec(t, `UPDATE salesforce.account SET name = 'Good name' WHERE id = $1`, row)
	deadline := time.Now().Add(15 * time.Second)
	for b.rowSfid(t, "account", row) == "" {
		if time.Now().After(deadline) {
			var errs, lastop string
			b.scalar(t, &errs, `SELECT coalesce(string_agg(id || ' ' || state || ' ' || error_code || ': ' || message, '; '), '') FROM pgforce.error WHERE record_id = $1 AND mapping_id = $2`, row, b.accountID)
			b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, row)
			t.Fatalf("the fixed row was never inserted (first error %d): _hc_lastop %s; errors: %s", errID, lastop, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A change of a Contact's Name fails with INVALID_FIELD_FOR_INSERT_UPDATE;
// a later change of the fields it is made of (FirstName) reaches
// Salesforce, though prepare adds the open error's field (name) to every
// later update of the record: taken from the row, it is left out.
func TestChangingTheFieldsANameIsMadeOfAfterItsRefusalIsSent(t *testing.T) {
	b := setup(t, setupOptions{})
	b.syncContactsWithTheirName(t)
	var row int
	b.scalar(t, &row, `INSERT INTO salesforce.contact (firstname, lastname) VALUES ('Jo', 'Smith') RETURNING id`)
	sfid := b.waitSfid(t, "contact", row)
	b.exec(t, `UPDATE salesforce.contact SET name = 'Joanna Smith' WHERE id = $1`, row)
	errID := b.waitOpenError(t, row, "update")

	// As the error's message says: change the fields it is made of.
	b.exec(t, `UPDATE salesforce.contact SET firstname = 'Joanna' WHERE id = $1`, row)
	deadline := time.Now().Add(10 * time.Second)
	for b.sfField(t, "Contact", sfid, "FirstName") != "Joanna" {
		if time.Now().After(deadline) {
			var state, code, lastop string
			var attempts int
			b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, errID)
			b.scalar(t, &code, `SELECT error_code || ': ' || message FROM pgforce.error WHERE id = $1`, errID)
			b.scalar(t, &attempts, `SELECT attempts FROM pgforce.error WHERE id = $1`, errID)
			b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.contact WHERE id = $1`, row)
			t.Fatalf("FirstName never reached Salesforce (%v there); _hc_lastop %s; error %d %s after %d attempts: %s",
				b.sfField(t, "Contact", sfid, "FirstName"), lastop, errID, state, attempts, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
