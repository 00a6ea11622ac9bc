package sql_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// role creates a login-less role unique to the test's database, gives it
// grants (statements with %[1]s for the role), and drops it at cleanup.
func (b *testBundle) role(t *testing.T, suffix, grants string) string {
	t.Helper()
	role := b.db.Name + "_" + suffix
	b.exec(t, fmt.Sprintf("CREATE ROLE %[1]s; "+grants, role))
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = b.conn.Exec(ctx, "RESET ROLE")
		_, _ = b.conn.Exec(ctx, fmt.Sprintf("DROP OWNED BY %[1]s; DROP ROLE %[1]s", role))
	})
	return role
}

// applicationRole is a role that may use and write salesforce.account and
// nothing of pgforce's but its schema, as an application's role would.
func (b *testBundle) applicationRole(t *testing.T) string {
	t.Helper()
	return b.role(t, "app", `GRANT USAGE ON SCHEMA salesforce, pgforce TO %[1]s;
		GRANT CREATE ON SCHEMA public TO %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON salesforce.account TO %[1]s;
		GRANT USAGE ON SEQUENCE salesforce.account_id_seq TO %[1]s`)
}

// The capture functions run as their owner, so an application's role
// captures with no right on pgforce.outbox; but a role that could attach
// them to a table of its own would queue a delete of any Salesforce record
// it names, which the worker would carry out.
func TestApplicationRolesCaptureWithoutRightsOnTheOutboxButCannotAttachCaptureToTablesOfTheirOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	role := b.applicationRole(t)

	b.exec(t, "SET ROLE "+role)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Acme')`)
	b.exec(t, `CREATE TABLE public.forged (id integer, sfid varchar(18), name text, industry text, annualrevenue numeric)`)
	b.refused(t, fmt.Sprintf("permission denied for function pgforce._capture_%d", id), "",
		fmt.Sprintf(`CREATE TRIGGER forge AFTER DELETE ON public.forged REFERENCING OLD TABLE AS pgforce_old
			FOR EACH STATEMENT EXECUTE FUNCTION pgforce._capture_%d()`, id))
	b.refused(t, fmt.Sprintf("permission denied for function pgforce._capture_update_%d", id), "",
		fmt.Sprintf(`CREATE TRIGGER forge AFTER UPDATE ON public.forged REFERENCING OLD TABLE AS pgforce_old NEW TABLE AS pgforce_new
			FOR EACH STATEMENT EXECUTE FUNCTION pgforce._capture_update_%d()`, id))
	b.refused(t, "permission denied for table outbox", "", `INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid) VALUES (1, 'delete', 1, '001000000000000001')`)
	b.exec(t, "RESET ROLE")

	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "insert", entries[0].Op)
}

