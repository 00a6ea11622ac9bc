package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgforce/pgforce/sim"
	pgforcesql "github.com/pgforce/pgforce/sql"
	"github.com/pgforce/pgforce/worker"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// outboundSync measures the outbound worker against the simulator: latency
// from a Postgres commit until the change is written to Salesforce and
// recorded, backlog drain rates through Collections and Bulk API 2.0, and
// API calls per 1,000 changes.
func outboundSync(ctx context.Context, env *Env) ([]Result, error) {
	records, latencyFor := 20000, 10*time.Second
	if env.Full {
		records, latencyFor = 100000, 60*time.Second
	}
	b, err := newOutboundBench(ctx, env, records)
	if err != nil {
		return nil, fmt.Errorf("outbound bench setup: %w", err)
	}
	defer b.close()

	var out []Result
	// BENCH_OUTBOUND_BULK_ONLY=1 measures the Bulk 2.0 drain alone, and
	// BENCH_OUTBOUND_COLLECTIONS_ONLY=1 the Collections drain alone, for
	// profiling them.
	bulkOnly, collectionsOnly := os.Getenv("BENCH_OUTBOUND_BULK_ONLY") != "", os.Getenv("BENCH_OUTBOUND_COLLECTIONS_ONLY") != ""
	if !bulkOnly {
		callsDetail := "counted by the simulator during the Collections drain"
		if !collectionsOnly {
			p50, p99, calls, err := b.latency(ctx, env, 200, latencyFor)
			if err != nil {
				return nil, fmt.Errorf("outbound latency: %w", err)
			}
			callsDetail += fmt.Sprintf("; %.1f during the 200/s latency run", calls)
			detail := fmt.Sprintf("200 single-row UPDATEs/s for %s; commit until written to the simulator and recorded (outbox entry deleted)", latencyFor)
			out = append(out,
				Result{Metric: "outbound latency p50", Value: p50, Unit: "ms", Max: ptr(50), HerokuConnect: "10 s to 2 min (poll) + serial writes", Detail: detail},
				Result{Metric: "outbound latency p99", Value: p99, Unit: "ms", Max: ptr(250), HerokuConnect: "10 s to 2 min", Detail: detail})
		}

		rate, calls, err := b.drain(ctx, env, records, false)
		if err != nil {
			return nil, fmt.Errorf("outbound collections drain: %w", err)
		}
		out = append(out,
			Result{Metric: "outbound backlog drain, Collections", Value: rate, Unit: "records/s", Min: ptr(5000), HerokuConnect: "200 records per SOAP call, one serial writer",
				Detail: fmt.Sprintf("%d queued updates", records)},
			Result{Metric: "outbound API calls per 1,000 changes", Value: calls, Unit: "calls", Max: ptr(6), HerokuConnect: "5 (200-record SOAP calls) at best",
				Detail: callsDetail})
	}

	if collectionsOnly {
		return out, nil
	}
	rate, calls, err := b.drain(ctx, env, records, true)
	if err != nil {
		return nil, fmt.Errorf("outbound bulk drain: %w", err)
	}
	out = append(out, Result{Metric: "outbound backlog drain, Bulk 2.0", Value: rate, Unit: "records/s", Min: ptr(20000),
		HerokuConnect: "Bulk only with Ordered Writes, 2,000+ consecutive changes", Detail: fmt.Sprintf("%d queued updates, %.2f API calls per 1,000", records, calls)})

	if !bulkOnly {
		p50, p99, err := b.filterBehindBacklog(ctx, 200)
		if err != nil {
			return nil, fmt.Errorf("inbound filter behind a backlog: %w", err)
		}
		detail := fmt.Sprintf("pgforce.inbound_filter of one CDC echo, as the inbound worker calls it, with %d Postgres changes queued for Salesforce; 200 random records", records)
		out = append(out,
			Result{Metric: "two-way: inbound filter behind a backlog p50", Value: p50, Unit: "ms", HerokuConnect: "n/a (no field-level merge)", Detail: detail},
			Result{Metric: "two-way: inbound filter behind a backlog p99", Value: p99, Unit: "ms", HerokuConnect: "n/a (no field-level merge)", Detail: detail})
	}
	return out, nil
}

