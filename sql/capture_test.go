package sql_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestCaptureRecordsEveryMappedColumnOnInsert(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.exec(t, `INSERT INTO salesforce.account (name, industry, annualrevenue) VALUES ('Acme', 'Energy', 12.50), ('Globex', NULL, NULL)`)

	entries := b.outbox(t)
	require.Len(t, entries, 2)
	require.Equal(t, "insert", entries[0].Op)
	require.Nil(t, entries[0].SFID)
	require.Equal(t, map[string]any{"name": "Acme", "industry": "Energy", "annualrevenue": 12.5}, entries[0].New)
	require.Equal(t, map[string]any{"name": "Globex", "industry": nil, "annualrevenue": nil}, entries[1].New)
	require.Nil(t, entries[0].Old)
}

func TestCaptureRecordsOnlyChangedColumnsOnUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, industry, annualrevenue) VALUES ('001000000000001AAA', 'Acme', 'Energy', 10)`)
	require.Empty(t, b.outbox(t))

	b.exec(t, `UPDATE salesforce.account SET industry = 'Retail', annualrevenue = NULL, name = 'Acme'`)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "update", entries[0].Op)
	require.Equal(t, "001000000000001AAA", *entries[0].SFID)
	require.Equal(t, map[string]any{"industry": "Retail", "annualrevenue": nil}, entries[0].New)
	require.Equal(t, map[string]any{"industry": "Energy", "annualrevenue": 10.0}, entries[0].Old)
}

func TestCaptureRecordsNothingForNoOpUpdates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)

	b.exec(t, `UPDATE salesforce.account SET name = 'Acme'`)
	b.exec(t, `UPDATE salesforce.account SET name = name WHERE false`)
	require.Empty(t, b.outbox(t))
	require.Equal(t, "SYNCED", b.lastop(t), "a no-op update has nothing pending")
}

// The status function tests the captured columns one at a time and stops
// at the first that changed, so a change of any one of them, first, middle
// or last, must count on its own, and a NULL must equal a NULL.
func TestAChangeOfAnyOneCapturedColumnAloneMakesTheRowPending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, industry, annualrevenue) VALUES ('001000000000001AAA', 'Acme', NULL, 10)`)
	columns := map[string]string{"name": "'Acme 2'", "industry": "'Energy'", "annualrevenue": "NULL"}
	unchanged := "name = name, industry = industry, annualrevenue = annualrevenue"

	b.exec(t, `UPDATE salesforce.account SET `+unchanged)
	require.Equal(t, "SYNCED", b.lastop(t), "every captured column set to its own value, a NULL among them")
	require.Empty(t, b.outbox(t))

	for _, column := range []string{"name", "industry", "annualrevenue"} {
		var set []string
		for _, c := range []string{"name", "industry", "annualrevenue"} {
			if c == column {
				set = append(set, c+" = "+columns[c])
			} else {
				set = append(set, c+" = "+c)
			}
		}
		b.exec(t, `TRUNCATE pgforce.outbox`)
		b.asWorker(t, `UPDATE salesforce.account SET _hc_lastop = 'SYNCED'`)
		b.exec(t, `UPDATE salesforce.account SET `+strings.Join(set, ", "))
		require.Equal(t, "PENDING", b.lastop(t), "a change of %s alone", column)
		entries := b.outbox(t)
		require.Len(t, entries, 1, column)
		require.Contains(t, entries[0].New, column)
		require.Len(t, entries[0].New, 1, "only %s changed", column)
	}
}

