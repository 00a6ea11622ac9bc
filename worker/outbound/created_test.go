package outbound_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
)

const (
	collectionsPath = "/services/data/v62.0/composite/sobjects"
	collectionsKey  = "/services/data/vXX.X/composite/sobjects" // as the simulator counts calls
)

// loseCreateAnswers makes Salesforce carry out the next count create calls
// and drop the connection before answering, as when a call times out after
// Salesforce committed it.
func (b *bundle) loseCreateAnswers(count int) {
	b.sim.Inject(sim.Fault{Path: collectionsPath, Method: "POST", LoseAnswer: true, Count: count})
}

// requireOneRecordPerRow checks that Salesforce holds exactly one Account
// named like prefix% per row of salesforce.account, and the rows hold
// them all.
func (b *bundle) requireOneRecordPerRow(t *testing.T, prefix string, rows int) {
	t.Helper()
	eventually(t, 30*time.Second, "every row synced", func() bool {
		var unsynced int
		b.scalar(t, &unsynced, `SELECT count(*) FROM salesforce.account WHERE sfid IS NULL OR _hc_lastop <> 'SYNCED'`)
		return unsynced == 0 && b.backlog(t) == 0
	})
	recs := b.sfRecords(t, "SELECT Id FROM Account WHERE Name LIKE '"+prefix+"%'")
	require.Equal(t, rows, len(recs), "one record per row: none created twice")
	var total, distinct int
	b.scalar(t, &total, `SELECT count(*) FROM salesforce.account`)
	b.scalar(t, &distinct, `SELECT count(DISTINCT sfid) FROM salesforce.account`)
	require.Equal(t, rows, total, "no second row for a record")
	require.Equal(t, rows, distinct)
	for _, r := range recs {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE sfid = $1`, r.ID())
		require.Equal(t, 1, n, "record %s has its row", r.ID())
	}
}

// requireEchoesMerged checks requireOneRecordPerRow, and that no row the
// inbound worker made for a record of ours is left over.
func (b *bundle) requireEchoesMerged(t *testing.T, prefix string, rows int) {
	t.Helper()
	b.requireOneRecordPerRow(t, prefix, rows)
	var left int
	b.scalar(t, &left, `SELECT count(*) FROM pgforce.outbound_echo_row`)
	require.Zero(t, left, "the echo rows were merged")
}

// A mapping without an upsert field creates its records with plain creates,
// which Salesforce carries out again on every call. When the answer to one
// is lost, the insert is sent again only after the worker has looked for
// the records it made.
func TestAPlainInsertWhoseAnswerWasLostDoesNotCreateItsRecordTwice(t *testing.T) {
	b := setup(t, setupOptions{})
	b.loseCreateAnswers(1)
	b.start(t, fastOptions())
	b.exec(t, `INSERT INTO salesforce.account (name, industry, annualrevenue)
		SELECT 'Lost ' || g, 'Energy', g * 1000.5 FROM generate_series(1, 5) g`)
	b.requireOneRecordPerRow(t, "Lost ", 5)
	require.EqualValues(t, 1, b.sim.Calls()["POST "+collectionsKey], "the lost create was not sent again")
}

// Identical rows inserted together get a record each: a record found for
// one is not given to the other, which is created.
func TestIdenticalPlainInsertsWhoseAnswerWasLostKeepARecordEach(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Twin')`)
	b.waitSfid(t, "account", 1)
	// A third identical row, synced long before, keeps its record too.
	b.loseCreateAnswers(1)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Twin'), ('Twin')`)
	b.requireOneRecordPerRow(t, "Twin", 3)
}

// With Change Data Capture on, the record a lost create made reaches
// Postgres as a row of its own before the insert is sent again; that row
// is merged into the insert's row, as any echo of an insert is.
func TestTheEchoOfACreateWhoseAnswerWasLostIsMergedIntoTheInsertsRow(t *testing.T) {
	b := setup(t, setupOptions{})
	b.streamAccountIn(t)
	b.loseCreateAnswers(1)
	b.start(t, fastOptions())
	b.exec(t, `INSERT INTO salesforce.account (name, industry) SELECT 'Echo ' || g, 'Retail' FROM generate_series(1, 3) g`)
	b.requireEchoesMerged(t, "Echo ", 3)
}

