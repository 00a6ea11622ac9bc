package feed_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	pgforcesql "github.com/pgforce/pgforce/sql"
	"github.com/pgforce/pgforce/worker/feed"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A worker that starts on a backlog can hold the feed before its stream
// has begun (the consumer's first cycle runs on the feed's first wake-up).
// The slot its last run left must still go while the backlog drains, and
// come back, streaming, once it is released.
func TestFeedHeldBeforeItsStreamBeganDropsTheSlotItsLastRunLeft(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := pgtest.NewDB(t)
	conn := db.Conn
	slot := feed.SlotName(db.Name)
	_, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	require.NoError(t, err)
	slotState := func() (exists, active bool) {
		r, err := conn.Query(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot)
		require.NoError(t, err)
		rows, err := pgx.CollectRows(r, pgx.RowTo[bool])
		require.NoError(t, err)
		return len(rows) > 0, len(rows) > 0 && rows[0]
	}

	cfg, err := pgx.ParseConfig(db.ConnString)
	require.NoError(t, err)
	f := feed.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), feed.Options{})
	f.Hold()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		exists, _ := slotState()
		return mode == feed.ModeBacklog && !exists
	}, 10*time.Second, 20*time.Millisecond, "held: the slot is dropped")

	f.Release()
	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		exists, active := slotState()
		return mode == feed.ModeLogicalReplication && exists && active
	}, 10*time.Second, 20*time.Millisecond, "released: streaming from a new slot")
	cancel()
	require.NoError(t, <-done)
}

// Capture notifies only while some worker waits for it (see
// pgforce._wakeup_lock): the feed holds the wake-up lock while it neither
// streams nor is held off by a draining consumer.
func TestFeedHoldsTheWakeUpLockOnlyWhileItNeitherStreamsNorWaitsForADrain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := pgtest.NewDB(t)
	lockHeld := wakeUpLockHeld(t, db)
	cfg, err := pgx.ParseConfig(db.ConnString)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	f := feed.New(cfg, logger, feed.Options{})
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		return mode == feed.ModeLogicalReplication && !lockHeld()
	}, 10*time.Second, 20*time.Millisecond, "streaming: capture need not notify")

	// A held feed's consumer is draining and claims until nothing is
	// left, so it needs no wake-up either until released.
	f.Hold()
	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		return mode == feed.ModeBacklog && !lockHeld()
	}, 10*time.Second, 20*time.Millisecond, "held: capture need not notify")
	require.Never(t, lockHeld, 300*time.Millisecond, 20*time.Millisecond, "held: capture need not notify")

	f.Release()
	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		return mode == feed.ModeLogicalReplication && !lockHeld()
	}, 10*time.Second, 20*time.Millisecond, "streaming again")
	cancel()
	require.NoError(t, <-done)

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	polling := feed.New(cfg, logger, feed.Options{DisableReplication: true})
	go func() { done <- polling.Run(ctx) }()
	require.Eventually(t, func() bool {
		mode, _ := polling.Mode()
		return mode == feed.ModeNotifyPoll && lockHeld()
	}, 10*time.Second, 20*time.Millisecond, "notify+poll: capture notifies")
	cancel()
	require.NoError(t, <-done)
	require.Eventually(t, func() bool { return !lockHeld() }, 10*time.Second, 20*time.Millisecond, "a stopped feed leaves the lock")
}

// Every walsender decodes the whole cluster's WAL, so a burst of writes to
// tables pgforce does not even publish holds the stream behind. Meanwhile
// capture notifies (the feed holds the wake-up lock), so that outbound
// changes do not wait for the stream to catch up; then it stops again.
func TestStreamingFeedHoldsTheWakeUpLockWhileItsStreamLags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := pgtest.NewDB(t)
	cfg, err := pgx.ParseConfig(db.ConnString)
	require.NoError(t, err)
	f := feed.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), feed.Options{LagCheck: 20 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	lockHeld := wakeUpLockHeld(t, db)
	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		return mode == feed.ModeLogicalReplication && !lockHeld()
	}, 10*time.Second, 20*time.Millisecond, "streaming, caught up")

	burst := make(chan error, 1)
	go func() {
		_, err := db.Conn.Exec(context.Background(), `CREATE TABLE burst AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 500000) g`)
		burst <- err
	}()
	other := db.Connect(t)
	held := false
	deadline := time.Now().Add(60 * time.Second)
	for !held && time.Now().Before(deadline) {
		held = lockHeldOn(t, other)
		time.Sleep(5 * time.Millisecond)
	}
	require.True(t, held, "the stream lagged behind the burst: capture notifies")
	require.NoError(t, <-burst)
	require.Eventually(t, func() bool { return !lockHeldOn(t, other) }, 60*time.Second, 20*time.Millisecond, "caught up: capture stops notifying")
	cancel()
	require.NoError(t, <-done)
}

// wakeUpLockHeld returns a check of whether some session of db holds the
// wake-up lock (pgforce._wakeup_lock()).
func wakeUpLockHeld(t *testing.T, db *pgtest.DB) func() bool {
	return func() bool { return lockHeldOn(t, db.Conn) }
}