func TestCaptureRecordsMultiRowStatementsInOneGo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 100)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = annualrevenue + 1 WHERE annualrevenue <= 50`)
	entries := b.outbox(t)
	require.Len(t, entries, 50)
	for _, e := range entries {
		require.Equal(t, []string{"annualrevenue"}, keys(e.New))
		require.Equal(t, e.Old["annualrevenue"].(float64)+1, e.New["annualrevenue"])
	}
}

// PL/pgSQL plans a capture function's statements for the row counts of the
// first statement that fires it in a session, and keeps the plan until
// something invalidates it. A single-row UPDATE made the join of the old
// and new rows a nested loop, and a later 5,000-row UPDATE in the same
// session then took 5.9 s instead of 0.1 s.
func TestALargeUpdateAfterASmallOneInTheSameSessionIsNotCapturedByNestedLoop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 2000)

	run, plans := explainedSession(t, b)
	run(`UPDATE salesforce.account SET annualrevenue = annualrevenue + 1 WHERE annualrevenue = 1`,
		`UPDATE salesforce.account SET annualrevenue = annualrevenue + 1`)

	captured := plansOf(plans(), "INSERT INTO pgforce.outbox")
	require.Len(t, captured, 2, "one captured statement per UPDATE")
	for _, plan := range captured {
		require.Contains(t, plan, "Join", plan)
		require.NotContains(t, plan, "Nested Loop", "a nested loop is quadratic in the rows updated:\n%s", plan)
	}
	var entries int
	b.scalar(t, &entries, `SELECT count(*) FROM pgforce.outbox WHERE op = 'update'`)
	require.Equal(t, 2001, entries)
}

// Capture runs in the application's sessions, and a session keeps the
// plans of a capture function with their JIT decision: after one large
// UPDATE, every single-row UPDATE on that connection compiled the capture
// statement again (34-41 ms against 0.3-0.7 ms). The session here prices
// every plan above the JIT threshold, which the control statement shows.
func TestCaptureIsNeverJITCompiledInTheApplicationsSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 20)

	run, plans := explainedSession(t, b)
	run(`SET jit = on`,
		`SET jit_above_cost = 0`,
		`SELECT count(*) FROM salesforce.account`,
		`INSERT INTO salesforce.account (name) VALUES ('New')`,
		`UPDATE salesforce.account SET annualrevenue = annualrevenue + 1`,
		`DELETE FROM salesforce.account WHERE annualrevenue = 3`,
		`DELETE FROM salesforce.account WHERE name = 'New'`)

	all := plans()
	control := plansOf(all, "SELECT count(*) FROM salesforce.account")
	require.Len(t, control, 1)
	require.Contains(t, control[0], "JIT:", "this Postgres must JIT-compile the control statement, or the test shows nothing")
	captured := append(plansOf(all, "INSERT INTO pgforce.outbox"), plansOf(all, "DELETE FROM pgforce.outbox")...)
	require.Len(t, captured, 5, "the insert, the update, each delete's INSERT and the unsent row's DELETE")
	for _, plan := range captured {
		require.NotContains(t, plan, "JIT:", plan)
	}
}

// Only the delete of a row that never reached Salesforce has queued
// entries to cancel. Asking the outbox for them on every delete used a plan
// kept from when the outbox was nearly empty, which read every queued
// entry of the mapping: 5.4-5.8 ms for a one-row delete with 20,000
// queued, against 0.7 ms.
func TestDeletingSyncedRowsLeavesTheQueuedEntriesUnread(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme'), ('001000000000002AAA', 'Globex')`)
	b.exec(t, `UPDATE salesforce.account SET name = name || ' Corp'`)

	run, plans := explainedSession(t, b)
	run(`DELETE FROM salesforce.account WHERE sfid = '001000000000001AAA'`)
	require.Empty(t, plansOf(plans(), "DELETE FROM pgforce.outbox"))
	var ops []string
	b.scalar(t, &ops, `SELECT array_agg(op || ' ' || sfid ORDER BY id) FROM pgforce.outbox`)
	require.Equal(t, []string{"update 001000000000001AAA", "update 001000000000002AAA", "delete 001000000000001AAA"}, ops)
}

// explainedSession opens a session that reports the plan of every statement
// it runs, including those its triggers run, as auto_explain notices. run
// executes statements in it; plans returns the notices so far.
func explainedSession(t *testing.T, b *testBundle) (run func(statements ...string), plans func() []string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(b.db.ConnString)
	require.NoError(t, err)
	var mu sync.Mutex
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	run = func(statements ...string) {
		t.Helper()
		for _, s := range statements {
			_, err := conn.Exec(ctx, s)
			require.NoError(t, err, s)
		}
	}
	run(`LOAD 'auto_explain'`,
		`SET auto_explain.log_min_duration = 0`,
		`SET auto_explain.log_nested_statements = on`,
		`SET auto_explain.log_level = notice`)
	return run, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), notices...)
	}
}

// plansOf returns the plans whose query text begins with prefix (an
// auto_explain notice puts it on the line after the duration).
func plansOf(plans []string, prefix string) []string {
	var out []string
	for _, p := range plans {
		if strings.Contains(p, "\nQuery Text: "+prefix) {
			out = append(out, p)
		}
	}
	return out
}

func TestCaptureRecordsDeletesOfSyncedRowsWithTheirValues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.exec(t, `DELETE FROM salesforce.account`)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "delete", entries[0].Op)
	require.Equal(t, "001000000000001AAA", *entries[0].SFID)
	require.Nil(t, entries[0].New)
	require.Equal(t, "Acme", entries[0].Old["name"])
}

func TestDeleteOfRowWithoutSfidCancelsItsPendingInsert(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Draft'), ('Keep')`)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy' WHERE name = 'Draft'`)
	require.Len(t, b.outbox(t), 3)

	b.exec(t, `DELETE FROM salesforce.account WHERE name = 'Draft'`)
	entries := b.outbox(t)
	require.Len(t, entries, 1, "the insert and update of the deleted draft are gone and no delete is queued")
	require.Equal(t, "insert", entries[0].Op)
	require.Equal(t, "Keep", entries[0].New["name"])

	// Once the worker has claimed the insert it is in flight, so a delete
	// must be queued for the worker to finish.
	var claimed int
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce.claim($1, 10, 'w1')`, id)
	require.Equal(t, 1, claimed)
	b.exec(t, `DELETE FROM salesforce.account WHERE name = 'Keep'`)
	entries = b.outbox(t)
	require.Len(t, entries, 2)
	require.Equal(t, "delete", entries[1].Op)
	require.Nil(t, entries[1].SFID)
}

func TestWorkerWritesAreNeverCapturedAndMarkedSynced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.asWorker(t, `UPDATE salesforce.account SET name = 'Acme Corp'`)
	b.asWorker(t, `DELETE FROM salesforce.account`)
	require.Empty(t, b.outbox(t))
}