// filterBehindBacklog queues one update of every record while no worker
// runs, then times pgforce.inbound_filter for n random records, each in a
// transaction of its own that is rolled back, as the inbound worker calls
// it for the Change Data Capture echo of a record with changes queued:
// every echo of a drained backlog meets the rest of the backlog.
func (b *outboundBench) filterBehindBacklog(ctx context.Context, n int) (p50, p99 float64, err error) {
	if _, err := b.pool.Exec(ctx, `UPDATE salesforce.account SET annualrevenue = annualrevenue + 1`); err != nil {
		return 0, 0, err
	}
	var took []float64
	for i := 0; i < n; i++ {
		id := 1 + rand.IntN(b.records)
		start := time.Now()
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			return 0, 0, err
		}
		_, err = tx.Exec(ctx, `SELECT pgforce.inbound_filter(1, $1, '{"annualrevenue": 1}', now(), true)`, id)
		_ = tx.Rollback(ctx)
		if err != nil {
			return 0, 0, err
		}
		took = append(took, float64(time.Since(start).Microseconds())/1000)
	}
	// The queued changes are never sent: the bench's last metric.
	if _, err := b.pool.Exec(ctx, `DELETE FROM pgforce.outbox`); err != nil {
		return 0, 0, err
	}
	p50, p99 = percentiles(took)
	return p50, p99, nil
}

type outboundBench struct {
	pool    *pgxpool.Pool
	sim     *sim.Server
	sf      *salesforce.Client
	connStr string
	admin   string
	records int
}

func newOutboundBench(ctx context.Context, env *Env, n int) (*outboundBench, error) {
	b := &outboundBench{records: n, admin: env.Cluster.ConnString("postgres")}
	admin, err := pgx.Connect(ctx, b.admin)
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE bench_outbound"); err != nil {
		return nil, err
	}
	b.connStr = env.Cluster.ConnString("bench_outbound")
	conn, err := pgx.Connect(ctx, b.connStr)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if _, _, err := pgforcesql.Install(ctx, conn); err != nil {
		return nil, err
	}
	if b.sim, err = sim.Start(ctx, "127.0.0.1:0", sim.Config{APILimit: 10_000_000}); err != nil {
		return nil, err
	}
	if b.sf, err = simClient(ctx, b.sim); err != nil {
		return nil, err
	}
	if _, err := b.sim.Seed(ctx, "Account", n, func(i int) map[string]any {
		return map[string]any{"Name": fmt.Sprintf("Bench %d", i), "AnnualRevenue": i}
	}); err != nil {
		return nil, err
	}
	// The mapped table holds the seeded records, written as the worker so
	// that loading them is not captured.
	var ids []string
	if err := b.sf.Query(ctx, "SELECT Id FROM Account", func(r salesforce.Record) error {
		ids = append(ids, r.ID())
		return nil
	}); err != nil {
		return nil, err
	}
	steps := []string{
		`INSERT INTO pgforce.mapping (id, sobject, fields, mode) VALUES (1, 'Account', '{Name,AnnualRevenue}', 'read_write')`,
		`SELECT pgforce.ensure_table(1, '[{"name":"Name","type":"string","length":255},{"name":"AnnualRevenue","type":"currency","precision":18,"scale":2}]')`,
		`UPDATE pgforce.mapping SET state = 'synced'`,
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s); err != nil {
			return nil, err
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SET LOCAL pgforce.origin = 'salesforce'`); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO salesforce.account (sfid, name, annualrevenue)
		SELECT s, 'Bench ' || i, i FROM unnest($1::text[]) WITH ORDINALITY AS u(s, i)`, ids); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE salesforce.account`); err != nil {
		return nil, err
	}
	// The worker's pool, as `pgforce run` opens it.
	if b.pool, err = worker.NewPool(ctx, b.connStr); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *outboundBench) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b.pool != nil {
		_, _ = b.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active`)
		b.pool.Close()
	}
	if b.sim != nil {
		_ = b.sim.Close()
	}
	if admin, err := pgx.Connect(ctx, b.admin); err == nil {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS bench_outbound WITH (FORCE)")
		admin.Close(ctx)
	}
}

