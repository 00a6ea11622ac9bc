package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkCollectionsUpdate measures sObject Collections updates of 200 records over real HTTP, the call a
// sync worker makes most; it reports calls per second.
func BenchmarkCollectionsUpdate(b *testing.B) {
	bd := setup(b)
	ids := make([]string, 0, 200)
	_, err := bd.srv.Seed(b.Context(), "Account", 200, func(i int) map[string]any { return map[string]any{"Name": fmt.Sprint("A", i)} })
	require.NoError(b, err)
	for _, r := range bd.srv.store.Snapshot(b.Context(), bd.srv.cat.Object("Account"), false) {
		ids = append(ids, r.id())
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		records := make([]any, len(ids))
		for j, id := range ids {
			records[j] = map[string]any{"attributes": map[string]any{"type": "Account"}, "Id": id, "Name": fmt.Sprintf("N%d-%d", i, j), "AnnualRevenue": i}
		}
		raw, _ := json.Marshal(map[string]any{"allOrNone": false, "records": records})
		req, _ := http.NewRequest("PATCH", bd.http.URL+"/services/data/v62.0/composite/sobjects", bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+bd.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(b.N*len(ids))/elapsed.Seconds(), "records/s")
}

// BenchmarkStoreMillionRecords loads 1,000,000 records of a 20-field custom object and reports the heap they
// occupy: the store must hold them in at most 2 GB.
func BenchmarkStoreMillionRecords(b *testing.B) {
	const n = 1_000_000
	schema, err := ParseSchema([]byte(`{"objects":[{"name":"Wide__c","fields":[
		{"name":"Ext__c","type":"string","length":20,"externalId":true,"unique":true},
		{"name":"Amount__c","type":"currency","precision":18,"scale":2},
		{"name":"Count__c","type":"int"},
		{"name":"Flag__c","type":"boolean"},
		{"name":"Status__c","type":"picklist","picklistValues":["A","B","C"]},
		{"name":"Due__c","type":"date"},
		{"name":"Note__c","type":"string","length":80},
		{"name":"Email__c","type":"email"},
		{"name":"Score__c","type":"double","precision":18,"scale":4},
		{"name":"Code__c","type":"string","length":10},
		{"name":"Region__c","type":"string","length":40}]}]}`))
	require.NoError(b, err)
	for i := 0; i < b.N; i++ {
		s, err := New(Config{Schema: schema})
		require.NoError(b, err)
		o := s.cat.Object("Wide__c")
		require.Equal(b, 20, o.stored, "the object has 20 stored fields")
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		due := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		start := time.Now()
		_, err = s.Seed(b.Context(), "Wide__c", n, func(i int) map[string]any {
			return map[string]any{
				"Name": fmt.Sprintf("Record %07d", i), "Ext__c": fmt.Sprintf("EXT-%07d", i), "Amount__c": json.Number(fmt.Sprintf("%d.%02d", i, i%100)),
				"Count__c": i, "Flag__c": i%2 == 0, "Status__c": "B", "Due__c": due.AddDate(0, 0, i%365),
				"Note__c": "a note of moderate length", "Email__c": fmt.Sprintf("u%d@example.com", i), "Score__c": json.Number("12.5"),
				"Code__c": fmt.Sprintf("C%d", i%1000), "Region__c": "EMEA",
			}
		})
		require.NoError(b, err)
		load := time.Since(start)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(heap/n, "bytes/record")
		b.ReportMetric(heap/(1<<20), "heapMB")
		b.ReportMetric(float64(n)/load.Seconds(), "records/s")
		require.Less(b, heap, float64(2<<30), "a million records fit in 2 GB")
		runtime.KeepAlive(s)
	}
}