func TestHcLastopIsPendingAfterUserWritesAndSyncedAfterWorkerWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	lastop := func() (op string, err *string) {
		b.conn.QueryRow(t.Context(), `SELECT _hc_lastop, _hc_err FROM salesforce.account`).Scan(&op, &err)
		return op, err
	}

	b.exec(t, `INSERT INTO salesforce.account (name, _hc_lastop) VALUES ('Acme', 'SYNCED')`)
	op, _ := lastop()
	require.Equal(t, "PENDING", op, "users cannot claim a row is synced")

	// A worker write that does not settle the change leaves it pending.
	b.asWorker(t, `UPDATE salesforce.account SET industry = 'Retail'`)
	op, _ = lastop()
	require.Equal(t, "PENDING", op)

	// The worker writes the sfid back after the insert succeeded and says
	// SYNCED, as the outbound result does.
	b.asWorker(t, `UPDATE salesforce.account SET sfid = '001000000000001AAA', _hc_lastop = 'SYNCED'`)
	op, _ = lastop()
	require.Equal(t, "SYNCED", op)

	// The worker records a failure explicitly; it is kept.
	b.asWorker(t, `UPDATE salesforce.account SET _hc_lastop = 'FAILED', _hc_err = '{"message":"bad"}'`)
	op, errText := lastop()
	require.Equal(t, "FAILED", op)
	require.NotNil(t, errText)

	// A user edit makes it pending again and clears the error.
	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy'`)
	op, errText = lastop()
	require.Equal(t, "PENDING", op)
	require.Nil(t, errText)
}

func TestWorkerWriteOfAnotherFieldKeepsAFailedRowFailedWithItsError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.asWorker(t, `UPDATE salesforce.account SET _hc_lastop = 'FAILED', _hc_err = '{"message":"bad"}'`)

	// An inbound change of another field arrives while the error is open.
	b.asWorker(t, `UPDATE salesforce.account SET industry = 'Banking'`)
	var op, errText string
	require.NoError(t, b.conn.QueryRow(t.Context(), `SELECT _hc_lastop, _hc_err FROM salesforce.account`).Scan(&op, &errText))
	require.Equal(t, "FAILED", op)
	require.Equal(t, `{"message":"bad"}`, errText)

	// A failure recorded again replaces the error text and stays FAILED.
	b.asWorker(t, `UPDATE salesforce.account SET _hc_lastop = 'FAILED', _hc_err = '{"message":"worse"}'`)
	require.NoError(t, b.conn.QueryRow(t.Context(), `SELECT _hc_lastop, _hc_err FROM salesforce.account`).Scan(&op, &errText))
	require.Equal(t, "FAILED", op)
	require.Equal(t, `{"message":"worse"}`, errText)

	// The worker settles it only by saying so.
	b.asWorker(t, `UPDATE salesforce.account SET _hc_lastop = 'SYNCED', _hc_err = NULL`)
	b.scalar(t, &op, `SELECT _hc_lastop FROM salesforce.account`)
	require.Equal(t, "SYNCED", op)
	// A synced row stays synced on a worker write.
	b.asWorker(t, `UPDATE salesforce.account SET industry = 'Energy'`)
	b.scalar(t, &op, `SELECT _hc_lastop FROM salesforce.account`)
	require.Equal(t, "SYNCED", op)
}

func TestTruncateOfReadWriteTableIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.refused(t, "TRUNCATE of salesforce.account is refused", "DELETE the rows to delete them in Salesforce too", `TRUNCATE salesforce.account`)
	// The worker may truncate, e.g. before a reload.
	b.asWorker(t, `TRUNCATE salesforce.account`)
}

// The status function runs in the application's session, with its
// search_path, for every row a user's write turns PENDING. An = operator
// planted in a schema that comes before pg_catalog must not run there.
func TestTheStatusFunctionUsesPgCatalogsEqualityWhateverTheSearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, industry, annualrevenue) VALUES ('001000000000001AAA', 'Acme', 'Energy', 10)`)
	b.plantEquality(t, "varchar", "varchar")
	b.plantEquality(t, "numeric", "numeric")
	b.exec(t, `SET search_path = planted, pg_catalog, public`)

	b.exec(t, `UPDATE salesforce.account SET industry = 'Retail'`)
	require.Equal(t, "PENDING", b.lastop(t))
	require.Len(t, b.outbox(t), 1)
}

// A trigger's WHEN clause is resolved once, when the trigger is created,
// and then runs in every writer's session: an operator planted in a schema
// ahead of pg_catalog in the session that maps the table (the worker's, or
// an administrator's) must not be baked into it.
func TestTriggersCreatedUnderAHostileSearchPathUsePgCatalogsOperators(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.plantEquality(t, "varchar", "text")
	b.exec(t, `SET search_path = planted, pg_catalog, public`)
	b.mapAccount(t, "read_write")
	b.exec(t, `RESET search_path`)

	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme Corp', id = id`)
	b.refused(t, "changing the id", "sfid", `UPDATE salesforce.account SET id = id + 1`)
	require.Equal(t, "PENDING", b.lastop(t))
}

