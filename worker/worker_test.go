package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/internal/syncbuf"
	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker"
	"github.com/pgforce/pgforce/worker/config"
	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

const childEnv = "PGFORCE_WORKER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// What `pgforce run` does: settings from the environment, SIGTERM
		// cancels the context, a nil return exits 0.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		cfg, err := config.Load(ctx)
		if err == nil {
			err = worker.Run(ctx, cfg, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

// startSim starts a simulated org for the test, closed when it ends.
func startSim(t *testing.T) *sim.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(); cancel() })
	return s
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunSyncsServesHealthAndMetricsAndExitsZeroOnSIGTERM(t *testing.T) {
	db := pgtest.NewDB(t)
	ctx := t.Context()
	s := startSim(t)
	sf, err := salesforce.New(ctx, salesforce.Config{LoginURL: s.URL(), ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword})
	require.NoError(t, err)
	res, err := sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Acme"})})
	require.NoError(t, err)
	accountID := res[0].ID

	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"DATABASE_URL="+db.ConnString,
		"SALESFORCE_LOGIN_URL="+s.URL(),
		"SALESFORCE_CLIENT_ID="+sim.DefaultClientID,
		"SALESFORCE_CLIENT_SECRET="+sim.DefaultClientSecret,
		"SALESFORCE_USERNAME="+sim.DefaultUsername,
		"SALESFORCE_PASSWORD="+sim.DefaultPassword,
		"PGFORCE_HTTP_ADDR="+addr,
	)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()

	require.Eventually(t, func() bool { code, _ := get("http://" + addr + "/healthz"); return code == http.StatusOK }, 15*time.Second, 50*time.Millisecond, "healthz never answered 200; stderr: %s", &stderr)

	_, err = db.Conn.Exec(ctx, `INSERT INTO pgforce.mapping (sobject, fields, inbound, mode) VALUES ('Account', '{Name}', 'cdc', 'read_write')`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var name string
		err := db.Conn.QueryRow(ctx, `SELECT name FROM salesforce.account WHERE sfid = $1`, accountID).Scan(&name)
		return err == nil && name == "Acme"
	}, 15*time.Second, 50*time.Millisecond, "the mapping was not loaded; stderr: %s", &stderr)
	require.Eventually(t, func() bool {
		var st string
		_ = db.Conn.QueryRow(ctx, `SELECT state FROM pgforce.mapping`).Scan(&st)
		return st == "synced"
	}, 15*time.Second, 50*time.Millisecond)
	require.NoError(t, s.UIEdit(ctx, "Account", accountID, map[string]any{"Name": "Acme 2"}))
	require.Eventually(t, func() bool {
		var name string
		_ = db.Conn.QueryRow(ctx, `SELECT name FROM salesforce.account WHERE sfid = $1`, accountID).Scan(&name)
		return name == "Acme 2"
	}, 15*time.Second, 50*time.Millisecond)

	_, err = db.Conn.Exec(ctx, `INSERT INTO salesforce.account (name) VALUES ('Made in Postgres')`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var sfid *string
		_ = db.Conn.QueryRow(ctx, `SELECT sfid FROM salesforce.account WHERE name = 'Made in Postgres'`).Scan(&sfid)
		return sfid != nil
	}, 15*time.Second, 50*time.Millisecond)

	code, body := get("http://" + addr + "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "pgforce_inbound_cdc_events_total")
	require.Contains(t, body, "pgforce_inbound_rows_applied_total")
	require.Contains(t, body, `pgforce_outbound_records_total{op="insert",result="written"} 1`)
	require.Contains(t, body, `pgforce_outbound_batches_total{api="collections"} 1`)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM; stderr: %s", &stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("worker did not exit within 20s of SIGTERM; stderr: %s", &stderr)
	}
	var replay *string
	var owner *string
	require.NoError(t, db.Conn.QueryRow(ctx, `SELECT cdc_replay_id, inbound_owner FROM pgforce.mapping`).Scan(&replay, &owner))
	require.NotNil(t, replay, "the replay id is stored")
	require.Nil(t, owner, "the lease is released on shutdown")
	require.NotContains(t, stderr.String(), sim.DefaultPassword, "no secret in the logs")
	require.NotContains(t, stderr.String(), sim.DefaultClientSecret, "no secret in the logs")
}

