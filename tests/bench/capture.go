package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/sim"
	pgforcesql "github.com/pgforce/pgforce/sql"
	"github.com/pgforce/pgforce/worker"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// captureOverhead compares the TPS of UPDATEs on a mapped read_write table
// (capture triggers on) with the same table unmapped. Both tables have the
// same columns, rows, indexes and storage parameters. Short runs alternate
// between them and the reported ratio is the median of the per-pair
// ratios, so that load from other processes on a shared machine hits both
// sides of a pair alike.
//
// It runs twice, each time on a cluster of its own: with durable commits
// (fsync=on, full_page_writes=on), which is what an application sees in
// production, and with fsync=off, where a commit costs almost nothing, so
// the figure is the CPU-bound worst case. Own clusters, stopped afterwards,
// keep the bloat and the checkpoints these runs leave behind from slowing
// the metrics that follow on the shared cluster.
func captureOverhead(ctx context.Context, env *Env) ([]Result, error) {
	var results []Result
	for _, fsync := range []string{"on", "off"} {
		r, err := func() ([]Result, error) {
			cluster, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"fsync": fsync, "full_page_writes": fsync}})
			if err != nil {
				return nil, err
			}
			defer cluster.Stop()
			return captureOverheadOn(ctx, env, cluster)
		}()
		if err != nil {
			return nil, err
		}
		results = append(results, r...)
	}
	return results, nil
}

func captureOverheadOn(ctx context.Context, env *Env, cluster *pgtest.Cluster) ([]Result, error) {
	connString, err := setupCaptureDB(ctx, cluster, captureRows(env), nil)
	if err != nil {
		return nil, err
	}
	if err := addWideMapping(ctx, connString, captureRows(env)); err != nil {
		return nil, err
	}
	settle := func(ctx context.Context) error { return drainOutbox(ctx, connString) }
	results, err := measureCapture(ctx, env, cluster, connString, "", true, settle)
	if err != nil || cluster.Setting("fsync") == "on" {
		return results, err
	}
	cost, err := captureCost(ctx, env, connString, settle)
	return append(results, cost...), err
}