// The id column is how every queued change finds its row: capture pairs a
// row's old and new values by id, and the worker writes the result back by
// id. An UPDATE that moved a row to another id recorded nothing and left it
// PENDING for ever, so it is refused; setting id to the value it has is not a
// change, which ORMs that write every column rely on.
func TestChangingTheIdOfAReadWriteRowIsRefusedSoItsChangeIsNotLost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	var id int
	b.scalar(t, &id, `SELECT id FROM salesforce.account`)

	b.refused(t, "changing the id of a row of salesforce.account is refused", "sfid", `UPDATE salesforce.account SET id = id + 1000, name = 'Moved'`)
	var name string
	b.scalar(t, &name, `SELECT name FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "Acme", name)
	require.Empty(t, b.outbox(t))

	b.exec(t, `UPDATE salesforce.account SET id = id, name = 'Acme Corp'`)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, id, entries[0].RecordID)
	require.Equal(t, map[string]any{"name": "Acme Corp"}, entries[0].New)
	require.Equal(t, "PENDING", b.lastop(t))
}

func TestReadOnlyTableRefusesUserWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_only")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	for _, sql := range []string{
		`INSERT INTO salesforce.account (name) VALUES ('x')`,
		`UPDATE salesforce.account SET name = 'x'`,
		`DELETE FROM salesforce.account`,
	} {
		b.refused(t, "salesforce.account is read_only", "mode = 'read_write'", sql)
	}
	err := b.refused(t, "TRUNCATE of salesforce.account is refused", "Reload the table from Salesforce", `TRUNCATE salesforce.account`)
	require.NotContains(t, err.Hint, "DELETE", "a read_only table refuses deletes too")
	require.Empty(t, b.outbox(t))
	require.Equal(t, "SYNCED", b.lastop(t))
}

func TestSwitchingModeSwapsRefusalForCapture(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_only")
	require.Zero(t, b.captureFunctions(t))
	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	require.Equal(t, 3, b.captureFunctions(t), "one for INSERT and DELETE, one for UPDATE, and the status function")
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Acme')`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme Corp'`)
	b.exec(t, `DELETE FROM salesforce.account`)
	require.Empty(t, b.outbox(t), "the delete of a row never sent cancels its insert and update")

	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Initech')`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Initrode'`)
	b.exec(t, `DELETE FROM salesforce.account`)
	var ops []string
	b.scalar(t, &ops, `SELECT array_agg(op ORDER BY id) FROM pgforce.outbox WHERE sfid IS NOT NULL`)
	require.Equal(t, []string{"update", "delete"}, ops)

	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_only' WHERE id = $1`, id)
	require.Zero(t, b.captureFunctions(t))
	b.refused(t, "is read_only", "read_write", `INSERT INTO salesforce.account (name) VALUES ('Globex')`)
}

func TestMappingWhoseTableWasDroppedKeepsNoCaptureFunction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	require.Equal(t, 3, b.captureFunctions(t))
	b.exec(t, `DROP TABLE salesforce.account`)
	b.exec(t, `UPDATE pgforce.mapping SET fields = '{Name}' WHERE id = $1`, id)
	require.Zero(t, b.captureFunctions(t))
}

// lastop returns the _hc_lastop of the one row of salesforce.account.
func (b *testBundle) lastop(t *testing.T) string {
	t.Helper()
	var op string
	b.scalar(t, &op, `SELECT _hc_lastop FROM salesforce.account`)
	return op
}

// plantEquality creates, in schema planted, an = operator for (left, right)
// that raises "planted operator ran" whenever it runs.
func (b *testBundle) plantEquality(t *testing.T, left, right string) {
	t.Helper()
	b.exec(t, `CREATE SCHEMA IF NOT EXISTS planted`)
	fn := fmt.Sprintf("planted.eq_%s_%s", left, right)
	b.exec(t, fmt.Sprintf(`CREATE FUNCTION %s(%s, %s) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted operator ran'; END $$`, fn, left, right))
	b.exec(t, fmt.Sprintf(`CREATE OPERATOR planted.= (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %s)`, left, right, fn))
}

// captureFunctions counts the functions generated for mappings in the
// database: capture functions and read_write status functions.
func (b *testBundle) captureFunctions(t *testing.T) int {
	t.Helper()
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgforce'::regnamespace
		AND (proname LIKE '\_capture\_%' OR proname ~ '^_status_[0-9]+$')`)
	return n
}

func TestCaptureIgnoresColumnsUsersAddThemselves(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.exec(t, `ALTER TABLE salesforce.account ADD COLUMN local_note text`)
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.exec(t, `UPDATE salesforce.account SET local_note = 'call back'`)
	require.Empty(t, b.outbox(t))
}

// _hc_lastop says PENDING only while something is queued for Salesforce.
// An update of a user's own column, or of a column that is Salesforce's to
// set, queues nothing, so nothing would ever settle a PENDING there.
func TestAUserUpdateOfColumnsThatAreNotSentLeavesTheRowSynced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.exec(t, `ALTER TABLE salesforce.account ADD COLUMN local_note text`)
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, systemmodstamp) VALUES ('001000000000001AAA', 'Acme', now())`)
	for _, sql := range []string{
		`UPDATE salesforce.account SET local_note = 'call back'`,
		`UPDATE salesforce.account SET systemmodstamp = now() + interval '1 minute', isdeleted = false`,
	} {
		b.exec(t, sql)
		require.Equal(t, "SYNCED", b.lastop(t), sql)
	}
	require.Empty(t, b.outbox(t))

	b.exec(t, `UPDATE salesforce.account SET local_note = 'sent?', industry = 'Energy'`)
	require.Equal(t, "PENDING", b.lastop(t), "a change of a mapped column is pending")
	require.Len(t, b.outbox(t), 1)
}

