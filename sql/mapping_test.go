package sql_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stretchr/testify/require"
)

func TestMappingInsertDefaultsTableNameOrgPoliciesAndBulkThreshold(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Invoice__c', '{Name,Amount__c}', 'read_write')`)
	var table, org, inbound, conflict, state string
	var poll float64
	var bulkThreshold int
	b.scalar(t, &table, `SELECT table_name FROM pgforce.mapping`)
	b.scalar(t, &org, `SELECT org FROM pgforce.mapping`)
	b.scalar(t, &inbound, `SELECT inbound FROM pgforce.mapping`)
	b.scalar(t, &conflict, `SELECT conflict FROM pgforce.mapping`)
	b.scalar(t, &state, `SELECT state FROM pgforce.mapping`)
	b.scalar(t, &poll, `SELECT extract(epoch FROM poll_interval) FROM pgforce.mapping`)
	b.scalar(t, &bulkThreshold, `SELECT bulk_threshold FROM pgforce.mapping`)
	require.Equal(t, "invoice__c", table)
	require.Equal(t, "default", org)
	require.Equal(t, "auto", inbound)
	require.Equal(t, "salesforce_wins", conflict)
	require.Equal(t, "new", state)
	require.Equal(t, 60.0, poll)
	require.Equal(t, 10000, bulkThreshold)
}

func TestMappingInsertRefusesInvalidRowsWithInstructions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name, sql, message, hint string
	}{
		{"bad sobject", `INSERT INTO pgforce.mapping (sobject) VALUES ('Account; DROP TABLE x')`,
			"is not a Salesforce object API name", "Object Manager"},
		{"sobject ending in underscore", `INSERT INTO pgforce.mapping (sobject) VALUES ('Invoice_')`,
			"is not a Salesforce object API name", "letters, digits and underscores"},
		{"bad field", `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Account', '{Name,Owner.Name}')`,
			"'Owner.Name' in fields of Account is not a Salesforce field API name", "relationship paths"},
		{"duplicate field", `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Account', '{Name,name}')`,
			"field name is listed twice", "list it once"},
		{"unknown mode", `INSERT INTO pgforce.mapping (sobject, mode) VALUES ('Account', 'write_only')`,
			"unknown mode 'write_only' for Account", "'read_only'"},
		{"unknown inbound", `INSERT INTO pgforce.mapping (sobject, inbound) VALUES ('Account', 'push')`,
			"unknown inbound 'push'", "'cdc'"},
		{"unknown conflict", `INSERT INTO pgforce.mapping (sobject, conflict) VALUES ('Account', 'postgres_always')`,
			"unknown conflict policy 'postgres_always'", "'newest_wins'"},
		{"interval below floor", `INSERT INTO pgforce.mapping (sobject, poll_interval) VALUES ('Account', '5 seconds')`,
			"below the 10 second floor", "at least interval '10 seconds'"},
		{"unknown org", `INSERT INTO pgforce.mapping (sobject, org) VALUES ('Account', 'prod')`,
			"unknown org 'prod'", "INSERT INTO pgforce.org"},
		{"bad table name", `INSERT INTO pgforce.mapping (sobject, table_name) VALUES ('Account', 'Accounts')`,
			"invalid table_name 'Accounts'", "lower-case"},
		{"upsert field not synced", `INSERT INTO pgforce.mapping (sobject, fields, upsert_field) VALUES ('Account', '{Name}', 'Ext_Id__c')`,
			"upsert_field Ext_Id__c of Account is not in fields", "Add it to fields"},
		{"unknown state", `INSERT INTO pgforce.mapping (sobject, state) VALUES ('Account', 'running')`,
			"unknown state 'running'", "pgforce.pause()"},
		{"bulk threshold not positive", `INSERT INTO pgforce.mapping (sobject, bulk_threshold) VALUES ('Account', 0)`,
			"bulk_threshold 0 of Account must be positive", "NULL to always use sObject Collections"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b.refused(t, c.message, c.hint, c.sql)
		})
	}
}

