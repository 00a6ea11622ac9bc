package inbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/inbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	pgtest.Main(m)
}

// gadgetSchema is a custom object with one field of every type whose
// conversion matters, and one the org has not selected for CDC.
var gadgetSchema = &sim.Schema{Objects: []sim.ObjectDef{{
	Name: "Gadget__c",
	Fields: []sim.FieldDef{
		{Name: "Price__c", Type: "currency", Precision: 18, Scale: 2},
		{Name: "Ratio__c", Type: "percent", Precision: 5, Scale: 3},
		{Name: "Count__c", Type: "double", Precision: 18, Scale: 0},
		{Name: "When__c", Type: "datetime"},
		{Name: "Day__c", Type: "date"},
		{Name: "At__c", Type: "time"},
		{Name: "Flag__c", Type: "boolean"},
		{Name: "Tags__c", Type: "multipicklist", PicklistValues: []string{"red", "green", "blue"}},
		{Name: "Code__c", Type: "string", Length: 10},
	},
}, {
	// Not selected for Change Data Capture, as most objects of a real org.
	Name:   "Quiet__c",
	CDC:    new(false),
	Fields: []sim.FieldDef{{Name: "Note__c", Type: "string", Length: 40}},
}}}

type env struct {
	t    *testing.T
	db   *pgtest.DB
	pool *pgxpool.Pool
	sim  *sim.Server
	sf   *salesforce.Client
	b    *budget.Budget
	opts inbound.Options
	stop func()
}

func quietLog() *slog.Logger {
	if os.Getenv("PGFORCE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testOptions() inbound.Options {
	return inbound.Options{
		Lease:           2 * time.Second,
		SafetyInterval:  300 * time.Millisecond,
		RetryBackoff:    100 * time.Millisecond,
		MaxPollInterval: 300 * time.Millisecond,
		BatchSize:       500,
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	pool, err := pgxpool.New(context.Background(), db.ConnString)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	sctx, cancel := context.WithCancel(context.Background())
	s, err := sim.Start(sctx, "127.0.0.1:0", sim.Config{Schema: gadgetSchema})
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); s.Close() })
	sf, err := salesforce.New(ctx, salesforce.Config{
		LoginURL: s.URL(), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		Username: sim.DefaultUsername, Password: sim.DefaultPassword,
	})
	require.NoError(t, err)
	b := budget.New(sf.APIUsage, 50)
	b.SetMinBackoff(200 * time.Millisecond)
	b.SetProbe(func(ctx context.Context) error { _, err := sf.Limits(ctx); return err }, 200*time.Millisecond)
	return &env{t: t, db: db, pool: pool, sim: s, sf: sf, b: b, opts: testOptions()}
}

// start runs an inbound service until the test ends or stop is called.
func (e *env) start() {
	e.t.Helper()
	if e.stop != nil {
		e.stop()
	}
	svc, err := inbound.New(e.pool, e.sf, e.b, quietLog(), e.opts)
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	e.stop = func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(e.t, err)
		case <-time.After(20 * time.Second):
			e.t.Fatal("inbound service did not stop within 20s")
		}
		e.stop = nil
	}
	e.t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	_, err := e.pool.Exec(context.Background(), sql, args...)
	require.NoError(e.t, err, sql)
}

func (e *env) mapping(sobject string, fields []string, inboundMode string) int {
	e.t.Helper()
	var id int
	require.NoError(e.t, e.pool.QueryRow(context.Background(),
		`INSERT INTO pgforce.mapping (sobject, fields, inbound) VALUES ($1, $2, $3) RETURNING id`,
		sobject, fields, inboundMode).Scan(&id))
	return id
}

// mapSynced maps sobject, starts the worker and waits until the mapping
// is loaded and synced.
func (e *env) mapSynced(sobject string, fields []string, inboundMode string) int {
	e.t.Helper()
	id := e.mapping(sobject, fields, inboundMode)
	e.start()
	e.waitState(id, "synced")
	return id
}

func (e *env) state(id int) (string, string) {
	var st, detail string
	require.NoError(e.t, e.pool.QueryRow(context.Background(),
		`SELECT state, coalesce(state_detail, '') FROM pgforce.mapping WHERE id = $1`, id).Scan(&st, &detail))
	return st, detail
}

func (e *env) waitState(id int, want string) {
	e.t.Helper()
	e.eventually(20*time.Second, func() (bool, string) {
		st, detail := e.state(id)
		return st == want, fmt.Sprintf("state %s (%s), want %s", st, detail, want)
	})
}

// eventually polls cond until it holds, failing with its last explanation.
func (e *env) eventually(timeout time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		var ok bool
		ok, why = cond()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("condition not met within %s: %s", timeout, why)
}

// value reads one column of the row with sfid as text ("<null>" for null,
// "<missing>" when there is no row).
func (e *env) value(table, sfid, col string) string {
	var v *string
	err := e.pool.QueryRow(context.Background(),
		fmt.Sprintf(`SELECT %s::text FROM salesforce.%s WHERE sfid = $1`, col, table), sfid).Scan(&v)
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return "<missing>"
		}
		require.NoError(e.t, err)
	}
	if v == nil {
		return "<null>"
	}
	return *v
}

func (e *env) waitValue(table, sfid, col, want string) {
	e.t.Helper()
	e.eventually(15*time.Second, func() (bool, string) {
		got := e.value(table, sfid, col)
		return got == want, fmt.Sprintf("%s.%s of %s is %q, want %q", table, col, sfid, got, want)
	})
}

// waitOpenError waits for an open error about record sfid and returns its
// id and message.
func (e *env) waitOpenError(sfid string) (int64, string) {
	e.t.Helper()
	var id int64
	var msg string
	e.eventually(10*time.Second, func() (bool, string) {
		err := e.pool.QueryRow(context.Background(), `SELECT id, message FROM pgforce.error WHERE sfid = $1 AND state = 'open'`, sfid).Scan(&id, &msg)
		return err == nil, fmt.Sprint("no open error: ", err)
	})
	return id, msg
}

// refusedEmployeeCount syncs an Account's Name and NumberOfEmployees with
// the given inbound mode, adds a CHECK constraint to the table that
// refuses a negative count, and sets the record's count to -1 in
// Salesforce: it returns the record's Id, the mapping and the error the
// refusal opened.
func (e *env) refusedEmployeeCount(mode string) (string, int, int64) {
	e.t.Helper()
	ids := e.create("Account", map[string]any{"Name": "Acme", "NumberOfEmployees": 5})
	id := e.mapSynced("Account", []string{"Name", "NumberOfEmployees"}, mode)
	e.exec(`ALTER TABLE salesforce.account ADD CONSTRAINT positive_staff CHECK (numberofemployees >= 0)`)
	require.NoError(e.t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"NumberOfEmployees": -1}))
	errID, _ := e.waitOpenError(ids[0])
	return ids[0], id, errID
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// create inserts records through the REST API (sObject Collections).
func (e *env) create(sobject string, recs ...map[string]any) []string {
	e.t.Helper()
	in := make([]salesforce.Record, len(recs))
	for i, r := range recs {
		in[i] = salesforce.NewRecord(sobject, r)
	}
	res, err := e.sf.Create(context.Background(), in)
	require.NoError(e.t, err)
	ids := make([]string, len(res))
	for i, r := range res {
		require.NoError(e.t, r.Err())
		ids[i] = r.ID
	}
	return ids
}

func (e *env) calls(prefix string) int64 {
	var n int64
	for k, v := range e.sim.Calls() {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func jsonNumber(s string) json.Number { return json.Number(s) }