// A mapping without Change Data Capture polls: the poll that brings in the
// record of a create whose answer was lost makes a row for it, which the
// insert sent again takes over as it does a change event's.
func TestThePolledEchoOfACreateWhoseAnswerWasLostIsMergedIntoTheInsertsRow(t *testing.T) {
	b := setup(t, setupOptions{})
	b.syncAccountIn(t, "poll")
	b.loseCreateAnswers(1)
	opts := fastOptions()
	opts.MinBackoff, opts.MaxBackoff = 2*time.Second, 2*time.Second
	b.start(t, opts)
	b.exec(t, `INSERT INTO salesforce.account (name, industry) SELECT 'Polled ' || g, 'Retail' FROM generate_series(1, 3) g`)
	eventually(t, 10*time.Second, "the poll brought the records in", func() bool {
		var echoes int
		b.scalar(t, &echoes, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL`)
		return echoes == 3
	})
	b.requireEchoesMerged(t, "Polled ", 3)
}

// A worker killed while Salesforce carried out its creates: the next worker
// takes its claims over and finds the records instead of creating them
// again.
func TestWorkerKilledAfterSalesforceCreatedItsRecordsDuplicatesNone(t *testing.T) {
	b := setup(t, setupOptions{})
	const n = 400
	b.exec(t, `INSERT INTO salesforce.account (name) SELECT 'Killed ' || g FROM generate_series(1, $1) g`, n)
	// Every create is carried out and its answer lost, and the search for
	// the records fails, so the worker never learns of them before it dies.
	b.loseCreateAnswers(0)
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/query", Status: 503})

	child := b.startChild(t)
	eventually(t, 30*time.Second, "records created in Salesforce", func() bool {
		return len(b.sim.Events(0, 1)) > 0 // their change events
	})
	killChild(t, child)
	var synced int
	b.scalar(t, &synced, `SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL`)
	require.Zero(t, synced, "no answer reached the killed worker")

	b.sim.ClearFaults()
	b.start(t, fastOptions()) // takes over the dead worker's claims after the lease
	b.requireOneRecordPerRow(t, "Killed ", n)
}

// insertWithLostAnswer starts a worker that waits a second after a failed
// call, inserts a row named name whose create Salesforce carries out with
// its answer lost, and returns the row's id once the record exists: the
// test has that second to change the row before the insert is sent again.
func (b *bundle) insertWithLostAnswer(t *testing.T, name string) int {
	t.Helper()
	b.loseCreateAnswers(1)
	opts := fastOptions()
	opts.MinBackoff, opts.MaxBackoff = time.Second, time.Second
	b.start(t, opts)
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ($1, 'Energy') RETURNING id`, name)
	eventually(t, 10*time.Second, "the create carried out", func() bool { return len(b.sim.Events(0, 1)) > 0 })
	return id
}

// A row updated after its insert went out with its answer lost: the update
// is merged into the insert sent again, so the record found carries the
// insert's values, not the update's. It is matched on the fields the update
// left alone and then updated.
func TestARowUpdatedAfterItsInsertsAnswerWasLostKeepsOneRecordWithTheUpdate(t *testing.T) {
	b := setup(t, setupOptions{})
	id := b.insertWithLostAnswer(t, "Late")
	b.exec(t, `UPDATE salesforce.account SET industry = 'Banking' WHERE id = $1`, id)
	b.requireOneRecordPerRow(t, "Late", 1)
	sfid := b.rowSfid(t, "account", id)
	require.Equal(t, "Banking", b.sfField(t, "Account", sfid, "Industry"))
}

// A row deleted after its insert went out with its answer lost: the record
// the insert may have made is looked for and deleted, not left behind.
func TestARowDeletedAfterItsInsertsAnswerWasLostLeavesNoRecordBehind(t *testing.T) {
	b := setup(t, setupOptions{})
	id := b.insertWithLostAnswer(t, "Gone")
	require.Len(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Gone'"), 1)
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, id)
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Gone'"), "the record the lost insert made is deleted")
}

// twinInDoubt inserts a row named name whose insert an earlier claim may
// have sent (a dead worker's claim, handed back), in one transaction so
// that no running worker claims it first, and returns its id.
func (b *bundle) twinInDoubt(t *testing.T, name string) int {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var id int
	require.NoError(t, tx.QueryRow(ctx, `INSERT INTO salesforce.account (name) VALUES ($1) RETURNING id`, name).Scan(&id))
	_, err = tx.Exec(ctx, `UPDATE pgforce.outbox SET attempts = 1 WHERE record_id = $1`, id)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	return id
}

// A record whose create is in flight for another row, its Id not yet
// written back, is held by no row: an insert in doubt with the same values
// must not take it (the other row's write-back would then merge the two
// rows into one).
func TestAnInsertInDoubtNeverTakesTheRecordOfAnotherRowsInsertInFlight(t *testing.T) {
	b := setup(t, setupOptions{})
	var first int
	b.scalar(t, &first, `INSERT INTO salesforce.account (name) VALUES ('Twin') RETURNING id`)
	second := b.twinInDoubt(t, "Twin")
	app := b.appHoldsRow(t, first) // the first row's result transaction waits for it
	opts := fastOptions()
	opts.BatchSize = 1
	b.start(t, opts)
	eventually(t, 10*time.Second, "the first row's record created", func() bool {
		return len(b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Twin'")) > 0
	})
	time.Sleep(300 * time.Millisecond) // the insert in doubt would look now
	require.NoError(t, app.Rollback(context.Background()))
	b.waitSfid(t, "account", second)
	b.requireOneRecordPerRow(t, "Twin", 2)
}

// A record that a queued change names belongs to that change's row, even
// when the row is gone: the record of a row deleted meanwhile is not taken
// by an insert in doubt with the same values.
func TestAnInsertInDoubtNeverTakesTheRecordOfADeletedRow(t *testing.T) {
	b := setup(t, setupOptions{})
	b.syncedAccounts(t, 1, "Twin")
	var synced int
	b.scalar(t, &synced, `SELECT id FROM salesforce.account`)
	second := b.twinInDoubt(t, "Twin 0")
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, synced)
	b.start(t, fastOptions())
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	live := b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Twin 0'")
	require.Len(t, live, 1, "the deleted row's record is gone and the new row has one")
	require.Equal(t, live[0].ID(), b.rowSfid(t, "account", second))
}

// The search reads the newest records first: a lost create is among the
// latest of our user's, however many came between its capture and it.
func TestTheRecordOfAnInsertInDoubtIsFoundBehindTenThousandNewerOnes(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Needle') RETURNING id`)
	for i := 0; i < 51; i++ {
		recs := make([]salesforce.Record, 200)
		for k := range recs {
			recs[k] = salesforce.NewRecord("Account", map[string]any{"Name": fmt.Sprintf("Hay %d", i*200+k)})
		}
		_, err := b.sf.Create(ctx, recs)
		require.NoError(t, err)
	}
	// The create whose answer was lost, and its claim handed back.
	_, err := b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Needle"})})
	require.NoError(t, err)
	b.exec(t, `UPDATE pgforce.outbox SET attempts = 1 WHERE record_id = $1`, id)
	b.start(t, fastOptions())
	b.waitSfid(t, "account", id)
	require.Len(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Needle'"), 1, "created once")
}

// An insert in doubt is searched for while the application keeps inserting:
// the batch's own fresh inserts, sent after the search, do not hold it up.
func TestAnInsertInDoubtIsFoundWhileInsertsKeepComing(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	id := b.twinInDoubt(t, "Doubt")
	_, err := b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Doubt"})})
	require.NoError(t, err)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_, _ = b.pool.Exec(ctx, `INSERT INTO salesforce.account (name) VALUES ('Fresh')`)
		}
	}()
	b.start(t, fastOptions())
	eventually(t, 10*time.Second, "the insert in doubt synced", func() bool { return b.rowSfid(t, "account", id) != "" })
	close(stop)
	<-done
	require.Len(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Doubt'"), 1, "found, not created again")
}

// A gateway may answer 5xx after Salesforce committed the call: such an
// insert is in doubt, not known unsent.
func TestAPlainInsertAnsweredWithAGatewayTimeoutAfterItsCommitIsNotCreatedTwice(t *testing.T) {
	b := setup(t, setupOptions{})
	target, err := url.Parse(b.sim.URL())
	require.NoError(t, err)
	var proxyURL string
	var timedOut atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		body = []byte(strings.ReplaceAll(string(body), b.sim.URL(), proxyURL))
		if resp.Request.Method == "POST" && resp.Request.URL.Path == collectionsPath && timedOut.Add(1) == 1 {
			resp.StatusCode = http.StatusGatewayTimeout // Salesforce committed; the gateway gave up waiting
			body = []byte("<html><body>504 Gateway Time-out</body></html>")
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
		return nil
	}
	proxy := httptest.NewServer(rp)
	t.Cleanup(proxy.Close)
	proxyURL = proxy.URL
	sf, err := salesforce.New(context.Background(), salesforce.Config{LoginURL: proxy.URL, ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword})
	require.NoError(t, err)
	b.startWithClient(t, sf, fastOptions())

	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Gateway')`)
	b.requireOneRecordPerRow(t, "Gateway", 1)
	require.GreaterOrEqual(t, timedOut.Load(), int64(1), "the gateway answered 504")
}

// With Change Data Capture on, a row deleted after its insert's answer was
// lost takes the record found and the row its change event made with it.
func TestARowDeletedAfterItsInsertsAnswerWasLostTakesItsEchoRowWithIt(t *testing.T) {
	b := setup(t, setupOptions{})
	b.streamAccountIn(t)
	id := b.insertWithLostAnswer(t, "Gone")
	eventually(t, 10*time.Second, "the echo row applied", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM pgforce.outbound_echo_row`)
		return n == 1
	})
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, id)
	eventually(t, 15*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Gone'"), "record deleted")
	eventually(t, 5*time.Second, "no row left", func() bool {
		var rows int
		b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account WHERE name = 'Gone'`)
		return rows == 0
	})
}

