package salesforce_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

// BenchmarkBulkQueryStreamsRows measures rows per second through a Bulk 2.0
// query (create, poll, every page parsed) against the simulator.
func BenchmarkBulkQueryStreamsRows(b *testing.B) {
	const n = 100000
	s := simtest.Start(b)
	_, err := s.Seed(b.Context(), "Account", n, func(i int) map[string]any {
		return map[string]any{"Name": fmt.Sprintf("Bench %06d", i), "Ext_Id__c": fmt.Sprintf("b-%06d", i),
			"Amount__c": float64(i) / 100, "Note__c": "a note, with a comma", "Industry": "Banking"}
	})
	require.NoError(b, err)
	c := simtest.Client(b, s)
	poll := salesforce.Poll{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	b.ResetTimer()
	start := time.Now()
	rows := 0
	for b.Loop() {
		_, err := c.BulkQuery(b.Context(), salesforce.QueryJob{Query: "SELECT Id, Name, Ext_Id__c, Amount__c, Note__c, Industry, CreatedDate, SystemModstamp FROM Account"},
			salesforce.BulkQueryOptions{Poll: poll, MaxRecords: 50000}, func(salesforce.Row) error { rows++; return nil })
		require.NoError(b, err)
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkCollectionsUpdate measures records per second updated through
// sObject Collections, 200 per call, one call at a time.
func BenchmarkCollectionsUpdate(b *testing.B) {
	const n = 10000
	s := simtest.Start(b, func(cfg *sim.Config) { cfg.APILimit = 1 << 30 })
	_, err := s.Seed(b.Context(), "Account", n, func(i int) map[string]any { return map[string]any{"Name": fmt.Sprintf("U %d", i)} })
	require.NoError(b, err)
	c := simtest.Client(b, s)
	var ids []string
	require.NoError(b, c.Query(b.Context(), "SELECT Id FROM Account", func(r salesforce.Record) error { ids = append(ids, r.ID()); return nil }))
	b.ResetTimer()
	start := time.Now()
	updated := 0
	for b.Loop() {
		recs := make([]salesforce.Record, len(ids))
		for i, id := range ids {
			recs[i] = salesforce.NewRecord("Account", map[string]any{"Id": id, "Note__c": fmt.Sprintf("iteration %d", updated)})
		}
		res, err := c.Update(b.Context(), recs)
		require.NoError(b, err)
		updated += len(res)
	}
	b.ReportMetric(float64(updated)/time.Since(start).Seconds(), "records/s")
}
