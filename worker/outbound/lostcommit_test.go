package outbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// startBehindProxy starts the worker on a connection to Postgres through a
// proxy that loses the answer to the COMMIT of the first transaction that
// sends trigger, once Postgres has committed it.
func (b *bundle) startBehindProxy(t *testing.T, trigger string) *pgProxy {
	t.Helper()
	proxy, connString := startPgProxy(t, b.db.ConnString, trigger)
	pool, err := pgxpool.New(context.Background(), connString)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	proxy.armed.Store(true)
	b.startWith(t, pool, fastOptions())
	return proxy
}

// A result transaction that committed with its answer lost is run again,
// and then does nothing: it had handed the entries of an insert in doubt
// back a second time, one attempt fewer each, and the insert, looking
// first-time, was created again.
func TestAResultTransactionWhoseCommitAnswerWasLostDoesNotForgetAnInsertInDoubt(t *testing.T) {
	b := setup(t, setupOptions{})
	b.loseCreateAnswers(1)
	// The search for the record the lost answer created fails, so the
	// insert goes back to the queue unsent.
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/query", Status: 503})
	proxy := b.startBehindProxy(t, "attempts = greatest(attempts - 1, 0)")

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Acked') RETURNING id`)
	eventually(t, 20*time.Second, "the answer to a result transaction's commit was lost", func() bool { return proxy.dropped.Load() == 1 })
	// Several cycles after it, the outcome recorded again among them, or
	// the insert sent again as a first-time create.
	searched := func() int64 { return b.sim.Calls()["GET /services/data/vXX.X/query"] }
	after := searched()
	eventually(t, 20*time.Second, "more searches for the insert's record, or its Id", func() bool {
		return searched() >= after+3 || b.rowSfid(t, "account", id) != ""
	})
	b.sim.ClearFaults()

	eventually(t, 20*time.Second, "the row got an Id", func() bool { return b.rowSfid(t, "account", id) != "" })
	recs := b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Acked'")
	require.Len(t, recs, 1, "one row, one record: the insert in doubt was created again")
}

// A refused insert whose result transaction committed with its answer
// lost has one error row, not one per time its outcome was recorded.
func TestARefusalWhoseResultCommitAnswerWasLostIsRecordedOnce(t *testing.T) {
	b := setup(t, setupOptions{})
	proxy := b.startBehindProxy(t, "INSERT INTO pgforce.error (mapping_id, direction, operation, record_id")

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('BAD name') RETURNING id`)
	eventually(t, 20*time.Second, "the answer to a result transaction's commit was lost", func() bool { return proxy.dropped.Load() == 1 })
	// The outcome is recorded again at the start of the next cycle, which
	// a later change makes sure has run.
	var later int
	b.scalar(t, &later, `INSERT INTO salesforce.account (name) VALUES ('Later') RETURNING id`)
	b.waitSfid(t, "account", later)
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, id)
	require.Equal(t, 1, n, "one refused change, one error row")
}
