package outbound_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// noSecondJob lets the first Bulk ingest job be created and refuses every
// later one with a passing failure, so that those batches go through
// Collections (sendBulk's documented fallback).
type noSecondJob struct {
	*salesforce.Client
	jobs *atomic.Int32
}

func (f noSecondJob) CreateIngestJob(ctx context.Context, job salesforce.IngestJob) (*salesforce.JobInfo, error) {
	if f.jobs.Add(1) > 1 {
		return nil, &salesforce.APIError{HTTPStatus: 503, ErrorCode: "SERVER_UNAVAILABLE", Message: "try again"}
	}
	return f.Client.CreateIngestJob(ctx, job)
}

// revenues returns the AnnualRevenue of every Account in the simulator.
func (b *bundle) revenues(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range b.sfRecords(t, "SELECT Id, AnnualRevenue FROM Account") {
		v, _ := r.Get("AnnualRevenue")
		out[r.ID()] = string(v.(json.Number))
	}
	return out
}

// A Bulk job whose close reached Salesforce with its answer lost, and
// whose state could then neither be read nor the job aborted, had its batch
// handed back as a passing failure. The live worker claimed it again at
// once and sent it beside the running job, then the user's newer change,
// and the job, ending last, wrote its older values over them. The batch
// waits for the job's end.
func TestABulkJobWhoseCloseIsInDoubtIsNotOvertakenByItsOwnBatch(t *testing.T) {
	const n = 40
	b, opts := slowBulkJobOf(t, n, "Doubt")
	ctx := context.Background()
	b.closeInDoubt()
	jobs := &atomic.Int32{}
	b.startWithClient(t, noSecondJob{Client: b.sf, jobs: jobs}, opts)

	var firstJob string
	eventually(t, 10*time.Second, "the job left in doubt", func() bool {
		return b.pool.QueryRow(ctx, `SELECT job_id FROM pgforce.outbound_bulk_job WHERE orphaned`).Scan(&firstJob) == nil
	})
	// The user's next change, made while the first job may still run.
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 8`)
	eventually(t, 15*time.Second, "revenue 8 recorded", func() bool { return b.backlog(t) == 0 })
	info, err := b.sf.IngestJobInfo(ctx, firstJob)
	require.NoError(t, err)
	require.True(t, info.Terminal(), "nothing was sent before the first job ended (it is %s)", info.State)
	var synced int
	b.scalar(t, &synced, `SELECT count(*) FROM salesforce.account WHERE annualrevenue = 8 AND _hc_lastop = 'SYNCED'`)
	require.Equal(t, n, synced)
	stale := 0
	for id, v := range b.revenues(t) {
		if v != "8.00" {
			stale++
			if stale == 1 {
				t.Logf("Account %s: Salesforce has %s, Postgres 8 (SYNCED)", id, v)
			}
		}
	}
	require.Zero(t, stale, "records whose newer value the first job overwrote")
}

// A Bulk job whose polling met a refused call (any 4xx the client does not
// count as passing) was forgotten and its batch sent through Collections
// while the job still ran in Salesforce: the user's next change was sent,
// and the job, ending later, wrote the older values over it. The batch
// waits for the job's end.
func TestABulkJobWhosePollFailsIsNotOvertakenByItsOwnBatch(t *testing.T) {
	const n = 40
	b, opts := slowBulkJobOf(t, n, "Poll")
	ctx := context.Background()
	// The first poll of the job is refused.
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/jobs/ingest/", Method: "GET", Status: 400, Count: 1})
	b.start(t, opts)

	eventually(t, 10*time.Second, "revenue 7 recorded", func() bool { return b.backlog(t) == 0 })
	var left int
	b.scalar(t, &left, `SELECT count(*) FROM pgforce.outbound_bulk_job`)
	t.Logf("revenue 7 recorded; the job forgotten (outbound_bulk_job rows: %d), still running: %v", left, b.ingestStates(t))

	// The user's next change, to a few rows (below bulk_threshold: Collections).
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 8 WHERE id IN (SELECT id FROM salesforce.account ORDER BY id LIMIT 5)`)
	eventually(t, 10*time.Second, "revenue 8 recorded", func() bool { return b.backlog(t) == 0 })
	eventually(t, 10*time.Second, "the job ended", func() bool {
		for _, st := range b.ingestStates(t) {
			if st != "JobComplete" && st != "Failed" && st != "Aborted" {
				return false
			}
		}
		return true
	})
	var want []string
	rows, err := b.pool.Query(ctx, `SELECT sfid FROM salesforce.account WHERE annualrevenue = 8 AND _hc_lastop = 'SYNCED'`)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		want = append(want, s)
	}
	rows.Close()
	require.Len(t, want, 5)
	got := b.revenues(t)
	stale := 0
	for _, id := range want {
		if got[id] != "8.00" {
			stale++
			t.Logf("Account %s: Salesforce has %s, Postgres 8 (SYNCED)", id, got[id])
		}
	}
	require.Zero(t, stale, "records whose newer value the job overwrote")
}

