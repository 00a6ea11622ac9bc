package inbound_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInboundChangeKeepsPendingPostgresEditOfAnotherFieldAndPolicyDecidesSameField(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100", "Industry": "Banking"})
	id := e.mapping("Account", []string{"Name", "Phone", "Industry"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = 'postgres_wins' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")

	// A user edit waits in the outbox (no outbound worker runs here).
	e.exec(`UPDATE salesforce.account SET phone = '555-0199', industry = 'Energy' WHERE sfid = $1`, ids[0])
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Acme Corp", "Industry": "Retail"}))
	e.waitValue("account", ids[0], "name", "Acme Corp")
	require.Equal(t, "555-0199", e.value("account", ids[0], "phone"), "the pending Postgres edit of another field survives")
	require.Equal(t, "Energy", e.value("account", ids[0], "industry"), "postgres_wins keeps the Postgres value of a field edited on both sides")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id), "the Postgres change is still queued")
}

// A row is PENDING while a change of it waits for Salesforce. An inbound
// change that leaves a queued change in place keeps it PENDING; one whose
// value wins over the only queued change (salesforce_wins) settles the row,
// which then says SYNCED.
func TestInboundChangeMarksRowSyncedOnlyWhenNothingOfItIsLeftQueued(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100"})
	id := e.mapping("Account", []string{"Name", "Phone"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write', conflict = 'salesforce_wins' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	ctx := context.Background()

	// No outbound worker runs: the Postgres edit stays queued.
	e.exec(`UPDATE salesforce.account SET name = 'From Postgres' WHERE sfid = $1`, ids[0])
	require.Equal(t, "PENDING", e.value("account", ids[0], "_hc_lastop"))
	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Phone": "555-0199"}))
	e.waitValue("account", ids[0], "phone", "555-0199")
	require.Equal(t, "PENDING", e.value("account", ids[0], "_hc_lastop"), "the name change is still queued")

	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Name": "From Salesforce"}))
	e.waitValue("account", ids[0], "name", "From Salesforce")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id))
	require.Equal(t, "SYNCED", e.value("account", ids[0], "_hc_lastop"), "nothing is left to send")
}