func lockHeldOn(t *testing.T, conn *pgx.Conn) bool {
	var held bool
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND (l.classid::bigint << 32 | l.objid::bigint) = pgforce._wakeup_lock())`).Scan(&held))
	return held
}

// The wake-up lock lives on a connection of its own. A request no longer
// wanted is withdrawn on the server, not left queued behind an open
// capture (which would keep capture notifying); a lock lost with its
// connection is taken again.
func TestFeedWithdrawsAnUnwantedWakeUpLockRequestAndRetakesALostLock(t *testing.T) {
	db := pgtest.NewDB(t)
	cfg, err := pgx.ParseConfig(db.ConnString)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	queued := func() bool {
		var n int
		require.NoError(t, db.Conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks l
			WHERE l.locktype = 'advisory' AND NOT l.granted
			  AND (l.classid::bigint << 32 | l.objid::bigint) = pgforce._wakeup_lock()`).Scan(&n))
		return n > 0
	}

	// An application transaction that captured silently holds the lock
	// in shared mode: a feed that wants wake-ups queues behind it.
	app := db.Connect(t)
	tx, err := app.Begin(context.Background())
	require.NoError(t, err)
	_, err = tx.Exec(context.Background(), `SELECT pg_try_advisory_xact_lock_shared(pgforce._wakeup_lock())`)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	polling := feed.New(cfg, logger, feed.Options{DisableReplication: true})
	done := make(chan error, 1)
	go func() { done <- polling.Run(ctx) }()
	require.Eventually(t, queued, 10*time.Second, 20*time.Millisecond, "the feed queues for the lock")
	cancel()
	require.NoError(t, <-done)
	require.Eventually(t, func() bool { return !queued() }, 10*time.Second, 20*time.Millisecond, "a stopped feed's request is withdrawn")
	require.NoError(t, tx.Commit(context.Background()))

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	polling = feed.New(cfg, logger, feed.Options{DisableReplication: true})
	go func() { done <- polling.Run(ctx) }()
	lockHeld := wakeUpLockHeld(t, db)
	require.Eventually(t, lockHeld, 10*time.Second, 20*time.Millisecond, "the feed holds the lock")
	var terminated bool
	require.NoError(t, db.Conn.QueryRow(context.Background(), `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND (l.classid::bigint << 32 | l.objid::bigint) = pgforce._wakeup_lock()`).Scan(&terminated))
	require.True(t, terminated)
	require.Eventually(t, lockHeld, 10*time.Second, 20*time.Millisecond, "the feed takes the lock again")
	cancel()
	require.NoError(t, <-done)
}

// PREPARE TRANSACTION refuses a transaction that has sent a NOTIFY. On a
// server that allows prepared transactions, a feed that does not stream
// must therefore never make capture notify, or an application's two-phase
// commits would fail whenever a worker waited for a wake-up: it leaves the
// wake-up lock alone and looks at the outbox every PreparedPoll instead,
// waking its consumer when something new has been committed there.
func TestOnAServerThatAllowsPreparedTransactionsCaptureNeverNotifiesAndTheFeedPolls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"max_prepared_transactions": "4"}})
	require.NoError(t, err)
	defer c.Stop()
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, _, err = pgforcesql.Install(ctx, conn)
	require.NoError(t, err)
	for _, stmt := range []string{
		`INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Account', '{Name}', 'read_write')`,
		`SELECT pgforce.ensure_table(id, '[{"name":"Name","type":"string","length":80}]') FROM pgforce.mapping`,
		`SET pgforce.origin = 'salesforce'`,
		`INSERT INTO salesforce.account (sfid, name) VALUES ('001000000000000001', 'synced')`,
		`RESET pgforce.origin`,
	} {
		_, err := conn.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}

	cfg, err := pgx.ParseConfig(c.ConnString("postgres"))
	require.NoError(t, err)
	f := feed.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), feed.Options{DisableReplication: true, PreparedPoll: 50 * time.Millisecond})
	var wakes atomic.Int64
	go func() {
		for range f.Wake() {
			wakes.Add(1)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	require.Eventually(t, func() bool {
		mode, _ := f.Mode()
		return mode == feed.ModeNotifyPoll
	}, 10*time.Second, 20*time.Millisecond)
	// On a connection of its own: Never may still be asking when it returns.
	watch, err := pgx.Connect(ctx, c.ConnString("postgres"))
	require.NoError(t, err)
	defer watch.Close(context.Background())
	lockHeld := func() bool { return lockHeldOn(t, watch) }
	require.Never(t, lockHeld, 500*time.Millisecond, 20*time.Millisecond, "capture must not be made to notify")

	// The feed's first look, and LISTEN's, woke the consumer; then no more.
	var before int64
	require.Eventually(t, func() bool {
		before = wakes.Load()
		time.Sleep(200 * time.Millisecond)
		return wakes.Load() == before
	}, 5*time.Second, time.Millisecond)
	_, err = conn.Exec(ctx, `BEGIN; UPDATE salesforce.account SET name = 'changed'; PREPARE TRANSACTION 'pgforce_feed_test'`)
	require.NoError(t, err, "a two-phase commit that captured a change")
	_, err = conn.Exec(ctx, `COMMIT PREPARED 'pgforce_feed_test'`)
	require.NoError(t, err)
	var queued int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pgforce.outbox`).Scan(&queued))
	require.Equal(t, 1, queued, "the prepared transaction's change is captured")

	require.Eventually(t, func() bool { return wakes.Load() > before }, 5*time.Second, 10*time.Millisecond,
		"without a notification the feed still wakes its consumer for the new entry")
	// An idle outbox wakes nobody: each wake-up costs a drain cycle.
	idle := wakes.Load()
	require.Never(t, func() bool { return wakes.Load() > idle }, 500*time.Millisecond, 20*time.Millisecond,
		"nothing new, no wake-up")
	cancel()
	require.NoError(t, <-done)
}