// The README's grants: a monitoring role reads pgforce.status and
// pgforce.error with SELECT on them alone, and an operator's role repairs
// and pauses with EXECUTE on the functions alone, which no other role has.
func TestMonitoringAndOperatorRolesNeedOnlyTheGrantsTheReadmeGives(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, errID := b.refusedUpdate(t)
	monitor := b.role(t, "monitor", `GRANT USAGE ON SCHEMA pgforce TO %[1]s; GRANT SELECT ON pgforce.status, pgforce.error, pgforce.drift_check TO %[1]s`)
	operator := b.role(t, "ops", `GRANT USAGE ON SCHEMA pgforce TO %[1]s; GRANT SELECT ON pgforce.status, pgforce.error, pgforce.drift_check TO %[1]s;
		GRANT EXECUTE ON FUNCTION pgforce.pause(integer), pgforce.pause(text, text), pgforce.resume(integer), pgforce.resume(text, text),
			pgforce.reload(integer), pgforce.reload(text, text), pgforce.retry(bigint), pgforce.retry_all(integer), pgforce.retry_all(text, text),
			pgforce.ignore(bigint), pgforce.revert(bigint), pgforce.resolve(bigint, text),
			pgforce.check_drift(integer, boolean), pgforce.check_drift(text, boolean), pgforce.check_drift(text, text, boolean) TO %[1]s`)

	b.exec(t, "SET ROLE "+monitor)
	var rows, backlog, open int
	b.scalar(t, &rows, `SELECT row_count FROM pgforce.status`)
	b.scalar(t, &backlog, `SELECT outbound_backlog FROM pgforce.status`)
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE state = 'open'`)
	require.Equal(t, []int{1, 1, 1}, []int{rows, backlog, open})
	b.refused(t, "permission denied for function pause", "", `SELECT pgforce.pause('Account')`)
	b.refused(t, "permission denied for function retry", "", `SELECT pgforce.retry($1)`, errID)
	b.refused(t, "permission denied for function check_drift", "", `SELECT pgforce.check_drift('Account')`)
	b.refused(t, "permission denied for function check_drift", "", `SELECT pgforce.check_drift('Account', 'default')`)
	var checks int
	b.scalar(t, &checks, `SELECT count(*) FROM pgforce.drift_check`)
	require.Zero(t, checks)
	b.exec(t, "RESET ROLE")

	b.exec(t, "SET ROLE "+operator)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	b.exec(t, `SELECT pgforce.pause('Account')`)
	var detail string
	b.scalar(t, &detail, `SELECT state_detail FROM pgforce.status`)
	b.exec(t, `SELECT pgforce.resume('Account')`)
	b.exec(t, `SELECT pgforce.check_drift('Account')`)
	b.exec(t, `SELECT pgforce.check_drift('Account', 'default', true)`)
	b.refused(t, "permission denied for table outbox", "", `DELETE FROM pgforce.outbox`)
	b.refused(t, "permission denied for table drift_check", "", `DELETE FROM pgforce.drift_check`)
	b.exec(t, "RESET ROLE")

	var user string
	b.scalar(t, &user, `SELECT session_user`)
	require.Contains(t, detail, "paused by "+user, "the user who logged in")
	state, _ := b.errorState(t, errID)
	require.Equal(t, "retrying", state)
	require.Len(t, b.outbox(t), 2, "the change and its retry")
}

// USAGE on schema pgforce alone (as a role granted only pgforce.resolve
// has it) lets a role call three functions that run as pgforce's owner:
// the helpers pgforce.status calls, which its readers need to run (a view
// runs the functions it calls as its reader). They return a mapped
// table's row count (which pg_class and pg_stat_all_tables show any role
// roughly anyway), the number of changes held behind failed inserts and
// conflicts, and the workers' feed mode: never a row's values. The errors
// and their payloads, the mappings' state_detail and the outbox stay
// refused.
func TestUsageOnPgforceAloneRunsNothingAsItsOwnerButTheStatusCounts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m, _ := b.refusedUpdate(t)
	role := b.role(t, "usage", `GRANT USAGE ON SCHEMA pgforce TO %[1]s`)

	var asOwner []string
	b.scalar(t, &asOwner, `SELECT array_agg(p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid) ORDER BY p.oid::regprocedure::text)
		FROM pg_proc p WHERE p.pronamespace = 'pgforce'::regnamespace AND p.prosecdef AND has_function_privilege($1, p.oid, 'EXECUTE')`, role)
	require.Equal(t, []string{
		"pgforce._mapping_row_count(integer) bigint",
		"pgforce._outbound_blocked_count(integer) bigint",
		"pgforce._outbound_feed_mode() text",
	}, asOwner)

	b.exec(t, "SET ROLE "+role)
	var rows int
	b.scalar(t, &rows, `SELECT pgforce._mapping_row_count($1)`, m)
	require.Equal(t, 1, rows)
	b.refused(t, "permission denied for view status", "", `SELECT state_detail FROM pgforce.status`)
	b.refused(t, "permission denied for table error", "", `SELECT payload FROM pgforce.error`)
	b.refused(t, "permission denied for table mapping", "", `SELECT state_detail FROM pgforce.mapping`)
	b.refused(t, "permission denied for table outbox", "", `SELECT new FROM pgforce.outbox`)
	b.refused(t, "permission denied for table mapping", "", `SELECT pgforce._mapping_row($1)`, m)
	b.exec(t, "RESET ROLE")
}

// pgforce.resolve runs as its owner with search_path pinned. The
// application's triggers that its write fires get the session's own, in
// which they name their tables, and see the write as Salesforce's.
func TestResolvingAConflictRunsTheApplicationsTriggersWithTheSessionsSearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres'`)
	var errID int64
	b.scalar(t, &errID, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields)
		SELECT $1, 'inbound', 'cdc', a.id, a.sfid, '{"postgres": {"name": "From Postgres"}, "salesforce": {"name": "From Salesforce"}}',
			'CONFLICT', 'fields changed in both Postgres and Salesforce: name', '{name}'
		FROM salesforce.account a RETURNING id`, m)
	b.exec(t, `CREATE TABLE public.audit_log (name text, xmlbinary text);
		CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO audit_log VALUES (NEW.name, current_setting('xmlbinary')); RETURN NULL; END $$;
		CREATE TRIGGER audit AFTER UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.audit()`)

	b.exec(t, `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	var name, xmlbinary, after string
	b.scalar(t, &name, `SELECT name FROM audit_log`)
	b.scalar(t, &xmlbinary, `SELECT xmlbinary FROM audit_log`)
	b.scalar(t, &after, `SELECT current_setting('xmlbinary')`)
	require.Equal(t, []string{"From Salesforce", "hex", "base64"}, []string{name, xmlbinary, after})
}

