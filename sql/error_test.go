package sql_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// outboundError records a failed write of the account row named name, as the
// worker would, and returns the error id.
func (b *testBundle) outboundError(t *testing.T, mappingID int, name, operation string) int64 {
	t.Helper()
	var id int64
	b.scalar(t, &id, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, error_code, message, fields)
		SELECT $1, 'outbound', $3, a.id, a.sfid, 'REQUIRED_FIELD_MISSING', 'Required fields are missing: [Industry]', '{Industry}'
		FROM salesforce.account a WHERE a.name = $2 RETURNING id`, mappingID, name, operation)
	return id
}

// refusedUpdate maps Account read_write with one synced row, Acme, whose
// update of Industry Salesforce refused, and returns the mapping and the
// error ids.
func (b *testBundle) refusedUpdate(t *testing.T) (int, int64) {
	t.Helper()
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy'`)
	return m, b.outboundError(t, m, "Acme", "update")
}

func (b *testBundle) errorState(t *testing.T, id int64) (state string, action *string) {
	t.Helper()
	require.NoError(t, b.conn.QueryRow(t.Context(), `SELECT state, action FROM pgforce.error WHERE id = $1`, id).Scan(&state, &action))
	return state, action
}

func TestRetryRequeuesTheRowsCurrentStateAndMarksRetrying(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	errID := b.outboundError(t, m, "Acme", "update")
	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy'`)
	b.exec(t, `DELETE FROM pgforce.outbox`) // the worker took the failed change

	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	state, action := b.errorState(t, errID)
	require.Equal(t, "retrying", state)
	require.Equal(t, "retry", *action)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "update", entries[0].Op)
	require.Equal(t, map[string]any{"name": "Acme", "industry": "Energy", "annualrevenue": nil}, entries[0].New)
	var retryOf int64
	b.scalar(t, &retryOf, `SELECT retry_of FROM pgforce.outbox`)
	require.Equal(t, errID, retryOf)

	b.refused(t, "is retrying, only open or ignored errors can be retried", "queued already", `SELECT pgforce.retry($1)`, errID)
}

func TestRetryOfAFailedInsertRequeuesAnInsert(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Draft')`)
	b.exec(t, `DELETE FROM pgforce.outbox`)
	errID := b.outboundError(t, m, "Draft", "insert")
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "insert", entries[0].Op)
}

