package outbound_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// These tests drive the SQL that the inbound apply path calls
// (pgforce.inbound_filter) as it would for a change event, with the
// outbound worker running for real.

// queuedUpdate makes a synced Account with a queued (unsent) Postgres change
// of its name: no worker runs while it is queued.
func queuedUpdate(t *testing.T, b *bundle, conflict string) (id int, sfid string) {
	t.Helper()
	b.exec(t, `UPDATE pgforce.mapping SET conflict = $1 WHERE id = $2`, conflict, b.accountID)
	sfid = "001000000000001AAA"
	// Written as the worker (a loaded record): not captured.
	b.scalar(t, &id, `WITH o AS (SELECT set_config('pgforce.origin', 'salesforce', true))
		INSERT INTO salesforce.account (sfid, name, industry) SELECT $1, 'Original', 'Energy' FROM o RETURNING id`, sfid)
	var queued int
	b.scalar(t, &queued, `SELECT count(*) FROM pgforce.outbox`)
	require.Zero(t, queued)
	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres' WHERE id = $1`, id)
	return id, sfid
}

func filter(t *testing.T, b *bundle, id int, values map[string]any, at time.Time, echo bool) map[string]any {
	t.Helper()
	var out map[string]any
	b.scalar(t, &out, `SELECT pgforce.inbound_filter($1, $2, $3, $4, $5)`, b.accountID, id, values, at, echo)
	return out
}

func TestEchoNeverOverwritesANewerPostgresValueAndOtherFieldsMerge(t *testing.T) {
	b := setup(t, setupOptions{})
	id, _ := queuedUpdate(t, b, "salesforce_wins")
	got := filter(t, b, id, map[string]any{"name": "Older echo", "industry": "Banking"}, time.Now(), true)
	require.Equal(t, map[string]any{"industry": "Banking"}, got, "the echo keeps the pending name; the other field applies")
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbox WHERE record_id = $1`, id)
	require.Equal(t, 1, n, "the queued Postgres change is still sent")
}

func TestConflictPolicyDecidesAFieldChangedOnBothSides(t *testing.T) {
	for _, tc := range []struct {
		policy   string
		sfAt     time.Duration // Salesforce's commit relative to now
		sfWins   bool
		inOutbox bool
	}{
		{"salesforce_wins", -time.Hour, true, false},
		{"postgres_wins", time.Hour, false, true},
		{"newest_wins", time.Hour, true, false},
		{"newest_wins", -time.Hour, false, true},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			b := setup(t, setupOptions{})
			id, _ := queuedUpdate(t, b, tc.policy)
			got := filter(t, b, id, map[string]any{"name": "From Salesforce"}, time.Now().Add(tc.sfAt), false)
			if tc.sfWins {
				require.Equal(t, map[string]any{"name": "From Salesforce"}, got)
			} else {
				require.Empty(t, got)
			}
			var n int
			b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbox WHERE record_id = $1`, id)
			require.Equal(t, tc.inOutbox, n == 1)
		})
	}
}

func TestManualConflictHoldsBothValuesUntilResolved(t *testing.T) {
	b := setup(t, setupOptions{})
	id, _ := queuedUpdate(t, b, "manual")
	got := filter(t, b, id, map[string]any{"name": "From Salesforce", "industry": "Banking"}, time.Now(), false)
	require.Equal(t, map[string]any{"industry": "Banking"}, got)
	var errID int64
	var payload string
	b.scalar(t, &errID, `SELECT id FROM pgforce.error WHERE record_id = $1 AND error_code = 'CONFLICT' AND state = 'open'`, id)
	b.scalar(t, &payload, `SELECT payload::text FROM pgforce.error WHERE id = $1`, errID)
	var p map[string]map[string]string
	require.NoError(t, json.Unmarshal([]byte(payload), &p))
	require.Equal(t, "From Postgres", p["postgres"]["name"])
	require.Equal(t, "From Salesforce", p["salesforce"]["name"])
	var blocked int
	b.scalar(t, &blocked, `SELECT outbound_blocked FROM pgforce.status WHERE sobject = 'Account'`)
	require.Equal(t, 1, blocked, "the record's Postgres change waits for the decision")
	var claimed int
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce._outbound_claim($1, 100, 'test')`, b.accountID)
	require.Zero(t, claimed)

	b.exec(t, `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	var name, lastop string
	b.scalar(t, &name, `SELECT name FROM salesforce.account WHERE id = $1`, id)
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "From Salesforce", name)
	require.Equal(t, "PENDING", lastop, "until Salesforce's values are written back to it")
	var sent map[string]any
	b.scalar(t, &sent, `SELECT new FROM pgforce.outbox WHERE record_id = $1`, id)
	require.Equal(t, map[string]any{"name": "From Salesforce"}, sent,
		"Salesforce won: its values go back, in case a Postgres write in flight replaced them there")
}

func TestManualConflictResolvedForPostgresSendsThePostgresValue(t *testing.T) {
	b := setup(t, setupOptions{})
	var id int
	b.exec(t, `UPDATE pgforce.mapping SET conflict = 'manual' WHERE id = $1`, b.accountID)
	b.start(t, fastOptions())
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Both sides') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)

	// Hold the worker off this record with a conflict opened in the same
	// transaction as the Postgres edit, as a change event arriving then would.
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE salesforce.account SET name = 'Postgres wins' WHERE id = $1`, id)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, tx.QueryRow(ctx, `SELECT pgforce.inbound_filter($1, $2, $3, now(), false)`, b.accountID, id,
		map[string]any{"name": "Salesforce edit"}).Scan(&got))
	require.Empty(t, got)
	require.NoError(t, tx.Commit(ctx))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, "Both sides", b.sfField(t, "Account", sfid, "Name"), "held while the conflict is open")

	var errID int64
	b.scalar(t, &errID, `SELECT id FROM pgforce.error WHERE record_id = $1 AND error_code = 'CONFLICT'`, id)
	b.exec(t, `SELECT pgforce.resolve($1, 'postgres')`, errID)
	eventually(t, 10*time.Second, "Postgres value sent", func() bool { return b.sfField(t, "Account", sfid, "Name") == "Postgres wins" })
}
