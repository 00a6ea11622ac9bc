package sim

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBulkQueryJobMovesThroughItsStatesAndRefusesResultsUntilComplete(t *testing.T) {
	b := setup(t, func(c *Config) { c.BulkProcessDelay = 150 * time.Millisecond })
	b.create("Account", map[string]any{"Name": "Queried"})

	r := b.do("POST", "jobs/query", map[string]any{"operation": "query", "query": "SELECT Id, Name FROM Account"})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	job := r.object(t)
	require.Equal(t, "UploadComplete", job["state"])
	id := job["id"].(string)

	r = b.do("GET", "jobs/query/"+id+"/results", nil)
	require.Equal(t, http.StatusPreconditionFailed, r.status)
	code, msg := r.firstError(t)
	require.Equal(t, "JOB_NOT_COMPLETE", code)
	require.Equal(t, "can only download query results of successfully completed bulk job with status: JOB_COMPLETE. Current status: UPLOAD_COMPLETE", msg)

	seen := []string{"UploadComplete"}
	inProgressRefused := false
	require.Eventually(t, func() bool {
		state := b.do("GET", "jobs/query/"+id, nil).object(t)["state"].(string)
		if state != seen[len(seen)-1] {
			seen = append(seen, state)
		}
		if state == "InProgress" {
			// The job may complete between the two requests; while it has not, results are refused.
			if r := b.do("GET", "jobs/query/"+id+"/results", nil); r.status != http.StatusOK {
				require.Equal(t, http.StatusPreconditionFailed, r.status)
				_, msg := r.firstError(t)
				require.Contains(t, msg, "Current status: IN_PROGRESS")
				inProgressRefused = true
			}
		}
		return state == "JobComplete"
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"UploadComplete", "InProgress", "JobComplete"}, seen)
	require.True(t, inProgressRefused, "results were refused while the job was InProgress")

	r = b.do("GET", "jobs/query/"+id+"/results", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "null", r.header.Get("Sforce-Locator"))
	require.Contains(t, string(r.body), `"Queried"`)
}

func TestBulkIngestJobMovesThroughItsStatesAfterUploadComplete(t *testing.T) {
	b := setup(t, func(c *Config) { c.BulkProcessDelay = 150 * time.Millisecond })
	r := b.do("POST", "jobs/ingest", map[string]any{"object": "Account", "operation": "insert"})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	id := r.object(t)["id"].(string)
	require.Equal(t, http.StatusCreated, b.do("PUT", "jobs/ingest/"+id+"/batches", "Name\nOne\n", "Content-Type", "text/csv").status)
	r = b.do("PATCH", "jobs/ingest/"+id, map[string]any{"state": "UploadComplete"})
	require.Equal(t, "UploadComplete", r.object(t)["state"])
	seen := []string{"UploadComplete"}
	require.Eventually(t, func() bool {
		state := b.do("GET", "jobs/ingest/"+id, nil).object(t)["state"].(string)
		if state != seen[len(seen)-1] {
			seen = append(seen, state)
		}
		return state == "JobComplete"
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"UploadComplete", "InProgress", "JobComplete"}, seen)
}

func TestBulkJobsWithoutProcessDelayStillCompleteAsynchronously(t *testing.T) {
	b := setup(t, func(c *Config) { c.BulkProcessDelay = -1 })
	b.create("Account", map[string]any{"Name": "Fast"})
	start := time.Now()
	b.runIngestJob("Account", "insert", "Name\nAlso fast\n")
	r := b.do("POST", "jobs/query", map[string]any{"query": "SELECT Name FROM Account"})
	id := r.object(t)["id"].(string)
	require.Eventually(t, func() bool {
		return b.do("GET", "jobs/query/"+id, nil).object(t)["state"] == "JobComplete"
	}, time.Second, time.Millisecond)
	require.Less(t, time.Since(start), time.Second)
}

// "Understanding Bulk API 2.0 Query": Bulk API 2.0 refuses compound fields, OFFSET and parent-to-child
// subqueries; a client that relies on them against the simulator would fail against an org.
func TestBulkQueryRefusesWhatBulkAPI2DoesNotSupport(t *testing.T) {
	b := setup(t)
	b.create("Account", map[string]any{"Name": "Queried", "BillingCity": "Oslo"})
	for name, q := range map[string]string{
		"compound field": "SELECT Id, BillingAddress FROM Account",
		"offset":         "SELECT Id FROM Account ORDER BY Name LIMIT 5 OFFSET 1",
		"subquery":       "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
		"aggregate":      "SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry",
	} {
		t.Run(name, func(t *testing.T) {
			r := b.do("POST", "jobs/query", map[string]any{"operation": "query", "query": q})
			require.Equal(t, http.StatusBadRequest, r.status, string(r.body))
			code, msg := r.firstError(t)
			require.Equal(t, "API_ERROR", code)
			if name == "compound field" {
				require.Equal(t, "Selecting compound data not supported in Bulk Query", msg)
			}
		})
	}
	// The parts of a compound field are fine.
	r := b.do("POST", "jobs/query", map[string]any{"operation": "query", "query": "SELECT Id, BillingCity FROM Account"})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
}
