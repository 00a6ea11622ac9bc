package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// twoWayAccount maps Account's Name read_write under policy, with one
// record "Acme" loaded (CDC), and returns its Id and the mapping's.
func (e *env) twoWayAccount(policy string) ([]string, int) {
	e.t.Helper()
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = $2 WHERE id = $1`, id, policy)
	e.start()
	e.waitState(id, "synced")
	return ids, id
}

// manual: a conflict is recorded for name; Salesforce's user then sets
// name to the Postgres value. The dispute is over (the queued change is
// dropped as agreed). The conflict stayed open with Salesforce's old value,
// holding the record, and pgforce.resolve(id, 'salesforce') then wrote that
// stale value over the one both sides held. It is settled.
func TestAManualConflictEndsWhenBothSidesAgreeOnTheValue(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids, id := e.twoWayAccount("manual")

	e.exec(`UPDATE salesforce.account SET name = 'Agreed' WHERE sfid = $1`, ids[0]) // queued: no outbound worker here
	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Name": "Other"}))
	e.eventually(10*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM pgforce.error WHERE error_code = 'CONFLICT' AND state = 'open'`) == 1, "a conflict"
	})
	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Name": "Agreed"}))
	e.eventually(10*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id) == 0, "the agreed value applied, nothing left to send"
	})
	require.Equal(t, "Agreed", e.value("account", ids[0], "name"))
	var errID int64
	var state string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT id, state FROM pgforce.error WHERE error_code = 'CONFLICT'`).Scan(&errID, &state))
	t.Logf("conflict %d is %s after both sides agreed", errID, state)

	if state == "open" {
		e.exec(`SELECT pgforce.resolve($1, 'salesforce')`, errID)
		require.Equal(t, "Agreed", e.value("account", ids[0], "name"), "Salesforce holds 'Agreed': taking Salesforce's value keeps it")
		require.Zero(t, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1 AND new->>'name' = 'Other'`, id),
			"nothing sends Salesforce's superseded value back over the agreed one")
	}
	require.NotEqual(t, "open", state, "the conflict is moot once both sides hold the same value")
}
