package inbound_test

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/syncbuf"
	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/inbound"
)

// A batch of change events that waits for a row an application
// transaction holds, while that transaction waits for a row the batch
// holds, gives its locks back (lock_timeout) instead of leaving Postgres
// to abort one of the two, and is applied again once the application is
// done, on the same stream, without tearing the subscription down.
func TestChangeEventBatchGivesWayToAnApplicationTransactionAndIsAppliedAgainWithoutResubscribing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sfids := e.create("Account", map[string]any{"Name": "One"}, map[string]any{"Name": "Two"}, map[string]any{"Name": "Three"})
	mid := e.mapping("Account", []string{"Name"}, "cdc")
	logs := &syncbuf.Buffer{}
	svc, err := inbound.New(e.pool, e.sf, e.b, slog.New(slog.NewTextHandler(logs, nil)), e.opts)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("inbound service did not stop within 20s")
		}
	})
	e.waitState(mid, "synced")
	e.eventually(10*time.Second, func() (bool, string) {
		return strings.Count(logs.String(), "subscribed to change events") == 1, "not subscribed yet"
	})

	// Rows by id: lo and hi are the pair the batch will hold, c the record
	// whose event holds the applier up meanwhile.
	type row struct {
		id   int
		sfid string
	}
	var rows []row
	for _, s := range sfids {
		var id int
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT id FROM salesforce.account WHERE sfid = $1`, s).Scan(&id))
		rows = append(rows, row{id, s})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].id < rows[j].id })
	lo, hi, c := rows[0], rows[1], rows[2]

	// The applier waits on c while the events of lo and hi queue behind
	// it, so that those two are applied as one batch.
	txC, pidC := holdRow(e, c.id, "60s")
	// The application checks for deadlocks long before the applier would
	// (1 s by default): had the batch kept its lock on lo, the
	// application's statement below would be the one aborted.
	txHi, pidHi := holdRow(e, hi.id, "500ms")
	require.NoError(t, e.sim.UIEdit(ctx, "Account", c.sfid, map[string]any{"Name": "Three v2"}))
	e.eventually(10*time.Second, func() (bool, string) { return e.blockedBy(pidC), "applier not waiting on c" })
	require.NoError(t, e.sim.UIEdit(ctx, "Account", lo.sfid, map[string]any{"Name": "One v2"}))
	require.NoError(t, e.sim.UIEdit(ctx, "Account", hi.sfid, map[string]any{"Name": "Two v2"}))
	time.Sleep(time.Second) // both events delivered and queued
	require.NoError(t, txC.Commit(ctx))

	// The batch locks lo, then waits for hi; the application now wants lo
	// too, and gets it once the batch gives way.
	e.eventually(10*time.Second, func() (bool, string) { return e.blockedBy(pidHi), "batch not waiting on hi" })
	_, err = txHi.Exec(ctx, `SELECT FROM salesforce.account WHERE id = $1 FOR UPDATE`, lo.id)
	require.NoError(t, err)
	require.NoError(t, txHi.Commit(ctx))

	e.waitValue("account", lo.sfid, "name", "One v2")
	e.waitValue("account", hi.sfid, "name", "Two v2")
	require.Equal(t, "Three v2", e.value("account", c.sfid, "name"))
	// Once while the applier waited for c, once for the batch of lo and hi.
	require.GreaterOrEqual(t, strings.Count(logs.String(), "inbound: change events waited too long for a lock another session holds; running it again"), 2,
		"the batches gave way and were applied again")
	require.Equal(t, 1, strings.Count(logs.String(), "subscribed to change events"), "the stream stayed up")
}

// holdRow locks a row of salesforce.account in a transaction of its own, on
// a connection of its own (the service needs the pool's), which checks for
// deadlocks after deadlockTimeout (superuser-settable).
func holdRow(e *env, id int, deadlockTimeout string) (tx pgx.Tx, pid int) {
	t := e.t
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.db.ConnString)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	_, err = tx.Exec(ctx, `SELECT set_config('deadlock_timeout', $1, true)`, deadlockTimeout)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT FROM salesforce.account WHERE id = $1 FOR UPDATE`, id)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	return tx, pid
}

// blockedBy reports whether some session waits for a lock that pid holds.
func (e *env) blockedBy(pid int) bool {
	var n int
	require.NoError(e.t, e.db.Conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&n))
	return n > 0
}

