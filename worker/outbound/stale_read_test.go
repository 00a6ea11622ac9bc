package outbound_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// heldPolls is a transport that holds each poll's answer, as the
// simulator gave it: until the test lets it through (read and release
// set), or for delay. The poll has read the records, and applies them
// later. Every other call goes straight through.
type heldPolls struct {
	base    http.RoundTripper
	read    chan struct{} // a poll's read answered
	release chan struct{} // lets one held answer through
	delay   time.Duration // without read and release
}

func (h *heldPolls) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/queryAll") || !strings.Contains(req.URL.Query().Get("q"), "ORDER BY SystemModstamp") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	ctx := req.Context()
	if h.read == nil {
		select {
		case <-time.After(h.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else {
		for _, step := range []func() bool{
			func() bool {
				select {
				case h.read <- struct{}{}:
					return true
				case <-ctx.Done():
					return false
				}
			},
			func() bool {
				select {
				case <-h.release:
					return true
				case <-ctx.Done():
					return false
				}
			},
		} {
			if !step() {
				return nil, ctx.Err()
			}
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// heldPollClient is a client of the bundle's simulator whose polls wait in
// h.
func (b *bundle) heldPollClient(t *testing.T, h *heldPolls) *salesforce.Client {
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
// deleted. The poll leaves records pgforce wrote after it read them to a
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
	h := &heldPolls{base: http.DefaultTransport, read: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(b.runInboundWith(t, b.heldPollClient(t, h)))
	waitFor(t, h.read, "a poll's read")

	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 2 WHERE id = ANY($1)`, ids[:2])
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, ids[2])
	sent(0, "2.00")
	sent(1, "2.00")
	require.Nil(t, b.sfField(t, "Account", sfids[2], "AnnualRevenue"), "the record deleted")
	stopOutbound()
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 3 WHERE id = $1`, ids[0])

	h.release <- struct{}{}
	// The next poll has read: the first one is applied.
	waitFor(t, h.read, "the next poll's read")
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
// updates of 50 records, sent while the inbound worker polls every 300 ms
// under salesforce_wins. Each poll's answer reaches the worker 150 ms
// after Salesforce gave it, as over a slow link, so that most polls hold
// records the outbound worker writes meanwhile. Both sides end with each
// record's last value.
func TestPolledStreamOfUpdatesWithPollsRunningEndsWithTheLastValueOfEachRecord(t *testing.T) {
	const records, updates = 10, 1000
	b := setup(t, setupOptions{})
	stopInbound, ids, sfids := b.polledAccounts(t, "salesforce_wins", records)
	stopInbound()
	t.Cleanup(b.runInboundWith(t, b.heldPollClient(t, &heldPolls{base: http.DefaultTransport, delay: 150 * time.Millisecond})))
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
