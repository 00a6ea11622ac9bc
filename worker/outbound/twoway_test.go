package outbound_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// These tests drive the SQL that the inbound apply path calls
// (pgforce.inbound_filter) as it would for a change event, with the
// outbound worker running for real.

// queuedUpdate makes a synced Account with a queued (unsent) Postgres change
// of its name: no worker runs while it is queued.
func queuedUpdate(t *testing.T, b *bundle, conflict string) (id int, sfid string) {
	t.Helper()
	b.exec(t, `UPDATE pgforce.mapping SET conflict = $1 WHERE id = $2`, conflict, b.accountID)
	sfid = "001000000000001AAA"
	// Written as the worker (a loaded record): not captured.
	b.scalar(t, &id, `WITH o AS (SELECT set_config('pgforce.origin', 'salesforce', true))
		INSERT INTO salesforce.account (sfid, name, industry) SELECT $1, 'Original', 'Energy' FROM o RETURNING id`, sfid)
	var queued int
	b.scalar(t, &queued, `SELECT count(*) FROM pgforce.outbox`)
	require.Zero(t, queued)
	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres' WHERE id = $1`, id)
	return id, sfid
}

func filter(t *testing.T, b *bundle, id int, values map[string]any, at time.Time, echo bool) map[string]any {
	t.Helper()
	var out map[string]any
	b.scalar(t, &out, `SELECT pgforce.inbound_filter($1, $2, $3, $4, $5)`, b.accountID, id, values, at, echo)
	return out
}

func TestEchoNeverOverwritesANewerPostgresValueAndOtherFieldsMerge(t *testing.T) {
	b := setup(t, setupOptions{})
	id, _ := queuedUpdate(t, b, "salesforce_wins")
	got := filter(t, b, id, map[string]any{"name": "Older echo", "industry": "Banking"}, time.Now(), true)
	require.Equal(t, map[string]any{"industry": "Banking"}, got, "the echo keeps the pending name; the other field applies")
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbox WHERE record_id = $1`, id)
	require.Equal(t, 1, n, "the queued Postgres change is still sent")
}

func TestConflictPolicyDecidesAFieldChangedOnBothSides(t *testing.T) {
	for _, tc := range []struct {
		policy   string
		sfAt     time.Duration // Salesforce's commit relative to now
		sfWins   bool
		inOutbox bool
	}{
		{"salesforce_wins", -time.Hour, true, false},
		{"postgres_wins", time.Hour, false, true},
		{"newest_wins", time.Hour, true, false},
		{"newest_wins", -time.Hour, false, true},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			b := setup(t, setupOptions{})
			id, _ := queuedUpdate(t, b, tc.policy)
			got := filter(t, b, id, map[string]any{"name": "From Salesforce"}, time.Now().Add(tc.sfAt), false)
			if tc.sfWins {
				require.Equal(t, map[string]any{"name": "From Salesforce"}, got)
			} else {
				require.Empty(t, got)
			}
			var n int
			b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbox WHERE record_id = $1`, id)
			require.Equal(t, tc.inOutbox, n == 1)
		})
	}
}

func TestManualConflictHoldsBothValuesUntilResolved(t *testing.T) {
	b := setup(t, setupOptions{})
	id, _ := queuedUpdate(t, b, "manual")
	got := filter(t, b, id, map[string]any{"name": "From Salesforce", "industry": "Banking"}, time.Now(), false)
	require.Equal(t, map[string]any{"industry": "Banking"}, got)
	var errID int64
	var payload string
	b.scalar(t, &errID, `SELECT id FROM pgforce.error WHERE record_id = $1 AND error_code = 'CONFLICT' AND state = 'open'`, id)
	b.scalar(t, &payload, `SELECT payload::text FROM pgforce.error WHERE id = $1`, errID)
	var p map[string]map[string]string
	require.NoError(t, json.Unmarshal([]byte(payload), &p))
	require.Equal(t, "From Postgres", p["postgres"]["name"])
	require.Equal(t, "From Salesforce", p["salesforce"]["name"])
	var blocked int
	b.scalar(t, &blocked, `SELECT outbound_blocked FROM pgforce.status WHERE sobject = 'Account'`)
	require.Equal(t, 1, blocked, "the record's Postgres change waits for the decision")
	var claimed int
	b.scalar(t, &claimed, `SELECT count(*) FROM pgforce._outbound_claim($1, 100, 'test')`, b.accountID)
	require.Zero(t, claimed)

	b.exec(t, `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	var name, lastop string
	b.scalar(t, &name, `SELECT name FROM salesforce.account WHERE id = $1`, id)
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "From Salesforce", name)
	require.Equal(t, "PENDING", lastop, "until Salesforce's values are written back to it")
	var sent map[string]any
	b.scalar(t, &sent, `SELECT new FROM pgforce.outbox WHERE record_id = $1`, id)
	require.Equal(t, map[string]any{"name": "From Salesforce"}, sent,
		"Salesforce won: its values go back, in case a Postgres write in flight replaced them there")
}

func TestManualConflictResolvedForPostgresSendsThePostgresValue(t *testing.T) {
	b := setup(t, setupOptions{})
	var id int
	b.exec(t, `UPDATE pgforce.mapping SET conflict = 'manual' WHERE id = $1`, b.accountID)
	b.start(t, fastOptions())
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Both sides') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)

	// Hold the worker off this record with a conflict opened in the same
	// transaction as the Postgres edit, as a change event arriving then would.
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE salesforce.account SET name = 'Postgres wins' WHERE id = $1`, id)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, tx.QueryRow(ctx, `SELECT pgforce.inbound_filter($1, $2, $3, now(), false)`, b.accountID, id,
		map[string]any{"name": "Salesforce edit"}).Scan(&got))
	require.Empty(t, got)
	require.NoError(t, tx.Commit(ctx))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, "Both sides", b.sfField(t, "Account", sfid, "Name"), "held while the conflict is open")

	var errID int64
	b.scalar(t, &errID, `SELECT id FROM pgforce.error WHERE record_id = $1 AND error_code = 'CONFLICT'`, id)
	b.exec(t, `SELECT pgforce.resolve($1, 'postgres')`, errID)
	eventually(t, 10*time.Second, "Postgres value sent", func() bool { return b.sfField(t, "Account", sfid, "Name") == "Postgres wins" })
}