func TestMappingInsertRefusesDuplicateSobjectInTheSameOrg(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.mapping (sobject) VALUES ('Account')`)
	b.refused(t, "account is already mapped in org default", "Change the existing mapping",
		`INSERT INTO pgforce.mapping (sobject, table_name) VALUES ('account', 'account2')`)

	// Another org may map the same object into its own schema.
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('sandbox', 'sandbox')`)
	b.exec(t, `INSERT INTO pgforce.mapping (sobject, org) VALUES ('Account', 'sandbox')`)
}

// state_detail tells the user of a misspelt object to UPDATE its sobject:
// the table, named after the typo by default and not created yet, follows.
// A table_name the user chose, or a table already made, stays.
func TestCorrectingTheSobjectOfAMappingWithoutATableRenamesItsDefaultTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	table := func(sobject string) string {
		var name string
		b.scalar(t, &name, `SELECT table_name FROM pgforce.mapping WHERE sobject = $1`, sobject)
		return name
	}
	b.exec(t, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Oportunity', '{Name}')`)
	b.exec(t, `UPDATE pgforce.mapping SET sobject = 'Opportunity' WHERE sobject = 'Oportunity'`)
	require.Equal(t, "opportunity", table("Opportunity"))

	b.exec(t, `INSERT INTO pgforce.mapping (sobject, fields, table_name) VALUES ('Contract', '{Name}', 'deals')`)
	b.exec(t, `UPDATE pgforce.mapping SET sobject = 'Contact' WHERE sobject = 'Contract'`)
	require.Equal(t, "deals", table("Contact"), "a table_name of the user's stays")

	id := b.mapAccount(t, "read_only")
	b.refused(t, "cannot change the sobject of mapping", "Delete the mapping",
		`UPDATE pgforce.mapping SET sobject = 'Lead' WHERE id = `+strconv.Itoa(id))
}

func TestMappingInsertRefusesDuplicateTableNameInTheSameOrg(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.mapping (sobject, table_name) VALUES ('Account', 'crm')`)
	b.refused(t, "table crm is already used by another mapping in org default", "different table_name",
		`INSERT INTO pgforce.mapping (sobject, table_name) VALUES ('Contact', 'crm')`)
}

// Orgs may share a schema, but two orgs' workers loading one table would
// each take the other's records for deleted ones.
func TestMappingInsertRefusesATableAnotherOrgMapsInTheSameSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.mapping (sobject) VALUES ('Account')`)
	b.exec(t, `INSERT INTO pgforce.org (name) VALUES ('sandbox')`) // schema salesforce too
	b.refused(t, "table salesforce.account is already used by mapping 1 of org default", "UPDATE pgforce.org SET schema_name = 'sandbox' WHERE name = 'sandbox'",
		`INSERT INTO pgforce.mapping (org, sobject) VALUES ('sandbox', 'Account')`)
	b.exec(t, `INSERT INTO pgforce.mapping (org, sobject, table_name) VALUES ('sandbox', 'Account', 'sandbox_account')`)
	b.refused(t, "is already used by mapping", "",
		`UPDATE pgforce.mapping SET table_name = 'account' WHERE org = 'sandbox'`)
	b.exec(t, `DELETE FROM pgforce.mapping WHERE org = 'sandbox'`)
	// A mapping whose table is not made yet may move to the other org: it
	// is not in its own way.
	b.exec(t, `UPDATE pgforce.mapping SET org = 'sandbox' WHERE id = 1`)
	b.exec(t, `UPDATE pgforce.mapping SET org = 'default' WHERE id = 1`)
	b.exec(t, `UPDATE pgforce.org SET schema_name = 'sandbox' WHERE name = 'sandbox'`)
	b.exec(t, `INSERT INTO pgforce.mapping (org, sobject) VALUES ('sandbox', 'Account')`)
}

