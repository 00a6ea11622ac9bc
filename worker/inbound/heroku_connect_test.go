package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// herokuConnectSchema is what a database kept from Heroku Connect holds for
// Account, as Connect made it (numbers double precision, datetimes without
// a time zone, its log and status triggers), with the rows it had synced,
// and an application trigger that, as Connect's users write them, acts on
// Connect's writes only: those are the ones with xmlbinary other than
// 'base64'.
const herokuConnectSchema = `
CREATE SCHEMA salesforce;
CREATE FUNCTION public.get_xmlbinary() RETURNS varchar LANGUAGE plpgsql AS $$
	DECLARE xmlbin varchar;
	BEGIN SELECT INTO xmlbin setting FROM pg_settings WHERE name = 'xmlbinary'; RETURN xmlbin; END $$;
CREATE TABLE salesforce._trigger_log (id serial PRIMARY KEY, table_name varchar(128), record_id integer, action varchar(7), state varchar(8));
CREATE TABLE salesforce.account (id serial PRIMARY KEY, sfid varchar(18), systemmodstamp timestamp, isdeleted boolean,
	createddate timestamp, _hc_lastop varchar(32), _hc_err text, name varchar(255), numberofemployees double precision);
CREATE UNIQUE INDEX hcu_idx_account_sfid ON salesforce.account (sfid);
CREATE FUNCTION salesforce.hc_account_logger() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO salesforce._trigger_log (table_name, record_id, action, state) VALUES (TG_TABLE_NAME, coalesce(NEW.id, OLD.id), TG_OP, 'NEW');
		RETURN NULL;
	END $$;
CREATE FUNCTION salesforce.hc_account_status() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF public.get_xmlbinary() = 'base64' THEN NEW._hc_lastop := 'PENDING'; NEW._hc_err := NULL; END IF;
		RETURN NEW;
	END $$;
CREATE TRIGGER hc_account_logtrigger AFTER INSERT OR UPDATE OR DELETE ON salesforce.account
	FOR EACH ROW WHEN (public.get_xmlbinary()::text = 'base64') EXECUTE PROCEDURE salesforce.hc_account_logger();
CREATE TRIGGER hc_account_status_trigger BEFORE INSERT OR UPDATE ON salesforce.account
	FOR EACH ROW EXECUTE PROCEDURE salesforce.hc_account_status();
CREATE TABLE public.from_salesforce (sfid varchar(18), numberofemployees double precision);
CREATE FUNCTION public.note_salesforce_change() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.from_salesforce VALUES (NEW.sfid, NEW.numberofemployees); RETURN NULL; END $$;
CREATE TRIGGER note_salesforce_change AFTER UPDATE ON salesforce.account
	FOR EACH ROW WHEN (public.get_xmlbinary()::text <> 'base64') EXECUTE FUNCTION public.note_salesforce_change();
`

// An application switching from Heroku Connect keeps its tables: pgforce
// loads Salesforce into the rows it has, under their ids and in their
// types, disables Connect's triggers, and writes as Connect did, so that
// the application's triggers tell its writes apart by get_xmlbinary().
// Datetimes go into Connect's columns as UTC whatever the time zone of the
// database.
func TestATableKeptFromHerokuConnectIsSyncedInPlaceAndItsApplicationTriggersSeePgforceAsConnect(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "NumberOfEmployees": 10}, map[string]any{"Name": "Other"})
	e.exec(herokuConnectSchema)
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
