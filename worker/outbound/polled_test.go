package outbound_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// These tests run a read_write Account mapping that the real inbound
// worker polls. Stopping the inbound worker makes the time between two
// polls as long as a test needs; started again, it polls at once.

// countingClient is the real client, counting the outbound worker's
// Collections updates and its reads of the records Salesforce changed
// since the last poll (see checkPolled), and keeping the AnnualRevenue
// each update sent, by record Id, in the order sent.
type countingClient struct {
	*salesforce.Client
	updates, records, checks atomic.Int64
	mu                       sync.Mutex
	revenues                 map[string][]string
}

func (c *countingClient) Update(ctx context.Context, recs []salesforce.Record) ([]salesforce.SaveResult, error) {
	c.mu.Lock()
	if c.revenues == nil {
		c.revenues = map[string][]string{}
	}
	for _, r := range recs {
		if v, ok := r.Get("AnnualRevenue"); ok {
			c.revenues[r.ID()] = append(c.revenues[r.ID()], fmt.Sprint(v))
		}
	}
	c.mu.Unlock()
	res, err := c.Client.Update(ctx, recs)
	c.updates.Add(1)
	c.records.Add(int64(len(recs)))
	return res, err
}

// requireRevenuesSentOnceInOrder checks that no AnnualRevenue was sent
// twice and none after a greater one of the same record: the test's values
// grow with every update, so either is a change sent again, or an older
// one sent over a newer.
func (c *countingClient) requireRevenuesSentOnceInOrder(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, vs := range c.revenues {
		seen := map[string]bool{}
		last := -1.0
		for _, v := range vs {
			require.False(t, seen[v], "record %s: %s sent twice (%v)", id, v, vs)
			seen[v] = true
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			require.Greater(t, f, last, "record %s: %s sent after a newer value (%v)", id, v, vs)
			last = f
		}
	}
}

func (c *countingClient) Query(ctx context.Context, soql string, fn func(salesforce.Record) error) error {
	err := c.Client.Query(ctx, soql, fn)
	if strings.Contains(soql, "WHERE SystemModstamp >") {
		c.checks.Add(1)
	}
	return err
}

// polledAccounts creates n Accounts "Polled <i>" (Industry Energy) in the
// simulator, has the real inbound worker load them into a polled Account
// mapping under policy, and returns the inbound worker's stop function
// (also called when the test ends) and the records' row ids and Ids.
func (b *bundle) polledAccounts(t *testing.T, policy string, n int) (stopInbound func(), ids []int, sfids []string) {
	t.Helper()
	sfids = b.createRecords(t, "Account", n, func(i int) map[string]any {
		return map[string]any{"Name": fmt.Sprintf("Polled %d", i), "Industry": "Energy"}
	})
	b.exec(t, `UPDATE pgforce.mapping SET conflict = $2, inbound = 'poll', state = 'new' WHERE id = $1`, b.accountID, policy)
	b.exec(t, `UPDATE pgforce.mapping SET paused = true WHERE id = $1`, b.contactID)
	stopInbound = b.runInbound(t)
	t.Cleanup(stopInbound)
	b.waitMappingSynced(t, b.accountID)
	ids = make([]int, n)
	for i, sfid := range sfids {
		eventually(t, 10*time.Second, "the record loaded", func() bool {
			return b.pool.QueryRow(context.Background(), `SELECT id FROM salesforce.account WHERE sfid = $1 AND systemmodstamp IS NOT NULL`, sfid).Scan(&ids[i]) == nil
		})
	}
	var mode string
	b.scalar(t, &mode, `SELECT coalesce(inbound_mode, '') FROM pgforce.mapping WHERE id = $1`, b.accountID)
	require.Equal(t, "poll", mode)
	return stopInbound, ids, sfids
}

// polledOptions closes the catch-up window (see checkCatchUp) at once, so
// that only the check of polled mappings holds updates.
func polledOptions() outbound.Options {
	opts := fastOptions()
	opts.CatchUp = time.Nanosecond
	return opts
}

func (b *bundle) rowText(t *testing.T, id int, col string) string {
	t.Helper()
	var v string
	b.scalar(t, &v, fmt.Sprintf(`SELECT coalesce(%s::text, '') FROM salesforce.account WHERE id = $1`, col), id)
	return v
}