// The status function is a call per row, so it runs only for the UPDATEs
// that may change what it decides: those that set a captured column. The
// worker's write-back of a batch sets _hc_lastop and sfid and nothing else.
func TestTheStatusFunctionRunsOnlyForUpdatesThatSetACapturedColumn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 3)
	ctx := t.Context()
	conn := b.db.Connect(t)
	_, err := conn.Exec(ctx, `SET track_functions = 'all'`)
	require.NoError(t, err)
	calls := func(origin, sql string) int {
		t.Helper()
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, `SELECT set_config('pgforce.origin', $1, true)`, origin)
		require.NoError(t, err)
		// The count includes earlier transactions' calls until the session
		// reports them, which it does not do within a transaction.
		count := func() (n int) {
			require.NoError(t, tx.QueryRow(ctx, `SELECT coalesce(pg_stat_get_xact_function_calls(to_regprocedure(format('pgforce._status_%s()', $1::integer))), 0)`, id).Scan(&n))
			return n
		}
		before := count()
		_, err = tx.Exec(ctx, sql)
		require.NoError(t, err, sql)
		n := count() - before
		require.NoError(t, tx.Commit(ctx))
		return n
	}
	require.Zero(t, calls("salesforce", `UPDATE salesforce.account SET _hc_lastop = 'SYNCED', _hc_err = NULL, sfid = sfid`), "the worker's write-back")
	require.Zero(t, calls("", `UPDATE salesforce.account SET systemmodstamp = now()`), "a user's update of a column that is never sent")
	statuses := func() string {
		var s string
		b.scalar(t, &s, `SELECT string_agg(DISTINCT _hc_lastop, ',') FROM salesforce.account`)
		return s
	}
	require.Equal(t, "SYNCED", statuses())
	require.Equal(t, 3, calls("", `UPDATE salesforce.account SET industry = 'Energy'`))
	require.Equal(t, "PENDING", statuses())
	b.exec(t, `DELETE FROM pgforce.outbox`)
	require.Equal(t, 3, calls("salesforce", `UPDATE salesforce.account SET name = name || '!', _hc_lastop = CASE WHEN _hc_lastop = 'PENDING' THEN 'SYNCED' END`), "the worker's inbound apply")
	require.Equal(t, "SYNCED", statuses())
}

func TestDeletingMappingLeavesAPlainTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Acme')`)
	b.exec(t, `DELETE FROM pgforce.mapping WHERE id = $1`, id)
	require.Empty(t, b.outbox(t))
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Globex')`)
	b.exec(t, `TRUNCATE salesforce.account`)
	var triggers int
	b.scalar(t, &triggers, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'salesforce.account'::regclass AND NOT tgisinternal`)
	require.Zero(t, triggers)
	require.Zero(t, b.captureFunctions(t))
}

// waitingWorker is a session that listens for capture's wake-ups and holds
// the wake-up lock, as a worker that does not stream does.
func (b *testBundle) waitingWorker(t *testing.T) *pgx.Conn {
	t.Helper()
	listener := b.db.Connect(t)
	_, err := listener.Exec(t.Context(), `LISTEN pgforce_outbox`)
	require.NoError(t, err)
	_, err = listener.Exec(t.Context(), `SELECT pg_advisory_lock(pgforce._wakeup_lock())`)
	require.NoError(t, err)
	return listener
}

// requireNoNotification waits briefly and requires that nothing arrived.
func requireNoNotification(t *testing.T, listener *pgx.Conn) {
	t.Helper()
	ctx, cancel := contextWithShortTimeout(t)
	defer cancel()
	n, err := listener.WaitForNotification(ctx)
	require.Error(t, err, "notification %+v", n)
}

func TestCaptureNotifiesAWaitingWorkerOncePerTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	listener := b.waitingWorker(t)

	tx, err := b.conn.Begin(t.Context())
	require.NoError(t, err)
	for range 3 {
		_, err = tx.Exec(t.Context(), `INSERT INTO salesforce.account (name) VALUES ('Acme')`)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit(t.Context()))

	n, err := listener.WaitForNotification(t.Context())
	require.NoError(t, err)
	require.Equal(t, "pgforce_outbox", n.Channel)
	// Nothing else is queued: a second wait only ends by its deadline.
	requireNoNotification(t, listener)
}

// A streaming worker needs no NOTIFY, and notifying would make the
// application's transactions commit one at a time.
func TestCaptureSendsNoNotificationWhileNoWorkerWaitsForOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	listener := b.db.Connect(t)
	_, err := listener.Exec(t.Context(), `LISTEN pgforce_outbox`)
	require.NoError(t, err)

	b.syncedAccounts(t, 2)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Acme')`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme Corp' WHERE id = 1`)
	b.exec(t, `DELETE FROM salesforce.account WHERE id = 2`)
	requireNoNotification(t, listener)
	var ops []string
	for _, e := range b.outbox(t) {
		ops = append(ops, e.Op)
	}
	require.Equal(t, []string{"insert", "update", "delete"}, ops)
}