func TestRunRefusesToStartWithoutDatabaseURL(t *testing.T) {
	cfg := &config.Config{LoginURL: "http://127.0.0.1:1", ClientID: "x", ClientSecret: "y", Username: "u", Password: "p", HTTPAddr: "127.0.0.1:0", LogLevel: "info"}
	err := worker.Run(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	require.Contains(t, err.Error(), "DATABASE_URL")
}

func TestRunRefusesDatabaseWithoutPgforce(t *testing.T) {
	db := pgtest.NewEmptyDB(t)
	cfg := &config.Config{DatabaseURL: db.ConnString, LoginURL: "http://127.0.0.1:1", ClientID: "x", ClientSecret: "y", Username: "u", Password: "p", HTTPAddr: "127.0.0.1:0", LogLevel: "info"}
	err := worker.Run(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	require.Contains(t, err.Error(), "pgforce install")
}

func TestRunRefusesAnOrgThatIsNotInPgforceOrg(t *testing.T) {
	db := pgtest.NewDB(t)
	cfg := &config.Config{DatabaseURL: db.ConnString, LoginURL: "http://127.0.0.1:1", ClientID: "x", ClientSecret: "y", Username: "u", Password: "p", Org: "sandbox", HTTPAddr: "127.0.0.1:0", LogLevel: "info"}
	err := worker.Run(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, `PGFORCE_ORG: org "sandbox" is not in pgforce.org`)
}

// The worker's sessions run without JIT compilation, which cost its batch
// statements a third of their time, unless DATABASE_URL asks for it.
func TestWorkerSessionsRunWithoutJITUnlessTheURLSetsIt(t *testing.T) {
	db := pgtest.NewEmptyDB(t)
	for url, want := range map[string]string{
		db.ConnString:                            "off",
		db.ConnString + "&jit=on":                "on",
		db.ConnString + "&options=-c%20jit%3Don": "on",
	} {
		pool, err := worker.NewPool(t.Context(), url)
		require.NoError(t, err)
		var jit string
		require.NoError(t, pool.QueryRow(t.Context(), `SHOW jit`).Scan(&jit))
		pool.Close()
		require.Equal(t, want, jit, url)
	}
}

// The worker's pool holds enough connections for a Bulk drain's claims and
// result transactions beside the inbound side, unless DATABASE_URL sets
// its size.
func TestWorkerPoolHoldsTenConnectionsUnlessTheURLSetsItsSize(t *testing.T) {
	db := pgtest.NewEmptyDB(t)
	for url, want := range map[string]int32{
		db.ConnString:                       10,
		db.ConnString + "&pool_max_conns=3": 3,
	} {
		pool, err := worker.NewPool(t.Context(), url)
		require.NoError(t, err)
		require.Equal(t, want, pool.Config().MaxConns, url)
		pool.Close()
	}
}

// The worker's sessions run in UTC whatever the database's default time
// zone, which Heroku Connect's columns without a time zone need.
func TestWorkerSessionsRunInUTC(t *testing.T) {
	db := pgtest.NewEmptyDB(t)
	_, err := db.Conn.Exec(t.Context(), fmt.Sprintf(`ALTER DATABASE %q SET TimeZone = 'America/New_York'`, db.Name))
	require.NoError(t, err)
	pool, err := worker.NewPool(t.Context(), db.ConnString)
	require.NoError(t, err)
	defer pool.Close()
	var tz string
	require.NoError(t, pool.QueryRow(t.Context(), `SHOW TimeZone`).Scan(&tz))
	require.Equal(t, "UTC", tz)
}

// What pgforce does on the user's behalf and says in a notice (here,
// disabling Heroku Connect's triggers on a table it takes over) reaches the
// worker's log, where the user can read it.
func TestPgforcesNoticesOnTheWorkersConnectionsReachItsLog(t *testing.T) {
	db := pgtest.NewDB(t)
	_, err := db.Conn.Exec(t.Context(), pgtest.HerokuConnectAccount)
	require.NoError(t, err)
	s := startSim(t)
	for k, v := range map[string]string{"DATABASE_URL": db.ConnString, "SALESFORCE_LOGIN_URL": s.URL(),
		"SALESFORCE_CLIENT_ID": sim.DefaultClientID, "SALESFORCE_CLIENT_SECRET": sim.DefaultClientSecret,
		"SALESFORCE_USERNAME": sim.DefaultUsername, "SALESFORCE_PASSWORD": sim.DefaultPassword, "PGFORCE_HTTP_ADDR": freeAddr(t)} {
		t.Setenv(k, v)
	}
	cfg, err := config.Load(t.Context())
	require.NoError(t, err)
	var logs syncbuf.Buffer
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil))) }()
	defer func() {
		stop()
		require.NoError(t, <-done)
	}()

	_, err = db.Conn.Exec(t.Context(), `INSERT INTO pgforce.mapping (sobject, fields, mode, inbound) VALUES ('Account', '{Name,Industry,AnnualRevenue}', 'read_write', 'cdc')`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "disabled Heroku Connect's trigger hc_account_logtrigger")
	},
		15*time.Second, 50*time.Millisecond, "logs: %s", &logs)
	require.Contains(t, logs.String(), "ALTER TABLE salesforce.account ENABLE TRIGGER", "with the hint")
}