// A role that may only call pgforce.resolve cannot run code of its own as
// pgforce's owner through the application's triggers: a temporary table
// named like one a trigger writes unqualified is not the one written.
func TestResolvingAConflictNeverWritesTheCallersTemporaryTables(t *testing.T) {
	t.Parallel()
	b := setup(t)
	errID := b.conflictOverName(t)
	b.exec(t, `CREATE TABLE public.audit (note text);
		CREATE FUNCTION public.audit_account() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES ('changed'); RETURN NULL; END $$;
		CREATE TRIGGER audit_account AFTER UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.audit_account();
		CREATE TABLE public.secret (who text)`)
	op := b.role(t, "resolver", `GRANT USAGE ON SCHEMA pgforce TO %[1]s; GRANT EXECUTE ON FUNCTION pgforce.resolve(bigint, text) TO %[1]s`)

	b.exec(t, "SET ROLE "+op)
	b.refused(t, "permission denied", "", `INSERT INTO public.secret VALUES ('the caller')`)
	b.exec(t, `CREATE TEMP TABLE audit (note text);
		CREATE FUNCTION pg_temp.steal() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.secret VALUES (current_user); RETURN NULL; END $$;
		CREATE TRIGGER steal AFTER INSERT ON pg_temp.audit FOR EACH ROW EXECUTE FUNCTION pg_temp.steal()`)
	b.exec(t, `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	b.exec(t, "RESET ROLE")

	var stolen, audited int
	b.scalar(t, &stolen, `SELECT count(*) FROM public.secret`)
	b.scalar(t, &audited, `SELECT count(*) FROM public.audit`)
	require.Zero(t, stolen, "the caller's trigger did not run as the owner")
	require.Equal(t, 1, audited, "the application's trigger wrote its own table")
}

// Any role can set pgforce.origin, but saying it is the worker lets only
// pgforce's owner, the worker's role, write a read_only table or truncate a
// mapped one.
func TestAnApplicationThatSaysItIsTheWorkerIsStillRefusedReadOnlyWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_only")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	role := b.applicationRole(t)
	b.exec(t, "GRANT TRUNCATE ON salesforce.account TO "+role)

	b.exec(t, "SET ROLE "+role)
	b.exec(t, "SET pgforce.origin = 'salesforce'")
	b.refused(t, "is read_only", "", `UPDATE salesforce.account SET name = 'Tampered'`)
	b.refused(t, "TRUNCATE of salesforce.account is refused", "", `TRUNCATE salesforce.account`)
	b.exec(t, "RESET pgforce.origin")
	b.exec(t, "RESET ROLE")

	var name string
	b.scalar(t, &name, `SELECT name FROM salesforce.account`)
	require.Equal(t, "Acme", name)
	b.asWorker(t, `UPDATE salesforce.account SET name = 'Acme Corp'`) // the worker still may
}

// conflictOverName maps Account read_write with one synced row and an open
// conflict over its name, Postgres's 'P' against Salesforce's 'S'.
func (b *testBundle) conflictOverName(t *testing.T) (errID int64) {
	t.Helper()
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.scalar(t, &errID, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields)
		SELECT $1, 'inbound', 'cdc', a.id, a.sfid, '{"postgres": {"name": "P"}, "salesforce": {"name": "S"}}', 'CONFLICT', 'fields changed in both', '{name}'
		FROM salesforce.account a RETURNING id`, m)
	return errID
}

