package outbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// childEnv makes the test binary run a bare outbound worker instead of the
// tests: the crash test starts it as a subprocess and SIGKILLs it.
const childEnv = "PGFORCE_OUTBOUND_TEST_CHILD"

func simFault(path string, status int, reset bool, count int) sim.Fault {
	return sim.Fault{Path: path, Status: status, Reset: reset, Count: count}
}

func runChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sf, err := salesforce.New(ctx, salesforce.Config{LoginURL: os.Getenv("CHILD_SIM_URL"), ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	pool, err := pgxpool.New(ctx, os.Getenv("CHILD_DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer pool.Close()
	opts := fastOptions()
	opts.BatchSize = 200
	opts.Parallel = 1
	if err := outbound.New(pool, sf, nil, opts).Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// startChild runs a bare outbound worker (runChild) in a subprocess of
// the test binary, against the bundle's simulator and database.
func (b *bundle) startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", "CHILD_SIM_URL="+b.sim.URL(), "CHILD_DATABASE_URL="+b.db.ConnString)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _, _ = child.Process.Wait() })
	return child
}

// killChild kills the worker with SIGKILL: it records nothing more.
func killChild(t *testing.T, child *exec.Cmd) {
	t.Helper()
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_, _ = child.Process.Wait()
}

func TestWorkerKilledMidBatchLosesNothingAndUpsertDuplicatesNothing(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	const n = 1000
	b.exec(t, `INSERT INTO salesforce.account (name, ext_id__c) SELECT 'Crash ' || g, 'crash-' || g FROM generate_series(1, $1) g`, n)
	// Slow Salesforce down so that the kill lands while calls are in flight.
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects", LatencyMS: 60})

	child := b.startChild(t)

	// Kill it once some, but not all, records are written back.
	eventually(t, 30*time.Second, "some rows synced and a batch in flight", func() bool {
		var synced, claimed int
		b.scalar(t, &synced, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL`)
		b.scalar(t, &claimed, `SELECT count(*) FROM pgforce.outbox WHERE claimed_at IS NOT NULL`)
		return synced >= 200 && claimed > 0
	})
	killChild(t, child)
	var synced, claimed int
	b.scalar(t, &synced, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL`)
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce.outbox WHERE claimed_at IS NOT NULL`)
	require.Less(t, synced, n, "the kill must land mid-backlog")
	require.Positive(t, claimed, "the kill must land mid-batch")
	t.Logf("killed with %d of %d rows synced and %d entries claimed", synced, n, claimed)

	b.sim.ClearFaults()
	b.start(t, fastOptions()) // takes over the dead worker's claims after the lease
	eventually(t, 60*time.Second, "every row synced", func() bool {
		b.scalar(t, &synced, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL`)
		return synced == n
	})
	var total int
	require.NoError(t, b.sf.Query(context.Background(), "SELECT COUNT() FROM Account WHERE Name LIKE 'Crash %'", func(salesforce.Record) error { return nil }))
	total, err := b.sf.Count(context.Background(), "SELECT COUNT() FROM Account WHERE Name LIKE 'Crash %'")
	require.NoError(t, err)
	require.Equal(t, n, total, "no record lost, none duplicated")
	var distinct int
	b.scalar(t, &distinct, `SELECT count(DISTINCT sfid) FROM salesforce.account`)
	require.Equal(t, n, distinct)
	eventually(t, 5*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
}

func TestTwoWorkersKeepEachRecordsChangesInOrder(t *testing.T) {
	b := setup(t, setupOptions{})
	var ids []int
	for i := 0; i < 20; i++ {
		var id int
		b.scalar(t, &id, `INSERT INTO salesforce.account (name, annualrevenue) VALUES ($1, 0) RETURNING id`, fmt.Sprintf("Order %d", i))
		ids = append(ids, id)
	}
	opts := fastOptions()
	opts.BatchSize = 7 // small claims interleave the two workers
	b.start(t, opts)
	b.start(t, opts)
	eventually(t, 20*time.Second, "all inserted", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL`)
		return n == len(ids)
	})
	// Each record's revenue climbs 1..30 in separate transactions; the last
	// value must win in Salesforce whichever worker sends which step.
	for step := 1; step <= 30; step++ {
		b.exec(t, `UPDATE salesforce.account SET annualrevenue = $1`, step)
	}
	eventually(t, 30*time.Second, "all updates written", func() bool { return b.backlog(t) == 0 })
	for _, id := range ids {
		sfid := b.rowSfid(t, "account", id)
		v, err := b.sfField(t, "Account", sfid, "AnnualRevenue").(json.Number).Float64()
		require.NoError(t, err)
		require.Equal(t, 30.0, v, "record %d", id)
	}
}

func TestWithoutLogicalReplicationNotifyAndPollDeliverChanges(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	// A role without REPLICATION cannot open the stream, as on managed
	// Postgres that denies it.
	// Roles belong to the whole cluster, which every test of this binary
	// shares, so the name is unique to the test (and to -count runs).
	role := pgtest.UniqueName(t)
	b.exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN NOSUPERUSER NOREPLICATION`, role))
	b.exec(t, fmt.Sprintf(`GRANT ALL ON SCHEMA pgforce, salesforce TO %s`, role))
	b.exec(t, fmt.Sprintf(`GRANT ALL ON ALL TABLES IN SCHEMA pgforce, salesforce TO %s`, role))
	b.exec(t, fmt.Sprintf(`GRANT ALL ON ALL SEQUENCES IN SCHEMA pgforce, salesforce TO %s`, role))
	cfg, err := pgxpool.ParseConfig(b.db.ConnString)
	require.NoError(t, err)
	cfg.ConnConfig.User = role
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	opts := fastOptions()
	opts.Feed.SafetyPoll = time.Hour // only NOTIFY can deliver within the test
	svc := b.startWith(t, pool, opts)

	eventually(t, 10*time.Second, "fallback mode", func() bool { return svc.FeedMode() == "notify_poll" })
	eventually(t, 5*time.Second, "status shows fallback", func() bool { return b.feedStatus(t) == "notify_poll" })
	// And why, with the fix.
	var detail string
	b.scalar(t, &detail, `SELECT feed_detail FROM pgforce.outbound_worker WHERE feed_mode = 'notify_poll'`)
	require.Contains(t, detail, "give the worker's role the REPLICATION attribute (ALTER ROLE <role> REPLICATION")
	var id int
	start := time.Now()
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Via notify') RETURNING id`)
	eventually(t, 10*time.Second, "synced", func() bool { return b.rowSfid(t, "account", id) != "" })
	require.Less(t, time.Since(start), 5*time.Second)
	var slots int
	b.scalar(t, &slots, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`)
	require.Zero(t, slots)
	_ = pgx.Identifier{}
}

// Entries claimed under a live worker's name that none of its batches holds
// (an earlier process's under the same name, here; or a claim that
// committed as its statement was cancelled) go back to the queue between
// cycles: the worker's heartbeat keeps the lease from ever doing it.
func TestClaimsNoBatchHoldsAreHandedBackByTheLiveWorker(t *testing.T) {
	b := setup(t, setupOptions{})
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Leaked') RETURNING id`)
	opts := fastOptions()
	opts.WorkerID = "leaky"
	b.exec(t, `UPDATE pgforce.outbox SET claimed_at = now(), claimed_by = $1, attempts = 1, sent_from = now()`, opts.WorkerID)
	b.start(t, opts)
	b.waitSfid(t, "account", id)
	require.Len(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Leaked'"), 1)
}