func TestRetryAllRetriesEveryOpenErrorOfAMappingByIdOrName(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'a'), ('001000000000002AAA', 'b'), ('001000000000003AAA', 'c')`)
	a := b.outboundError(t, m, "a", "update")
	b.outboundError(t, m, "b", "update")
	c := b.outboundError(t, m, "c", "update")
	b.exec(t, `SELECT pgforce.ignore($1)`, c)

	var n int
	b.scalar(t, &n, `SELECT pgforce.retry_all('Account')`)
	require.Equal(t, 2, n)
	b.scalar(t, &n, `SELECT pgforce.retry_all($1::integer)`, m)
	require.Zero(t, n, "nothing is open any more")
	state, _ := b.errorState(t, a)
	require.Equal(t, "retrying", state)
	state, _ = b.errorState(t, c)
	require.Equal(t, "ignored", state)
	b.refused(t, "'Contact' is not mapped in org 'default'", "INSERT INTO pgforce.mapping", `SELECT pgforce.retry_all('Contact')`)
}

func TestIgnoreDropsAQueuedRetryAndClosesTheError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	errID := b.outboundError(t, m, "Acme", "update")
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	require.Len(t, b.outbox(t), 1)

	b.exec(t, `SELECT pgforce.ignore($1)`, errID)
	require.Empty(t, b.outbox(t))
	state, action := b.errorState(t, errID)
	require.Equal(t, "ignored", state)
	require.Nil(t, action)
	var resolved bool
	b.scalar(t, &resolved, `SELECT resolved_at IS NOT NULL FROM pgforce.error WHERE id = $1`, errID)
	require.True(t, resolved)

	b.refused(t, "is ignored already", "Only open or retrying", `SELECT pgforce.ignore($1)`, errID)
}

// An ignored change was never sent, and its values stay in the row: a
// retry of it was refused with "Nothing is left to retry", and capture
// records no update that changes nothing, so the same value could not be
// sent after all. It is retried as an open error is, in either direction;
// the error is under way again, not done.
func TestRetryOfAnIgnoredErrorSendsItsChangeAfterAll(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy'`)
	b.exec(t, `DELETE FROM pgforce.outbox`) // sent, and refused
	errID := b.outboundError(t, m, "Acme", "update")
	b.exec(t, `UPDATE pgforce.error SET payload = '{"Id": "001000000000001AAA", "Industry": "Energy"}' WHERE id = $1`, errID)
	b.exec(t, `SELECT pgforce.ignore($1)`, errID)

	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	state, action := b.errorState(t, errID)
	require.Equal(t, "retrying", state)
	require.Equal(t, "retry", *action)
	var done bool
	b.scalar(t, &done, `SELECT resolved_at IS NOT NULL FROM pgforce.error WHERE id = $1`, errID)
	require.False(t, done)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "update", entries[0].Op)
	require.Equal(t, map[string]any{"industry": "Energy"}, entries[0].New, "the ignored field, as the row holds it")

	// Ignored again while that retry is being sent, it is retried once the
	// send is done: a second retry beside it would open a second error
	// when both fail.
	b.exec(t, `UPDATE pgforce.outbox SET claimed_at = now()`)
	b.exec(t, `SELECT pgforce.ignore($1)`, errID)
	b.refused(t, "was ignored while its retry was being sent", fmt.Sprintf("SELECT pgforce.retry(%d);", errID), `SELECT pgforce.retry($1)`, errID)
	b.exec(t, `DELETE FROM pgforce.outbox`)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)

	// An inbound record error: the record is read again.
	var in int64
	b.scalar(t, &in, `INSERT INTO pgforce.error (mapping_id, direction, operation, sfid, message)
		VALUES ($1, 'inbound', 'cdc', '001000000000002AAA', 'value too long') RETURNING id`, m)
	b.exec(t, `SELECT pgforce.ignore($1)`, in)
	b.exec(t, `SELECT pgforce.retry($1)`, in)
	state, _ = b.errorState(t, in)
	require.Equal(t, "retrying", state)
	var queued int
	b.scalar(t, &queued, `SELECT count(*) FROM pgforce.inbound_reread WHERE mapping_id = $1 AND sfid = '001000000000002AAA'`, m)
	require.Equal(t, 1, queued)

	// Written by hand, an ignored error says how to send it after all.
	b.exec(t, `SELECT pgforce.ignore($1)`, in)
	b.refused(t, "is ignored and cannot become open", fmt.Sprintf("SELECT pgforce.retry(%d);", in), `UPDATE pgforce.error SET state = 'open' WHERE id = $1`, in)
	b.exec(t, `SELECT pgforce.ignore($1)`, errID)
	b.refused(t, "only open errors can be reverted", fmt.Sprintf("SELECT pgforce.retry(%d);", errID), `SELECT pgforce.revert($1)`, errID)
}

func TestRevertDropsThePostgresChangesAndAsksTheWorkerToRestore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme'), ('001000000000002AAA', 'Other')`)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Bad'`)
	errID := b.outboundError(t, m, "Acme", "update")

	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	state, action := b.errorState(t, errID)
	require.Equal(t, "retrying", state)
	require.Equal(t, "revert", *action)
	entries := b.outbox(t)
	require.Len(t, entries, 1, "only the other record's change is left")
	require.Equal(t, "001000000000002AAA", *entries[0].SFID)

	// The hint names a call that works for the error.
	inbound := int64(0)
	b.scalar(t, &inbound, `INSERT INTO pgforce.error (mapping_id, direction, operation, message) VALUES ($1, 'inbound', 'poll', 'timeout') RETURNING id`, m)
	b.refused(t, "nothing to revert", "pgforce.reload", `SELECT pgforce.revert($1)`, inbound)
	b.scalar(t, &inbound, `INSERT INTO pgforce.error (mapping_id, direction, operation, sfid, message) VALUES ($1, 'inbound', 'cdc', '001000000000001AAA', 'value too long') RETURNING id`, m)
	b.refused(t, "nothing to revert", "pgforce.retry", `SELECT pgforce.revert($1)`, inbound)
	b.exec(t, `SELECT pgforce.retry($1)`, inbound)
}

// A row deleted after its update failed has its delete queued: a revert of
// the update keeps it, so the record goes too.
func TestRevertKeepsTheQueuedDeleteOfTheRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme Renamed'`)
	b.exec(t, `DELETE FROM pgforce.outbox`) // sent, and refused
	errID := b.outboundError(t, m, "Acme Renamed", "update")
	b.exec(t, `DELETE FROM salesforce.account`)

	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "delete", entries[0].Op)
	var marked bool
	b.scalar(t, &marked, `SELECT revert_mark >= (SELECT max(id) FROM pgforce.outbox) FROM pgforce.error WHERE id = $1`, errID)
	require.True(t, marked, "the mark is the last entry when revert was called")
}

func TestErrorStateTransitionsFollowTheLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	var id int64
	b.scalar(t, &id, `INSERT INTO pgforce.error (mapping_id, direction, operation, sfid, message)
		VALUES ($1, 'inbound', 'cdc', '001000000000001AAA', 'value too long for type character varying(5)') RETURNING id`, m)

	// A retry of an inbound record error has the worker read the record
	// again; a failed read reopens it.
	b.exec(t, `SELECT pgforce.retry($1)`, id)
	var queued int
	b.scalar(t, &queued, `SELECT count(*) FROM pgforce.inbound_reread WHERE mapping_id = $1 AND sfid = '001000000000001AAA'`, m)
	require.Equal(t, 1, queued)
	b.exec(t, `SELECT pgforce.inbound_error($1, 'cdc', '001000000000001AAA', '{}', 'PG22001', 'still too long', '{site}')`, m)
	state, action := b.errorState(t, id)
	require.Equal(t, "open", state)
	require.Nil(t, action)
	b.exec(t, `UPDATE pgforce.error SET state = 'resolved' WHERE id = $1`, id)
	b.refused(t, "is resolved and cannot become open", "resolved already", `UPDATE pgforce.error SET state = 'open' WHERE id = $1`, id)
	b.refused(t, "no error with id 424242", "state = 'open'", `SELECT pgforce.retry(424242)`)
	var poll int64
	b.scalar(t, &poll, `INSERT INTO pgforce.error (mapping_id, direction, operation, message) VALUES ($1, 'inbound', 'poll', 'timeout') RETURNING id`, m)
	b.refused(t, "is not about one record, so there is nothing to retry", fmt.Sprintf("SELECT pgforce.reload(%d)", m), `SELECT pgforce.retry($1)`, poll)
	b.refused(t, "violates check constraint \"error_direction_valid\"", "",
		`INSERT INTO pgforce.error (direction, operation, message) VALUES ('sideways', 'poll', 'x')`)
}

// retry_all retries every error a retry can act on. A conflict is left to
// pgforce.resolve, and an error whose row is gone is left open with a
// notice, rather than failing the call for all the others.
func TestRetryAllRetriesWhatItCanAndLeavesConflictsAndGoneRowsOpen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme'), ('001000000000002AAA', 'Other')`)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Draft')`)
	acme := b.outboundError(t, m, "Acme", "update")
	draft := b.outboundError(t, m, "Draft", "insert")
	var conflict int64
	b.scalar(t, &conflict, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields)
		SELECT $1, 'inbound', 'cdc', a.id, a.sfid, '{"postgres": {"Name": "P"}, "salesforce": {"Name": "S"}}', 'CONFLICT', 'fields changed in both', '{Name}'
		FROM salesforce.account a WHERE a.name = 'Other' RETURNING id`, m)
	b.exec(t, `DELETE FROM salesforce.account WHERE name = 'Draft'`)
	b.exec(t, `DELETE FROM pgforce.outbox`)

	var n int
	b.scalar(t, &n, `SELECT pgforce.retry_all($1::integer)`, m)
	require.Equal(t, 1, n)
	for id, want := range map[int64]string{acme: "retrying", draft: "open", conflict: "open"} {
		state, _ := b.errorState(t, id)
		require.Equal(t, want, state, "error %d", id)
	}
	require.Len(t, b.outbox(t), 1, "Acme's row, queued again")
	b.refused(t, "is a conflict between Postgres and Salesforce", fmt.Sprintf("pgforce.resolve(%d, 'postgres')", conflict), `SELECT pgforce.retry($1)`, conflict)
}

// A failed delete is sent again by its retry even when a new row has taken
// the deleted row's id since.
func TestRetryOfAFailedDeleteDeletesTheRecordEvenWhenItsRowsIdIsTakenAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000001AAA', 'Acme')`)
	errID := b.outboundError(t, m, "Acme", "delete")
	var id int
	b.scalar(t, &id, `DELETE FROM salesforce.account RETURNING id`)
	b.exec(t, `INSERT INTO salesforce.account (id, name) VALUES ($1, 'New')`, id)
	b.exec(t, `DELETE FROM pgforce.outbox`)

	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "delete", entries[0].Op)
	require.Equal(t, "001000000000001AAA", *entries[0].SFID)
}