// plantEquals has role create, in schema public, an = on two varchars that
// notes who ran it in public.ran: Postgres picks it over pg_catalog's
// text = text, which varchar reaches only by a cast.
func (b *testBundle) plantEquals(t *testing.T, role string) {
	t.Helper()
	b.exec(t, `CREATE TABLE public.ran (who text); GRANT INSERT ON public.ran TO PUBLIC`)
	b.exec(t, "SET ROLE "+role)
	b.exec(t, `CREATE FUNCTION public.varchar_eq(character varying, character varying) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.ran VALUES (current_user);
			RETURN $1::text OPERATOR(pg_catalog.=) $2::text;
		END $$;
		CREATE OPERATOR public.= (LEFTARG = character varying, RIGHTARG = character varying, FUNCTION = public.varchar_eq)`)
	b.exec(t, "RESET ROLE")
}

// The status trigger runs in the writer's session with its search_path; on
// the worker's writes it compared _hc_lastop with an unqualified =, and
// an operator a role planted in public ran as the worker's role.
func TestTheStatusTriggerNeverRunsAnOperatorPlantedInTheWritersSearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.plantEquals(t, b.applicationRole(t))
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.asWorker(t, `UPDATE salesforce.account SET name = 'Acme Corp'`)
	var ran int
	b.scalar(t, &ran, `SELECT count(*) FROM public.ran`)
	require.Zero(t, ran, "the planted operator ran")
	require.Equal(t, "SYNCED", b.lastop(t))
}

// resolve writes the row as pgforce's owner with the search_path
// applications' triggers expect, public in it: while another role can
// create objects there, it refuses rather than run what that role planted.
func TestResolvingWithSalesforcesValuesIsRefusedWhileOtherRolesCanCreateInItsSearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	errID := b.conflictOverName(t)
	app := b.applicationRole(t)
	b.plantEquals(t, app)
	b.exec(t, `CREATE FUNCTION public.audit_account() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.name = 'S' THEN NULL; END IF; RETURN NULL; END $$;
		CREATE TRIGGER audit_account AFTER UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.audit_account()`)
	op := b.role(t, "resolver", `GRANT USAGE ON SCHEMA pgforce TO %[1]s; GRANT EXECUTE ON FUNCTION pgforce.resolve(bigint, text) TO %[1]s`)

	b.exec(t, "SET ROLE "+op)
	refused := b.refused(t, "the search_path it needs is not safe: operator public.=(character varying, character varying) of "+app+", public (can be written by "+app+")",
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC", `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	require.Equal(t, "42501", refused.Code)
	b.exec(t, "RESET ROLE")

	// Taking CREATE away is not enough while the operator is there.
	b.exec(t, "REVOKE CREATE ON SCHEMA public FROM "+app)
	b.exec(t, "SET ROLE "+op)
	b.refused(t, "not safe: operator public.=", "", `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	b.exec(t, "RESET ROLE")
	var ran int
	b.scalar(t, &ran, `SELECT count(*) FROM public.ran`)
	require.Zero(t, ran, "the planted operator ran")

	b.exec(t, "DROP OPERATOR public.= (character varying, character varying)")
	b.exec(t, "SET ROLE "+op)
	b.exec(t, `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	b.exec(t, "RESET ROLE")
	var name string
	b.scalar(t, &name, `SELECT name FROM salesforce.account`)
	require.Equal(t, "S", name)
}
