package inbound_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// An object nobody changes for over a month (a price book, a reference
// table) keeps its inbound watermark at its newest record. Every poll
// then asked the deleted-records resource for a window starting more
// than 30 days back, which Salesforce refuses (400
// INVALID_REPLICATION_DATE): no poll of the mapping completed any more,
// and records purged from the recycle bin were never seen.
func TestPollingAnObjectUnchangedForOverAMonthKeepsWorking(t *testing.T) {
	var shift atomic.Int64
	shift.Store(int64(-40 * 24 * time.Hour))
	e := newEnvWith(t, sim.Config{Schema: gadgetSchema, Clock: func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }})
	// The records were last changed forty days ago.
	ids := e.create("Gadget__c", map[string]any{"Name": "Old 1", "Code__c": "a"}, map[string]any{"Name": "Old 2", "Code__c": "b"})
	shift.Store(0)
	id := e.mapSynced("Gadget__c", []string{"Name", "Code__c"}, "poll")
	require.Equal(t, "a", e.value("gadget__c", ids[0], "code__c"))
	require.True(t, strings.HasPrefix(e.value("gadget__c", ids[0], "systemmodstamp"), time.Now().Add(-40*24*time.Hour).UTC().Format("2006-01-02")))

	// Its polls go on without error: the state never reports a failed attempt.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		st, detail := e.state(id)
		require.False(t, strings.Contains(detail, "error"), "poll of a quiet object failed: state %s (%s)", st, detail)
		time.Sleep(50 * time.Millisecond)
	}
}