// filter calls pgforce.inbound_filter as the inbound worker does for a
// record read from Salesforce (whole) or a change event's fields, as of
// Salesforce's time at, and returns what it lets through.
func (b *testBundle) filter(t *testing.T, m, id int, values, at string, whole bool) map[string]any {
	t.Helper()
	var out map[string]any
	b.inWorkerTx(t, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT pgforce.inbound_filter($1, $2, $3::jsonb, $4::timestamptz, false, $5)`,
			m, id, values, at, whole).Scan(&out)
	})
	return out
}

// refusedRename syncs Acme (Energy, as of stamp), renames it in Postgres,
// and records Salesforce's refusal of the rename, with the payload the
// worker sent; it returns the row and the error.
func (b *testBundle) refusedRename(t *testing.T, m int, stamp string) (row int, errID int64) {
	t.Helper()
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, industry, systemmodstamp) VALUES ('001000000000001AAA', 'Acme', 'Energy', $1)`, stamp)
	b.scalar(t, &row, `SELECT id FROM salesforce.account`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme Renamed' WHERE id = $1`, row)
	b.exec(t, `DELETE FROM pgforce.outbox`) // sent, and refused
	b.scalar(t, &errID, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields, old)
		VALUES ($1, 'outbound', 'update', $2, '001000000000001AAA', '{"Id": "001000000000001AAA", "Name": "Acme Renamed"}',
		        'FIELD_CUSTOM_VALIDATION_EXCEPTION', 'no renames', '{Name}', '{"name": "Acme"}') RETURNING id`, m, row)
	return row, errID
}

// A retry of a refused update sends the fields of that change, with the
// row's values, and no other: they would count as Postgres changes of
// fields nobody changed.
func TestRetryOfARefusedUpdateQueuesTheFieldsItCarried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	_, errID := b.refusedRename(t, m, "2025-01-01T00:00:00Z")
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, map[string]any{"name": "Acme Renamed"}, entries[0].New)
	require.Equal(t, map[string]any{"name": "Acme"}, entries[0].Old, "with what it replaced")
}

// A poll reads the record after Salesforce changed another field: the
// retried field still holds what the refused change replaced, so Salesforce
// did not change it, and the retry stays, whatever the policy.
func TestARetryOutlastsAReadOfTheRecordAfterSalesforceChangedAnotherField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write") // salesforce_wins
	row, errID := b.refusedRename(t, m, "2025-01-01T00:00:00Z")
	b.exec(t, `SELECT pgforce.retry($1)`, errID)

	allowed := b.filter(t, m, row, `{"name": "Acme", "industry": "Retail"}`, "2025-01-02T00:00:00Z", true)
	require.Equal(t, map[string]any{"industry": "Retail"}, allowed)
	require.Len(t, b.outbox(t), 1, "the retry is still queued")
	state, _ := b.errorState(t, errID)
	require.Equal(t, "retrying", state)
}

// The overlap of the next poll reads the record as the row last took it:
// Salesforce changed nothing, so the retry stays queued, whatever the
// policy, and the row keeps its value.
func TestARetryOutlastsAReadOfTheRecordSalesforceDidNotChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write") // salesforce_wins
	const stamp = "2025-01-01T00:00:00Z"
	row, errID := b.refusedRename(t, m, stamp)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)

	allowed := b.filter(t, m, row, `{"name": "Acme", "industry": "Energy"}`, stamp, true)
	require.NotContains(t, allowed, "name")
	require.Len(t, b.outbox(t), 1, "the retry is still queued")
	state, _ := b.errorState(t, errID)
	require.Equal(t, "retrying", state)
}

// A Salesforce edit of a field the refused change did not carry applies
// under every policy while the retry waits, and makes no conflict.
func TestARetryLeavesSalesforceEditsOfOtherFieldsAlone(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"postgres_wins", "manual"} {
		t.Run(policy, func(t *testing.T) {
			b := setup(t)
			m := b.mapAccount(t, "read_write")
			b.exec(t, `UPDATE pgforce.mapping SET conflict = $2 WHERE id = $1`, m, policy)
			row, errID := b.refusedRename(t, m, "2025-01-01T00:00:00Z")
			b.exec(t, `SELECT pgforce.retry($1)`, errID)

			allowed := b.filter(t, m, row, `{"industry": "Retail"}`, "2025-01-02T00:00:00Z", false)
			require.Equal(t, map[string]any{"industry": "Retail"}, allowed)
			var conflicts int
			b.scalar(t, &conflicts, `SELECT count(*) FROM pgforce.error WHERE error_code = 'CONFLICT'`)
			require.Zero(t, conflicts)
		})
	}
}

// Under manual, a conflict holds every change of its record until it is
// resolved, a retry too.
func TestAConflictHoldsARetryOfTheSameRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.exec(t, `UPDATE pgforce.mapping SET conflict = 'manual' WHERE id = $1`, m)
	row, errID := b.refusedRename(t, m, "2025-01-01T00:00:00Z")
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	b.filter(t, m, row, `{"name": "Acme Corp"}`, "2025-01-02T00:00:00Z", false)
	var conflicts, claimed int
	b.scalar(t, &conflicts, `SELECT count(*) FROM pgforce.error WHERE error_code = 'CONFLICT' AND state = 'open'`)
	require.Equal(t, 1, conflicts)
	var blocked int
	b.scalar(t, &blocked, `SELECT outbound_blocked FROM pgforce.status WHERE mapping_id = $1`, m)
	require.Equal(t, 1, blocked, "and pgforce.status counts it as held")
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce._outbound_claim($1, 10, 'test')`, m)
	require.Zero(t, claimed, "the retry waits for the conflict")
}

