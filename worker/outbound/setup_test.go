package outbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
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

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	pgtest.Main(m)
}

// simSchema adds an external id, a field Salesforce defaults and a
// validation rule to Account.
var simSchema = &sim.Schema{Objects: []sim.ObjectDef{{
	Name: "Account",
	Fields: []sim.FieldDef{
		{Name: "Ext_Id__c", Type: "string", Length: 64, ExternalID: true, Unique: true},
		{Name: "Tier__c", Type: "string", Length: 40, DefaultValue: "Gold"},
	},
	ValidationRules: []sim.Rule{{Name: "no_bad_names", Field: "Name", Op: "regex", Value: "^BAD", Message: "Name must not start with BAD"}},
}}}

// The Id entries are what the inbound side's describe writes for them.
var accountColumns = `[{"name":"Id","type":"id","length":18,"keyPrefix":"001"},{"name":"Name","type":"string","length":255},{"name":"Industry","type":"picklist","length":255},
 {"name":"AnnualRevenue","type":"currency","precision":18,"scale":2},{"name":"Ext_Id__c","type":"string","length":64}]`

var contactColumns = `[{"name":"Id","type":"id","length":18,"keyPrefix":"003"},{"name":"LastName","type":"string","length":80},{"name":"Email","type":"email","length":80},
 {"name":"AccountId","type":"reference","referenceTo":["Account"],"relationshipName":"Account"}]`

type bundle struct {
	db        *pgtest.DB
	pool      *pgxpool.Pool
	sim       *sim.Server
	sf        *salesforce.Client
	accountID int // mapping ids
	contactID int
}

type setupOptions struct {
	upsertField string
	// bulkDelay is how long the simulator keeps a Bulk job in each state
	// between its close and its end.
	bulkDelay time.Duration
}

func setup(t *testing.T, so setupOptions) *bundle {
	t.Helper()
	b := newBundle(t, sim.Config{Schema: simSchema, BulkProcessDelay: so.bulkDelay})
	ctx, pool := context.Background(), b.pool
	var err error
	var upsert any
	if so.upsertField != "" {
		upsert = so.upsertField
	}
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields, mode, upsert_field)
		VALUES ('Account', '{Name,Industry,AnnualRevenue,Ext_Id__c}', 'read_write', $1) RETURNING id`, upsert).Scan(&b.accountID))
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields, mode)
		VALUES ('Contact', '{LastName,Email,AccountId}', 'read_write') RETURNING id`).Scan(&b.contactID))
	_, err = pool.Exec(ctx, `SELECT pgforce.ensure_table($1, $2)`, b.accountID, accountColumns)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `SELECT pgforce.ensure_table($1, $2)`, b.contactID, contactColumns)
	require.NoError(t, err)
	// Heroku Connect's external-id relationship column.
	_, err = pool.Exec(ctx, `ALTER TABLE salesforce.contact ADD COLUMN account__r__ext_id__c varchar(64)`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `SELECT pgforce._install_triggers($1)`, b.contactID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE pgforce.mapping SET state = 'synced'`)
	require.NoError(t, err)
	return b
}

// newBundle starts a throwaway database and a simulator with cfg, and a
// Salesforce client and a pool for them; no mapping yet.
func newBundle(t *testing.T, cfg sim.Config) *bundle {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	db := pgtest.NewDB(t)
	srv, err := sim.Start(ctx, "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	sf, err := salesforce.New(ctx, salesforce.Config{LoginURL: srv.URL(), ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword})
	require.NoError(t, err)
	pool, err := pgxpool.New(ctx, db.ConnString)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	// Logical slots pin their database: drop ours once the services (whose
	// cleanups run first) have stopped, or the database cannot be dropped.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			_, err := db.Conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
				WHERE database = current_database() AND NOT active`)
			var left int
			_ = db.Conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&left)
			if err == nil && left == 0 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("replication slots of %s were not dropped", db.Name)
	})
	return &bundle{db: db, pool: pool, sim: srv, sf: sf}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fastOptions keeps backoffs and leases short enough for tests.
func fastOptions() outbound.Options {
	return outbound.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		ClaimLease: 2 * time.Second, BulkPoll: salesforce.Poll{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}}
}

// start runs a service until the test ends.
func (b *bundle) start(t *testing.T, opts outbound.Options) *outbound.Service {
	t.Helper()
	return b.startWith(t, b.pool, opts)
}

func (b *bundle) startWith(t *testing.T, pool *pgxpool.Pool, opts outbound.Options) *outbound.Service {
	t.Helper()
	return b.run(t, pool, b.sf, opts, testLogger(t))
}

func (b *bundle) startWithLog(t *testing.T, opts outbound.Options, log *slog.Logger) *outbound.Service {
	t.Helper()
	return b.run(t, b.pool, b.sf, opts, log)
}

// startWithClient runs a service that reaches Salesforce through sf.
func (b *bundle) startWithClient(t *testing.T, sf outbound.Salesforce, opts outbound.Options) *outbound.Service {
	t.Helper()
	return b.run(t, b.pool, sf, opts, testLogger(t))
}

func (b *bundle) run(t *testing.T, pool *pgxpool.Pool, sf outbound.Salesforce, opts outbound.Options, log *slog.Logger) *outbound.Service {
	t.Helper()
	svc, _ := b.runStoppable(t, pool, sf, opts, log)
	return svc
}