// A Salesforce edit made since the last poll, and then a Postgres update
// of the same field and of another: sent at once, the update overwrote
// Salesforce's edit, and the next poll found the Postgres value in
// Salesforce, so that salesforce_wins lost Salesforce's value on both
// sides. The update waits for the poll; the policy drops its Postgres
// value of the field Salesforce changed, and the other field goes.
func TestPolledSalesforceWinsKeepsASalesforceEditMadeSinceTheLastPollAndSendsTheOtherField(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", 1)
	id, sfid := ids[0], sfids[0]
	sf := &countingClient{Client: b.sf}
	b.startWithClient(t, sf, polledOptions())
	stopInbound() // no poll until it runs again

	require.NoError(t, b.sim.UIEdit(ctx, "Account", sfid, map[string]any{"Name": "From Salesforce"}))
	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres', industry = 'Banking' WHERE id = $1`, id)
	// The worker has checked the update (or, sending it unchecked, written
	// it) before the next poll.
	eventually(t, 10*time.Second, "the update checked or sent", func() bool { return sf.checks.Load()+sf.updates.Load() > 0 })
	t.Cleanup(b.runInbound(t))

	b.requireSalesforcesNameKeptAndIndustrySent(t, sfid, id)
	require.Equal(t, "Banking", b.rowText(t, id, "industry"))
	require.Empty(t, b.openErrors(t))
}

// The policies other than salesforce_wins that may let Salesforce's edit
// win decide with it once the poll has brought it, not after the Postgres
// value has replaced it. Under newest_wins the Salesforce edit is the
// later one here (the Postgres update waited, unsent, while no worker
// ran): it wins the field. Under manual the field is in dispute: a
// conflict holds the record until it is resolved.
func TestPolledNewestWinsAndManualDecideWithASalesforceEditMadeSinceTheLastPoll(t *testing.T) {
	for _, policy := range []string{"newest_wins", "manual"} {
		t.Run(policy, func(t *testing.T) {
			b := setup(t, setupOptions{})
			ctx := context.Background()
			stopInbound, ids, sfids := b.polledAccounts(t, policy, 1)
			id, sfid := ids[0], sfids[0]
			stopInbound()
			b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres', industry = 'Banking' WHERE id = $1`, id)
			require.NoError(t, b.sim.UIEdit(ctx, "Account", sfid, map[string]any{"Name": "From Salesforce"}))
			sf := &countingClient{Client: b.sf}
			b.startWithClient(t, sf, polledOptions())
			eventually(t, 10*time.Second, "the update checked or sent", func() bool { return sf.checks.Load()+sf.updates.Load() > 0 })
			t.Cleanup(b.runInbound(t))

			if policy == "manual" {
				eventually(t, 20*time.Second, "a conflict", func() bool { return b.openConflicts(t, b.accountID, id) == 1 })
				require.Equal(t, "From Salesforce", b.sfField(t, "Account", sfid, "Name"), "Salesforce's edit was overwritten before the conflict was seen")
				require.Equal(t, "From Postgres", b.rowText(t, id, "name"), "manual keeps the Postgres value in the row until resolved")
				return
			}
			eventually(t, 20*time.Second, "the other field sent", func() bool { return b.sfField(t, "Account", sfid, "Industry") == "Banking" })
			eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
			require.Equal(t, "From Salesforce", b.sfField(t, "Account", sfid, "Name"), "the later Salesforce edit was overwritten")
			eventually(t, 10*time.Second, "Salesforce's edit in the row", func() bool { return b.rowText(t, id, "name") == "From Salesforce" })
		})
	}
}

