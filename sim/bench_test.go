package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
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

// BenchmarkCollectionsUpdateSmallCalls measures small sObject Collections updates (10 records per call) from
// 8 concurrent clients over real HTTP: the shape of a sync worker flushing changes as they come, where the
// per-call cost (HTTP, auth, the transaction, change events) dominates. It reports calls per second.
func BenchmarkCollectionsUpdateSmallCalls(b *testing.B) {
	const perCall, clients = 10, 8
	bd := setup(b)
	_, err := bd.srv.Seed(b.Context(), "Account", perCall*clients*4, func(i int) map[string]any { return map[string]any{"Name": fmt.Sprint("A", i)} })
	require.NoError(b, err)
	var ids []string
	for _, r := range bd.srv.store.Snapshot(b.Context(), bd.srv.cat.Object("Account"), false) {
		ids = append(ids, r.id())
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}
	var worker atomic.Int64
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := int(worker.Add(1) - 1)
		mine := ids[(w*perCall)%len(ids):][:perCall]
		var buf bytes.Buffer
		for n := 0; pb.Next(); n++ {
			buf.Reset()
			buf.WriteString(`{"allOrNone":false,"records":[`)
			for j, id := range mine {
				if j > 0 {
					buf.WriteByte(',')
				}
				fmt.Fprintf(&buf, `{"attributes":{"type":"Account"},"Id":"%s","Name":"N%d-%d","AnnualRevenue":%d}`, id, n, j, n)
			}
			buf.WriteString(`]}`)
			req, _ := http.NewRequest("PATCH", bd.http.URL+"/services/data/v62.0/composite/sobjects", bytes.NewReader(buf.Bytes()))
			req.Header.Set("Authorization", "Bearer "+bd.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(b.N*perCall)/elapsed.Seconds(), "records/s")
}