// pgforce.status counts the changes held behind a conflict or a failed
// insert while a backlog drains beside errors that hold nothing (refused
// updates, say). It reads those errors about once, not once per queued
// change: that made a read of pgforce.status grow with the backlog times
// the open errors (4 s for 20,000 queued changes and 2,000 refused
// updates, against 2 ms).
func TestStatusCountsBlockedChangesWithoutReadingTheErrorsOncePerQueuedChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.syncedAccounts(t, 2000)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy'`)
	// 200 refused updates, which hold nothing, and three conflicts, which
	// hold their record's change.
	b.exec(t, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, error_code, message)
		SELECT $1, 'outbound', 'update', a.id, a.sfid, 'FIELD_CUSTOM_VALIDATION_EXCEPTION', 'refused'
		FROM salesforce.account a WHERE a.id % 10 = 0`, m)
	b.exec(t, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, error_code, message)
		SELECT $1, 'inbound', 'cdc', a.id, a.sfid, 'CONFLICT', 'fields changed in both Postgres and Salesforce'
		FROM salesforce.account a WHERE a.id IN (1, 2, 3)`, m)
	b.exec(t, `ANALYZE pgforce.outbox, pgforce.error`)

	ctx := context.Background()
	tx, err := b.conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	// Rows of pgforce.error read, by scans and through indexes, counted
	// from here (see TestPruneHistoryReadsAboutWhatItDeletesNotWhatItKeeps).
	read := func() int64 {
		var n int64
		require.NoError(t, tx.QueryRow(ctx, `SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
			FROM pg_stat_xact_user_tables WHERE relid = 'pgforce.error'::regclass`).Scan(&n))
		return n
	}
	before := read()
	var blocked int
	require.NoError(t, tx.QueryRow(ctx, `SELECT outbound_blocked FROM pgforce.status WHERE mapping_id = $1`, m).Scan(&blocked))
	require.Equal(t, 3, blocked, "the changes of the three records in conflict")
	// The status's own count of open errors reads them once more.
	require.LessOrEqual(t, read()-before, int64(10*203), "rows of pgforce.error read to count 3 blocked changes among 2,000")
}

// When Salesforce's value replaces the one a retry was to send (its own
// later edit, under salesforce_wins), nothing is left to retry, and the
// error is settled rather than left waiting for ever.
func TestARetryThatSalesforcesEditReplacesSettlesItsError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	row, errID := b.refusedRename(t, m, "2025-01-01T00:00:00Z")
	b.exec(t, `SELECT pgforce.retry($1)`, errID)

	allowed := b.filter(t, m, row, `{"name": "Acme Corp", "industry": "Energy"}`, "2025-01-02T00:00:00Z", true)
	require.Equal(t, "Acme Corp", allowed["name"])
	require.Empty(t, b.outbox(t))
	state, _ := b.errorState(t, errID)
	require.Equal(t, "resolved", state)
}

