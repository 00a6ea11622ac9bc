package sql_test

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// statements are the SQL statements a message or hint tells the user to
// run, in order, as they appear in it.
var statements = regexp.MustCompile(`(?:ALTER TABLE|UPDATE pgforce\.\w+|DELETE FROM pgforce\.\w+|SELECT pgforce\.\w+\() [^;]*;`)

// A drift check runs while its mapping is synced, and a mapping in error
// has no worker until the user fixes it: asked for then, a check was
// accepted and stayed unstarted for ever, every column NULL, with nothing
// to say why. It is refused, with what is wrong and what to do, as it is
// for a paused mapping. Asked for while the mapping loads, it waits for the
// load and is accepted.
func TestCheckDriftRefusesAMappingInErrorSayingWhatIsWrong(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_only")
	const why = "Salesforce has no object Acount visible to the integration user."
	b.exec(t, `UPDATE pgforce.mapping SET state = 'error', state_detail = $2 WHERE id = $1`, m, why)

	pgErr := b.refused(t, "is in error, so a drift check would not run", "Fix what its state_detail (above) says first",
		`SELECT pgforce.check_drift($1::integer)`, m)
	require.Equal(t, why, pgErr.Detail)
	b.refused(t, "is in error", "state_detail", `SELECT pgforce.check_drift('Account', compare_values => true)`)
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.drift_check`)
	require.Zero(t, n, "no check is left waiting for nothing")

	for _, state := range []string{"new", "describing", "loading"} {
		b.exec(t, `UPDATE pgforce.mapping SET state = $2 WHERE id = $1`, m, state)
		var id int64
		b.scalar(t, &id, `SELECT pgforce.check_drift($1::integer)`, m)
		require.NotZero(t, id, state)
	}
}

// UPDATE pgforce.org SET paused = true stops every mapping of the org, but
// leaves their rows alone: pgforce.status showed them synced and not
// paused while nothing synced. It shows the org's pause as it shows a
// mapping's own, with how to resume; the mapping's own pause, which says
// who paused it, comes first.
func TestStatusShowsTheMappingsOfAPausedOrgAsPaused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.exec(t, `UPDATE pgforce.mapping SET state = 'synced', state_detail = 'streaming change events', inbound_watermark = now() WHERE id = $1`, m)

	b.exec(t, `UPDATE pgforce.org SET paused = true WHERE name = 'default'`)
	s := b.status(t, m)
	require.True(t, s.Paused)
	require.Equal(t, "paused", s.State)
	var detail string
	b.scalar(t, &detail, `SELECT state_detail FROM pgforce.status WHERE mapping_id = $1`, m)
	require.Equal(t, "org default is paused (was synced); resume it with UPDATE pgforce.org SET paused = false WHERE name = 'default';", detail)

	b.exec(t, `SELECT pgforce.pause($1::integer)`, m)
	b.scalar(t, &detail, `SELECT state_detail FROM pgforce.status WHERE mapping_id = $1`, m)
	require.Contains(t, detail, "paused by ")
	b.exec(t, `SELECT pgforce.resume($1::integer)`, m)

	// The statement the detail gives resumes it.
	b.exec(t, statements.FindString(b.statusDetail(t, m)))
	s = b.status(t, m)
	require.False(t, s.Paused)
	require.Equal(t, "synced", s.State)
}

func (b *testBundle) statusDetail(t *testing.T, m int) string {
	t.Helper()
	var detail string
	b.scalar(t, &detail, `SELECT state_detail FROM pgforce.status WHERE mapping_id = $1`, m)
	return detail
}

// What is asked of the worker for a mapping of a paused org (a reload, a
// drift check) would wait unseen until the org is resumed, as for a paused
// mapping, which is refused: so is this, with how to resume the org.
func TestReloadAndCheckDriftRefuseAMappingOfAPausedOrg(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_only")
	b.exec(t, `UPDATE pgforce.org SET paused = true WHERE name = 'default'`)
	const hint = "Resume the org first: UPDATE pgforce.org SET paused = false WHERE name = 'default';"
	b.refused(t, "org default of mapping", hint, `SELECT pgforce.reload($1::integer)`, m)
	pgErr := b.refused(t, "is paused", hint, `SELECT pgforce.check_drift('Account')`)
	b.exec(t, statements.FindString(pgErr.Hint))
	b.exec(t, `SELECT pgforce.check_drift('Account')`)
	b.exec(t, `SELECT pgforce.reload('Account')`)
}

// Deleting an org that mappings still use was refused by a bare foreign
// key error, where every other refusal of pgforce says what to do. It
// names the mappings, and the statements its hint gives, run as they are,
// delete the org.
func TestDeletingAnOrgThatMappingsUseSaysHowToDeleteThemFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('sandbox', 'sandbox')`)
	var contact, lead int
	b.scalar(t, &contact, `INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ('sandbox', 'Contact', '{LastName}') RETURNING id`)
	b.scalar(t, &lead, `INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ('sandbox', 'Lead', '{LastName}') RETURNING id`)
	b.mapAccount(t, "read_only") // of org default, which stays

	pgErr := b.refused(t, "org sandbox still has 2 mapping(s), so it cannot be deleted",
		"DELETE FROM pgforce.mapping WHERE org = 'sandbox';", `DELETE FROM pgforce.org WHERE name = 'sandbox'`)
	require.Equal(t, "23503", pgErr.Code, "the foreign key's code, for programs that look for it")
	require.Contains(t, pgErr.Detail, "Contact")
	require.Contains(t, pgErr.Detail, "Lead")

	steps := statements.FindAllString(pgErr.Hint, -1)
	require.Len(t, steps, 2, pgErr.Hint)
	for _, step := range steps {
		b.exec(t, step)
	}
	var orgs []string
	b.scalar(t, &orgs, `SELECT array_agg(name ORDER BY name) FROM pgforce.org`)
	require.Equal(t, []string{"default"}, orgs)
	var left int
	b.scalar(t, &left, `SELECT count(*) FROM pgforce.mapping`)
	require.Equal(t, 1, left, "the other org's mapping is kept")
}

