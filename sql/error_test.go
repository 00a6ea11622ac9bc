package sql_test

import (
	"fmt"
	"testing"

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

	b.refused(t, "is retrying, only open errors can be retried", "queued already", `SELECT pgforce.retry($1)`, errID)
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
	b.refused(t, "only open errors can be retried", "Nothing is left", `SELECT pgforce.retry($1)`, errID)
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
