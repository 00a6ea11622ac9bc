package sql_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
)

func (b *testBundle) columnTypes(t *testing.T, table string) map[string]string {
	t.Helper()
	rows, err := b.conn.Query(t.Context(), `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, table)
	require.NoError(t, err)
	types := map[string]string{}
	for rows.Next() {
		var n, ty string
		require.NoError(t, rows.Scan(&n, &ty))
		types[n] = ty
	}
	require.NoError(t, rows.Err())
	return types
}

func TestEnsureTableCreatesHerokuConnectLayoutWithExactTypes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var id int
	b.scalar(t, &id, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Deal__c',
		'{Name,Amount__c,Rate__c,Score__c,Seats__c,Closed_At__c,Close_Date__c,Alarm__c,Won__c,Account__c,Notes__c,Tags__c,Email__c}', 'read_write') RETURNING id`)
	var added []string
	b.scalar(t, &added, `SELECT pgforce.ensure_table($1, $2)`, id, `[
		{"name":"Id","type":"id","length":18},
		{"name":"Name","type":"string","length":80},
		{"name":"Amount__c","type":"currency","precision":18,"scale":2},
		{"name":"Rate__c","type":"percent","precision":5,"scale":2},
		{"name":"Score__c","type":"double","precision":16,"scale":4},
		{"name":"Seats__c","type":"int","precision":9},
		{"name":"Closed_At__c","type":"datetime"},
		{"name":"Close_Date__c","type":"date"},
		{"name":"Alarm__c","type":"time"},
		{"name":"Won__c","type":"boolean"},
		{"name":"Account__c","type":"reference","length":18},
		{"name":"Notes__c","type":"textarea","length":32768},
		{"name":"Tags__c","type":"multipicklist","length":4099},
		{"name":"Email__c","type":"email","length":80}]`)
	require.ElementsMatch(t, []string{"name", "amount__c", "rate__c", "score__c", "seats__c", "closed_at__c", "close_date__c",
		"alarm__c", "won__c", "account__c", "notes__c", "tags__c", "email__c"}, added)

	require.Equal(t, map[string]string{
		"id":             "integer",
		"sfid":           "character varying(18)",
		"systemmodstamp": "timestamp with time zone",
		"isdeleted":      "boolean",
		"createddate":    "timestamp with time zone",
		"_hc_lastop":     "character varying(32)",
		"_hc_err":        "text",
		"name":           "character varying(80)",
		"amount__c":      "numeric(18,2)",
		"rate__c":        "numeric(5,2)",
		"score__c":       "numeric(16,4)",
		"seats__c":       "integer",
		"closed_at__c":   "timestamp with time zone",
		"close_date__c":  "date",
		"alarm__c":       "time without time zone",
		"won__c":         "boolean",
		"account__c":     "character varying(18)",
		"notes__c":       "text",
		"tags__c":        "text",
		"email__c":       "character varying(80)",
	}, b.columnTypes(t, "salesforce.deal__c"))

	rows, err := b.conn.Query(t.Context(), `SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'salesforce' AND tablename = 'deal__c' ORDER BY 1`)
	require.NoError(t, err)
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{
		"deal__c_pkey CREATE UNIQUE INDEX deal__c_pkey ON salesforce.deal__c USING btree (id)",
		"hc_idx_deal__c_systemmodstamp CREATE INDEX hc_idx_deal__c_systemmodstamp ON salesforce.deal__c USING btree (systemmodstamp)",
		"hcu_idx_deal__c_sfid CREATE UNIQUE INDEX hcu_idx_deal__c_sfid ON salesforce.deal__c USING btree (sfid)",
	}, indexes)

	var isSerial bool
	b.scalar(t, &isSerial, `SELECT pg_get_serial_sequence('salesforce.deal__c', 'id') IS NOT NULL`)
	require.True(t, isSerial)

	// Exact numbers: 16 significant digits survive, which double precision would round.
	b.exec(t, `INSERT INTO salesforce.deal__c (name, amount__c) VALUES ('big', 1234567890123456.78)`)
	var amount string
	b.scalar(t, &amount, `SELECT amount__c::text FROM salesforce.deal__c`)
	require.Equal(t, "1234567890123456.78", amount)
}