// A table that ensure_table refused (here: made by the user without the
// id pgforce keys rows by) is fixed by DDL, which edits no mapping, so
// the mapping stayed in error after the fix its state_detail gave. The
// worker keeps the table's shape with such an error and calls
// pgforce.inbound_recheck_tables on a timer: the mapping goes back to new,
// to be described again, once the table has changed, and stays in error,
// costing no Salesforce call, while it has not.
func TestAMappingInErrorOverItsTableGoesBackToNewOnceTheTableChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var m int
	b.scalar(t, &m, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Case', '{Subject}') RETURNING id`)
	b.exec(t, `CREATE SCHEMA salesforce`)
	b.exec(t, `CREATE TABLE salesforce."case" (subject text)`)
	const cols = `[{"name":"Id","type":"id","length":18},{"name":"Subject","type":"string","length":255}]`

	// As the worker does: the shape before ensure_table, kept with the error.
	var shape string
	b.scalar(t, &shape, `SELECT pgforce._table_shape($1)`, m)
	pgErr := b.refused(t, "has no integer column id", "ADD COLUMN id serial PRIMARY KEY", `SELECT pgforce.ensure_table($1, $2)`, m, cols)
	b.exec(t, `UPDATE pgforce.mapping SET state = 'error', state_detail = $2, error_table_shape = $3 WHERE id = $1`, m, pgErr.Hint, shape)

	recheck := func() (int, string) {
		var n int
		var state string
		b.scalar(t, &n, `SELECT pgforce.inbound_recheck_tables('default')`)
		b.scalar(t, &state, `SELECT state FROM pgforce.mapping WHERE id = $1`, m)
		return n, state
	}
	n, state := recheck()
	require.Zero(t, n)
	require.Equal(t, "error", state, "an untouched table leaves the error alone")
	b.exec(t, `INSERT INTO salesforce."case" (subject) VALUES ('rows are no change of shape')`)
	n, state = recheck()
	require.Zero(t, n)
	require.Equal(t, "error", state)

	// The fix the refusal gives, as it is.
	b.exec(t, statements.FindString(pgErr.Hint))
	n, state = recheck()
	require.Equal(t, 1, n)
	require.Equal(t, "new", state)
	var kept *string
	b.scalar(t, &kept, `SELECT error_table_shape FROM pgforce.mapping WHERE id = $1`, m)
	require.Nil(t, kept)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, m, cols)
	n, _ = recheck()
	require.Zero(t, n)
}

// Taking the upsert field out of fields (the fix state_detail gives for a
// field Salesforce no longer shows) is refused, since the mapping cannot
// upsert by a field it does not sync; the hint said to add it back, and the
// user went round in circles. It gives the statement that takes it out,
// which runs as it is.
func TestTakingTheUpsertFieldOutOfFieldsIsRefusedWithTheStatementThatDoes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var m int
	b.scalar(t, &m, `INSERT INTO pgforce.mapping (sobject, fields, mode, upsert_field)
		VALUES ('Account', '{Name,External_Id__c}', 'read_write', 'external_id__c') RETURNING id`)
	pgErr := b.refused(t, "upsert_field external_id__c of Account is not in fields", "upsert_field = NULL",
		`UPDATE pgforce.mapping SET fields = array_remove(fields, 'External_Id__c') WHERE id = $1`, m)
	b.exec(t, statements.FindString(pgErr.Hint))
	var fields []string
	var upsert *string
	require.NoError(t, b.conn.QueryRow(t.Context(), `SELECT fields, upsert_field FROM pgforce.mapping WHERE id = $1`, m).Scan(&fields, &upsert))
	require.Equal(t, []string{"Name"}, fields)
	require.Nil(t, upsert)

	// Named as an upsert field it never listed, it is to be added.
	b.refused(t, "upsert_field Region__c of Account is not in fields", "fields = fields || '{Region__c}'",
		`UPDATE pgforce.mapping SET upsert_field = 'Region__c' WHERE id = $1`, m)
	b.refused(t, "upsert_field Region__c of Contact is not in fields", "fields = fields || '{Region__c}'",
		`INSERT INTO pgforce.mapping (sobject, fields, upsert_field) VALUES ('Contact', '{LastName}', 'Region__c')`)
}
