package outbound_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/inbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// heldTransport holds the requests match picks (only the first, with
// once): before sending one, or, with answer, after the simulator answered
// it, so that what it read waits to be applied. A held request says so on
// reached, then waits until release lets it go (one receive, or its
// close); or, with delay and no reached, for delay. Every other call goes
// straight through.
type heldTransport struct {
	base         http.RoundTripper
	match        func(*http.Request) bool
	answer, once bool
	reached      chan struct{}
	release      chan struct{}
	delay        time.Duration
	taken        atomic.Bool
}

func (h *heldTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !h.match(req) || h.once && h.taken.Swap(true) {
		return h.base.RoundTrip(req)
	}
	if !h.answer {
		if err := h.hold(req.Context()); err != nil {
			return nil, err
		}
		return h.base.RoundTrip(req)
	}
	resp, err := h.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if err := h.hold(req.Context()); err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func (h *heldTransport) hold(ctx context.Context) error {
	if h.reached == nil {
		select {
		case <-time.After(h.delay):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case h.reached <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isPoll picks a poll's query.
func isPoll(req *http.Request) bool {
	return strings.Contains(req.URL.Path, "/queryAll") && strings.Contains(req.URL.Query().Get("q"), "ORDER BY SystemModstamp")
}

// heldPolls holds every poll's answer until release lets it go.
func heldPolls() *heldTransport {
	return &heldTransport{base: http.DefaultTransport, match: isPoll, answer: true, reached: make(chan struct{}), release: make(chan struct{})}
}

// heldPollClient is a client of the bundle's simulator whose requests go
// through h (whose polls, or load, wait).
func (b *bundle) heldPollClient(t *testing.T, h http.RoundTripper) *salesforce.Client {
	t.Helper()
	sf, err := salesforce.New(context.Background(), salesforce.Config{LoginURL: b.sim.URL(), ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword,
		HTTPClient: &http.Client{Transport: h}})
	require.NoError(t, err)
	return sf
}

// A poll reads three records after pgforce's first write of each and
// before its second, and applies them after the second. What it read of
// them is older than what Salesforce holds: the value pgforce's second
// write replaced, or a record pgforce has deleted since. Applied, it put
// that value back in the row of the record with nothing queued; under
// salesforce_wins it dropped the third update queued for another, taking
// the old value for a Salesforce edit (the queued change's old value is
// what the second write sent), and the next poll then brought the second
// write's value, so that the third update was lost on both sides; and it
// brought the deleted record back as a row, which the next poll marked
// deleted. The poll leaves records pgforce wrote since it began to a
// read of their own.
func TestPolledRecordsReadBeforePgforcesWriteAndAppliedAfterItNeitherRevertTheRowNorDropTheNextUpdate(t *testing.T) {
	b := setup(t, setupOptions{})
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", 3)
	stopInbound()
	stopOutbound := b.startStoppable(t, b.sf, polledOptions())
	revenue := func(i int) string { return b.rowText(t, ids[i], "annualrevenue") }
	sent := func(i int, want string) {
		t.Helper()
		eventually(t, 10*time.Second, "the update sent", func() bool {
			return b.backlog(t) == 0 && fmt.Sprint(b.sfField(t, "Account", sfids[i], "AnnualRevenue")) == want
		})
	}
	rowsOf := func(sfid string) int {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE sfid = $1`, sfid)
		return n
	}

	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 1 WHERE id = ANY($1)`, ids)
	for i := range ids {
		sent(i, "1.00")
	}
	h := heldPolls()
	t.Cleanup(b.runInboundWith(t, b.heldPollClient(t, h)))
	waitFor(t, h.reached, "a poll's read")

	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 2 WHERE id = ANY($1)`, ids[:2])
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, ids[2])
	sent(0, "2.00")
	sent(1, "2.00")
	require.Nil(t, b.sfField(t, "Account", sfids[2], "AnnualRevenue"), "the record deleted")
	stopOutbound()
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 3 WHERE id = $1`, ids[0])

	h.release <- struct{}{}
	// The next poll has read: the first one is applied.
	waitFor(t, h.reached, "the next poll's read")
	require.Equal(t, "3.00", revenue(0), "the queued update was dropped")
	require.Equal(t, 1, b.backlog(t), "the queued update was dropped")
	require.Equal(t, "2.00", revenue(1), "the value pgforce replaced came back")
	require.Zero(t, rowsOf(sfids[2]), "the record pgforce deleted came back")

	close(h.release)
	b.startWithClient(t, b.sf, polledOptions())
	sent(0, "3.00")
	eventually(t, 10*time.Second, "both sides the same", func() bool { return revenue(0) == "3.00" && revenue(1) == "2.00" })
	require.Equal(t, "2.00", fmt.Sprint(b.sfField(t, "Account", sfids[1], "AnnualRevenue")))
	require.Zero(t, rowsOf(sfids[2]), "the record pgforce deleted came back")
	require.Empty(t, b.openErrors(t))
}

// The stream of updates that showed the race above by chance: 1,000
// updates of 10 records, sent while the inbound worker polls every 300 ms
// under salesforce_wins. Each poll's answer reaches the worker 150 ms
// after Salesforce gave it, as over a slow link, so that most polls hold
// records the outbound worker writes meanwhile. Both sides end with each
// record's last value.
func TestPolledStreamOfUpdatesWithPollsRunningEndsWithTheLastValueOfEachRecord(t *testing.T) {
	const records, updates = 10, 1000
	b := setup(t, setupOptions{})
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", records)
	stopInbound()
	t.Cleanup(b.runInboundWith(t, b.heldPollClient(t, &heldTransport{base: http.DefaultTransport, match: isPoll, answer: true, delay: 150 * time.Millisecond})))
	b.startWithClient(t, b.sf, polledOptions())
	for i := range updates {
		b.exec(t, `UPDATE salesforce.account SET annualrevenue = $2 WHERE id = $1`, ids[i%records], i)
		time.Sleep(5 * time.Millisecond)
	}
	eventually(t, 30*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	for i, sfid := range sfids {
		want := fmt.Sprintf("%d.00", updates-records+i)
		require.Equal(t, want, fmt.Sprint(b.sfField(t, "Account", sfid, "AnnualRevenue")), "record %d in Salesforce", i)
		eventually(t, 10*time.Second, "the row's value", func() bool { return b.rowText(t, ids[i], "annualrevenue") == want })
	}
	require.Empty(t, b.openErrors(t))
}

// heldLoad holds a load's first COUNT() before it is sent (count), and
// the answer of its first read of the records (read): the load has found
// the table empty, then has read the records and waits to apply them.
func heldLoad() (count, read *heldTransport) {
	read = &heldTransport{base: http.DefaultTransport, answer: true, once: true, reached: make(chan struct{}), release: make(chan struct{}),
		match: func(req *http.Request) bool {
			p := req.URL.Path
			return strings.HasSuffix(p, "/query") && strings.HasPrefix(req.URL.Query().Get("q"), "SELECT Id") ||
				strings.Contains(p, "/jobs/query/") && strings.HasSuffix(p, "/results")
		}}
	count = &heldTransport{base: read, once: true, reached: make(chan struct{}), release: make(chan struct{}),
		match: func(req *http.Request) bool {
			return strings.HasSuffix(req.URL.Path, "/query") && strings.Contains(req.URL.Query().Get("q"), "COUNT()")
		}}
	return count, read
}

// A load into an empty table reads a record the application created
// meanwhile, and pgforce deletes it, the application having deleted its
// row, before the load applies what it read. The load COPies its records
// straight into the table (a REST batch, or a Bulk page), which skipped the
// merge's checks: the record came back as a row, and stayed (the next poll
// marked it deleted). The batch goes through the merge, which leaves it
// out.
func TestLoadIntoAnEmptyTableDoesNotBringBackARecordPgforceDeletedAfterTheLoadReadIt(t *testing.T) {
	for _, tc := range []struct {
		name          string
		bulkThreshold int
	}{{"rest", 1_000_000}, {"bulk", 1}} {
		t.Run(tc.name, func(t *testing.T) { loadIntoAnEmptyTableAfterADelete(t, tc.bulkThreshold) })
	}
}

func loadIntoAnEmptyTableAfterADelete(t *testing.T, bulkThreshold int) {
	b := setup(t, setupOptions{})
	b.exec(t, `UPDATE pgforce.mapping SET inbound = 'poll', state = 'new' WHERE id = $1`, b.accountID)
	b.exec(t, `UPDATE pgforce.mapping SET paused = true WHERE id = $1`, b.contactID)
	b.startWithClient(t, b.sf, polledOptions())
	count, read := heldLoad()
	t.Cleanup(b.runInboundWithOptions(t, b.heldPollClient(t, count), func(o *inbound.Options) { o.BulkThreshold = bulkThreshold }))
	// The load found the table empty, and counts the records.
	waitFor(t, count.reached, "the load's count")

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Made during the load') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)
	close(count.release)
	waitFor(t, read.reached, "the load's read")

	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, id)
	eventually(t, 10*time.Second, "the record deleted", func() bool {
		return b.backlog(t) == 0 && len(b.sfRecords(t, fmt.Sprintf("SELECT Id FROM Account WHERE Id = '%s'", sfid))) == 0
	})
	close(read.release)
	b.waitMappingSynced(t, b.accountID)
	var rows int
	b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account WHERE sfid = $1`, sfid)
	require.Zero(t, rows, "the record pgforce deleted came back")
	require.Empty(t, b.openErrors(t))
}

// A poll whose registration could not be ended (its connection was cut as
// it ended it, see pgforce.inbound_read) stayed registered until the
// mapping's runner started again, for as long as the worker ran: every
// write of the mapping was noted meanwhile, and the notes were never
// purged, since every read that ended kept those newer than the oldest
// read registered. The next read ends it.
func TestAReadWhoseEndFailedIsEndedByTheNextRead(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	stopInbound, ids, _ := b.polledAccounts(t, "salesforce_wins", 1)
	stopInbound()
	b.startWithClient(t, b.sf, polledOptions())
	h := heldPolls()
	t.Cleanup(b.runInboundWith(t, b.heldPollClient(t, h)))
	waitFor(t, h.reached, "a poll's read")
	var leaked int64
	b.scalar(t, &leaked, `SELECT id FROM pgforce.inbound_read WHERE mapping_id = $1`, b.accountID)

	// The poll's end waits for the table, and its connection is cut.
	lock, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer lock.Rollback(ctx)
	_, err = lock.Exec(ctx, `LOCK TABLE pgforce.inbound_read IN EXCLUSIVE MODE`)
	require.NoError(t, err)
	h.release <- struct{}{}
	var pid int
	eventually(t, 10*time.Second, "the poll ending its read", func() bool {
		return b.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE query LIKE '%inbound_read_end%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`).Scan(&pid) == nil
	})
	b.exec(t, `SELECT pg_terminate_backend($1)`, pid)
	require.NoError(t, lock.Rollback(ctx))

	// Polls go on, and an update goes out.
	close(h.release)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-h.reached:
			case <-done:
				return
			}
		}
	}()
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 7 WHERE id = $1`, ids[0])
	eventually(t, 10*time.Second, "the update sent", func() bool { return b.backlog(t) == 0 })
	eventually(t, 10*time.Second, "the read ended", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pgforce.inbound_read WHERE id = $1`, leaked)
		return n == 0
	})
	eventually(t, 10*time.Second, "the notes purged", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbound_written`)
		return n == 0
	})
}

// A mapping made read_only still sends the changes it captured before. A
// poll registered while one went out, and read the record after it, and
// after a Salesforce edit of another field: the merge refused the record
// (pgforce had written it since the read began, see pgforce.inbound_read)
// but, the queue being empty by then, nothing queued it to be read again,
// and the poll moved the watermark past it (a later edit of another record
// came in the same poll): the Salesforce edit never reached the row. It is
// left out and read again, as for a read_write mapping.
func TestAPollOfAReadOnlyMappingStillSendingItsQueueReadsAgainARecordPgforceWroteMeanwhile(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", 2)
	stopInbound()
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 5 WHERE id = $1`, ids[0])
	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_only' WHERE id = $1`, b.accountID)
	// The first poll's request waits, its read registered.
	h := &heldTransport{base: http.DefaultTransport, match: isPoll, once: true, reached: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(b.runInboundWithOptions(t, b.heldPollClient(t, h), func(o *inbound.Options) { o.Overlap = time.Millisecond }))
	waitFor(t, h.reached, "a poll's request")

	b.startWithClient(t, b.sf, polledOptions())
	eventually(t, 10*time.Second, "the update sent", func() bool {
		return b.backlog(t) == 0 && fmt.Sprint(b.sfField(t, "Account", sfids[0], "AnnualRevenue")) == "5.00"
	})
	require.NoError(t, b.sim.UIEdit(ctx, "Account", sfids[0], map[string]any{"Industry": "Edited"}))
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, b.sim.UIEdit(ctx, "Account", sfids[1], map[string]any{"Industry": "Later"}))
	close(h.release)

	eventually(t, 10*time.Second, "the poll applied", func() bool { return b.rowText(t, ids[1], "industry") == "Later" })
	eventually(t, 5*time.Second, "the Salesforce edit in the row", func() bool { return b.rowText(t, ids[0], "industry") == "Edited" })
	require.Equal(t, "5.00", b.rowText(t, ids[0], "annualrevenue"))
}
