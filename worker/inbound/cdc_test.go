package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestInitialLoadThroughRESTThenCreateUpdateDeleteUndeleteArriveThroughCDC(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account",
		map[string]any{"Name": "Acme", "Industry": "Banking", "AnnualRevenue": jsonNumber("12345678901234.56"), "BillingCity": "Paris"},
		map[string]any{"Name": "Globex", "NumberOfEmployees": 42})
	id := e.mapSynced("Account", []string{"Name", "Industry", "AnnualRevenue", "NumberOfEmployees", "BillingAddress"}, "cdc")

	require.Equal(t, 0, int(e.calls("POST /services/data/vXX.X/jobs/query")), "2 records load through REST, not Bulk")
	require.Equal(t, "Acme", e.value("account", ids[0], "name"))
	require.Equal(t, "12345678901234.56", e.value("account", ids[0], "annualrevenue"), "currency is exact")
	require.Equal(t, "Paris", e.value("account", ids[0], "billingcity"), "address components are columns")
	require.Equal(t, "42", e.value("account", ids[1], "numberofemployees"))
	require.Equal(t, "SYNCED", e.value("account", ids[0], "_hc_lastop"))
	var fields []string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT fields FROM pgforce.mapping WHERE id = $1`, id).Scan(&fields))
	require.Contains(t, fields, "BillingCity", "the compound BillingAddress is replaced by its components")
	require.NotContains(t, fields, "BillingAddress")

	// CREATE
	newIDs := e.create("Account", map[string]any{"Name": "Initech", "BillingCity": "Austin", "AnnualRevenue": jsonNumber("0.1")})
	e.waitValue("account", newIDs[0], "name", "Initech")
	require.Equal(t, "Austin", e.value("account", newIDs[0], "billingcity"))
	require.Equal(t, "0.10", e.value("account", newIDs[0], "annualrevenue"))

	// UPDATE, through the UI, of a compound component
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"BillingCity": "Lyon"}))
	e.waitValue("account", ids[0], "billingcity", "Lyon")

	// DELETE is a soft delete
	_, err := e.sf.Delete(context.Background(), []string{ids[1]})
	require.NoError(t, err)
	e.waitValue("account", ids[1], "isdeleted", "true")
	require.Equal(t, "Globex", e.value("account", ids[1], "name"), "a soft-deleted row keeps its data")

	// UNDELETE re-reads the record
	require.NoError(t, e.sim.Undelete(context.Background(), "Account", ids[1]))
	e.waitValue("account", ids[1], "isdeleted", "false")
	require.Equal(t, "42", e.value("account", ids[1], "numberofemployees"))
}

func TestPartialFieldUpdateDoesNotClobberOtherFields(t *testing.T) {
	e := newEnv(t)
	e.mapSynced("Account", []string{"Name", "Industry", "Phone", "Description"}, "cdc")
	ids := e.create("Account", map[string]any{"Name": "Acme", "Industry": "Banking", "Phone": "555-0100", "Description": "first"})
	e.waitValue("account", ids[0], "description", "first")

	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Phone": "555-0199"}))
	e.waitValue("account", ids[0], "phone", "555-0199")
	require.Equal(t, "Acme", e.value("account", ids[0], "name"))
	require.Equal(t, "Banking", e.value("account", ids[0], "industry"))
	require.Equal(t, "first", e.value("account", ids[0], "description"))

	// Clearing a field is the one case where an update carries a null.
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Industry": nil}))
	e.waitValue("account", ids[0], "industry", "<null>")
	require.Equal(t, "555-0199", e.value("account", ids[0], "phone"))
}

// A change event carries a person's Name as its parts, FirstName and
// LastName, which are fields of their own: the full name comes from the
// record, never the parts' JSON.
func TestAPersonsFullNameArrivesAsTextWhenItsPartsChange(t *testing.T) {
	e := newEnv(t)
	e.mapSynced("Contact", []string{"FirstName", "LastName", "Name", "Email"}, "cdc")
	ids := e.create("Contact", map[string]any{"FirstName": "Jo", "LastName": "Smith", "Email": "jo@example.com"})
	e.waitValue("contact", ids[0], "name", "Jo Smith")
	require.Equal(t, "Smith", e.value("contact", ids[0], "lastname"))

	require.NoError(t, e.sim.UIEdit(context.Background(), "Contact", ids[0], map[string]any{"LastName": "Jones", "Email": "jo@jones.example"}))
	e.waitValue("contact", ids[0], "name", "Jo Jones")
	require.Equal(t, "Jones", e.value("contact", ids[0], "lastname"))
	require.Equal(t, "jo@jones.example", e.value("contact", ids[0], "email"))
}

func TestIdleCDCMappingMakesNoRESTCalls(t *testing.T) {
	e := newEnv(t)
	e.mapSynced("Account", []string{"Name"}, "cdc")
	time.Sleep(300 * time.Millisecond)
	e.sim.ResetCalls()
	time.Sleep(2 * time.Second)
	for k, v := range e.sim.Calls() {
		require.Contains(t, k, "/cometd/", "idle CDC made %d calls to %s", v, k)
	}
}

func TestAutoInboundStreamsWhenTheOrgSelectedTheObjectForCDC(t *testing.T) {
	e := newEnv(t)
	id := e.mapSynced("Account", []string{"Name"}, "auto")
	var mode string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT inbound_mode FROM pgforce.mapping WHERE id = $1`, id).Scan(&mode))
	require.Equal(t, "cdc", mode)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	e.waitValue("account", ids[0], "name", "Acme")
}

func TestAutoInboundPollsAnObjectTheOrgDidNotSelectForCDC(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Quiet__c", map[string]any{"Name": "Before", "Note__c": "loaded"})
	id := e.mapSynced("Quiet__c", []string{"Name", "Note__c"}, "auto")
	var mode string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT inbound_mode FROM pgforce.mapping WHERE id = $1`, id).Scan(&mode))
	require.Equal(t, "poll", mode, "global describe lists Quiet__ChangeEvent, but the org's CDC selection does not")
	require.Equal(t, "loaded", e.value("quiet__c", ids[0], "note__c"))
}

// A change event whose UPDATE writes no row although the record's row is
// there (it was merged or deleted concurrently; here a user trigger skips
// the write once) is not lost: the record is read again.
func TestUpdateEventThatWritesNoRowOfAnExistingRecordIsReadAgain(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	e.mapSynced("Account", []string{"Name"}, "cdc")
	e.waitValue("account", ids[0], "name", "Acme")

	e.exec(`CREATE TABLE public.skip_once (x int); INSERT INTO public.skip_once VALUES (1)`)
	e.exec(`CREATE FUNCTION public.skip_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM public.skip_once;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$`)
	e.exec(`CREATE TRIGGER skip_once BEFORE UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.skip_once()`)

	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Acme Corp"}))
	e.waitValue("account", ids[0], "name", "Acme Corp")
	require.Zero(t, e.count(`SELECT count(*) FROM public.skip_once`), "the event's own write was skipped")
}
