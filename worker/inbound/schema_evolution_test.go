package inbound_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// A mapped field the integration user can no longer see (its field-level
// security was removed, or it was deleted) makes every query that names it
// fail with INVALID_FIELD. The mapping must say so, and how to fix it,
// rather than stay 'synced' while it retries for ever.
func TestAMappedFieldHiddenFromTheIntegrationUserPutsTheMappingInErrorNamingTheFix(t *testing.T) {
	e := newEnv(t)
	e.seedGadgets(3)
	id := e.mapSynced("Gadget__c", []string{"Name", "Code__c"}, "poll")
	require.NoError(t, e.sim.HideField("Gadget__c", "Code__c"))
	e.waitErrorNamingTheFix(id, "Code__c")
	// The fix it names works, and syncing carries on.
	e.exec(`UPDATE pgforce.mapping SET fields = array_remove(fields, 'Code__c') WHERE id = $1`, id)
	e.waitState(id, "synced")
	ids := e.create("Gadget__c", map[string]any{"Name": "after"})
	e.waitValue("gadget__c", ids[0], "name", "after")
}

// Salesforce lengthened a text field. A record whose new value needs the
// room fails to apply until the column is widened: the error must say what
// to do, and what it says must work.
func TestALongerTextFieldInSalesforceCanBeTakenInAfterTheErrorItCauses(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Gadget__c", map[string]any{"Name": "G", "Code__c": "short"})
	id := e.mapSynced("Gadget__c", []string{"Name", "Code__c"}, "cdc")
	require.NoError(t, e.sim.AlterField("Gadget__c", "Code__c", func(f *sim.Field) { f.Length = 40 }))
	long := "a code that is longer than ten"
	require.NoError(t, e.sim.UIEdit(context.Background(), "Gadget__c", ids[0], map[string]any{"Code__c": long}))
	errID, msg := e.waitOpenError(ids[0])
	require.Contains(t, msg, "pgforce.retry", "the error says how to take the longer value in")
	// The user cannot widen the column: pgforce's trigger names it.
	_, err := e.pool.Exec(context.Background(), `ALTER TABLE salesforce.gadget__c ALTER COLUMN code__c TYPE varchar(40)`)
	require.Error(t, err)
	e.exec(`SELECT pgforce.retry($1)`, errID)
	e.waitValue("gadget__c", ids[0], "code__c", long)
	e.waitState(id, "synced")
}

// A mapped field whose type Salesforce changed (text to number) cannot be
// kept in its column. The next describe (here: a field added to the
// mapping) must put the mapping in error with the fix, not retry for ever
// with the fix left out.
func TestAFieldWhoseTypeChangedInSalesforcePutsTheMappingInErrorWithTheFix(t *testing.T) {
	e := newEnv(t)
	e.create("Gadget__c", map[string]any{"Name": "G"})
	id := e.mapSynced("Gadget__c", []string{"Name", "Code__c"}, "cdc")
	require.NoError(t, e.sim.AlterField("Gadget__c", "Code__c", func(f *sim.Field) {
		f.Type, f.Length, f.Precision, f.Scale = "double", 0, 18, 0
	}))
	e.exec(`UPDATE pgforce.mapping SET fields = fields || '{Flag__c}' WHERE id = $1`, id)
	e.waitErrorNamingTheFix(id, "Code__c")
	// The steps it names work.
	e.exec(`UPDATE pgforce.mapping SET fields = array_remove(fields, 'Code__c') WHERE id = $1`, id)
	e.waitState(id, "synced")
	e.exec(`ALTER TABLE salesforce.gadget__c DROP COLUMN code__c`)
	e.exec(`UPDATE pgforce.mapping SET fields = fields || '{Code__c}' WHERE id = $1`, id)
	e.waitState(id, "synced")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM information_schema.columns WHERE table_schema = 'salesforce'
		AND table_name = 'gadget__c' AND column_name = 'code__c' AND data_type = 'numeric'`))
}

// pgforce.reload while Postgres changes wait to be sent (no outbound worker
// runs here): the reload keeps every one of them, and does not bring back a
// row the application deleted.
func TestAReloadKeepsThePostgresChangesWaitingToBeSent(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Keep", "Phone": "555-0100"}, map[string]any{"Name": "Gone"})
	id := e.mapping("Account", []string{"Name", "Phone"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	e.exec(`UPDATE salesforce.account SET phone = '555-0199' WHERE sfid = $1`, ids[0])
	e.exec(`DELETE FROM salesforce.account WHERE sfid = $1`, ids[1])
	e.exec(`INSERT INTO salesforce.account (name) VALUES ('New')`)
	require.Equal(t, 3, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id))
	queries := e.calls("GET /services/data/vXX.X/query")
	e.exec(`SELECT pgforce.reload($1::integer)`, id)
	e.eventually(15*time.Second, func() (bool, string) {
		st, _ := e.state(id)
		return st == "synced" && e.calls("GET /services/data/vXX.X/query") > queries, "the reload has not read the object yet: state " + st
	})
	require.Equal(t, 3, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id), "every queued change is kept")
	require.Equal(t, "555-0199", e.value("account", ids[0], "phone"))
	require.Equal(t, "<missing>", e.value("account", ids[1], "name"), "the deleted row stays deleted")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce.account WHERE name = 'New' AND sfid IS NULL AND NOT isdeleted`))
}