// handBackUpdate holds the first two Collections updates until their
// gates open, answering the first as Salesforce answers a record it could
// not lock (nothing was written), and records the fields of every update
// that reaches Salesforce.
type handBackUpdate struct {
	*salesforce.Client
	calls         atomic.Int32
	entered, open [2]chan struct{}
	mu            sync.Mutex
	sent          []map[string]any
}

func newHandBackUpdate(c *salesforce.Client) *handBackUpdate {
	h := &handBackUpdate{Client: c}
	for i := range h.entered {
		h.entered[i], h.open[i] = make(chan struct{}), make(chan struct{})
	}
	return h
}

func (h *handBackUpdate) Update(ctx context.Context, recs []salesforce.Record) ([]salesforce.SaveResult, error) {
	if n := h.calls.Add(1); n <= 2 {
		close(h.entered[n-1])
		<-h.open[n-1]
		if n == 1 {
			res := make([]salesforce.SaveResult, len(recs))
			for i := range res {
				res[i].Errors = []salesforce.RecordError{{StatusCode: salesforce.CodeUnableToLockRow, Message: "unable to obtain exclusive access to this record"}}
			}
			return res, nil
		}
	}
	h.mu.Lock()
	for _, r := range recs {
		h.sent = append(h.sent, r.Fields)
	}
	h.mu.Unlock()
	return h.Client.Update(ctx, recs)
}

func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for " + what)
	}
}

// salesforceIndustry applies a change event of the Account row id that
// carries industry, as the inbound worker does: through
// pgforce.inbound_filter, then an UPDATE, as the worker, of what it lets
// through.
func (b *bundle) salesforceIndustry(t *testing.T, id int, industry string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('pgforce.origin', 'salesforce', true)`); err != nil {
			return err
		}
		var allowed map[string]any
		if err := tx.QueryRow(ctx, `SELECT pgforce.inbound_filter($1, $2, $3, now(), false)`, b.accountID, id,
			map[string]any{"industry": industry}).Scan(&allowed); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE salesforce.account SET industry = coalesce($2, industry), systemmodstamp = now() WHERE id = $1`,
			id, allowed["industry"])
		return err
	}))
}

// Salesforce takes the very value of a field that a claimed change is
// about to send: the field leaves the change (pgforce.outbox.dropped), and
// counts as in flight while the claim lasts. That claim is then handed back
// unsent, and the change is claimed again without the field. A Postgres
// edit of the field and a Salesforce edit that wins it under
// salesforce_wins follow while that claim is in flight: Salesforce's value
// was queued to be written back, as if a Postgres write of the field could
// still land over it, and was sent to Salesforce for nothing.
func TestAFieldLeftOutOfAChangeHandedBackUnsentIsNotWrittenBackWhenSalesforceWinsIt(t *testing.T) {
	b := setup(t, setupOptions{})
	b.exec(t, `UPDATE pgforce.mapping SET conflict = 'salesforce_wins' WHERE id = $1`, b.accountID)
	b.syncedAccounts(t, 1, "Dropped")
	var id int
	var sfid string
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT id, sfid FROM salesforce.account`).Scan(&id, &sfid))
	h := newHandBackUpdate(b.sf)
	b.startWithClient(t, h, fastOptions())
	ui := func(industry string) {
		require.NoError(t, b.sim.UIEdit(context.Background(), "Account", sfid, map[string]any{"Industry": industry}))
		b.salesforceIndustry(t, id, industry)
	}

	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres', industry = 'Agriculture' WHERE id = $1`, id)
	waitFor(t, h.entered[0], "the change in flight")
	ui("Agriculture") // both sides agree: the field leaves the claimed change
	var dropped []string
	b.scalar(t, &dropped, `SELECT coalesce(dropped, '{}') FROM pgforce.outbox WHERE record_id = $1`, id)
	require.Equal(t, []string{"industry"}, dropped)
	close(h.open[0]) // refused as a whole: handed back unsent

	waitFor(t, h.entered[1], "the change claimed again")
	b.exec(t, `UPDATE salesforce.account SET industry = 'Banking' WHERE id = $1`, id)
	ui("Energy") // wins the field over the queued Postgres edit
	close(h.open[1])

	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.sent {
		require.NotContains(t, f, "Industry", "Salesforce's own value of Industry written back to it: %v", f)
	}
	require.Equal(t, "Energy", b.sfField(t, "Account", sfid, "Industry"))
	require.Equal(t, "From Postgres", b.sfField(t, "Account", sfid, "Name"))
	var industry string
	b.scalar(t, &industry, `SELECT industry FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "Energy", industry)
}
