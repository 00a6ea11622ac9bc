package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// An application switching from Heroku Connect keeps its tables: pgforce
// loads Salesforce into the rows it has, under their ids and in their
// types, disables Connect's triggers, and writes as Connect did, so that
// the application's triggers tell its writes apart by get_xmlbinary().
// Datetimes go into Connect's columns as UTC whatever the time zone of the
// database.
func TestATableKeptFromHerokuConnectIsSyncedInPlaceAndItsApplicationTriggersSeePgforceAsConnect(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "NumberOfEmployees": 10}, map[string]any{"Name": "Other"})
	e.exec(pgtest.HerokuConnectAccount)
	e.exec(fmt.Sprintf(`INSERT INTO salesforce.account (id, sfid, name, _hc_lastop) VALUES (41, '%s', 'Acme before', 'SYNCED'), (42, '%s', 'Other', 'SYNCED');
		TRUNCATE salesforce._trigger_log, public.from_salesforce`, ids[0], ids[1]))
	e.exec(fmt.Sprintf(`ALTER DATABASE %q SET TimeZone = 'America/New_York'`, e.db.Name))
	e.pool.Reset() // connections from now on take it
	var id int
	require.NoError(t, e.pool.QueryRow(context.Background(), `INSERT INTO pgforce.mapping (sobject, fields, mode, inbound)
		VALUES ('Account', '{Name,NumberOfEmployees}', 'read_write', 'cdc') RETURNING id`).Scan(&id))
	e.start()
	e.waitState(id, "synced")

	require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce.account WHERE id = 41 AND sfid = $1 AND name = 'Acme' AND numberofemployees = 10`, ids[0]),
		"the row keeps its id and takes Salesforce's values")
	require.Equal(t, 2, e.count(`SELECT count(*) FROM salesforce.account`))
	require.Equal(t, 0, e.count(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'salesforce.account'::regclass AND tgname LIKE 'hc\_%' AND tgenabled <> 'D'`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM information_schema.columns
		WHERE table_schema = 'salesforce' AND table_name = 'account' AND column_name = 'numberofemployees' AND data_type = 'double precision'`))

	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"NumberOfEmployees": 12}))
	e.waitValue("account", ids[0], "numberofemployees", "12")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM public.from_salesforce WHERE sfid = $1 AND numberofemployees = 12`, ids[0]),
		"the application's trigger saw a Salesforce write")
	// Connect's columns hold UTC: the records were created and changed
	// within minutes of now in UTC, not hours off in New York's time.
	e.eventually(5*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM salesforce.account WHERE sfid = $1
			AND abs(extract(epoch FROM systemmodstamp - (now() AT TIME ZONE 'UTC'))) < 600
			AND abs(extract(epoch FROM createddate - (now() AT TIME ZONE 'UTC'))) < 600`, ids[0]) == 1, "datetimes not in UTC"
	})

	noted := e.count(`SELECT count(*) FROM public.from_salesforce`)
	e.exec(`UPDATE salesforce.account SET name = 'Acme 2' WHERE id = 41`)
	require.Equal(t, noted, e.count(`SELECT count(*) FROM public.from_salesforce`), "the application's own write is not Salesforce's")
	require.Equal(t, 0, e.count(`SELECT count(*) FROM salesforce._trigger_log`), "nothing queued for Heroku Connect")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE record_id = 41`), "pgforce captured it")
}

// Connect made a multi-select picklist a varchar(4099) and a long text area
// a varchar of its length. Those columns hold every value of their field,
// so they are kept: retyped to text, they changed under the application,
// and a view on one made the mapping fail for ever.
func TestConnectsVarcharColumnsOfTextFieldsAreKeptWithTheViewsOnThem(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Gadget__c", map[string]any{"Name": "G1", "Tags__c": "red;green", "Code__c": "A"})
	e.exec(`CREATE SCHEMA salesforce;
		CREATE TABLE salesforce.gadget__c (id serial PRIMARY KEY, sfid varchar(18), systemmodstamp timestamp, isdeleted boolean,
			createddate timestamp, _hc_lastop varchar(32), _hc_err text, name varchar(80), tags__c varchar(4099), code__c varchar(10));
		CREATE UNIQUE INDEX hcu_idx_gadget__c_sfid ON salesforce.gadget__c (sfid);
		CREATE VIEW public.gadget_tags AS SELECT sfid, name, tags__c FROM salesforce.gadget__c WHERE NOT isdeleted;`)
	e.exec(`INSERT INTO salesforce.gadget__c (id, sfid, name, tags__c, _hc_lastop, isdeleted) VALUES (5, $1, 'G1', 'red', 'SYNCED', false)`, ids[0])

	id := e.mapping("Gadget__c", []string{"Name", "Tags__c", "Code__c"}, "cdc")
	e.start()
	e.waitState(id, "synced")
	var typ string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'salesforce.gadget__c'::regclass AND attname = 'tags__c'`).Scan(&typ))
	require.Equal(t, "character varying(4099)", typ, "Connect's column type is kept")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM public.gadget_tags WHERE sfid = $1 AND tags__c = 'red;green'`, ids[0]))
}

// Connect syncs objects that are deactivated rather than deleted (User,
// RecordType), which have no IsDeleted field and whose tables no isdeleted
// column. pgforce put such a mapping in error; it syncs them, and their
// rows' isdeleted (added to a table kept from Connect) stays false.
func TestAnObjectWithoutIsDeletedSyncsIntoTheTableConnectMadeForIt(t *testing.T) {
	e := newEnv(t)
	var userID string
	require.NoError(t, e.sf.Query(context.Background(), "SELECT Id FROM User LIMIT 1", func(r salesforce.Record) error {
		userID, _ = r.Fields["Id"].(string)
		return nil
	}))
	require.NotEmpty(t, userID)
	e.exec(`CREATE SCHEMA salesforce;
		CREATE TABLE salesforce."user" (id serial PRIMARY KEY, sfid varchar(18), systemmodstamp timestamp,
			createddate timestamp, _hc_lastop varchar(32), _hc_err text, username varchar(80), email varchar(80));
		CREATE UNIQUE INDEX hcu_idx_user_sfid ON salesforce."user" (sfid);
		CREATE INDEX hc_idx_user_systemmodstamp ON salesforce."user" (systemmodstamp);`)
	e.exec(`INSERT INTO salesforce."user" (id, sfid, username, _hc_lastop) VALUES (7, $1, 'old@example.com', 'SYNCED')`, userID)

	id := e.mapping("User", []string{"Email", "Username"}, "auto")
	e.start()
	e.waitState(id, "synced")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce."user" WHERE id = 7 AND sfid = $1 AND username <> 'old@example.com' AND NOT isdeleted`, userID))
	require.NoError(t, e.sim.UIEdit(context.Background(), "User", userID, map[string]any{"Email": "new@example.com"}))
	e.waitValue("user", userID, "email", "new@example.com")
}
