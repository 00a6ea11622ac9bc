package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// newest_wins compares Salesforce's time with the time the Postgres change
// was captured. Stamped with the start of the application's transaction,
// an UPDATE made (and committed) after the Salesforce edit, in a
// transaction begun before it, was taken for the older change and dropped.
func TestNewestWinsDatesAPostgresChangeByItsStatementNotItsTransaction(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids, id := e.twoWayAccount("newest_wins")
	e.stop() // the Salesforce edit reaches Postgres after the commit below

	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	time.Sleep(time.Second) // the application does other work first
	require.NoError(t, e.sim.UIEdit(ctx, "Account", ids[0], map[string]any{"Name": "From Salesforce"}))
	sfAt, err := salesforce.ParseDateTime(e.sfField(ids[0], "SystemModstamp"))
	require.NoError(t, err)
	time.Sleep(time.Second)
	_, err = tx.Exec(ctx, `UPDATE salesforce.account SET name = 'From Postgres' WHERE sfid = $1`, ids[0])
	require.NoError(t, err)
	var captured time.Time
	require.NoError(t, tx.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&captured))
	require.NoError(t, tx.Commit(ctx))
	require.True(t, captured.After(sfAt), "the Postgres change is the newer one (captured %s, Salesforce %s)", captured, sfAt)

	e.start()
	e.eventually(10*time.Second, func() (bool, string) {
		var ok bool
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT systemmodstamp >= $2 FROM salesforce.account WHERE sfid = $1`, ids[0], sfAt).Scan(&ok))
		return ok, "the Salesforce edit applied"
	})
	require.Equal(t, "From Postgres", e.value("account", ids[0], "name"), "the newer (Postgres) change wins")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1`, id), "and is still to be sent")
}

func (e *env) sfField(id, field string) string {
	var v string
	require.NoError(e.t, e.sf.Query(context.Background(), "SELECT "+field+" FROM Account WHERE Id = '"+id+"'", func(r salesforce.Record) error {
		x, _ := r.Get(field)
		v, _ = x.(string)
		return nil
	}))
	return v
}