// A Salesforce edit of a record whose row the application deleted, the
// delete not sent yet (no outbound worker runs here): the change event finds
// no row and the record is read again, which must not bring the row back.
func TestASalesforceEditOfARecordWhoseDeleteIsQueuedDoesNotBringItsRowBack(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Gone"}, map[string]any{"Name": "Other"})
	id := e.mapping("Account", []string{"Name", "Phone"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	e.exec(`DELETE FROM salesforce.account WHERE sfid = $1`, ids[0])
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Phone": "555-0100"}))
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[1], map[string]any{"Phone": "555-0111"}))
	e.waitValue("account", ids[1], "phone", "555-0111")
	time.Sleep(500 * time.Millisecond) // the re-read
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.inbound_reread`))
	require.Equal(t, "<missing>", e.value("account", ids[0], "name"), "the deleted row stays deleted")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1 AND op = 'delete'`, id))
}

// The application renamed a mapped column. The next change event cannot be
// applied: the mapping must say why at once (it showed 'synced', said
// nothing and applied nothing until another event happened to arrive), and
// once the column is back the change is applied, not lost.
func TestAChangeEventThatCannotBeAppliedIsReportedAtOnceAndAppliedOnceFixed(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "A", "Phone": "1"})
	id := e.mapping("Account", []string{"Name", "Phone"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	e.exec(`ALTER TABLE salesforce.account RENAME COLUMN phone TO phone_number`)
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Phone": "2", "Name": "C"}))
	e.eventually(10*time.Second, func() (bool, string) {
		st, detail := e.state(id)
		return strings.Contains(detail, `"phone"`) && strings.Contains(detail, "does not exist"), fmt.Sprintf("state %s (%s)", st, detail)
	})
	e.exec(`ALTER TABLE salesforce.account RENAME COLUMN phone_number TO phone`)
	e.waitValue("account", ids[0], "name", "C")
	e.waitValue("account", ids[0], "phone", "2")
}

// waitErrorNamingTheFix waits for mapping id to be in error with a
// state_detail that names field and the array_remove that takes it out.
func (e *env) waitErrorNamingTheFix(id int, field string) {
	e.t.Helper()
	e.waitErrorDetail(id, field, "array_remove")
}

// waitErrorDetail waits for mapping id to be in error with a state_detail
// that contains each of want, and returns the detail.
func (e *env) waitErrorDetail(id int, want ...string) string {
	e.t.Helper()
	var detail string
	e.eventually(15*time.Second, func() (bool, string) {
		var st string
		st, detail = e.state(id)
		ok := st == "error"
		for _, w := range want {
			ok = ok && strings.Contains(detail, w)
		}
		return ok, fmt.Sprintf("state %s (%s)", st, detail)
	})
	return detail
}
