package pgtest

// HerokuConnectAccount is what a database kept from Heroku Connect holds
// for a mapping of Account, as Connect made it: numbers in double
// precision, datetimes without a time zone, its trigger log, its log and
// status triggers and the get_xmlbinary() they ask who is writing. It adds
// what an application of Connect's users has: public.from_salesforce, and
// a trigger that notes each of Connect's writes there (those whose
// xmlbinary is not 'base64'). Tests of switching from Connect start from
// it; it holds no rows.
const HerokuConnectAccount = `
CREATE SCHEMA salesforce;
CREATE FUNCTION public.get_xmlbinary() RETURNS varchar LANGUAGE plpgsql AS $$
	DECLARE xmlbin varchar;
	BEGIN SELECT INTO xmlbin setting FROM pg_settings WHERE name = 'xmlbinary'; RETURN xmlbin; END $$;
CREATE TABLE salesforce._trigger_log (id serial PRIMARY KEY, table_name varchar(128), record_id integer, action varchar(7), state varchar(8));
CREATE TABLE salesforce.account (id serial PRIMARY KEY, sfid varchar(18), systemmodstamp timestamp, isdeleted boolean,
	createddate timestamp, _hc_lastop varchar(32), _hc_err text, name varchar(255), industry varchar(255),
	annualrevenue double precision, numberofemployees double precision);
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
