package outbound_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// inboundStyleWrite writes Salesforce values into one row the way the
// inbound apply path does: as the worker (pgforce.origin = 'salesforce'),
// through pgforce.inbound_filter, then an UPDATE of the row.
func inboundStyleWrite(ctx context.Context, b *bundle, id int, industry string) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('pgforce.origin', 'salesforce', true)`); err != nil {
			return err
		}
		var allowed map[string]any
		if err := tx.QueryRow(ctx, `SELECT pgforce.inbound_filter($1, $2, $3, now(), true)`, b.accountID, id,
			map[string]any{"industry": industry}).Scan(&allowed); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE salesforce.account SET industry = coalesce($2, industry), systemmodstamp = now() WHERE id = $1`,
			id, allowed["industry"])
		return err
	})
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}

// The inbound worker applies the CDC echo of a record while the outbound
// worker records the result of writing it. Both lock the row and its
// outbox entries in the same order, so they never deadlock, and every
// change is recorded.
func TestInboundWritesToRowsBeingRecordedNeverDeadlock(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	ctx := context.Background()

	const rows = 20
	ids := make([]int, rows)
	for i := range ids {
		b.scalar(t, &ids[i], `INSERT INTO salesforce.account (name) VALUES ($1) RETURNING id`, fmt.Sprintf("Row %d", i))
	}
	eventually(t, 20*time.Second, "rows synced", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL AND _hc_lastop = 'SYNCED'`)
		return n == rows
	})

	var deadlocks, writes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := inboundStyleWrite(ctx, b, ids[rand.IntN(rows)], "Energy")
				if isDeadlock(err) {
					deadlocks.Add(1)
				} else if err != nil {
					t.Errorf("inbound-style write: %v", err)
					return
				}
				writes.Add(1)
			}
		}()
	}
	// Users edit the same rows meanwhile, one row per statement.
	for round := 0; round < 5; round++ {
		for i, id := range ids {
			b.exec(t, `UPDATE salesforce.account SET name = $2 WHERE id = $1`, id, fmt.Sprintf("Row %d v%d", i, round))
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, 30*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	halt()
	require.Positive(t, writes.Load())
	require.Zero(t, deadlocks.Load(), "inbound-style writes deadlocked with the outbound worker")

	for i, id := range ids {
		sfid := b.rowSfid(t, "account", id)
		require.Equal(t, fmt.Sprintf("Row %d v4", i), b.sfField(t, "Account", sfid, "Name"))
	}
	var notSynced int
	b.scalar(t, &notSynced, `SELECT count(*) FROM salesforce.account WHERE _hc_lastop IS DISTINCT FROM 'SYNCED'`)
	require.Zero(t, notSynced)
}

// A writer that locks in the other order (an outbox entry, then its row)
// and the result transaction wait for each other. The result transaction
// gives way (or, were its lock_timeout longer than deadlock_timeout,
// Postgres would abort one of the two); either way it records the result
// again instead of leaving the entry claimed for ever.
func TestResultTransactionThatLosesALockConflictIsRecordedAgain(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	ctx := context.Background()

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Locked') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)

	// Slow the update call down so that the entry can be locked while it
	// is in flight.
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects", Method: "PATCH", Latency: 1500 * time.Millisecond})
	b.exec(t, `UPDATE salesforce.account SET name = 'Locked 2' WHERE id = $1`, id)
	var entry int64
	eventually(t, 10*time.Second, "entry claimed", func() bool {
		return b.pool.QueryRow(ctx, `SELECT id FROM pgforce.outbox WHERE record_id = $1 AND claimed_at IS NOT NULL`, id).Scan(&entry) == nil
	})

	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT set_config('pgforce.origin', 'salesforce', true)`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT FROM pgforce.outbox WHERE id = $1 FOR UPDATE`, entry)
	require.NoError(t, err)
	// Wait until the result transaction holds the row and waits for the
	// entry.
	eventually(t, 10*time.Second, "result transaction waiting for the entry", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)
		return n > 0
	})
	_, err = tx.Exec(ctx, `UPDATE salesforce.account SET industry = 'Energy' WHERE id = $1`, id)
	if err == nil {
		require.NoError(t, tx.Commit(ctx))
	} else {
		require.True(t, isDeadlock(err), "unexpected error: %v", err)
		require.NoError(t, tx.Rollback(ctx))
	}
	b.sim.ClearFaults()

	eventually(t, 15*time.Second, "result recorded", func() bool {
		var left int
		var lastop string
		b.scalar(t, &left, `SELECT count(*) FROM pgforce.outbox WHERE record_id = $1`, id)
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
		return left == 0 && lastop == "SYNCED"
	})
	require.Equal(t, "Locked 2", b.sfField(t, "Account", sfid, "Name"))
}

// An application transaction may lock a batch's rows in any order, for
// instance by updating many rows at once. The worker's result transaction
// locks them by id; when the two wait for each other, the worker gives its
// locks back (lock_timeout) and records the batch again once the
// application is done, instead of leaving Postgres to abort whichever of
// the two happened to check for the deadlock first.
func TestTheWorkerGivesRowLocksBackToAnApplicationTransactionInsteadOfDeadlockingIt(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	b.syncedAccounts(t, 2, "Lock")
	var ids []int
	b.scalar(t, &ids, `SELECT array_agg(id ORDER BY id) FROM salesforce.account`)
	b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Queued'`)
	b.start(t, fastOptions())

	app := b.appHoldsRow(t, ids[1])

	b.exec(t, `SELECT pgforce.resume($1::integer)`, b.accountID)
	b.waitForLockWait(t, "the worker's result transaction waiting for the application's row", "WITH locked AS (SELECT FROM %ORDER BY t.id FOR UPDATE)%")
	_, err := app.Exec(ctx, `UPDATE salesforce.account SET industry = 'Mine' WHERE id = $1`, ids[0])
	require.NoError(t, err, "the application's update of a row the worker had locked")
	require.NoError(t, app.Commit(ctx))

	eventually(t, 10*time.Second, "both rows synced", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE _hc_lastop = 'SYNCED'`)
		return n == 2 && b.backlog(t) == 0
	})
	require.Equal(t, "Mine", b.sfField(t, "Account", b.rowSfid(t, "account", ids[0]), "Industry"))
	require.Equal(t, "Queued", b.sfField(t, "Account", b.rowSfid(t, "account", ids[1]), "Industry"))
}

// Reverts write Salesforce's values into the rows of several errors in one
// transaction. When it waits for a row an application transaction holds
// while that transaction wants a row it has reverted, it gives way instead
// of leaving Postgres to abort the application's statement, and reverts
// them all once the application is done.
func TestRevertsGiveWayToAnApplicationTransactionInsteadOfDeadlockingIt(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	b.start(t, fastOptions())
	var ids []int
	for _, name := range []string{"Keep one", "Keep two"} {
		var id int
		b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ($1) RETURNING id`, name)
		ids = append(ids, id)
	}
	eventually(t, 10*time.Second, "synced", func() bool {
		return b.rowSfid(t, "account", ids[0]) != "" && b.rowSfid(t, "account", ids[1]) != ""
	})
	var errIDs []int64
	for _, id := range ids {
		b.exec(t, `UPDATE salesforce.account SET name = 'BAD rename' WHERE id = $1`, id)
		var errID int64
		eventually(t, 10*time.Second, "update error", func() bool {
			return b.pool.QueryRow(ctx, `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, id).Scan(&errID) == nil
		})
		errIDs = append(errIDs, errID)
	}

	app := b.appHoldsRow(t, ids[1])

	// Both at once, so that one worker transaction reverts them, in error
	// order: the first row, then a wait for the second.
	b.exec(t, `SELECT pgforce.revert(e) FROM unnest($1::bigint[]) e`, errIDs)
	b.waitForLockWait(t, "the reverts waiting for the application's row", "%jsonb_populate_record%")
	_, err := app.Exec(ctx, `UPDATE salesforce.account SET industry = 'Mine' WHERE id = $1`, ids[0])
	require.NoError(t, err, "the application's update of a row the reverts had written")
	require.NoError(t, app.Commit(ctx))

	eventually(t, 10*time.Second, "both rows reverted", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE name LIKE 'Keep %' AND _hc_lastop = 'SYNCED'`)
		return n == 2
	})
}

// appHoldsRow locks a row of salesforce.account in an application
// transaction, on a connection of its own (the worker uses the pool),
// which checks for deadlocks long before the worker would (1 s by
// default): were the worker not to give way, the application's statement
// would be the one aborted.
func (b *bundle) appHoldsRow(t *testing.T, id int) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.db.ConnString)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	app, err := conn.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = app.Rollback(ctx) })
	_, err = app.Exec(ctx, `SET LOCAL deadlock_timeout = '500ms'`)
	require.NoError(t, err)
	_, err = app.Exec(ctx, `SELECT FROM salesforce.account WHERE id = $1 FOR UPDATE`, id)
	require.NoError(t, err)
	return app
}

// waitForLockWait waits until a session of the test's database running a
// query LIKE pattern waits for a lock.
func (b *bundle) waitForLockWait(t *testing.T, what, pattern string) {
	t.Helper()
	eventually(t, 10*time.Second, what, func() bool {
		var waiting bool
		b.scalar(t, &waiting, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE $1)`, pattern)
		return waiting
	})
}