// captureCost measures what capture adds to one UPDATE statement, in
// microseconds of server time, with a procedure that runs the statement and
// COMMITs in a loop inside the server. The TPS ratios above swing by 0.2
// from one pair to the next on a shared 2-core machine, more than most
// changes to capture move them; this figure has no client, network or
// scheduler in it, so it shows a change of a few microseconds, and it says
// what an application's write costs, which a ratio leaves to the speed of
// its disk. Run on the fsync=off cluster so that commits cost next to
// nothing.
func captureCost(ctx context.Context, env *Env, connString string, settle func(context.Context) error) ([]Result, error) {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, rounds := captureRows(env), 9
	if env.Full {
		rounds = 15
	}
	var results []Result
	narrow := [2]string{"bench_plain", "salesforce.bench__c"}
	narrowSet := "amount__c = amount__c + 1, status__c = (ARRAY['Open','Working','Closed'])[1 + i % 3]"
	for _, w := range []struct {
		name   string
		wal    string // the metric of the WAL the statements write
		batch  int
		n      int // statements per run
		tables [2]string
		set    string
		detail string
	}{
		{"capture cost, single-row UPDATE (server µs per statement, mapped minus unmapped)",
			"capture cost, single-row UPDATE (WAL bytes per statement, mapped minus unmapped)", 1, 5000, narrow, narrowSet, ""},
		{"capture cost, 100-row UPDATE (server µs per statement, mapped minus unmapped)",
			"capture cost, 100-row UPDATE (WAL bytes per statement, mapped minus unmapped)", 100, 200, narrow, narrowSet, ""},
		{"capture cost, single-row UPDATE of a 50-field mapping (server µs per statement, mapped minus unmapped)",
			"capture cost, single-row UPDATE of a 50-field mapping (WAL bytes per statement, mapped minus unmapped)", 1, 2000,
			[2]string{"wide_plain", "salesforce.wide__c"}, wideSet, "; 2 of 50 mapped fields changed, the 3rd and the 25th"},
	} {
		for _, table := range w.tables {
			// The procedure's name is the table's, so that a rerun
			// replaces it; the statement is static SQL, planned once,
			// as an application's prepared statement would be.
			// It also counts the WAL the statements write: this runs on
			// the fsync=off cluster, where full_page_writes is off too,
			// so that holds no page images and is nearly the same from
			// run to run; and at fsync=on every commit waits for its WAL
			// to be written.
			if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE OR REPLACE PROCEDURE %s(n integer, INOUT us float8 DEFAULT 0, INOUT wal float8 DEFAULT 0) LANGUAGE plpgsql AS $$
				DECLARE
					t0 timestamptz := clock_timestamp();
					w0 pg_lsn := pg_current_wal_insert_lsn();
					v_id integer;
				BEGIN
					FOR i IN 1..n LOOP
						v_id := 1 + (random() * %d)::integer;
						UPDATE %s SET %s
						WHERE id >= v_id AND id < v_id + %d;
						COMMIT;
					END LOOP;
					us := extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
					wal := pg_wal_lsn_diff(pg_current_wal_insert_lsn(), w0) / n;
				END $$`, costProcedure(table), rows-w.batch-1, table, w.set, w.batch)); err != nil {
				return nil, fmt.Errorf("create the capture cost procedure: %w", err)
			}
		}
		var mapped, unmapped, extra, walMapped, walUnmapped, walExtra []float64
		for r := 0; r < rounds; r++ {
			var us, wal [2]float64
			for i, table := range w.tables {
				if err := conn.QueryRow(ctx, fmt.Sprintf("CALL %s($1)", costProcedure(table)), w.n).Scan(&us[i], &wal[i]); err != nil {
					return nil, fmt.Errorf("%s: %w", w.name, err)
				}
			}
			fmt.Fprintf(env.Log, "bench: %s round %d: unmapped %.1f µs, mapped %.1f µs; WAL unmapped %.0f B, mapped %.0f B\n", w.name, r+1, us[0], us[1], wal[0], wal[1])
			unmapped, mapped, extra = append(unmapped, us[0]), append(mapped, us[1]), append(extra, us[1]-us[0])
			walUnmapped, walMapped, walExtra = append(walUnmapped, wal[0]), append(walMapped, wal[1]), append(walExtra, wal[1]-wal[0])
			if err := settle(ctx); err != nil {
				return nil, err
			}
		}
		results = append(results, Result{
			Metric:        w.name,
			Value:         median(extra),
			Unit:          "µs",
			HerokuConnect: "per-row hstore log trigger on every write",
			Detail: fmt.Sprintf("median of %d alternating pairs of %d statements, each committed, from a procedure in the server (differences %.0f-%.0f µs); mapped %.1f µs vs unmapped %.1f µs per statement; %d rows, fsync=off%s",
				rounds, w.n, minOf(extra), maxOf(extra), median(mapped), median(unmapped), rows, w.detail),
		}, Result{
			Metric:        w.wal,
			Value:         median(walExtra),
			Unit:          "bytes",
			HerokuConnect: "per-row hstore log trigger on every write",
			Detail: fmt.Sprintf("median of the same %d pairs (differences %.0f-%.0f B); mapped %.0f B vs unmapped %.0f B per statement, commit records included; full_page_writes=off%s",
				rounds, minOf(walExtra), maxOf(walExtra), median(walMapped), median(walUnmapped), w.detail),
		})
	}
	return results, nil
}

// costProcedure names captureCost's procedure for a table.
func costProcedure(table string) string {
	return "public.capture_cost_" + strings.ReplaceAll(table, ".", "_")
}

func captureRows(env *Env) int {
	if env.Full {
		return 200000
	}
	return 20000
}

// measureCapture runs the alternating mapped/unmapped pairs of both
// workloads. settle runs after each pair and must leave an empty outbox, so
// that every pair starts from the same state; label tells the variant
// apart in the metric names, and targets says whether the targets
// apply to it.
func measureCapture(ctx context.Context, env *Env, cluster *pgtest.Cluster, connString, label string, targets bool, settle func(context.Context) error) ([]Result, error) {
	rows, clients, rounds, duration := captureRows(env), 2, 9, 2*time.Second
	if env.Full {
		clients, rounds, duration = 4, 15, 5*time.Second
	}
	fsync := cluster.Setting("fsync")

	type workload struct {
		name      string
		batch     int
		clients   int
		min       float64 // 0: no target
		hc        string
		statement string
	}
	single := "UPDATE %s SET amount__c = amount__c + 1, status__c = (ARRAY['Open','Working','Closed'])[:s] WHERE id = :id"
	workloads := []workload{
		{"capture overhead, single-row UPDATE, fsync=" + fsync + label + " (TPS mapped/unmapped)", 1, clients, 0.85,
			"per-row hstore log trigger on every write; per-row jsonb triggers cost 13-31%", single},
		{"capture overhead, 100-row UPDATE, fsync=" + fsync + label + " (TPS mapped/unmapped)", 100, clients, 0.6,
			"per-row triggers cost over 60% on 100-row UPDATEs",
			"UPDATE %s SET amount__c = amount__c + 1, status__c = (ARRAY['Open','Working','Closed'])[:s] WHERE id >= :id AND id < :id + 100"},
	}
	// An application has more connections than cores. With durable
	// commits that is where anything that makes capturing transactions
	// commit one at a time shows: a NOTIFY per transaction cost half the
	// throughput here, and nothing at 2 clients. With a worker draining,
	// it shows whether capture notifies while the worker streams.
	if fsync == "on" {
		workloads = append(workloads, workload{"capture overhead, single-row UPDATE, 8 clients, fsync=on" + label + " (TPS mapped/unmapped)", 1, 8, 0,
			"per-row hstore log trigger on every write", single})
	}
	var results []Result
	for _, w := range workloads {
		clients := w.clients
		var mapped, unmapped, ratios []float64
		for r := 0; r < rounds; r++ {
			for _, table := range []string{"bench_plain", "salesforce.bench__c"} {
				tps, err := updateTPS(ctx, cluster, connString, fmt.Sprintf(w.statement, table), rows, w.batch, clients, duration)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(env.Log, "bench: %-60s %-20s round %d: %.0f TPS\n", w.name, table, r+1, tps)
				if table == "bench_plain" {
					unmapped = append(unmapped, tps)
				} else {
					mapped = append(mapped, tps)
				}
			}
			ratios = append(ratios, mapped[r]/unmapped[r])
			if err := settle(ctx); err != nil {
				return nil, err
			}
		}
		m, u := median(mapped), median(unmapped)
		var target *float64
		if targets && w.min > 0 {
			target = ptr(w.min)
		}
		results = append(results, Result{
			Metric:        w.name,
			Value:         median(ratios),
			Unit:          "ratio",
			Min:           target,
			HerokuConnect: w.hc,
			Detail: fmt.Sprintf("median of %d alternating pairs of %s runs (pair ratios %.2f-%.2f); mapped %.0f TPS vs unmapped %.0f TPS; %d clients, %d rows, synchronous_commit=%s, fsync=%s",
				rounds, duration, minOf(ratios), maxOf(ratios), m, u, clients, rows, cluster.Setting("synchronous_commit"), fsync),
		})
	}
	return results, nil
}

// captureWhileDraining measures capture overhead as production sees it: an
// outbound worker streams the outbox through logical replication and writes
// every captured change to the simulator while the mapped runs go on. Each
// pair's unmapped run starts once the worker has drained the mapped run's
// changes, so the ratio charges the draining to capture.
func captureWhileDraining(ctx context.Context, env *Env) ([]Result, error) {
	cluster, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"fsync": "on", "full_page_writes": "on"}})
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	schema, err := sim.ParseSchema([]byte(`{"objects":[{"name":"Bench__c","fields":[
		{"name":"Amount__c","type":"currency","precision":18,"scale":2},
		{"name":"Status__c","type":"picklist","picklistValues":["Open","Working","Closed"]},
		{"name":"Closed_At__c","type":"datetime"},
		{"name":"Notes__c","type":"textarea","length":32000}]}]}`))
	if err != nil {
		return nil, err
	}
	org, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{Schema: schema, APILimit: 100_000_000})
	if err != nil {
		return nil, err
	}
	defer org.Close()
	rows := captureRows(env)
	if _, err := org.Seed(ctx, "Bench__c", rows, func(i int) map[string]any {
		return map[string]any{"Name": fmt.Sprintf("Bench %d", i+1), "Amount__c": i + 1, "Status__c": "Open"}
	}); err != nil {
		return nil, err
	}
	sf, err := simClient(ctx, org)
	if err != nil {
		return nil, err
	}
	var sfids []string
	if err := sf.Query(ctx, "SELECT Id FROM Bench__c ORDER BY Name", func(r salesforce.Record) error {
		sfids = append(sfids, r.ID())
		return nil
	}); err != nil {
		return nil, err
	}
	connString, err := setupCaptureDB(ctx, cluster, rows, sfids)
	if err != nil {
		return nil, err
	}
	pool, err := worker.NewPool(ctx, connString)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `UPDATE pgforce.mapping SET state = 'synced'`); err != nil {
		return nil, err
	}

	stop, err := startOutboundProcess(ctx, pool, connString, org, outboundProcess{}, env.Log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintf(env.Log, "bench: outbound worker: %v\n", err)
		}
	}()

	settle := func(ctx context.Context) error {
		deadline := time.Now().Add(5 * time.Minute)
		for {
			var pending bool
			if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.outbox)`).Scan(&pending); err != nil {
				return err
			}
			if !pending {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("capture while draining: the worker did not drain the outbox within 5 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, s := range []string{"VACUUM ANALYZE salesforce.bench__c, bench_plain, pgforce.outbox", "CHECKPOINT"} {
			if _, err := pool.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	}
	if err := settle(ctx); err != nil {
		return nil, err
	}
	// The targets are capture's own cost; here the worker shares the
	// machine's cores with the application, which the figure shows.
	results, err := measureCapture(ctx, env, cluster, connString, ", worker draining", false, settle)
	for i := range results {
		results[i].Detail += "; an outbound worker streamed the outbox and wrote every change to the simulator during the mapped runs"
	}
	return results, err
}

// setupCaptureDB creates a database with pgforce, a mapped read_write table
// salesforce.bench__c and an identical plain table bench_plain, both filled
// with synced rows.
func setupCaptureDB(ctx context.Context, cluster *pgtest.Cluster, rows int, sfids []string) (string, error) {
	admin, err := pgx.Connect(ctx, cluster.ConnString("postgres"))
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE bench_capture"); err != nil {
		return "", err
	}
	connString := cluster.ConnString("bench_capture")
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, _, err := pgforcesql.Install(ctx, conn); err != nil {
		return "", err
	}
	columns := `[{"name":"Name","type":"string","length":80},
		{"name":"Amount__c","type":"currency","precision":18,"scale":2},
		{"name":"Status__c","type":"picklist","length":40},
		{"name":"Closed_At__c","type":"datetime"},
		{"name":"Notes__c","type":"textarea","length":32000}]`
	steps := []string{
		`INSERT INTO pgforce.mapping (id, sobject, fields, mode) VALUES (1, 'Bench__c', '{Name,Amount__c,Status__c,Closed_At__c,Notes__c}', 'read_write')`,
		`SELECT pgforce.ensure_table(1, '` + columns + `')`,
		`CREATE TABLE bench_plain (LIKE salesforce.bench__c INCLUDING ALL)`,
		// LIKE copies no table storage parameters, and the fillfactor
		// pgforce gives read_write tables decides how many updates are HOT.
		`DO $$ DECLARE o record;
		BEGIN
			FOR o IN SELECT * FROM pg_options_to_table((SELECT reloptions FROM pg_class WHERE oid = 'salesforce.bench__c'::regclass)) LOOP
				EXECUTE format('ALTER TABLE bench_plain SET (%I = %L)', o.option_name, o.option_value);
			END LOOP;
		END $$`,
		`SET pgforce.origin = 'salesforce'`,
		fmt.Sprintf(`INSERT INTO salesforce.bench__c (sfid, systemmodstamp, createddate, name, amount__c, status__c, notes__c)
			SELECT coalesce(($1::text[])[i], 'a00' || lpad(i::text, 15, '0')), now(), now(), 'Bench ' || i, i, 'Open', repeat('note ', 20)
			FROM generate_series(1, %d) i`, rows),
		`RESET pgforce.origin`,
		`INSERT INTO bench_plain SELECT * FROM salesforce.bench__c`,
		`VACUUM ANALYZE salesforce.bench__c, bench_plain`,
	}
	for _, s := range steps {
		var args []any
		if strings.Contains(s, "$1") {
			args = append(args, sfids)
		}
		if _, err := conn.Exec(ctx, s, args...); err != nil {
			return "", fmt.Errorf("set up capture benchmark: %s: %w", s, err)
		}
	}
	return connString, nil
}

// wideSet is the SET list of captureCost's UPDATE of the 50-field mapping.
const wideSet = "n3__c = n3__c + 1, t25__c = (ARRAY['Open','Working','Closed'])[1 + i % 3]"

// addWideMapping adds a read_write mapping of 50 fields, salesforce.wide__c,
// and an identical plain table wide_plain, both filled with synced rows.
// Capture's cost grows with the number of mapped fields, and a mapping of
// an object such as Account often has dozens.
func addWideMapping(ctx context.Context, connString string, rows int) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var fields, columns, values []string
	for i := 1; i <= 50; i++ {
		var name, column, value string
		switch i % 3 {
		case 0:
			name, column, value = fmt.Sprintf("N%d__c", i), `"type":"double","precision":18,"scale":2`, "i * 1.5"
		case 1:
			name, column, value = fmt.Sprintf("T%d__c", i), `"type":"string","length":80`, "'text ' || i"
		default:
			name, column, value = fmt.Sprintf("D%d__c", i), `"type":"datetime"`, "now()"
		}
		fields = append(fields, name)
		columns = append(columns, fmt.Sprintf(`{"name":%q,%s}`, name, column))
		values = append(values, value)
	}
	steps := []string{
		fmt.Sprintf(`INSERT INTO pgforce.mapping (id, sobject, fields, mode) VALUES (2, 'Wide__c', '{%s}', 'read_write')`, strings.Join(fields, ",")),
		`SELECT pgforce.ensure_table(2, '[` + strings.Join(columns, ",") + `]')`,
		`CREATE TABLE wide_plain (LIKE salesforce.wide__c INCLUDING ALL)`,
		`SET pgforce.origin = 'salesforce'`,
		fmt.Sprintf(`INSERT INTO salesforce.wide__c (sfid, %s) SELECT 'a01' || lpad(i::text, 15, '0'), %s FROM generate_series(1, %d) i`,
			strings.ToLower(strings.Join(fields, ", ")), strings.Join(values, ", "), rows),
		`RESET pgforce.origin`,
		`INSERT INTO wide_plain SELECT * FROM salesforce.wide__c`,
		`VACUUM ANALYZE salesforce.wide__c, wide_plain`,
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("set up the 50-field mapping: %s: %w", s, err)
		}
	}
	return nil
}

