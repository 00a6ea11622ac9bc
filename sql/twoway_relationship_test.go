package sql_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

const review8ContactColumns = `[{"name":"Id","type":"id","length":18,"keyPrefix":"003"},
 {"name":"SystemModstamp","type":"datetime"},{"name":"IsDeleted","type":"boolean"},{"name":"CreatedDate","type":"datetime"},
 {"name":"LastName","type":"string","length":80},
 {"name":"AccountId","type":"reference","referenceTo":["Account"],"relationshipName":"Account"}]`

// mapContactWithRelationshipColumn maps Contact read_write with AccountId
// and Heroku Connect's account__r__ext_id__c column, and returns the
// mapping id and the id of a synced contact whose account is 001...A1.
func (b *testBundle) mapContactWithRelationshipColumn(t *testing.T, policy string) (int, int) {
	t.Helper()
	var m, row int
	b.scalar(t, &m, `INSERT INTO pgforce.mapping (sobject, fields, mode, conflict) VALUES ('Contact', '{LastName,AccountId}', 'read_write', $1) RETURNING id`, policy)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, m, review8ContactColumns)
	b.exec(t, `ALTER TABLE salesforce.contact ADD COLUMN account__r__ext_id__c varchar(64)`)
	b.exec(t, `SELECT pgforce._install_triggers($1)`, m)
	b.exec(t, `UPDATE pgforce.mapping SET state = 'synced' WHERE id = $1`, m)
	b.inWorkerTx(t, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `INSERT INTO salesforce.contact (sfid, lastname, accountid, systemmodstamp)
			VALUES ('003000000000000001', 'Child', '0010000000000000A1', now() - interval '1 hour') RETURNING id`).Scan(&row)
	})
	return m, row
}

// The application moves a Contact to Account A2 by its lookup, and, while
// that change is on its way, moves it on to the Account with external id
// e3 through the relationship column. Salesforce then reports A2 (the
// first move landed, or someone set the same parent there): that agrees
// with the first queued change only. The second, later move must still be
// sent; dropping "every queued change of the parent" lost it, and the
// Contact stayed with A2 in Salesforce while its row named e3.
func TestAgreeingWithAnOlderLookupChangeKeepsALaterMoveThroughTheRelationshipColumn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m, row := b.mapContactWithRelationshipColumn(t, "salesforce_wins")
	b.exec(t, `UPDATE salesforce.contact SET accountid = '0010000000000000A2' WHERE id = $1`, row)
	// In flight: the worker claimed it.
	b.exec(t, `UPDATE pgforce.outbox SET claimed_at = now(), claimed_by = 'w'`)
	b.exec(t, `UPDATE salesforce.contact SET account__r__ext_id__c = 'e3' WHERE id = $1`, row)

	var before []string
	b.scalar(t, &before, `SELECT coalesce(array_agg(o.new ->> 'account__r__ext_id__c') FILTER (WHERE o.new ? 'account__r__ext_id__c'), '{}') FROM pgforce.outbox o WHERE o.claimed_at IS NULL`)
	require.Equal(t, []string{"e3"}, before, "the move is queued")

	var out map[string]any
	b.inWorkerTx(t, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT pgforce.inbound_filter($1, $2, '{"accountid": "0010000000000000A2"}', now(), false, false)`, m, row).Scan(&out)
	})
	var queued []string
	b.scalar(t, &queued, `SELECT coalesce(array_agg(o.new ->> 'account__r__ext_id__c') FILTER (WHERE o.new ? 'account__r__ext_id__c'), '{}') FROM pgforce.outbox o WHERE o.claimed_at IS NULL`)
	require.Equal(t, []string{"e3"}, queued, "the later move through the relationship column is still queued (filter returned %v)", out)
}

// pgforce.status shows the latest drift check that succeeded. When the
// checks since have failed (Salesforce refused them), prune_history kept
// only the latest finished one, the failed one, and deleted the one status
// shows: the mapping's drift and drift_checked_at went NULL, as if it had
// never been checked.
func TestPruneHistoryKeepsTheDriftCheckStatusShows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.exec(t, `INSERT INTO pgforce.drift_check (mapping_id, requested_at, started_at, finished_at, salesforce_records, table_rows, missing, stale, extra, recent)
		VALUES ($1, now() - interval '40 days', now() - interval '40 days', now() - interval '40 days', 10, 7, 3, 0, 0, 0)`, m)
	b.exec(t, `INSERT INTO pgforce.drift_check (mapping_id, requested_at, started_at, finished_at, error)
		VALUES ($1, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', 'INSUFFICIENT_ACCESS')`, m)
	var before *int64
	b.scalar(t, &before, `SELECT drift FROM pgforce.status WHERE mapping_id = $1`, m)
	require.NotNil(t, before)
	b.exec(t, `SELECT pgforce.prune_history('default')`)
	var after *int64
	b.scalar(t, &after, `SELECT drift FROM pgforce.status WHERE mapping_id = $1`, m)
	require.Equal(t, before, after, "pgforce.status still shows the latest successful check")
}

// The application links a Contact to the Account with external id e2
// through the relationship column, and the worker sends it (the entry is
// claimed, in flight). A poll (or a re-read) that reads the record while
// the write is on its way finds AccountId = that Account's Id: Salesforce
// holds what Postgres asked for, which is no change made on both sides.
// Under manual it was recorded as a CONFLICT, which then held every later
// change of the Contact until someone settled it.
func TestAPollThatSeesTheParentARelationshipColumnNamedIsNoConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var acc int
	b.scalar(t, &acc, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Account', '{Name,Ext_Id__c}', 'read_write') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, acc, `[{"name":"Id","type":"id","length":18},{"name":"SystemModstamp","type":"datetime"},
		{"name":"IsDeleted","type":"boolean"},{"name":"CreatedDate","type":"datetime"},{"name":"Name","type":"string","length":255},
		{"name":"Ext_Id__c","type":"string","length":64}]`)
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, ext_id__c) VALUES ('0010000000000000A1', 'One', 'e1'), ('0010000000000000A2', 'Two', 'e2')`)
	m, row := b.mapContactWithRelationshipColumn(t, "manual")
	b.exec(t, `UPDATE salesforce.contact SET account__r__ext_id__c = 'e2' WHERE id = $1`, row)
	b.exec(t, `UPDATE pgforce.outbox SET claimed_at = now(), claimed_by = 'w'`)

	b.inWorkerTx(t, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `SELECT pgforce.inbound_filter($1, $2, '{"lastname": "Child", "accountid": "0010000000000000A2"}', now(), false, true)`, m, row)
		return err
	})
	var conflicts []string
	b.scalar(t, &conflicts, `SELECT coalesce(array_agg(message), '{}') FROM pgforce.error WHERE error_code = 'CONFLICT'`)
	require.Empty(t, conflicts)
}