// A worker killed in a drain of plain inserts leaves several batches in
// doubt; the records of the later ones, made after the first one's, do not
// hide the first one's from its search.
func TestEveryBatchInDoubtFindsItsRecordsBehindTheOthers(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	const n = 15000
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 1000 WHERE id = $1`, b.accountID)
	b.exec(t, `INSERT INTO salesforce.account (name) SELECT 'Bulk ' || g FROM generate_series(1, $1) g`, n)
	for i := 0; i < n; i += 200 { // the dead worker's creates, in claim order, all carried out
		recs := make([]salesforce.Record, 200)
		for k := range recs {
			recs[k] = salesforce.NewRecord("Account", map[string]any{"Name": fmt.Sprintf("Bulk %d", i+k+1)})
		}
		_, err := b.sf.Create(ctx, recs)
		require.NoError(t, err)
	}
	b.exec(t, `UPDATE pgforce.outbox SET attempts = 1`) // its claims, handed back
	b.start(t, fastOptions())
	eventually(t, 120*time.Second, "drained", func() bool { return b.backlog(t) == 0 })
	var records int
	records, err := b.sf.Count(ctx, "SELECT COUNT() FROM Account WHERE Name LIKE 'Bulk %'")
	require.NoError(t, err)
	require.Equal(t, n, records, "none created twice")
}

// Salesforce stores empty text as null: a row with an empty text column is
// still recognised by its record.
func TestAnInsertInDoubtWithEmptyTextIsRecognisedByItsRecord(t *testing.T) {
	b := setup(t, setupOptions{})
	b.loseCreateAnswers(1)
	b.start(t, fastOptions())
	b.exec(t, `INSERT INTO salesforce.account (name, industry) SELECT 'Empty ' || g, '' FROM generate_series(1, 3) g`)
	b.requireOneRecordPerRow(t, "Empty ", 3)
}

// Two workers and a steady stream of inserts: an insert in doubt waits only
// for inserts in flight whose records could pass for its own, not for the
// stream.
func TestAnInsertInDoubtIsFoundWhileAnotherWorkerKeepsInserting(t *testing.T) {
	b := setup(t, setupOptions{})
	b.sim.Inject(sim.Fault{Path: collectionsPath, Method: "POST", Latency: 300 * time.Millisecond})
	o1, o2 := fastOptions(), fastOptions()
	o1.WorkerID, o2.WorkerID = "w1", "w2"
	b.start(t, o1)
	b.start(t, o2)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			_, _ = b.pool.Exec(context.Background(), `INSERT INTO salesforce.account (name) VALUES ($1)`, fmt.Sprintf("Load %d", i))
		}
	}()
	// The lost create first, then its row, queued as claimed before.
	_, err := b.sf.Create(context.Background(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Doubt"})})
	require.NoError(t, err)
	id := b.twinInDoubt(t, "Doubt")
	eventually(t, 15*time.Second, "the insert in doubt synced while the stream runs", func() bool { return b.rowSfid(t, "account", id) != "" })
	close(stop)
	<-done
	var rows int
	b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account`)
	b.requireOneRecordPerRow(t, "", rows)
}