// A read_write row is written again after each update the application
// makes (the write-back of _hc_lastop), which is a HOT update only where
// its page has room.
func TestReadWriteTablesLeaveRoomOnEachPageUnlessTheirOwnerChoseAFillfactor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reloptions := func(table string) []string {
		var options []string
		b.scalar(t, &options, `SELECT reloptions FROM pg_class WHERE oid = $1::regclass`, table)
		return options
	}
	account := b.mapAccount(t, "read_write")
	require.Equal(t, []string{"fillfactor=80"}, reloptions("salesforce.account"))
	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_only' WHERE id = $1`, account)
	require.Equal(t, []string{"fillfactor=80"}, reloptions("salesforce.account"), "pages already laid out keep their room")

	var contact int
	b.scalar(t, &contact, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Contact', '{LastName}', 'read_only') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, '[{"name":"LastName","type":"string","length":80}]')`, contact)
	require.Nil(t, reloptions("salesforce.contact"), "a read_only table is written once per Salesforce change and keeps full pages")
	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, contact)
	require.Equal(t, []string{"fillfactor=80"}, reloptions("salesforce.contact"))

	// A table that exists already, as one kept from Heroku Connect, with
	// its owner's fillfactor.
	b.exec(t, `CREATE TABLE salesforce.lead (id serial PRIMARY KEY, sfid varchar(18) UNIQUE, systemmodstamp timestamptz, isdeleted boolean,
		createddate timestamptz, _hc_lastop varchar(32), _hc_err text, lastname varchar(80)) WITH (fillfactor = 100)`)
	var lead int
	b.scalar(t, &lead, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Lead', '{LastName}', 'read_write') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, '[{"name":"LastName","type":"string","length":80}]')`, lead)
	require.Equal(t, []string{"fillfactor=100"}, reloptions("salesforce.lead"))
}