// Salesforce keeps datetimes and times to the millisecond: a Postgres value
// with microseconds is the same value as the one Salesforce kept of it, so
// a read of the record finds no change there.
func TestAValueWithMicrosecondsIsTheSameAsSalesforcesMilliseconds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	b.exec(t, `ALTER TABLE salesforce.account ADD COLUMN at time`)
	for _, c := range []struct {
		col, a, b string
		same      bool
	}{
		{"systemmodstamp", `"2024-01-01T10:00:00.123456+00:00"`, `"2024-01-01T10:00:00.123+0000"`, true},
		{"systemmodstamp", `"2024-01-01T10:00:00.124+00:00"`, `"2024-01-01T10:00:00.123+0000"`, false},
		{"at", `"10:00:00.123456"`, `"10:00:00.123Z"`, true},
		{"at", `"10:00:00.124"`, `"10:00:00.123Z"`, false},
	} {
		var same bool
		b.scalar(t, &same, `SELECT pgforce._same_value('salesforce.account'::regclass, $1, $2::jsonb, $3::jsonb)`, c.col, c.a, c.b)
		require.Equal(t, c.same, same, "%s %s %s", c.col, c.a, c.b)
	}
}

// A refused change of a lookup alone (no relationship column in the table)
// retries that lookup alone: a Salesforce edit of another field applies
// meanwhile, under every policy.
func TestARetryOfARefusedLookupChangeQueuesThatLookupAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var m int
	b.scalar(t, &m, `INSERT INTO pgforce.mapping (sobject, fields, mode, conflict) VALUES ('Account', '{Name,Industry,ParentId}', 'read_write', 'postgres_wins') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, m, `[
		{"name":"Id","type":"id","length":18},
		{"name":"SystemModstamp","type":"datetime"},
		{"name":"IsDeleted","type":"boolean"},
		{"name":"CreatedDate","type":"datetime"},
		{"name":"Name","type":"string","length":255},
		{"name":"Industry","type":"picklist","length":40},
		{"name":"ParentId","type":"reference","length":18,"referenceTo":["Account"],"relationshipName":"Parent"}]`)
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, industry, systemmodstamp) VALUES ('001000000000001AAA', 'Acme', 'Energy', '2025-01-01T00:00:00Z')`)
	var row int
	b.scalar(t, &row, `SELECT id FROM salesforce.account`)
	b.exec(t, `UPDATE salesforce.account SET parentid = '001000000000009AAA' WHERE id = $1`, row)
	b.exec(t, `DELETE FROM pgforce.outbox`) // sent, and refused
	var errID int64
	b.scalar(t, &errID, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields, old)
		VALUES ($1, 'outbound', 'update', $2, '001000000000001AAA', '{"Id": "001000000000001AAA", "ParentId": "001000000000009AAA"}',
		        'FIELD_INTEGRITY_EXCEPTION', 'no', '{ParentId}', '{"parentid": null}') RETURNING id`, m, row)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, map[string]any{"parentid": "001000000000009AAA"}, entries[0].New)
	allowed := b.filter(t, m, row, `{"industry": "Retail"}`, "2025-01-02T00:00:00Z", false)
	require.Equal(t, map[string]any{"industry": "Retail"}, allowed)
}

// An error whose old values name only some of its fields (a change merged
// from an insert entry, which carries none, and a later update) retries
// every field it refused.
func TestARetryWhoseOldValuesNameSomeFieldsSendsEveryRefusedField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, industry, systemmodstamp) VALUES ('001000000000001AAA', 'Acme', 'Energy', '2025-01-01T00:00:00Z')`)
	var row int
	b.scalar(t, &row, `SELECT id FROM salesforce.account`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme Renamed', industry = 'Retail' WHERE id = $1`, row)
	b.exec(t, `DELETE FROM pgforce.outbox`)
	var errID int64
	b.scalar(t, &errID, `INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields, old)
		VALUES ($1, 'outbound', 'update', $2, '001000000000001AAA', '{"Id": "001000000000001AAA", "Name": "Acme Renamed", "Industry": "Retail"}',
		        'FIELD_CUSTOM_VALIDATION_EXCEPTION', 'no renames', '{Name}', '{"industry": "Energy"}') RETURNING id`, m, row)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, map[string]any{"name": "Acme Renamed", "industry": "Retail"}, entries[0].New)
	require.Equal(t, map[string]any{"industry": "Energy"}, entries[0].Old)
}