// After the worker writes a record, Salesforce's SystemModstamp is its
// write's and the row's is older until the next poll brings the echo: the
// next update of the record goes without waiting for that poll. A
// Salesforce edit made after the write is not taken for it: the update
// that follows it waits for the poll.
func TestPolledWorkersOwnWriteDoesNotHoldTheNextUpdateOfTheRecordButALaterSalesforceEditDoes(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", 1)
	id, sfid := ids[0], sfids[0]
	stopInbound() // no poll brings the echo of the worker's writes
	sf := &countingClient{Client: b.sf}
	opts := polledOptions()
	// Every update that the last read would let go is checked against a
	// new one: the second update's is made after the first write.
	opts.PollCheck = time.Nanosecond
	b.startWithClient(t, sf, opts)

	b.exec(t, `UPDATE salesforce.account SET name = 'First' WHERE id = $1`, id)
	eventually(t, 10*time.Second, "the first update sent", func() bool { return b.sfField(t, "Account", sfid, "Name") == "First" })
	checks := sf.checks.Load()
	b.exec(t, `UPDATE salesforce.account SET name = 'Second' WHERE id = $1`, id)
	eventually(t, 10*time.Second, "the second update sent before any poll", func() bool { return b.sfField(t, "Account", sfid, "Name") == "Second" })
	require.Greater(t, sf.checks.Load(), checks, "the second update was checked against a read made after the first write")

	// Past the margin noteWritten gives the worker's write for Salesforce's
	// clock and the Date header's rounding.
	time.Sleep(2500 * time.Millisecond)
	require.NoError(t, b.sim.UIEdit(ctx, "Account", sfid, map[string]any{"Name": "From Salesforce"}))
	checks = sf.checks.Load()
	b.exec(t, `UPDATE salesforce.account SET name = 'Third', industry = 'Banking' WHERE id = $1`, id)
	eventually(t, 10*time.Second, "the third update checked or sent", func() bool {
		return sf.checks.Load() > checks || b.sfField(t, "Account", sfid, "Name") != "From Salesforce"
	})
	t.Cleanup(b.runInbound(t))
	eventually(t, 20*time.Second, "the other field sent", func() bool { return b.sfField(t, "Account", sfid, "Industry") == "Banking" })
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Equal(t, "From Salesforce", b.sfField(t, "Account", sfid, "Name"), "the Salesforce edit made after the worker's write was taken for it and overwritten")
	eventually(t, 10*time.Second, "Salesforce's edit in the row", func() bool { return b.rowText(t, id, "name") == "From Salesforce" })
}

// A steady stream of Postgres updates of a polled mapping: the worker reads
// what Salesforce changed since the last poll once per PollCheck while
// updates would go, not once per batch, and not at all under
// postgres_wins. The figures per 1,000 updates are logged (go test -v).
func TestPolledMappingChecksUpdatesWithAReadPerPollCheckNotPerBatch(t *testing.T) {
	const records, updates = 50, 1000
	for _, tc := range []struct {
		name      string
		policy    string
		pollCheck time.Duration
		checks    int64 // -1: figure only
	}{
		{"postgres_wins sends unchecked", "postgres_wins", 0, 0},
		{"one read while it is fresh", "salesforce_wins", time.Hour, 1},
		{"default PollCheck", "salesforce_wins", 0, -1},
		{"a read per batch", "salesforce_wins", time.Nanosecond, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, setupOptions{})
			stopInbound, ids, sfids := b.polledAccounts(t, tc.policy, records)
			// Without polls meanwhile, which move the watermark the
			// reads start from: this counts the outbound side's reads.
			// TestPolledStreamOfUpdatesWithPollsRunningEndsWithTheLastValueOfEachRecord
			// runs such a stream with them.
			stopInbound()
			sf := &countingClient{Client: b.sf}
			opts := polledOptions()
			opts.PollCheck = tc.pollCheck
			b.startWithClient(t, sf, opts)
			start := time.Now()
			for i := range updates {
				b.exec(t, `UPDATE salesforce.account SET annualrevenue = $2 WHERE id = $1`, ids[i%records], i)
				time.Sleep(5 * time.Millisecond)
			}
			eventually(t, 30*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
			took := time.Since(start)
			for i, sfid := range sfids {
				require.Equal(t, fmt.Sprintf("%d.00", updates-records+i), fmt.Sprint(b.sfField(t, "Account", sfid, "AnnualRevenue")), "record %d", i)
			}
			u, r, c := sf.updates.Load(), sf.records.Load(), sf.checks.Load()
			// API calls counts update calls and check reads together, not
			// records sent.
			t.Logf("%d updates of %d records in %s: %d update calls (%d records), %d check reads; per 1,000 updates: %.0f API calls (%.0f update calls + %.0f check reads)",
				updates, records, took.Round(100*time.Millisecond), u, r, c, float64(u+c)*1000/updates, float64(u)*1000/updates, float64(c)*1000/updates)
			require.LessOrEqual(t, r, int64(updates), "more records sent than updates made")
			sf.requireRevenuesSentOnceInOrder(t)
			if tc.checks >= 0 {
				require.Equal(t, tc.checks, c)
			}
		})
	}
}