func TestEnsureTableAddsNewFieldsAsNullableColumnsWithoutRewrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) SELECT '001' || lpad(i::text, 15, '0'), 'a' || i FROM generate_series(1, 100) i`)
	var before uint32
	b.scalar(t, &before, `SELECT relfilenode::int8 FROM pg_class WHERE oid = 'salesforce.account'::regclass`)

	b.exec(t, `UPDATE pgforce.mapping SET fields = fields || '{Region__c,NumberOfEmployees}' WHERE id = $1`, id)
	var added []string
	b.scalar(t, &added, `SELECT pgforce.ensure_table($1, $2::jsonb || '[{"name":"Region__c","type":"picklist","length":40},{"name":"NumberOfEmployees","type":"int"}]'::jsonb)`, id, accountColumns)
	require.Equal(t, []string{"region__c", "numberofemployees"}, added)

	var after uint32
	b.scalar(t, &after, `SELECT relfilenode::int8 FROM pg_class WHERE oid = 'salesforce.account'::regclass`)
	require.Equal(t, before, after, "adding fields must not rewrite the table")
	var nullable bool
	b.scalar(t, &nullable, `SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = 'salesforce.account'::regclass AND attname = 'region__c'`)
	require.True(t, nullable)

	// Calling it again with the same description changes nothing.
	b.scalar(t, &added, `SELECT pgforce.ensure_table($1, $2::jsonb || '[{"name":"Region__c","type":"picklist","length":40},{"name":"NumberOfEmployees","type":"int"}]'::jsonb)`, id, accountColumns)
	require.Empty(t, added)
}

func TestEnsureTableWidensTextButRefusesTypeChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_only")
	b.exec(t, `SELECT pgforce.ensure_table($1, '[{"name":"Name","type":"string","length":500}]')`, id)
	require.Equal(t, "character varying(500)", b.columnTypes(t, "salesforce.account")["name"])

	b.refused(t, "field AnnualRevenue of Account changed type from numeric(18,2) to character varying(20)", "Only widening",
		`SELECT pgforce.ensure_table($1, '[{"name":"AnnualRevenue","type":"string","length":20}]')`, id)
}

// The status trigger of a read_write table names the captured columns,
// which Postgres will not retype under it.
func TestWideningAColumnOfAReadWriteTableKeepsItsChangesPending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 1)
	b.exec(t, `SELECT pgforce.ensure_table($1, '[{"name":"Name","type":"string","length":500}]')`, id)
	require.Equal(t, "character varying(500)", b.columnTypes(t, "salesforce.account")["name"])
	b.exec(t, `UPDATE salesforce.account SET name = repeat('x', 300)`)
	require.Equal(t, "PENDING", b.lastop(t))
	require.Len(t, b.outbox(t), 1)
}

func TestEnsureTableRefusesUnknownTypesAndUnmappedFields(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_only")
	b.refused(t, "field Name has unknown Salesforce type 'hologram'", "describe result",
		`SELECT pgforce.ensure_table($1, '[{"name":"Name","type":"hologram"}]')`, id)
	b.refused(t, "field Phone is not in the fields of mapping", "Add it to pgforce.mapping.fields",
		`SELECT pgforce.ensure_table($1, '[{"name":"Phone","type":"phone","length":40}]')`, id)
	b.refused(t, "no mapping with id 999", "SELECT id, sobject FROM pgforce.mapping",
		`SELECT pgforce.ensure_table(999, '[]')`)
}

func TestEnsureTableQuotesNamesThatAreSQLKeywords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var id int
	b.scalar(t, &id, `INSERT INTO pgforce.mapping (sobject, fields, mode, table_name) VALUES ('Order', '{Select__c,Order}', 'read_write', 'order') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, '[{"name":"Select__c","type":"string","length":10},{"name":"Order","type":"string","length":10}]')`, id)
	b.exec(t, `INSERT INTO salesforce."order" (select__c, "order") VALUES ('x', 'y')`)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, map[string]any{"select__c": "x", "order": "y"}, entries[0].New)
}

func TestEnsureTableForTwoMappingsAtOnceCreatesTheSchemaOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('race', 'race_schema')`)
	var ids [2]int
	b.scalar(t, &ids[0], `INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ('race', 'Account', '{Name}') RETURNING id`)
	b.scalar(t, &ids[1], `INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ('race', 'Contact', '{LastName}') RETURNING id`)

	// Each call holds its transaction open until both have started, so the
	// two CREATE SCHEMA IF NOT EXISTS really overlap.
	conns := [2]*pgx.Conn{b.db.Connect(t), b.db.Connect(t)}
	txs := [2]pgx.Tx{}
	for i, c := range conns {
		tx, err := c.Begin(t.Context())
		require.NoError(t, err)
		txs[i] = tx
	}
	errs := make(chan error, 2)
	for i := range conns {
		go func() {
			field := [2]string{"Name", "LastName"}[i]
			_, err := txs[i].Exec(t.Context(), `SELECT pgforce.ensure_table($1, jsonb_build_array(jsonb_build_object('name', $2::text, 'type', 'string', 'length', 80)))`, ids[i], field)
			if err == nil {
				err = txs[i].Commit(t.Context())
			}
			errs <- err
		}()
	}
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	var tables int
	b.scalar(t, &tables, `SELECT count(*) FROM pg_tables WHERE schemaname = 'race_schema'`)
	require.Equal(t, 2, tables)
}

// A table kept from Heroku Connect is taken over with its rows and its
// column types, and Connect's two
// triggers are disabled (not dropped): its log trigger would queue every
// write in _trigger_log for a Connect that no longer runs. The
// application's own triggers stay as they are.
func TestATableKeptFromHerokuConnectIsTakenOverWithConnectsTriggersDisabled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, pgtest.HerokuConnectAccount)
	b.exec(t, `INSERT INTO salesforce.account (sfid, name, _hc_lastop) VALUES ('001000000000001AAA', 'Acme', 'SYNCED');
		TRUNCATE salesforce._trigger_log`)

	var m int
	b.scalar(t, &m, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Account', '{Name,Industry,AnnualRevenue}', 'read_write') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, m, accountColumns)

	var enabled map[string]string
	b.scalar(t, &enabled, `SELECT jsonb_object_agg(tgname, tgenabled) FROM pg_trigger
		WHERE tgrelid = 'salesforce.account'::regclass AND tgname IN ('hc_account_logtrigger', 'hc_account_status_trigger', 'note_salesforce_change')`)
	require.Equal(t, map[string]string{"hc_account_logtrigger": "D", "hc_account_status_trigger": "D", "note_salesforce_change": "O"}, enabled)

	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy'`)
	var logged int
	b.scalar(t, &logged, `SELECT count(*) FROM salesforce._trigger_log`)
	require.Zero(t, logged, "nothing queued for Heroku Connect")
	require.Len(t, b.outbox(t), 1)
	require.Equal(t, "PENDING", b.lastop(t))
	types := b.columnTypes(t, "salesforce.account")
	require.Equal(t, "double precision", types["annualrevenue"], "the application's types are kept")
	require.Equal(t, "character varying(255)", types["industry"])
	require.Equal(t, "timestamp without time zone", types["systemmodstamp"])
}