// heldCreates carries creates out and, once armed, holds the answer of the
// next one until released: a create in flight for as long as a test needs.
type heldCreates struct {
	*salesforce.Client
	armed, held, release chan struct{}
}

func (h *heldCreates) Create(ctx context.Context, recs []salesforce.Record) ([]salesforce.SaveResult, error) {
	res, err := h.Client.Create(ctx, recs)
	select {
	case <-h.armed:
		select {
		case h.held <- struct{}{}:
			<-h.release
		default:
		}
	default:
	}
	return res, err
}

// A field an insert in flight leaves empty may be filled by Salesforce (a
// default, a trigger), so its record may carry the values of an insert in
// doubt that set it: the search waits for it rather than take its record,
// whose row's write-back would then merge the two rows into one.
func TestAnInsertInDoubtWaitsForAnInsertInFlightThatSalesforceMayFillIn(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	b.exec(t, `UPDATE pgforce.mapping SET fields = fields || '{Tier__c}' WHERE id = $1`, b.accountID)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2::jsonb || '[{"name":"Tier__c","type":"string","length":40}]')`, b.accountID, accountColumns)
	held := &heldCreates{Client: b.sf, armed: make(chan struct{}), held: make(chan struct{}, 1), release: make(chan struct{})}
	w2 := fastOptions()
	w2.WorkerID = "w2"
	b.startWithClient(t, held, w2)

	// The lost create of the row in doubt, which set the tier.
	_, err := b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Doubt", "Tier__c": "Gold"})})
	require.NoError(t, err)
	close(held.armed)
	var inFlight int
	b.scalar(t, &inFlight, `INSERT INTO salesforce.account (name) VALUES ('Doubt') RETURNING id`) // Salesforce gives it Gold
	select {
	case <-held.held:
	case <-time.After(10 * time.Second):
		t.Fatal("no create in flight")
	}
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	var doubt int
	require.NoError(t, tx.QueryRow(ctx, `INSERT INTO salesforce.account (name, tier__c) VALUES ('Doubt', 'Gold') RETURNING id`).Scan(&doubt))
	_, err = tx.Exec(ctx, `UPDATE pgforce.outbox SET attempts = 1 WHERE record_id = $1`, doubt)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	w1 := fastOptions()
	w1.WorkerID = "w1"
	b.start(t, w1)
	time.Sleep(time.Second)
	require.Empty(t, b.rowSfid(t, "account", doubt), "the search waits while the other create is in flight")
	close(held.release)
	b.requireOneRecordPerRow(t, "Doubt", 2)
}