// A worker that starts waiting for wake-ups while an application
// transaction that captured silently is still open cannot take the lock
// until that transaction ends, so it looks at the outbox after the
// transaction's changes are in it. Meanwhile every other capture notifies.
func TestCaptureNotifiesWhileAWorkerQueuesForTheWakeUpLock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	silent, err := b.conn.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = silent.Rollback(context.Background()) }()
	_, err = silent.Exec(t.Context(), `INSERT INTO salesforce.account (name) VALUES ('Silent')`)
	require.NoError(t, err)

	listener := b.db.Connect(t)
	_, err = listener.Exec(t.Context(), `LISTEN pgforce_outbox`)
	require.NoError(t, err)
	locker := b.db.Connect(t)
	granted := make(chan error, 1)
	go func() {
		_, err := locker.Exec(t.Context(), `SELECT pg_advisory_lock(pgforce._wakeup_lock())`)
		granted <- err
	}()
	other := b.db.Connect(t)
	require.Eventually(t, func() bool {
		var waiting bool
		err := other.QueryRow(t.Context(), `SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1)`,
			locker.PgConn().PID()).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, 10*time.Millisecond, "the worker queues for the lock")

	_, err = other.Exec(t.Context(), `INSERT INTO salesforce.account (name) VALUES ('Heard')`)
	require.NoError(t, err)
	n, err := listener.WaitForNotification(t.Context())
	require.NoError(t, err)
	require.Equal(t, "pgforce_outbox", n.Channel)
	select {
	case err := <-granted:
		t.Fatalf("the lock was granted while a silent capture was still open (err %v)", err)
	default:
	}

	require.NoError(t, silent.Commit(t.Context()))
	require.NoError(t, <-granted)
	var names []string
	require.NoError(t, locker.QueryRow(t.Context(), `SELECT array_agg(new->>'name' ORDER BY id) FROM pgforce.outbox`).Scan(&names))
	require.Equal(t, []string{"Silent", "Heard"}, names)
}

func TestOutboxIsPublishedForLogicalReplicationWithOnlyItsIds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var tables []string
	b.scalar(t, &tables, `SELECT array_agg(schemaname || '.' || tablename) FROM pg_publication_tables WHERE pubname = 'pgforce_outbox'`)
	require.Equal(t, []string{"pgforce.outbox"}, tables)
	// The stream only wakes the worker: the walsender need not render the
	// entries' jsonb.
	var columns []string
	b.scalar(t, &columns, `SELECT attnames::text[] FROM pg_publication_tables WHERE pubname = 'pgforce_outbox'`)
	require.Equal(t, []string{"id"}, columns)
}

func TestClaimHandsOutARecordsChangesInOrderAcrossWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'a'), ('001000000000002AAA', 'b')`)
	b.exec(t, `UPDATE salesforce.account SET industry = 'One' WHERE name = 'a'`)

	var first []int
	b.scalar(t, &first, `SELECT array_agg(record_id ORDER BY id) FROM pgforce.claim($1, 10, 'w1')`, id)
	require.Len(t, first, 1)

	// The same record changes again while w1 is writing it, and another record changes.
	b.exec(t, `UPDATE salesforce.account SET industry = 'Two' WHERE name = 'a'`)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Three' WHERE name = 'b'`)
	var second []string
	b.scalar(t, &second, `SELECT coalesce(array_agg(new->>'industry' ORDER BY id), '{}') FROM pgforce.claim($1, 10, 'w2')`, id)
	require.Equal(t, []string{"Three"}, second, "record a's second change waits until its first is done")

	b.exec(t, `DELETE FROM pgforce.outbox WHERE claimed_by = 'w1'`)
	var third []string
	b.scalar(t, &third, `SELECT coalesce(array_agg(new->>'industry' ORDER BY id), '{}') FROM pgforce.claim($1, 10, 'w2')`, id)
	require.Equal(t, []string{"Two"}, third)
}

func TestWorkerClaimHandsOutAHotRecordsChangesTogetherAndHoldsItsLaterOnesBehindThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'a'), ('001000000000002AAA', 'b')`)
	for i := 1; i <= 50; i++ {
		b.exec(t, `UPDATE salesforce.account SET industry = $1 WHERE name = 'a'`, fmt.Sprint(i))
	}
	b.exec(t, `UPDATE salesforce.account SET industry = 'b1' WHERE name = 'b'`)

	claim := func(worker string, limit int, after int64) []string {
		var got []string
		b.scalar(t, &got, `SELECT coalesce(array_agg(new->>'industry' ORDER BY id), '{}') FROM pgforce._outbound_claim($1, $2, $3, $4)`, id, limit, worker, after)
		return got
	}
	var first []string
	for i := 1; i <= 30; i++ {
		first = append(first, fmt.Sprint(i))
	}
	require.Equal(t, first, claim("w1", 30, 0), "one record's changes fill a claim, oldest first")
	require.Equal(t, []string{"b1"}, claim("w2", 100, 0), "a's later changes wait behind its changes in flight")

	// A claim that starts past some of a's queued changes still sees them.
	var fortieth int64
	b.scalar(t, &fortieth, `SELECT id FROM pgforce.outbox WHERE new->>'industry' = '40'`)
	b.exec(t, `DELETE FROM pgforce.outbox WHERE claimed_by = 'w1'`)
	require.Empty(t, claim("w2", 100, fortieth), "a's changes after the 40th wait for the ones before it")

	got := claim("w2", 100, 0)
	require.Len(t, got, 20)
	require.Equal(t, "31", got[0])
	require.Equal(t, "50", got[19])
}

// A backlog usually outgrows the outbox's statistics (a Collections drain
// does not analyze first). Whatever they say, a claim reads the backlog in
// id order through an index and stops after its entries, rather than
// reading all of it and sorting it.
func TestWorkerClaimReadsTheBacklogInIdOrderWhateverTheOutboxStatisticsSay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 30000)
	b.exec(t, `VACUUM ANALYZE pgforce.outbox`) // statistics of an empty outbox
	b.exec(t, `UPDATE salesforce.account SET industry = 'Backlog'`)

	run, plans := explainedSession(t, b)
	run(`SET jit = off`,
		fmt.Sprintf(`SELECT count(*) FROM pgforce._outbound_claim(%d, 2000, 'w')`, id),
		fmt.Sprintf(`SELECT count(*) FROM pgforce._outbound_claim(%d, 2000, 'w', (SELECT max(id) FROM pgforce.outbox WHERE claimed_by = 'w'))`, id))
	var claims []string
	for _, p := range plans() {
		if strings.Contains(p, "CTE locked") {
			claims = append(claims, p)
		}
	}
	require.Len(t, claims, 2)
	for _, p := range claims {
		require.NotContains(t, p, "Bitmap Heap Scan on outbox")
		require.NotContains(t, p, "Seq Scan on outbox")
		require.NotContains(t, p, "Sort Key: o_1.id")
	}
	var claimed int
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce.outbox WHERE claimed_by = 'w'`)
	require.Equal(t, 4000, claimed)
}