// A poll applies the records it read in one transaction, in the order it
// read them. When it waits for a row an application transaction holds
// while that transaction wants a row the poll has written, the poll gives
// its locks back instead of leaving Postgres to abort the application's
// statement, and applies the records once the application is done.
func TestPollGivesWayToAnApplicationTransactionAndAppliesItsRecordsAfter(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sfids := e.create("Account", map[string]any{"Name": "First"}, map[string]any{"Name": "Second"})
	e.mapSynced("Account", []string{"Name"}, "poll")
	id := func(sfid string) int {
		var id int
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT id FROM salesforce.account WHERE sfid = $1`, sfid).Scan(&id))
		return id
	}

	// The application holds the second record's row and checks for
	// deadlocks long before the poll would (1 s by default).
	app, pid := holdRow(e, id(sfids[1]), "500ms")
	// Edited in this order, the poll reads and writes them in this order:
	// the first row, then a wait for the second.
	require.NoError(t, e.sim.UIEdit(ctx, "Account", sfids[0], map[string]any{"Name": "First v2"}))
	require.NoError(t, e.sim.UIEdit(ctx, "Account", sfids[1], map[string]any{"Name": "Second v2"}))
	e.eventually(10*time.Second, func() (bool, string) { return e.blockedBy(pid), "poll not waiting on the second row" })

	_, err := app.Exec(ctx, `SELECT FROM salesforce.account WHERE id = $1 FOR UPDATE`, id(sfids[0]))
	require.NoError(t, err, "the application locks the row the poll has written")
	require.NoError(t, app.Commit(ctx))

	e.waitValue("account", sfids[0], "name", "First v2")
	e.waitValue("account", sfids[1], "name", "Second v2")
}

// A reload ends by marking the rows whose records it did not read as
// deleted, in one statement over the table. When that waits for a row an
// application transaction holds while the application wants a row it has
// marked, it gives way instead of leaving Postgres to abort the
// application's statement, and marks them all once the application is
// done.
func TestReloadsDeletionsGiveWayToAnApplicationTransactionInsteadOfDeadlockingIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("Account", map[string]any{"Name": "Live"})
	mid := e.mapSynced("Account", []string{"Name"}, "poll")
	// Two rows of records that Salesforce no longer has (purged from its
	// recycle bin), in this physical order.
	var gone []int
	for _, sfid := range []string{"001000000000001AAA", "001000000000002AAA"} {
		var id int
		require.NoError(t, pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL pgforce.origin = 'salesforce'`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `INSERT INTO salesforce.account (sfid, name, systemmodstamp, isdeleted)
				VALUES ($1, 'Purged', now() - interval '1 day', false) RETURNING id`, sfid).Scan(&id)
		}))
		gone = append(gone, id)
	}

	// The reload's query is slow, so that the application can take its
	// lock after the reload has altered the table (which waits for every
	// lock on it) and before the deletions.
	e.sim.Inject(sim.Fault{Path: "/services/data/v62.0/query", Latency: time.Second})
	// Exactly the query endpoint: polls use queryAll.
	const query = "GET /services/data/vXX.X/query"
	queries := e.sim.Calls()[query]
	e.exec(`SELECT pgforce.reload($1::integer)`, mid)
	e.eventually(20*time.Second, func() (bool, string) {
		return e.sim.Calls()[query] > queries, "the reload has not queried yet"
	})
	// The application holds the second row and checks for deadlocks long
	// before the worker would (1 s by default).
	app, pid := holdRow(e, gone[1], "500ms")
	e.eventually(20*time.Second, func() (bool, string) {
		return e.blockedQueryLike(pid, "%inbound_seen%"), "the reload's deletions not waiting on the second row"
	})
	_, err := app.Exec(ctx, `SELECT FROM salesforce.account WHERE id = $1 FOR UPDATE`, gone[0])
	require.NoError(t, err, "the application locks a row the reload has marked")
	require.NoError(t, app.Commit(ctx))

	e.eventually(20*time.Second, func() (bool, string) {
		n := e.count(`SELECT count(*) FROM salesforce.account WHERE name = 'Purged' AND isdeleted`)
		return n == 2, "purged records not marked deleted"
	})
	require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce.account WHERE name = 'Live' AND NOT isdeleted`))
}

// blockedQueryLike reports whether a session running a query LIKE pattern
// waits for a lock that pid holds.
func (e *env) blockedQueryLike(pid int, pattern string) bool {
	return e.count(`SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE $2`, pid, pattern) > 0
}

// A record merged while the application updates its row: the merge looks
// for the row's queued changes only once it holds the row, so the update,
// committed while the merge waited for it, is seen and kept. Looked for
// first, they were not there, and the merge wrote Salesforce's value over
// the user's, stamped SYNCED, while the change was still on its way.
func TestARecordMergedWhileTheApplicationUpdatesItsRowKeepsTheUpdate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")

	app, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer app.Rollback(ctx)
	var pid int
	require.NoError(t, app.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	_, err = app.Exec(ctx, `UPDATE salesforce.account SET name = 'Mine' WHERE sfid = $1`, ids[0])
	require.NoError(t, err)
	// A read of the record, as a gap or a retry asks for.
	e.exec(`INSERT INTO pgforce.inbound_reread (mapping_id, sfid) VALUES ($1, $2)`, id, ids[0])
	e.exec(`SELECT pg_notify('pgforce_mapping', '')`)
	e.eventually(10*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid) > 0, "the merge not waiting for the row"
	})
	require.NoError(t, app.Commit(ctx))

	e.eventually(10*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM pgforce.inbound_reread`) == 0, "the read not done"
	})
	require.Equal(t, "Mine", e.value("account", ids[0], "name"))
	var lastop string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT _hc_lastop FROM salesforce.account WHERE sfid = $1`, ids[0]).Scan(&lastop))
	require.Equal(t, "PENDING", lastop, "the change is still to be sent")
}