// A column is kept when it holds every value of the described field, or
// is Heroku Connect's type for it (double precision, timestamp without
// time zone); otherwise ensure_table widens it or refuses.
func TestAnExistingColumnIsKeptWhenItHoldsItsFieldOrIsHerokuConnectsTypeForIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, c := range []struct {
		existing, described string
		holds               bool
		length              int
	}{
		{"character varying(255)", "character varying(40)", true, 0},
		{"character varying(40)", "character varying(255)", false, 0},
		{"text", "character varying(40)", true, 0},
		{"character varying(255)", "text", false, 0},
		{"double precision", "numeric(18,2)", true, 0},
		{"numeric", "integer", true, 0},
		{"numeric(20,4)", "numeric(18,2)", true, 0},
		{"numeric(18,4)", "numeric(18,2)", false, 0},
		{"numeric(18,2)", "numeric(18,4)", false, 0},
		{"bigint", "integer", true, 0},
		{"integer", "numeric(18,2)", false, 0},
		{"timestamp without time zone", "timestamp with time zone", true, 0},
		{"date", "timestamp with time zone", false, 0},
		{"numeric(18,2)", "character varying(20)", false, 0},
		{"character varying(4099)", "text", true, 4099},
		{"character varying(32768)", "text", true, 32000},
		{"character varying(255)", "text", false, 4099},
	} {
		var holds bool
		b.scalar(t, &holds, `SELECT pgforce._holds($1, $2, nullif($3, 0))`, c.existing, c.described, c.length)
		require.Equal(t, c.holds, holds, "%s holding %s of length %d", c.existing, c.described, c.length)
	}
}

// A table the user made before mapping it, with only columns of their
// own, gets the columns and indexes pgforce syncs with; one without an id
// that numbers new rows is refused with the fix.
func TestEnsureTableGivesATableTheUserPreparedTheColumnsPgforceSyncsWith(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `CREATE SCHEMA salesforce;
		CREATE TABLE salesforce.account (id serial PRIMARY KEY, name varchar(255), note text);
		INSERT INTO salesforce.account (name, note) VALUES ('Made by hand', 'kept')`)
	var m int
	b.scalar(t, &m, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Account', '{Name,Industry,AnnualRevenue}', 'read_write') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, m, accountColumns)
	types := b.columnTypes(t, "salesforce.account")
	for col, want := range map[string]string{
		"sfid": "character varying(18)", "systemmodstamp": "timestamp with time zone", "isdeleted": "boolean",
		"createddate": "timestamp with time zone", "_hc_lastop": "character varying(32)", "_hc_err": "text",
		"note": "text", "industry": "character varying(40)",
	} {
		require.Equal(t, want, types[col], col)
	}
	var indexes []string
	b.scalar(t, &indexes, `SELECT array_agg(indexrelid::regclass::text ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'salesforce.account'::regclass`)
	require.Equal(t, []string{"salesforce.account_pkey", "salesforce.hc_idx_account_systemmodstamp", "salesforce.hcu_idx_account_sfid"}, indexes)
	var isdeleted bool
	b.scalar(t, &isdeleted, `SELECT isdeleted FROM salesforce.account`)
	require.False(t, isdeleted, "the row the user made is not deleted")

	// Twice changes nothing.
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, m, accountColumns)
	b.scalar(t, &indexes, `SELECT array_agg(indexrelid::regclass::text ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'salesforce.account'::regclass`)
	require.Len(t, indexes, 3)

	var c int
	b.scalar(t, &c, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Contact', '{LastName}', 'read_write') RETURNING id`)
	b.exec(t, `CREATE TABLE salesforce.contact (contact_id integer PRIMARY KEY, lastname varchar(80))`)
	b.refused(t, "has no integer column id that numbers new rows", "ADD COLUMN id serial PRIMARY KEY",
		`SELECT pgforce.ensure_table($1, '[{"name":"LastName","type":"string","length":80}]')`, c)
}
