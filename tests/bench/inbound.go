package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/sim"
	pgforcesql "github.com/pgforce/pgforce/sql"
)

// inboundSync measures the inbound worker, run as `pgforce run` in its own
// process against the simulator: initial load rate through Bulk API 2.0
// and the worker's peak RSS, CDC latency from a simulator commit until the
// row is visible in Postgres, and REST calls made while idle with CDC.
// BENCH_INBOUND_LOAD_ONLY=1 measures the load alone.
func inboundSync(ctx context.Context, env *Env) ([]Result, error) {
	rows, latencyFor, idleFor := 100_000, 10*time.Second, 30*time.Second
	if env.Full {
		rows, latencyFor, idleFor = 1_000_000, 60*time.Second, time.Hour
	}
	b, err := newInboundBench(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("inbound bench setup: %w", err)
	}
	defer b.close()

	var out []Result
	rate, rss, workerSaid, err := b.load(ctx, env, rows)
	if err != nil {
		return nil, fmt.Errorf("inbound load: %w", err)
	}
	out = append(out,
		Result{Metric: "inbound initial load, Bulk 2.0", Value: rate, Unit: "rows/s", Min: ptr(50000), HerokuConnect: "Bulk API above 10,000 records; no published rate",
			Detail: fmt.Sprintf("%d Accounts of 20 fields, mapping INSERT until state synced, worker as a separate process (the worker's own figure, from the load's start: %s)", rows, workerSaid)},
		Result{Metric: "inbound worker peak RSS during load", Value: rss, Unit: "MB", Max: ptr(200), HerokuConnect: "n/a (hosted)",
			Detail: "VmHWM of the `pgforce run` process after the load"})

	if os.Getenv("BENCH_INBOUND_LOAD_ONLY") != "" {
		// The full-size load alone, without the latency and idle windows
		// (the idle window alone is the full run's hour).
		return out, nil
	}
	p50, p99, n, err := b.latency(ctx, 200, latencyFor)
	if err != nil {
		return nil, fmt.Errorf("inbound latency: %w", err)
	}
	detail := fmt.Sprintf("%d UI edits at 200/s for %s; from the simulator commit until the row's commit in Postgres (NOTIFY from a trigger on the mapped table)", n, latencyFor)
	out = append(out,
		Result{Metric: "inbound CDC latency p50", Value: p50, Unit: "ms", Max: ptr(50), HerokuConnect: "600 s default polling", Detail: detail},
		Result{Metric: "inbound CDC latency p99", Value: p99, Unit: "ms", Max: ptr(250), HerokuConnect: "600 s default polling", Detail: detail})

	calls, err := b.idle(ctx, idleFor)
	if err != nil {
		return nil, fmt.Errorf("inbound idle: %w", err)
	}
	out = append(out, Result{Metric: "inbound REST calls while idle with CDC", Value: float64(calls), Unit: "calls", Max: ptr(0), HerokuConnect: "144 polls per object per day",
		Detail: fmt.Sprintf("counted by the simulator over %s (the target's window is one hour, which BENCH=full counts; quick mode counts a shorter window)", idleFor)})

	secs, read, err := b.driftCheck(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("inbound drift check: %w", err)
	}
	out = append(out, Result{Metric: "drift check of the loaded table", Value: secs, Unit: "s", HerokuConnect: "none: drift goes unseen",
		Detail: fmt.Sprintf("pgforce.check_drift until finished: %d record Ids and SystemModstamps read (Bulk 2.0) and compared with the rows, nothing found", read)})
	secs, read, err = b.driftCheck(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("inbound drift check comparing values: %w", err)
	}
	out = append(out, Result{Metric: "drift check comparing values", Value: secs, Unit: "s", HerokuConnect: "none: drift goes unseen",
		Detail: fmt.Sprintf("pgforce.check_drift(compare_values => true) until finished: %d records read whole (Bulk 2.0) and every mapped value compared with the rows, nothing found", read)})
	return out, nil
}