func TestMappingUpdateIsValidatedLikeInsert(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.mapping (sobject) VALUES ('Account')`)
	b.refused(t, "unknown mode 'rw'", "'read_write'", `UPDATE pgforce.mapping SET mode = 'rw'`)
	b.refused(t, "below the 10 second floor", "10 seconds", `UPDATE pgforce.mapping SET poll_interval = '1 second'`)
	b.refused(t, "is not a Salesforce field API name", "field API names", `UPDATE pgforce.mapping SET fields = '{"Bad Field"}'`)
	b.refused(t, "bulk_threshold -5 of Account must be positive", "the default is 10000", `UPDATE pgforce.mapping SET bulk_threshold = -5`)
	b.exec(t, `UPDATE pgforce.mapping SET poll_interval = '10 seconds', fields = '{Name}', bulk_threshold = NULL`)
}

func TestMappingCannotMoveToAnotherTableOnceCreated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_only")
	b.refused(t, "cannot move mapping", "Delete the mapping", `UPDATE pgforce.mapping SET table_name = 'acct' WHERE id = $1`, id)
	b.refused(t, "cannot change the sobject", "Delete the mapping", `UPDATE pgforce.mapping SET sobject = 'Contact' WHERE id = $1`, id)
}

func TestOrgRefusesBudgetOutOfRangeAndStoresNoSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.refused(t, "api_budget_pct 0 of org default is out of range", "1-100", `UPDATE pgforce.org SET api_budget_pct = 0`)
	b.refused(t, "invalid org name", "lower-case letters", `INSERT INTO pgforce.org (name) VALUES ('Prod Org')`)
	b.refused(t, "invalid api_version", "'62.0'", `UPDATE pgforce.org SET api_version = 'v62'`)

	var columns []string
	rows, err := b.conn.Query(t.Context(), `SELECT column_name FROM information_schema.columns WHERE table_schema = 'pgforce' AND table_name = 'org' ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		columns = append(columns, c)
	}
	for _, c := range columns {
		require.NotRegexp(t, `secret|password|token|key`, c)
	}
	require.Subset(t, columns, []string{"name", "schema_name", "api_version", "api_budget_pct", "paused"})
}

// The README's statement that turns a Heroku Connect mapping export into
// pgforce mappings: the same objects, fields, modes and upsert fields.
func TestAHerokuConnectMappingExportBecomesMappingsWithTheReadmesStatement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	export := `{"version": 1, "connection": {"organization_id": "00D000000000001", "app_name": "shop", "exported_at": "2026-11-27T09:00:00Z"},
	  "mappings": [
	    {"object_name": "Account", "config": {"access": "read_write", "sf_notify_enabled": false, "sf_polling_seconds": 600,
	      "sf_max_daily_api_calls": 30000, "upsert_field": "External_Id__c",
	      "fields": {"Id": {}, "IsDeleted": {}, "SystemModstamp": {}, "Name": {}, "External_Id__c": {}, "Industry": {}},
	      "indexes": {"Id": {"unique": true}, "SystemModstamp": {"unique": false}}}},
	    {"object_name": "Contact", "config": {"access": "read_only", "sf_notify_enabled": false, "sf_polling_seconds": 600,
	      "fields": {"Id": {}, "IsDeleted": {}, "SystemModstamp": {}, "LastName": {}, "AccountId": {}}}}]}`
	b.exec(t, readmeStatement(t, ":'export'"), export)

	type mapping struct {
		SObject, Mode, Upsert string
		Fields                []string
	}
	rows, err := b.conn.Query(t.Context(), `SELECT sobject, mode, coalesce(upsert_field, ''), fields FROM pgforce.mapping ORDER BY sobject`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[mapping])
	require.NoError(t, err)
	require.Equal(t, []mapping{
		{"Account", "read_write", "External_Id__c", []string{"External_Id__c", "Industry", "Name"}},
		{"Contact", "read_only", "", []string{"AccountId", "LastName"}},
	}, got)
}

// readmeStatement returns the README's INSERT statement that contains
// the psql variable reference psqlVar, made the statement's parameter $1.
func readmeStatement(t *testing.T, psqlVar string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	text := string(readme)
	i := strings.Index(text, psqlVar)
	require.GreaterOrEqual(t, i, 0, "the README never uses %s", psqlVar)
	start := strings.LastIndex(text[:i], "INSERT INTO")
	end := i + strings.Index(text[i:], ";")
	return strings.ReplaceAll(text[start:end], psqlVar, "$1")
}