// A worker whose role is not pgforce's owner (nor a member of it) could
// sync nothing: it refuses to start, saying which role to use.
func TestRunRefusesARoleThatIsNotPgforcesOwner(t *testing.T) {
	db := pgtest.NewDB(t)
	role := db.Name + "_stranger"
	_, err := db.Conn.Exec(t.Context(), fmt.Sprintf(`CREATE ROLE %s LOGIN; GRANT CONNECT ON DATABASE %s TO %[1]s`, role, db.Name))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, err := url.Parse(db.ConnString)
	require.NoError(t, err)
	u.User = url.User(role)
	cfg := &config.Config{DatabaseURL: u.String(), LoginURL: "https://login.salesforce.com", ClientID: "x", ClientSecret: "y", Org: "default", LogLevel: "info", HTTPAddr: freeAddr(t)}
	err = worker.Run(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "the worker must run as pgforce's owner")
}

// An operator or function another role plants in a schema of the worker's
// search_path would run as the worker's role in its statements: the worker
// does not start while another role can create there, and names the fix.
func TestRunRefusesASearchPathAnotherRoleCanCreateIn(t *testing.T) {
	db := pgtest.NewDB(t)
	role := db.Name + "_app"
	_, err := db.Conn.Exec(t.Context(), fmt.Sprintf(`CREATE ROLE %s; GRANT CREATE ON SCHEMA public TO %[1]s`, role))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Conn.Exec(context.Background(), fmt.Sprintf("REVOKE CREATE ON SCHEMA public FROM %[1]s; DROP ROLE IF EXISTS %[1]s", role))
	})
	cfg := &config.Config{DatabaseURL: db.ConnString, LoginURL: "https://login.salesforce.com", ClientID: "x", ClientSecret: "y", Org: "default", LogLevel: "info", HTTPAddr: freeAddr(t)}
	err = worker.Run(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "public (can be written by "+role+")")
	require.ErrorContains(t, err, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
}

// A worker's replication slot keeps every byte of WAL the server writes
// while no worker reads it. When the worker's org is deleted while it runs,
// the worker drops the slot as it stops: no worker will read it again.
func TestAWorkerWhoseOrgWasDeletedDropsItsReplicationSlotWhenItStops(t *testing.T) {
	db := pgtest.NewDB(t)
	ctx := t.Context()
	_, err := db.Conn.Exec(ctx, `INSERT INTO pgforce.org (name, schema_name) VALUES ('sandbox', 'sandbox')`)
	require.NoError(t, err)
	s := startSim(t)
	cfg := &config.Config{DatabaseURL: db.ConnString, LoginURL: s.URL(), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		Username: sim.DefaultUsername, Password: sim.DefaultPassword, Org: "sandbox", HTTPAddr: freeAddr(t), LogLevel: "info"}
	var logs syncbuf.Buffer
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- worker.Run(runCtx, cfg, slog.New(slog.NewJSONHandler(&logs, nil))) }()

	slot := outbound.SlotName(db.Conn.Config().Database, "sandbox")
	// Streaming, not only active: a slot still being created is active too,
	// and goes by itself when the worker stops before it is made.
	require.Eventually(t, func() bool {
		var active bool
		err := db.Conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		return err == nil && active && strings.Contains(logs.String(), `"mode":"logical_replication"`)
	}, 15*time.Second, 50*time.Millisecond, "the worker never streamed from its slot %s; logs: %s", slot, &logs)

	_, err = db.Conn.Exec(ctx, `DELETE FROM pgforce.org WHERE name = 'sandbox'`)
	require.NoError(t, err)
	stop()
	require.NoError(t, <-done)
	var slots int
	require.NoError(t, db.Conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&slots))
	require.Zero(t, slots, "the deleted org's slot is dropped; logs: %s", &logs)
	require.Contains(t, logs.String(), "dropped its replication slot")
}

// A worker started for an org that is no longer in pgforce.org refuses to
// start, as before, and drops the slot an earlier worker of that org left.
func TestRunRefusingAnOrgThatIsGoneDropsTheSlotItsLastWorkerLeft(t *testing.T) {
	db := pgtest.NewDB(t)
	ctx := t.Context()
	slot := outbound.SlotName(db.Conn.Config().Database, "sandbox")
	_, err := db.Conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	require.NoError(t, err)
	defer func() {
		_, _ = db.Conn.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
	}()
	// Another org's slot, and the default org's, are not this worker's to drop.
	other := outbound.SlotName(db.Conn.Config().Database, "default")
	_, err = db.Conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, other)
	require.NoError(t, err)
	defer func() {
		_, _ = db.Conn.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, other)
	}()

	cfg := &config.Config{DatabaseURL: db.ConnString, LoginURL: "http://127.0.0.1:1", ClientID: "x", ClientSecret: "y", Username: "u", Password: "p", Org: "sandbox", HTTPAddr: "127.0.0.1:0", LogLevel: "info"}
	err = worker.Run(ctx, cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, `PGFORCE_ORG: org "sandbox" is not in pgforce.org`)
	require.ErrorContains(t, err, "its replication slot "+slot+", left by an earlier worker, is dropped")
	var left []string
	rows, err := db.Conn.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE slot_name IN ($1, $2)`, slot, other)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		left = append(left, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{other}, left)
}