// driftCheck runs pgforce.check_drift on the loaded mapping, comparing
// values or not, and returns how long it took and how many records it
// read; a difference found is an error, since nothing changed the table
// behind the worker's back.
func (b *inboundBench) driftCheck(ctx context.Context, values bool) (float64, int64, error) {
	start := time.Now()
	var id int64
	if err := b.conn.QueryRow(ctx, `SELECT pgforce.check_drift('Account', compare_values => $1)`, values).Scan(&id); err != nil {
		return 0, 0, err
	}
	for {
		var finished bool
		var read, differ int64
		var errText *string
		if err := b.conn.QueryRow(ctx, `SELECT finished_at IS NOT NULL, coalesce(salesforce_records, 0),
			coalesce(missing + stale + extra + coalesce(different, 0), 0), error FROM pgforce.drift_check WHERE id = $1`, id).Scan(&finished, &read, &differ, &errText); err != nil {
			return 0, 0, err
		}
		switch {
		case errText != nil:
			return 0, 0, errors.New(*errText)
		case finished && differ > 0:
			return 0, 0, fmt.Errorf("the check found %d records different in a table nothing changed", differ)
		case finished:
			return time.Since(start).Seconds(), read, nil
		case time.Since(start) > 10*time.Minute:
			return 0, 0, errors.New("the drift check did not finish in 10 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type inboundBench struct {
	connStr string
	conn    *pgx.Conn
	sim     *sim.Server
	simStop context.CancelFunc
	worker  *exec.Cmd
	dir     string
	ids     []string
}

func newInboundBench(ctx context.Context, env *Env) (*inboundBench, error) {
	b := &inboundBench{}
	admin, err := pgx.Connect(ctx, env.Cluster.ConnString("postgres"))
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE bench_inbound"); err != nil {
		return nil, err
	}
	b.connStr = env.Cluster.ConnString("bench_inbound")
	if b.conn, err = pgx.Connect(ctx, b.connStr); err != nil {
		return nil, err
	}
	if _, _, err := pgforcesql.Install(ctx, b.conn); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	b.simStop = cancel
	if b.sim, err = sim.Start(sctx, "127.0.0.1:0", sim.Config{APILimit: 10_000_000}); err != nil {
		return nil, err
	}
	if b.dir, err = os.MkdirTemp("", "pgforce-bench-inbound-"); err != nil {
		return nil, err
	}
	fmt.Fprintln(env.Log, "bench: building pgforce for the inbound worker")
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(b.dir, "pgforce"), "./cmd/pgforce")
	build.Stderr = env.Log
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/pgforce: %w", err)
	}
	return b, nil
}