// Salesforce moves a Contact to Account A3 while the application's move
// to e2, made through the relationship column, is in flight. Under
// salesforce_wins Salesforce's parent must win: the write in flight lands
// after Salesforce's edit and replaces it there, so Salesforce's value is
// queued to be sent again after it, as it is when the application moved
// the Contact through the lookup column itself. Through the relationship
// column nothing was queued: Salesforce ended with e2's Account and the
// row with A3.
func TestSalesforceWinningOverARelationshipColumnMoveInFlightIsSentAgain(t *testing.T) {
	for _, through := range []string{"accountid = '0010000000000000A2'", "account__r__ext_id__c = 'e2'"} {
		t.Run(through, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			m, row := b.mapContactWithRelationshipColumn(t, "salesforce_wins")
			b.exec(t, `UPDATE salesforce.contact SET `+through+` WHERE id = $1`, row)
			b.exec(t, `UPDATE pgforce.outbox SET claimed_at = now(), claimed_by = 'w'`)
			var out map[string]any
			b.inWorkerTx(t, func(tx pgx.Tx) error {
				return tx.QueryRow(context.Background(), `SELECT pgforce.inbound_filter($1, $2, '{"accountid": "0010000000000000A3"}', now(), false, false)`, m, row).Scan(&out)
			})
			require.Equal(t, "0010000000000000A3", out["accountid"], "Salesforce's parent is applied")
			var again []string
			b.scalar(t, &again, `SELECT coalesce(array_agg(o.new ->> 'accountid') FILTER (WHERE o.new ? 'accountid'), '{}') FROM pgforce.outbox o WHERE o.claimed_at IS NULL`)
			require.Equal(t, []string{"0010000000000000A3"}, again, "Salesforce's parent is sent again after the write in flight")
		})
	}
}
