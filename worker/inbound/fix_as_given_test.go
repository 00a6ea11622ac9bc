package inbound_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// fixes are the SQL statements a state_detail tells the user to run, in
// the order it gives them.
var fixes = regexp.MustCompile(`(?:ALTER TABLE|UPDATE pgforce\.mapping) [^;]*;`)

// A table the user made before mapping its object, without the id pgforce
// keys rows by, puts the mapping in error with the ALTER TABLE that fixes
// it. That DDL edits no mapping, and the worker left a mapping in error
// alone until it was edited: after exactly the fix given it stayed in
// error, until the user found pgforce.reload. The fix given is enough.
func TestAMappingInErrorOverItsTableSyncsOnceTheUserRunsTheDDLItsStateDetailGives(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Case", map[string]any{"Subject": "Printer on fire"})
	e.exec(`CREATE SCHEMA salesforce`)
	e.exec(`CREATE TABLE salesforce."case" (subject text)`)
	id := e.mapping("Case", []string{"Subject"}, "poll")
	e.start()
	detail := e.waitErrorDetail(id, "ALTER TABLE")
	steps := fixes.FindAllString(detail, -1)
	require.Len(t, steps, 1, detail)
	require.Equal(t, `ALTER TABLE salesforce."case" ADD COLUMN id serial PRIMARY KEY;`, steps[0])

	e.exec(steps[0])
	e.waitState(id, "synced")
	e.waitValue("case", ids[0], "subject", "Printer on fire")
}

// The describe finds a mapped field missing (deleted, hidden by
// field-level security, misspelt). When it is the upsert field, the
// array_remove the state_detail gave was refused ("upsert_field ... is not
// in fields") and the user went round in circles. The statement given,
// run as it is, must work.
func TestTheFixForAMissingUpsertFieldRunsAsGiven(t *testing.T) {
	runMissingFieldFix(t, "{Name,External_Id__c}", "External_Id__c does not exist")
}

// runMissingFieldFix maps Gadget__c with fields, upserting by the missing
// External_Id__c, waits for the error whose detail holds want, runs the
// one fix it gives as it is, and waits for the mapping to sync.
func runMissingFieldFix(t *testing.T, fields, want string) (*env, int) {
	t.Helper()
	e := newEnv(t)
	ids := e.create("Gadget__c", map[string]any{"Name": "G"})
	var id int
	require.NoError(t, e.pool.QueryRow(context.Background(), `INSERT INTO pgforce.mapping (sobject, fields, mode, upsert_field, inbound)
		VALUES ('Gadget__c', $1, 'read_write', 'External_Id__c', 'poll') RETURNING id`, fields).Scan(&id))
	e.start()
	detail := e.waitErrorDetail(id, want)
	steps := fixes.FindAllString(detail, -1)
	require.Len(t, steps, 1, detail)

	e.exec(steps[0])
	e.waitState(id, "synced")
	e.waitValue("gadget__c", ids[0], "name", "G")
	return e, id
}

// A mapped field whose type Salesforce changed is taken out, its column
// dropped and added again, as the state_detail says. When it is the upsert
// field, each statement given must run as it is, and the last makes it the
// upsert field again.
func TestTheFixForAnUpsertFieldWhoseTypeChangedRunsAsGiven(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, e.sim.AlterField("Gadget__c", "Code__c", func(f *sim.Field) { f.ExternalID = true }))
	e.create("Gadget__c", map[string]any{"Name": "G"})
	var id int
	require.NoError(t, e.pool.QueryRow(context.Background(), `INSERT INTO pgforce.mapping (sobject, fields, mode, upsert_field, inbound)
		VALUES ('Gadget__c', '{Name,code__c}', 'read_write', 'code__c', 'cdc') RETURNING id`).Scan(&id))
	e.start()
	e.waitState(id, "synced")
	require.NoError(t, e.sim.AlterField("Gadget__c", "Code__c", func(f *sim.Field) {
		f.Type, f.Length, f.Precision, f.Scale = "double", 0, 18, 0
	}))
	e.exec(`UPDATE pgforce.mapping SET fields = fields || '{Flag__c}' WHERE id = $1`, id)
	detail := e.waitErrorDetail(id, "changed type")
	steps := fixes.FindAllString(detail, -1)
	require.Len(t, steps, 3, detail)

	e.exec(steps[0])
	e.waitState(id, "synced")
	e.exec(steps[1])
	e.exec(steps[2])
	e.waitState(id, "synced")
	var upsert string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT upsert_field FROM pgforce.mapping WHERE id = $1`, id).Scan(&upsert))
	require.Equal(t, "code__c", upsert)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM information_schema.columns WHERE table_schema = 'salesforce'
		AND table_name = 'gadget__c' AND column_name = 'code__c' AND data_type = 'numeric'`))
}

// A drift check asked for before the mapping is loaded (new, then
// describing and loading) is accepted: it waits for the load and runs once
// the mapping is synced. Only a mapping in error, which no worker takes up,
// has its check refused.
func TestADriftCheckAskedForBeforeTheLoadRunsOnceTheMappingIsSynced(t *testing.T) {
	e := newEnv(t)
	e.opts.Overlap = time.Millisecond
	e.create("Account", map[string]any{"Name": "Acme"}, map[string]any{"Name": "Globex"})
	id := e.mapping("Account", []string{"Name"}, "poll")
	var check int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT pgforce.check_drift($1::integer)`, id).Scan(&check))
	e.start()
	c := e.waitDriftCheck(check)
	require.Equal(t, int64(2), c.records)
	require.Equal(t, int64(2), c.rows)
	require.Zero(t, c.missing+c.stale+c.extra)
}

// Several mapped fields are missing (misspelt): the mapping names them
// all, with one statement that removes them all and runs as given, rather
// than one at a time, a fix and a describe each.
func TestAMappingWithSeveralMissingFieldsNamesThemAllWithOneFix(t *testing.T) {
	e, id := runMissingFieldFix(t, "{Name,Nmae__c,External_Id__c,Foo__c}", "fields Nmae__c, External_Id__c, Foo__c do not exist on Gadget__c")
	var fields []string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT fields FROM pgforce.mapping WHERE id = $1`, id).Scan(&fields))
	require.Equal(t, []string{"Name"}, fields)
}

// A mapped field the integration user cannot see (its field-level
// security) puts the mapping in error; the fix may be made in Salesforce,
// which edits no mapping, so the detail also gives the reload that
// describes the object again once it is made.
func TestAFieldMadeVisibleInSalesforceIsSyncedByTheReloadTheDetailGives(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Gadget__c", map[string]any{"Name": "G", "Code__c": "C-1"})
	require.NoError(t, e.sim.HideField("Gadget__c", "Code__c"))
	id := e.mapping("Gadget__c", []string{"Name", "Code__c"}, "poll")
	e.start()
	detail := e.waitErrorDetail(id, "Code__c does not exist")
	reload := regexp.MustCompile(`SELECT pgforce\.reload\(\d+\);`).FindString(detail)
	require.NotEmpty(t, reload, detail)

	require.NoError(t, e.sim.ShowField("Gadget__c", "Code__c"))
	e.exec(reload)
	e.waitState(id, "synced")
	e.waitValue("gadget__c", ids[0], "code__c", "C-1")
}