// updateTPS runs pgbench's transaction stmt from several clients for d and
// returns committed transactions per second. stmt takes the pgbench
// variables :id, the first row, and :s, a status from 1 to 3. Each client
// owns a disjoint slice of the ids, so the figure measures capture cost, not
// row-lock waits.
//
// The load is pgbench, not a Go client: on this 2-core machine a pgx client
// spent more CPU per transaction than the server (16,000 TPS of plain
// single-row UPDATEs against pgbench's 40,000, fsync off), and that
// overhead grew with the server's reply time, so it charged capture 110-180
// µs a statement where pgbench charged 70-100 and the server spends about
// 80. An application's own client runs on other cores.
func updateTPS(ctx context.Context, cluster *pgtest.Cluster, connString, stmt string, rows, batch, clients int, d time.Duration) (float64, error) {
	bindir, err := pgtest.Bindir()
	if err != nil {
		return 0, err
	}
	script := filepath.Join(cluster.Dir(), "capture.pgbench")
	slice := rows / clients
	// client_id runs from 0 to clients-1.
	body := fmt.Sprintf("\\set id :client_id * %d + random(1, %d)\n\\set s random(1, 3)\n%s;\n", slice, slice-batch, stmt)
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		return 0, err
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, filepath.Join(bindir, "pgbench"), "--no-vacuum", "--protocol=prepared",
		"--client", strconv.Itoa(clients), "--jobs", strconv.Itoa(clients), "--time", strconv.Itoa(secs),
		"--file", script, connString)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	// pgbench 15 prints "tps = 2397.768085 (without initial connection time)".
	m := regexp.MustCompile(`(?m)^tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// drainOutbox empties the outbox between runs and marks the rows of every
// mapping SYNCED again, as the worker would within milliseconds in
// production, so that every run starts from the same state and pays for
// turning its rows PENDING.
func drainOutbox(ctx context.Context, connString string) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, s := range []string{
		"TRUNCATE pgforce.outbox",
		"SET pgforce.origin = 'salesforce'",
		`DO $$ DECLARE m integer;
		BEGIN
			FOR m IN SELECT id FROM pgforce.mapping LOOP
				EXECUTE format('UPDATE %s SET _hc_lastop = %L WHERE _hc_lastop IS DISTINCT FROM %L', pgforce._mapping_table(m), 'SYNCED', 'SYNCED');
			END LOOP;
		END $$`,
		"RESET pgforce.origin",
		"VACUUM ANALYZE",
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentiles returns the 50th and 99th percentile of a non-empty xs,
// which it sorts.
func percentiles(xs []float64) (p50, p99 float64) {
	sort.Float64s(xs)
	return xs[len(xs)/2], xs[min(len(xs)*99/100, len(xs)-1)]
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