// startStoppable runs a service that reaches Salesforce through sf, and
// returns its stop function (also called when the test ends).
func (b *bundle) startStoppable(t *testing.T, sf outbound.Salesforce, opts outbound.Options) (stop func()) {
	t.Helper()
	_, stop = b.runStoppable(t, b.pool, sf, opts, testLogger(t))
	return stop
}

func (b *bundle) runStoppable(t *testing.T, pool *pgxpool.Pool, sf outbound.Salesforce, opts outbound.Options, log *slog.Logger) (*outbound.Service, func()) {
	t.Helper()
	svc := outbound.New(pool, sf, log, opts)
	stop := runUntilStopped(t, "outbound service", svc.Run)
	t.Cleanup(stop)
	return svc, stop
}

// runUntilStopped runs run (a service's Run) until the returned function
// stops it, which requires it to end within 20 s without an error.
func runUntilStopped(t *testing.T, what string, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(20 * time.Second):
				t.Error(what + " did not stop within 20s")
			}
		})
	}
}

// createRecords creates n records of sobject in the simulator, the i-th
// with fields(i), and returns their Ids.
func (b *bundle) createRecords(t *testing.T, sobject string, n int, fields func(i int) map[string]any) []string {
	t.Helper()
	recs := make([]salesforce.Record, n)
	for i := range recs {
		recs[i] = salesforce.NewRecord(sobject, fields(i))
	}
	res, err := b.sf.Create(context.Background(), recs)
	require.NoError(t, err)
	ids := make([]string, n)
	for i, r := range res {
		require.NoError(t, r.Err())
		ids[i] = r.ID
	}
	return ids
}

// syncedAccounts creates n Accounts named "<prefix> <i>" in the simulator
// and their rows in salesforce.account as the worker would have loaded
// them (synced, nothing captured).
func (b *bundle) syncedAccounts(t *testing.T, n int, prefix string) {
	t.Helper()
	ids := b.createRecords(t, "Account", n, func(i int) map[string]any { return map[string]any{"Name": fmt.Sprintf("%s %d", prefix, i)} })
	b.exec(t, `WITH o AS (SELECT set_config('pgforce.origin', 'salesforce', true))
		INSERT INTO salesforce.account (sfid, name, annualrevenue) SELECT s, $2 || ' ' || (i - 1), 0 FROM o, unnest($1::text[]) WITH ORDINALITY AS u(s, i)`, ids, prefix)
}

func (b *bundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

func (b *bundle) scalar(t *testing.T, dst any, sql string, args ...any) {
	t.Helper()
	require.NoError(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(dst))
}

// sfRecords runs SOQL against the simulator.
func (b *bundle) sfRecords(t *testing.T, soql string) []salesforce.Record {
	t.Helper()
	var out []salesforce.Record
	require.NoError(t, b.sf.Query(context.Background(), soql, func(r salesforce.Record) error {
		out = append(out, r)
		return nil
	}))
	return out
}

func (b *bundle) sfField(t *testing.T, sobject, id, field string) any {
	t.Helper()
	recs := b.sfRecords(t, fmt.Sprintf("SELECT Id, %s FROM %s WHERE Id = '%s'", field, sobject, id))
	if len(recs) == 0 {
		return nil
	}
	v, _ := recs[0].Get(field)
	return v
}

// waitSfid waits until the row id of table has the Id of its record, which
// the worker writes back once Salesforce has the record, and returns it.
func (b *bundle) waitSfid(t *testing.T, table string, id int) string {
	t.Helper()
	var sfid string
	eventually(t, 10*time.Second, table+" row has its sfid", func() bool { sfid = b.rowSfid(t, table, id); return sfid != "" })
	return sfid
}

// waitClaimed waits until a worker has claimed a change of the account
// row id, which is then in flight.
func (b *bundle) waitClaimed(t *testing.T, id int) {
	t.Helper()
	eventually(t, 10*time.Second, "change claimed", func() bool {
		var claimed bool
		b.scalar(t, &claimed, `SELECT EXISTS (SELECT FROM pgforce.outbox WHERE mapping_id = $1 AND record_id = $2 AND claimed_at IS NOT NULL)`, b.accountID, id)
		return claimed
	})
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

func (b *bundle) rowSfid(t *testing.T, table string, id int) string {
	var sfid *string
	b.scalar(t, &sfid, fmt.Sprintf(`SELECT sfid FROM salesforce.%s WHERE id = $1`, pgx.Identifier{table}.Sanitize()), id)
	if sfid == nil {
		return ""
	}
	return *sfid
}

// feedStatus is the outbound feed mode pgforce.status shows for Account
// ("" when no worker is seen).
func (b *bundle) feedStatus(t *testing.T) string {
	var feed string
	b.scalar(t, &feed, `SELECT coalesce(outbound_feed, '') FROM pgforce.status WHERE sobject = 'Account'`)
	return feed
}

func (b *bundle) backlog(t *testing.T) int {
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbox`)
	return n
}

func jsonString(t *testing.T, v any) string {
	bs, err := json.Marshal(v)
	require.NoError(t, err)
	return string(bs)
}

var _ = strings.TrimSpace