// waitFor calls done every 50 ms until it reports true, and fails after
// limit saying what it waited for.
func waitFor(ctx context.Context, limit time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s waiting for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run starts a worker process and returns a function that stops it.
func (b *outboundBench) run(ctx context.Context, p outboundProcess, log io.Writer) (func(), error) {
	stop, err := startOutboundProcess(ctx, b.pool, b.connStr, b.sim, p, log)
	if err != nil {
		return nil, err
	}
	return func() {
		if err := stop(); err != nil {
			fmt.Fprintf(log, "bench: outbound worker: %v\n", err)
		}
	}, nil
}

// writeCalls sums the simulator's call counters for data endpoints (not
// login or the bench's own queries).
func writeCalls(s *sim.Server) int64 {
	var n int64
	for k, v := range s.Calls() {
		if strings.Contains(k, "/composite/") || strings.Contains(k, "/jobs/ingest") {
			n += v
		}
	}
	return n
}

// latency issues single-row UPDATEs at rate per second for d and measures,
// for each, the time from its commit until its outbox entry is gone, which
// happens only after Salesforce accepted it and the result was recorded.
func (b *outboundBench) latency(ctx context.Context, env *Env, rate int, d time.Duration) (p50, p99, callsPer1000 float64, err error) {
	stop, err := b.run(ctx, outboundProcess{}, env.Log)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	b.sim.ResetCalls()

	var mu sync.Mutex
	inflight := map[int64]time.Time{}
	var lat []float64
	pollDone := make(chan struct{})
	pollCtx, cancelPoll := context.WithCancel(ctx)
	go func() {
		defer close(pollDone)
		for pollCtx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			ids := make([]int64, 0, len(inflight))
			for id := range inflight {
				ids = append(ids, id)
			}
			mu.Unlock()
			if len(ids) == 0 {
				continue
			}
			rows, err := b.pool.Query(pollCtx, `SELECT id FROM pgforce.outbox WHERE id = ANY($1)`, ids)
			if err != nil {
				continue
			}
			still := map[int64]bool{}
			for rows.Next() {
				var id int64
				if rows.Scan(&id) == nil {
					still[id] = true
				}
			}
			rows.Close()
			now := time.Now()
			mu.Lock()
			for _, id := range ids {
				if !still[id] {
					lat = append(lat, float64(now.Sub(inflight[id]).Microseconds())/1000)
					delete(inflight, id)
				}
			}
			mu.Unlock()
		}
	}()

	conn, err := pgx.Connect(ctx, b.connStr)
	if err != nil {
		cancelPoll()
		return 0, 0, 0, err
	}
	defer conn.Close(ctx)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	sent := 0
	for time.Now().Before(end) {
		<-tick.C
		rowID := sent%b.records + 1
		var outboxID int64
		if _, err := conn.Exec(ctx, `UPDATE salesforce.account SET name = $2 WHERE id = $1`, rowID, fmt.Sprintf("Latency %d", sent)); err != nil {
			cancelPoll()
			return 0, 0, 0, err
		}
		committed := time.Now()
		if err := conn.QueryRow(ctx, `SELECT max(id) FROM pgforce.outbox WHERE record_id = $1`, rowID).Scan(&outboxID); err != nil {
			// Already written and deleted: faster than we could look.
			mu.Lock()
			lat = append(lat, float64(time.Since(committed).Microseconds())/1000)
			mu.Unlock()
		} else {
			mu.Lock()
			inflight[outboxID] = committed
			mu.Unlock()
		}
		sent++
	}
	// Wait for the tail.
	for i := 0; i < 500; i++ {
		mu.Lock()
		left := len(inflight)
		mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancelPoll()
	<-pollDone
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		return 0, 0, 0, fmt.Errorf("no change was written")
	}
	p50, p99 = percentiles(lat)
	callsPer1000 = float64(writeCalls(b.sim)) * 1000 / float64(sent)
	fmt.Fprintf(env.Log, "bench: outbound latency: %d changes, p50 %.1f ms, p99 %.1f ms\n", sent, p50, p99)
	return p50, p99, callsPer1000, nil
}