// A worker that loaded its mappings before a pause may claim after it:
// the claim itself holds a paused mapping's changes (or those of a paused
// org) back.
func TestClaimsHandOutNothingOfAPausedMappingOrOrg(t *testing.T) {
	t.Parallel()
	for _, claimFunc := range []string{"pgforce._outbound_claim", "pgforce.claim"} {
		t.Run(claimFunc, func(t *testing.T) {
			b := setup(t)
			id := b.mapAccount(t, "read_write")
			b.syncedAccounts(t, 3)
			b.exec(t, `UPDATE salesforce.account SET industry = 'Queued'`)
			claim := func() int {
				var n int
				b.scalar(t, &n, `SELECT count(*) FROM `+claimFunc+`($1, 10, 'w')`, id)
				return n
			}
			b.exec(t, `SELECT pgforce.pause($1::integer)`, id)
			require.Zero(t, claim())
			b.exec(t, `SELECT pgforce.resume($1::integer)`, id)
			b.exec(t, `UPDATE pgforce.org SET paused = true WHERE name = 'default'`)
			require.Zero(t, claim())
			b.exec(t, `UPDATE pgforce.org SET paused = false WHERE name = 'default'`)
			require.Equal(t, 3, claim())
		})
	}
}

func TestCaptureHandlesMappingsWiderThanAFunctionsArgumentLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// jsonb_build_object takes at most 100 arguments (50 columns).
	var id int
	b.scalar(t, &id, `INSERT INTO pgforce.mapping (sobject, mode, fields)
		SELECT 'Wide__c', 'read_write', array_agg('F' || i || '__c') FROM generate_series(1, 120) i RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, (SELECT jsonb_agg(jsonb_build_object('name', 'F' || i || '__c', 'type', 'double', 'precision', 18, 'scale', 0)) FROM generate_series(1, 120) i))`, id)
	b.exec(t, `INSERT INTO salesforce.wide__c (f1__c, f120__c) VALUES (1, 120)`)
	b.exec(t, `UPDATE salesforce.wide__c SET f77__c = 77`)
	entries := b.outbox(t)
	require.Len(t, entries, 2)
	require.Len(t, entries[0].New, 120)
	require.Equal(t, 120.0, entries[0].New["f120__c"])
	require.Equal(t, map[string]any{"f77__c": 77.0}, entries[1].New)
	require.Equal(t, map[string]any{"f77__c": nil}, entries[1].Old)
}

// A statement's AFTER ROW triggers run before its capture, so a change
// they make to the statement's own rows is queued first. The statement's
// entry, queued after it, must then carry the rows as they are in the end,
// or the worker, taking a record's entries in order, sends the older
// values last and Salesforce keeps them.
func TestAChangeThatAUsersAfterTriggerMakesToTheStatementsRowsIsNotUndoneByTheStatementsOwnEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	// The common case: an AFTER INSERT trigger filling a column in.
	b.afterTrigger(t, "number_it", "INSERT", `
		UPDATE salesforce.account SET industry = 'No. ' || NEW.id WHERE id = NEW.id;`)
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Acme') RETURNING id`)
	entries := b.outbox(t)
	require.Len(t, entries, 2)
	require.Equal(t, "update", entries[0].Op, "the trigger's change is queued first")
	require.Equal(t, "insert", entries[1].Op)
	require.Equal(t, map[string]any{"name": "Acme", "industry": fmt.Sprintf("No. %d", id), "annualrevenue": nil}, entries[1].New,
		"the insert, queued last, carries the row as the trigger left it")

	// An UPDATE whose AFTER trigger changes the same column again.
	b.exec(t, `DROP TRIGGER number_it ON salesforce.account`)
	b.exec(t, `TRUNCATE pgforce.outbox`)
	b.afterTrigger(t, "round_it", "UPDATE", `
		IF NEW.annualrevenue <> round(NEW.annualrevenue) THEN
			UPDATE salesforce.account SET annualrevenue = round(NEW.annualrevenue) WHERE id = NEW.id;
		END IF;`)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 10.40 WHERE id = $1`, id)
	entries = b.outbox(t)
	require.Len(t, entries, 2)
	require.Equal(t, map[string]any{"annualrevenue": 10.0}, entries[0].New, "the trigger's rounding, queued first")
	require.Equal(t, map[string]any{"annualrevenue": 10.0}, entries[1].New, "the statement's entry ends where the row ended")
	require.Equal(t, map[string]any{"annualrevenue": nil}, entries[1].Old)
	var revenue float64
	b.scalar(t, &revenue, `SELECT annualrevenue FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, 10.0, revenue)

	// A later statement of another transaction, whose triggers change
	// nothing, is captured as before.
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme Corp' WHERE id = $1`, id)
	entries = b.outbox(t)
	require.Len(t, entries, 3)
	require.Equal(t, map[string]any{"name": "Acme Corp"}, entries[2].New)
	require.Equal(t, map[string]any{"name": "Acme"}, entries[2].Old)
}

