package cometd

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReplayIDsAreMonotonicAcrossEntitiesAndConcurrentPublishers(t *testing.T) {
	t.Parallel()
	bus := NewBus(0, nil)
	var wg sync.WaitGroup
	ids := make(chan int64, 400)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				ids <- bus.Publish([]string{"Account", "Contact", "Widget__c", "Lead"}[g], map[string]any{"n": i})
			}
		}(g)
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		require.False(t, seen[id], "replay id %d assigned twice", id)
		seen[id] = true
	}
	require.Len(t, seen, 400)
	require.Equal(t, int64(400), bus.Latest())
	events := bus.Since(0, 1000)
	for i := 1; i < len(events); i++ {
		require.Greater(t, events[i].ReplayID, events[i-1].ReplayID)
	}
}

func TestSinceReturnsDecodedEventsAfterAReplayID(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	bus := NewBus(time.Hour, clock.Now)
	bus.Publish("Account", map[string]any{"Name": "a"})
	bus.Publish("Widget__c", map[string]any{"Size__c": 3})
	got := bus.Since(1, 10)
	require.Len(t, got, 1)
	require.Equal(t, Event{ReplayID: 2, Entity: "Widget__c", Payload: map[string]any{"Size__c": json.Number("3")},
		CreatedDate: clock.Now()}, got[0])
}

func TestResetRestartsReplayIDs(t *testing.T) {
	t.Parallel()
	bus := NewBus(0, nil)
	bus.Publish("Account", map[string]any{})
	bus.Reset()
	require.Equal(t, 0, bus.Len())
	require.Equal(t, int64(1), bus.Publish("Account", map[string]any{}))
}

// The bus must retain hundreds of thousands of events (72 hours of a busy org) without ballooning: each event
// costs its JSON text plus a small fixed overhead.
func TestBusRetainsHundredsOfThousandsOfEventsCompactly(t *testing.T) {
	const n = 300_000
	bus := NewBus(0, nil)
	payload := map[string]any{
		"ChangeEventHeader": map[string]any{"entityName": "Account", "recordIds": []string{"001R0000001AbCdIAK"},
			"changeType": "UPDATE", "changeOrigin": "com/salesforce/api/rest/62.0;client=pgforce",
			"transactionKey": "00006bec-ce66-0611-9018-30a98446c9f2", "sequenceNumber": 1,
			"commitTimestamp": 1714156685000, "commitNumber": 1100670838951, "commitUser": "005R0000001AbCdIAK",
			"changedFields": []string{"Name", "LastModifiedDate"}},
		"Name": "Acme", "LastModifiedDate": "2024-04-26T18:38:05.000Z",
	}
	encoded, err := json.Marshal(payload)
	require.NoError(t, err)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		bus.Publish("Account", payload)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEvent := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("payload %d bytes, retained heap per event %.0f bytes", len(encoded), perEvent)
	require.Less(t, perEvent, float64(len(encoded))+350, "an event costs its JSON text plus a small fixed overhead")
	require.Equal(t, n, bus.Len())

	start := time.Now()
	after2 := bus.Since(n-10, 100)
	require.Len(t, after2, 10)
	require.Equal(t, int64(n), after2[9].ReplayID)
	require.Less(t, time.Since(start), 100*time.Millisecond, "finding a replay position is a binary search")
}

func BenchmarkPublish(b *testing.B) {
	bus := NewBus(0, nil)
	payload := map[string]any{"ChangeEventHeader": map[string]any{"entityName": "Account", "changeType": "UPDATE"},
		"Name": "Acme"}
	for i := 0; i < b.N; i++ {
		bus.Publish(fmt.Sprintf("Entity%d", i%4), payload)
	}
}