// drain queues one update of every record while the running worker has
// the mapping paused, and measures how fast the backlog empties once the
// mapping is resumed: the worker is warm, as in production, so neither its
// start (a process, a login, a pool) nor the stream's decoding of the
// backlog's capture is timed.
func (b *outboundBench) drain(ctx context.Context, env *Env, n int, bulk bool) (rate, callsPer1000 float64, err error) {
	// The mapping's default bulk_threshold (10,000) for the Bulk drain;
	// none, so that every change goes through Collections, for the other.
	name, threshold := "bulk", "DEFAULT"
	if !bulk {
		name, threshold = "collections", "NULL"
	}
	// Each drain starts from the same state: without the vacuum, the Bulk
	// drain inherited the dead rows of the Collections drain before it,
	// and autovacuum cleared them while it was timed.
	for _, q := range []string{`VACUUM ANALYZE salesforce.account, pgforce.outbox`, `CHECKPOINT`,
		`UPDATE pgforce.mapping SET bulk_threshold = ` + threshold, `SELECT pgforce.pause(1)`} {
		if _, err := b.pool.Exec(ctx, q); err != nil {
			return 0, 0, err
		}
	}
	stop, err := b.run(ctx, outboundProcess{Parallel: 4,
		BulkPoll: salesforce.Poll{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}}, env.Log)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	if _, err := b.pool.Exec(ctx, `UPDATE salesforce.account SET annualrevenue = annualrevenue + 1`); err != nil {
		return 0, 0, err
	}
	var committed string
	if err := b.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&committed); err != nil {
		return 0, 0, err
	}
	// The stream has delivered the backlog's commit once the worker
	// confirmed a position past it, which it does after a cycle that found
	// the mapping paused.
	if err := waitFor(ctx, time.Minute, "the stream past the backlog's commit", func() (bool, error) {
		var past bool
		err := b.pool.QueryRow(ctx, `SELECT coalesce(bool_and(confirmed_flush_lsn >= $1::pg_lsn), true)
			FROM pg_replication_slots WHERE database = current_database()`, committed).Scan(&past)
		return past, err
	}); err != nil {
		return 0, 0, err
	}
	var queued int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pgforce.outbox`).Scan(&queued); err != nil {
		return 0, 0, err
	}
	fmt.Fprintf(env.Log, "bench: outbound %s drain: %d changes queued, resuming the mapping\n", name, queued)
	// The simulator shares this process and holds every record and change
	// event in memory (170-300 MB after the full-size backlog). A collection
	// now, as testing.B does before timing, starts every drain with the
	// same heap to mark.
	runtime.GC()
	b.sim.ResetCalls()
	stopProfile, err := profileCPU(env.Log, "outbound-drain-"+name)
	if err != nil {
		return 0, 0, err
	}
	defer stopProfile()
	cpuStart, cpuOK := busyCPU()
	start := time.Now()
	if _, err := b.pool.Exec(ctx, `SELECT pgforce.resume(1)`); err != nil {
		return 0, 0, err
	}
	// The poll asks only whether any entry is left: a count(*) of the
	// backlog every 20 ms took about a third of a core from the drain it
	// was timing (6 ms a scan of 20,000 entries).
	for {
		var left bool
		if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.outbox)`).Scan(&left); err != nil {
			return 0, 0, err
		}
		if !left {
			break
		}
		if time.Since(start) > 10*time.Minute {
			var n int
			_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM pgforce.outbox`).Scan(&n)
			return 0, 0, fmt.Errorf("%d of %d changes still queued after 10 minutes", n, queued)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpuEnd, _ := busyCPU()
	rate = float64(queued) / elapsed.Seconds()
	callsPer1000 = float64(writeCalls(b.sim)) * 1000 / float64(queued)
	cpu := ""
	if cpuOK {
		cpu = fmt.Sprintf(", %.1f CPU s machine-wide", cpuEnd-cpuStart)
	}
	fmt.Fprintf(env.Log, "bench: outbound %s drain: %d changes in %s, %.0f/s, %.2f calls per 1000%s\n",
		name, queued, elapsed.Round(time.Millisecond), rate, callsPer1000, cpu)
	return rate, callsPer1000, nil
}