// slowBulkJobOf has n synced Accounts whose update of AnnualRevenue to 7 is
// queued for one Bulk job, which the simulator runs slowly (1.5 s a
// state), and the options that send them so.
func slowBulkJobOf(t *testing.T, n int, prefix string) (*bundle, outbound.Options) {
	t.Helper()
	b := setup(t, setupOptions{bulkDelay: 1500 * time.Millisecond})
	b.syncedAccounts(t, n, prefix)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 7`)
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 10`)
	opts := fastOptions()
	opts.BulkBatchSize = n
	return b, opts
}

// closeInDoubt has the simulator carry out the close of the next Bulk
// job and lose its answer, then refuse, once each, the read of the job's
// state and its abort: the worker cannot tell whether the job runs.
func (b *bundle) closeInDoubt() {
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/jobs/ingest/", Method: "PATCH", LoseAnswer: true, Count: 1})
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/jobs/ingest/", Method: "GET", Status: 500, Count: 1})
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/jobs/ingest/", Method: "PATCH", Status: 500, Count: 1})
}

// ingestStates lists the states of the simulator's ingest jobs.
func (b *bundle) ingestStates(t *testing.T) []string {
	t.Helper()
	tok, err := b.sf.TokenSource().Token(context.Background())
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodGet, tok.InstanceURL+"/services/data/v62.0/jobs/ingest", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var list struct {
		Records []struct {
			State string `json:"state"`
		} `json:"records"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	var out []string
	for _, j := range list.Records {
		out = append(out, j.State)
	}
	return out
}

// A relationship column whose external id is the text #N/A: send() keeps
// records holding #N/A out of Bulk jobs (it means null there), but only
// looks at top-level fields, so the relationship's Account.Ext_Id__c cell
// goes as #N/A and Salesforce clears the lookup instead of setting it to
// the Account whose external id is "#N/A"; the row is recorded SYNCED.
func testNAExternalIDOfARelationship(t *testing.T, bulk bool) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	const n = 10
	// The parent exists in Salesforce only (not yet synced here).
	res, err := b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "NA parent", "Ext_Id__c": "#N/A"})})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	parent := res[0].ID
	ids := b.createRecords(t, "Contact", n, func(int) map[string]any { return map[string]any{"LastName": "Child"} })
	b.exec(t, `WITH o AS (SELECT set_config('pgforce.origin', 'salesforce', true))
		INSERT INTO salesforce.contact (sfid, lastname) SELECT s, 'Child' FROM o, unnest($1::text[]) s`, ids)
	if bulk {
		b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 2 WHERE id = $1`, b.contactID)
	} else {
		b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = NULL WHERE id = $1`, b.contactID)
	}
	opts := fastOptions()
	opts.BulkBatchSize = n
	b.exec(t, `UPDATE salesforce.contact SET account__r__ext_id__c = '#N/A'`)
	b.sim.ResetCalls()
	b.start(t, opts)
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	t.Logf("calls: %v", b.sim.Calls())
	var synced int
	b.scalar(t, &synced, `SELECT count(*) FROM salesforce.contact WHERE _hc_lastop = 'SYNCED'`)
	require.Equal(t, n, synced)
	wrong := 0
	for _, id := range ids {
		if got := b.sfField(t, "Contact", id, "AccountId"); got != parent {
			wrong++
			if wrong == 1 {
				t.Logf("Contact %s: AccountId %v, want %s (the Account whose Ext_Id__c is #N/A)", id, got, parent)
			}
		}
	}
	require.Zero(t, wrong, "contacts whose lookup Salesforce did not set to the parent")
}

func TestANAExternalIDOfARelationshipThroughCollections(t *testing.T) {
	testNAExternalIDOfARelationship(t, false)
}
func TestANAExternalIDOfARelationshipThroughBulk(t *testing.T) {
	testNAExternalIDOfARelationship(t, true)
}

// pgforce.mapping accepts an upsert_field spelled in another case than the
// field in fields (it compares them lower-cased), but buildRecords looks
// the value up by m.UpsertField in a map keyed by the describe's spelling:
// every insert then goes as a plain create, never an upsert, and one whose
// external id Salesforce already holds fails (or duplicates, without a
// unique index) instead of being matched.
func TestAnUpsertFieldSpelledInLowerCaseStillUpserts(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "ext_id__c"})
	ctx := context.Background()
	res, err := b.sf.Create(ctx, []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Already there", "Ext_Id__c": "EXT-1"})})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	b.start(t, fastOptions())
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Upserted', 'EXT-1') RETURNING id`)
	eventually(t, 10*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	var lastop string
	var hcErr string
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
	b.scalar(t, &hcErr, `SELECT coalesce(_hc_err::text, '') FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "SYNCED", lastop, "_hc_err: %v", hcErr)
	require.Equal(t, res[0].ID, b.rowSfid(t, "account", id), "the insert matched the record by its external id")
}
