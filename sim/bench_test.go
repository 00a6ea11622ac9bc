package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
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
	schema := wideSchema(b)
	for i := 0; i < b.N; i++ {
		s, err := New(Config{Schema: schema})
		require.NoError(b, err)
		o := s.cat.Object("Wide__c")
		require.Equal(b, 20, o.stored, "the object has 20 stored fields")
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		seedWide(b, s, n)
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

func wideSchema(b *testing.B) *Schema {
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
	return schema
}

// seedWide inserts n records of Wide__c with every one of its 20 fields set.
func seedWide(b *testing.B, s *Server, n int) {
	due := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err := s.Seed(b.Context(), "Wide__c", n, func(i int) map[string]any {
		return map[string]any{
			"Name": fmt.Sprintf("Record %07d", i), "Ext__c": fmt.Sprintf("EXT-%07d", i), "Amount__c": json.Number(fmt.Sprintf("%d.%02d", i, i%100)),
			"Count__c": i, "Flag__c": i%2 == 0, "Status__c": "B", "Due__c": due.AddDate(0, 0, i%365),
			"Note__c": "a note of moderate length", "Email__c": fmt.Sprintf("u%d@example.com", i), "Score__c": json.Number("12.5"),
			"Code__c": fmt.Sprintf("C%d", i%1000), "Region__c": "EMEA",
		}
	})
	require.NoError(b, err)
}

// BenchmarkBulkQueryMillionRecords runs a Bulk API 2.0 query job over 1,000,000 records of the 20-field
// object through the real HTTP server and reads every page (100,000 rows each): from job creation to the
// last byte of the last page. It reports records per second (target: 100,000 or more).
func BenchmarkBulkQueryMillionRecords(b *testing.B) {
	const n, page = 1_000_000, 100_000
	bd := setup(b, func(c *Config) { c.Schema = wideSchema(b); c.Clock = nil })
	seedWide(b, bd.srv, n)
	fields := []string{}
	for _, f := range bd.srv.cat.Object("Wide__c").Fields {
		if f.Index >= 0 {
			fields = append(fields, f.Name)
		}
	}
	query := "SELECT " + strings.Join(fields, ", ") + " FROM Wide__c"
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r := bd.do("POST", "jobs/query", map[string]any{"operation": "query", "query": query})
		require.Equal(b, http.StatusOK, r.status, string(r.body))
		id := r.object(b)["id"].(string)
		for bd.do("GET", "jobs/query/"+id, nil).object(b)["state"] != "JobComplete" {
			time.Sleep(5 * time.Millisecond)
		}
		rows, locator := 0, ""
		for locator != "null" {
			url := bd.http.URL + "/services/data/v62.0/jobs/query/" + id + "/results?maxRecords=" + fmt.Sprint(page)
			if locator != "" {
				url += "&locator=" + locator
			}
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+bd.token)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(b, err)
			lines, err := countLines(resp.Body)
			resp.Body.Close()
			require.NoError(b, err)
			rows += lines - 1 // every page repeats the header
			locator = resp.Header.Get("Sforce-Locator")
		}
		require.Equal(b, n, rows)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "records/s")
}

func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 256<<10)
	lines := 0
	for {
		k, err := r.Read(buf)
		lines += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
}

// BenchmarkChangeEventDelivery measures the time from a commit to the moment a CometD subscriber, holding a
// long-poll /meta/connect over the real HTTP server, has the event (target: at most 5 ms). It reports the
// median and the worst delivery.
func BenchmarkChangeEventDelivery(b *testing.B) {
	bd := setup(b, func(c *Config) { c.Clock = nil })
	c := newBayeux(bd)
	c.handshake()
	require.Equal(b, true, c.subscribe("/data/AccountChangeEvent", -1)["successful"])
	account := bd.srv.cat.Object("Account")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got := make(chan time.Time, 1)
		go func() {
			events := c.connect()
			if len(events) != 1 {
				b.Errorf("got %d events", len(events))
			}
			got <- time.Now()
		}()
		time.Sleep(3 * time.Millisecond) // let the connect be held
		start := time.Now()
		bd.srv.store.Apply(b.Context(), Tx{User: bd.srv.UserID()}, []Op{{Kind: "insert", Object: account, Fields: map[string]any{"Name": "Timed"}}}, true)
		lat = append(lat, (<-got).Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkDeletingAccountsWithTheirContacts deletes 5,000 Accounts with
// 100,000 Contacts through Bulk, the Contacts going with their Accounts. A
// lookup that read every Contact for each Account took about 12 s, holding
// the store's lock; the index of cascade-delete lookups costs what is
// deleted.
func BenchmarkDeletingAccountsWithTheirContacts(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := New(Config{})
		require.NoError(b, err)
		accs := seedAccountsWithContacts(b, s, 5000, 100000)
		b.StartTimer()
		res := bulkBackend{s}.Ingest(context.Background(), "delete", "Account", "", idRecords(accs))
		require.Nil(b, res[0].Err)
	}
}