// A row that the statement's own AFTER trigger deletes before it ever
// reached Salesforce leaves nothing to send: not an insert of a row that
// no longer exists.
func TestARowThatAUsersAfterTriggerDeletesBeforeItWasSentQueuesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.afterTrigger(t, "drop_drafts", "INSERT", `
		DELETE FROM salesforce.account WHERE id = NEW.id AND NEW.name LIKE 'draft%';`)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('draft 1'), ('Acme')`)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "insert", entries[0].Op)
	require.Equal(t, "Acme", entries[0].New["name"])
}

// Once a statement's triggers have changed its rows, the table's captures
// read the rows as they are for the rest of the transaction; what they
// queue is the same as ever.
func TestCapturesLaterInATransactionWhoseTriggersChangedTheirRowsQueueTheSameEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, industry) VALUES ('001000000000001AAA', 'Acme', 'Energy')`)
	b.afterTrigger(t, "stamp", "INSERT", `
		UPDATE salesforce.account SET industry = 'New' WHERE id = NEW.id;`)
	ctx := context.Background()
	tx, err := b.conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `INSERT INTO salesforce.account (name) VALUES ('Globex')`)
	require.NoError(t, err)
	var flag string
	require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('pgforce.nested_capture_' || (SELECT id FROM pgforce.mapping), true)`).Scan(&flag))
	require.Equal(t, "on", flag)
	_, err = tx.Exec(ctx, `UPDATE salesforce.account SET name = 'Acme Corp', industry = NULL WHERE sfid = '001000000000001AAA'`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE salesforce.account SET industry = industry WHERE sfid = '001000000000001AAA'`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `DELETE FROM salesforce.account WHERE name = 'Globex'`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	entries := b.outbox(t)
	require.Len(t, entries, 1, "Globex's insert and update went with it; the no-op update queued nothing")
	require.Equal(t, "update", entries[0].Op)
	require.Equal(t, map[string]any{"name": "Acme Corp", "industry": nil}, entries[0].New)
	require.Equal(t, map[string]any{"name": "Acme", "industry": "Energy"}, entries[0].Old)
}

// The lookups of that slower path are index probes, one per row, never a
// read of the whole table: however large the table, a statement that
// changed a few rows looks up only those.
func TestCapturesThatReadTheRowsAsTheyAreProbeTheTablesPrimaryKeyAndNeverScanIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 5000)
	b.exec(t, `ANALYZE salesforce.account`)
	ctx := context.Background()
	tx, err := b.conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT set_config('pgforce.nested_capture_' || (SELECT id FROM pgforce.mapping), 'on', true)`)
	require.NoError(t, err)
	// Counted from here: the view also holds counts of earlier
	// transactions of the session that Postgres has not yet flushed.
	seqScans := func() int {
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'salesforce.account'::regclass`).Scan(&n))
		return n
	}
	before := seqScans()
	for _, stmt := range []string{
		`UPDATE salesforce.account SET industry = 'Energy' WHERE sfid = '001000000000000001'`,
		`UPDATE salesforce.account SET industry = 'Retail' WHERE id = ANY (ARRAY[10, 20, 30])`,
		`INSERT INTO salesforce.account (name) VALUES ('Acme'), ('Globex')`,
	} {
		_, err = tx.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	require.Equal(t, before, seqScans(), "no statement of the transaction, captures included, read the whole table")
	var queued int
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM pgforce.outbox`).Scan(&queued))
	require.Equal(t, 6, queued)
}

// Changing a mapping tells the user nothing about pgforce's own functions
// it replaces: Postgres's "does not exist, skipping" notices stay out of
// psql.
func TestChangingAMappingSendsNoNoticesAboutPgforcesOwnFunctions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_only")
	var notices []string
	cfg, err := pgx.ParseConfig(b.db.ConnString)
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	for _, sql := range []string{
		`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`,
		`UPDATE pgforce.mapping SET fields = fields || '{Phone}' WHERE id = $1`,
		`DELETE FROM pgforce.mapping WHERE id = $1`,
	} {
		_, err := conn.Exec(t.Context(), sql, id)
		require.NoError(t, err, sql)
	}
	require.Empty(t, notices)
}

// Deleting a mapping drops its unsent changes, and says so: the user may
// have meant pgforce.pause.
func TestDeletingAMappingWithUnsentChangesSaysHowManyItDrops(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('a'), ('b')`)
	var notices []*pgconn.Notice
	cfg, err := pgx.ParseConfig(b.db.ConnString)
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n) }
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), `DELETE FROM pgforce.mapping WHERE id = $1`, id)
	require.NoError(t, err)
	require.Len(t, notices, 1)
	require.Equal(t, "pgforce: 2 changes of Account not yet sent to Salesforce were dropped with its mapping", notices[0].Message)
	require.Contains(t, notices[0].Hint, "pgforce.pause()")
	require.Empty(t, b.outbox(t))
}