// A poll applies what it reads in batches ordered by SystemModstamp and
// moves the inbound watermark to each batch's newest stamp. Salesforce
// stamps every record of one mass update with the same millisecond, so
// between two batches the watermark can equal the stamp of a record the
// poll has not applied yet (the inbound side reads from the watermark
// minus an overlap, so it still gets it). The outbound check read only the
// records changed strictly after the watermark: such a record's Postgres
// update went at once and overwrote Salesforce's edit, which
// salesforce_wins then lost on both sides.
func TestPolledUpdateWaitsForARecordStampedAtTheWatermarkThatThePollHasNotApplied(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", 1)
	id, sfid := ids[0], sfids[0]
	stopInbound()

	require.NoError(t, b.sim.UIEdit(ctx, "Account", sfid, map[string]any{"Name": "From Salesforce"}))
	var stamp time.Time
	require.NoError(t, b.sf.Query(ctx, "SELECT Id, SystemModstamp FROM Account WHERE Id = '"+sfid+"'", func(r salesforce.Record) error {
		v, _ := r.Get("SystemModstamp")
		var err error
		stamp, err = salesforce.ParseDateTime(v.(string))
		return err
	}))
	// The poll applied another record of the same mass update, stamped
	// the same millisecond, and not yet this one.
	b.exec(t, `UPDATE pgforce.mapping SET inbound_watermark = $2 WHERE id = $1`, b.accountID, stamp)
	var rowStamp time.Time
	b.scalar(t, &rowStamp, `SELECT systemmodstamp FROM salesforce.account WHERE id = $1`, id)
	require.True(t, rowStamp.Before(stamp), "the row has not heard of the edit")

	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres', industry = 'Banking' WHERE id = $1`, id)
	sf := &countingClient{Client: b.sf}
	b.startWithClient(t, sf, polledOptions())
	eventually(t, 10*time.Second, "the update checked or sent", func() bool { return sf.checks.Load()+sf.updates.Load() > 0 })
	t.Cleanup(b.runInbound(t))

	b.requireSalesforcesNameKeptAndIndustrySent(t, sfid, id)
}

// requireSalesforcesNameKeptAndIndustrySent waits for the Postgres update
// of name and industry of row id (record sfid) to be settled against
// Salesforce's edit of Name: Industry sent, Name as Salesforce has it on
// both sides.
func (b *bundle) requireSalesforcesNameKeptAndIndustrySent(t *testing.T, sfid string, id int) {
	t.Helper()
	eventually(t, 20*time.Second, "the other field sent", func() bool { return b.sfField(t, "Account", sfid, "Industry") == "Banking" })
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Equal(t, "From Salesforce", b.sfField(t, "Account", sfid, "Name"), "Salesforce's edit was overwritten")
	eventually(t, 10*time.Second, "Salesforce's edit in the row", func() bool { return b.rowText(t, id, "name") == "From Salesforce" })
}

// gatedDelete holds the worker's first Collections delete until open is
// closed, and says when it is entered.
type gatedDelete struct {
	*countingClient
	entered, open chan struct{}
	once          atomic.Bool
}

func (g *gatedDelete) Delete(ctx context.Context, ids []string) ([]salesforce.SaveResult, error) {
	if g.once.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.open
	}
	return g.countingClient.Delete(ctx, ids)
}

// The worker takes a Salesforce stamp before the time of its own write for
// that write's, and that time is Salesforce's clock when the write
// answered. It was read when the batch's results were recorded: after the
// batch's deletes had answered too (and other calls meanwhile), so that a
// Salesforce edit of an updated record made while a delete took its time
// was taken for the worker's own write, and the next update of the record
// overwrote it.
func TestPolledSalesforceEditMadeWhileTheBatchsDeleteRunsIsNotTakenForTheWorkersWrite(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", 2)
	stopInbound() // no poll brings the echo of the worker's writes
	sf := &gatedDelete{countingClient: &countingClient{Client: b.sf}, entered: make(chan struct{}), open: make(chan struct{})}
	opts := polledOptions()
	opts.PollCheck = time.Nanosecond
	b.startWithClient(t, sf, opts)

	// One transaction, one batch: the update, then the delete.
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE salesforce.account SET name = 'First' WHERE id = $1`, ids[0]); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM salesforce.account WHERE id = $1`, ids[1])
		return err
	}))
	waitFor(t, sf.entered, "the batch's delete")
	require.Equal(t, "First", b.sfField(t, "Account", sfids[0], "Name"))
	// Past the margin the worker gives its write for Salesforce's clock.
	time.Sleep(2500 * time.Millisecond)
	require.NoError(t, b.sim.UIEdit(ctx, "Account", sfids[0], map[string]any{"Name": "From Salesforce"}))
	close(sf.open)
	eventually(t, 10*time.Second, "the batch recorded", func() bool { return b.backlog(t) == 0 })

	b.exec(t, `UPDATE salesforce.account SET name = 'From Postgres', industry = 'Banking' WHERE id = $1`, ids[0])
	t.Cleanup(b.runInbound(t))
	b.requireSalesforcesNameKeptAndIndustrySent(t, sfids[0], ids[0])
}