func (b *inboundBench) close() {
	if b.worker != nil && b.worker.Process != nil {
		_ = b.worker.Process.Kill()
		_ = b.worker.Wait()
	}
	if b.conn != nil {
		b.conn.Close(context.Background())
	}
	if b.sim != nil {
		b.simStop()
		b.sim.Close()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

var benchAccountFields = []string{"Name", "Type", "Phone", "Fax", "AccountNumber", "Website", "Site", "Industry",
	"AnnualRevenue", "NumberOfEmployees", "Ownership", "Rating", "Description", "AccountSource",
	"BillingStreet", "BillingCity", "BillingState", "BillingPostalCode", "BillingCountry", "ShippingCity"}

func benchAccount(i int) map[string]any {
	return map[string]any{
		"Name": fmt.Sprintf("Account %d", i), "Type": "Prospect", "Phone": "555-0100", "Fax": "555-0101",
		"AccountNumber": fmt.Sprintf("AN-%08d", i), "Website": "https://example.com", "Site": "HQ",
		"Industry": "Banking", "AnnualRevenue": float64(i) * 1000.5, "NumberOfEmployees": i % 5000,
		"Ownership": "Private", "Rating": "Warm", "Description": "A benchmark account with a short description.",
		"AccountSource": "Web", "BillingStreet": "1 Market St", "BillingCity": "San Francisco", "BillingState": "CA",
		"BillingPostalCode": "94105", "BillingCountry": "USA", "ShippingCity": "Oakland",
	}
}

// load seeds rows Accounts, starts the worker, maps Account and waits for
// the load; it returns rows/s, the worker's peak RSS in MB and the
// mapping's state_detail once synced (the worker's own timing of the load,
// without describe, table creation and subscription).
func (b *inboundBench) load(ctx context.Context, env *Env, rows int) (float64, float64, string, error) {
	fmt.Fprintf(env.Log, "bench: seeding %d Accounts in the simulator\n", rows)
	// Seed in transactions under the 100,000-record overflow mark, as a
	// real org would have been filled over time.
	for done := 0; done < rows; {
		n := min(50_000, rows-done)
		base := done
		if _, err := b.sim.Seed(ctx, "Account", n, func(i int) map[string]any { return benchAccount(base + i) }); err != nil {
			return 0, 0, "", err
		}
		done += n
	}
	b.worker = exec.CommandContext(ctx, filepath.Join(b.dir, "pgforce"), "run")
	b.worker.Env = append(os.Environ(),
		"DATABASE_URL="+b.connStr,
		"SALESFORCE_LOGIN_URL="+b.sim.URL(),
		"SALESFORCE_CLIENT_ID="+sim.DefaultClientID,
		"SALESFORCE_CLIENT_SECRET="+sim.DefaultClientSecret,
		"SALESFORCE_USERNAME="+sim.DefaultUsername,
		"SALESFORCE_PASSWORD="+sim.DefaultPassword,
		"PGFORCE_HTTP_ADDR=127.0.0.1:0",
		"PGFORCE_LOG_LEVEL="+cmp.Or(os.Getenv("BENCH_WORKER_LOG_LEVEL"), "warn"),
	)
	b.worker.Stderr = env.Log
	if err := b.worker.Start(); err != nil {
		return 0, 0, "", err
	}
	fmt.Fprintln(env.Log, "bench: mapping Account (20 fields) and waiting for the load")
	start := time.Now()
	var id int
	if err := b.conn.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields, inbound) VALUES ('Account', $1, 'cdc') RETURNING id`, benchAccountFields).Scan(&id); err != nil {
		return 0, 0, "", err
	}
	var detail string
	for {
		var state string
		if err := b.conn.QueryRow(ctx, `SELECT state, coalesce(state_detail, '') FROM pgforce.mapping WHERE id = $1`, id).Scan(&state, &detail); err != nil {
			return 0, 0, "", err
		}
		if state == "synced" {
			break
		}
		if state == "error" {
			return 0, 0, "", fmt.Errorf("mapping in error: %s", detail)
		}
		if time.Since(start) > 30*time.Minute {
			return 0, 0, "", errors.New("load did not finish in 30 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	var n int
	if err := b.conn.QueryRow(ctx, `SELECT count(*) FROM salesforce.account`).Scan(&n); err != nil {
		return 0, 0, "", err
	}
	if n != rows {
		return 0, 0, "", fmt.Errorf("loaded %d rows, want %d", n, rows)
	}
	if bulk := b.sim.Calls()["POST /services/data/vXX.X/jobs/query"]; bulk < 1 {
		return 0, 0, "", errors.New("the load did not use Bulk API 2.0")
	}
	rss, err := peakRSS(b.worker.Process.Pid)
	if err != nil {
		return 0, 0, "", err
	}
	r, err := b.conn.Query(ctx, `SELECT sfid FROM salesforce.account`)
	if err != nil {
		return 0, 0, "", err
	}
	b.ids, err = pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		return 0, 0, "", err
	}
	return float64(rows) / elapsed.Seconds(), rss, detail, nil
}

// peakRSS reads VmHWM of a process in MB.
func peakRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// latency edits random Accounts at perSecond for d and measures from the
// simulator commit until the row's commit in Postgres, seen as a
// notification sent by a trigger on the mapped table.
func (b *inboundBench) latency(ctx context.Context, perSecond int, d time.Duration) (p50, p99 float64, n int, err error) {
	if _, err := b.conn.Exec(ctx, `CREATE FUNCTION bench_seen() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_notify('bench_seen', NEW.accountnumber); RETURN NULL; END $$;
		CREATE TRIGGER bench_seen AFTER UPDATE ON salesforce.account FOR EACH ROW
		WHEN (NEW.accountnumber LIKE 'LAT-%') EXECUTE FUNCTION bench_seen()`); err != nil {
		return 0, 0, 0, err
	}
	listen, err := pgx.Connect(ctx, b.connStr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer listen.Close(context.Background())
	if _, err := listen.Exec(ctx, "LISTEN bench_seen"); err != nil {
		return 0, 0, 0, err
	}
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []float64
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		for {
			note, err := listen.WaitForNotification(lctx)
			if err != nil {
				return
			}
			at := time.Now()
			mu.Lock()
			if t0, ok := sent[note.Payload]; ok {
				lat = append(lat, float64(at.Sub(t0).Microseconds())/1000)
				delete(sent, note.Payload)
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		key := fmt.Sprintf("LAT-%d", i)
		id := b.ids[rand.IntN(len(b.ids))]
		mu.Lock()
		sent[key] = time.Now()
		mu.Unlock()
		if err := b.sim.UIEdit(ctx, "Account", id, map[string]any{"AccountNumber": key}); err != nil {
			return 0, 0, 0, err
		}
		n++
	}
	// Let the last changes arrive.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		left := len(sent)
		mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-listenDone
	mu.Lock()
	defer mu.Unlock()
	if len(sent) > 0 {
		return 0, 0, n, fmt.Errorf("%d of %d changes never arrived", len(sent), n)
	}
	p50, p99 = percentiles(lat)
	return p50, p99, n, nil
}

// idle counts the simulator's non-streaming calls while nothing changes.
func (b *inboundBench) idle(ctx context.Context, d time.Duration) (int64, error) {
	time.Sleep(time.Second)
	b.sim.ResetCalls()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	var n int64
	for k, v := range b.sim.Calls() {
		if !strings.Contains(k, "/cometd/") {
			n += v
		}
	}
	return n, nil
}
