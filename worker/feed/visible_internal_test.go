package feed

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
)

// pgoutput sends 32-bit xids; whether a commit is visible yet is decided on
// full ones. A cluster long past its first xid wraparound must still tell a
// transaction just committed (at or above the snapshot's xmax) from an old
// one, and a transaction of the previous epoch is old.
func TestThirtyTwoBitXidsWidenToTheFullXidNearestTheSnapshotsXmaxInAnyEpoch(t *testing.T) {
	db := pgtest.NewDB(t)
	epoch := func(e int64) int64 { return e << 32 }
	cases := []struct {
		xmax int64
		xids []int64
		full []int64
	}{
		{epoch(2) + 8, []int64{5, 8, 9, 100, 4294967290}, []int64{epoch(2) + 5, epoch(2) + 8, epoch(2) + 9, epoch(2) + 100, epoch(1) + 4294967290}},
		// Just after a wraparound: xids from the end of the last epoch.
		{epoch(3) + 2, []int64{4294967295, 1, 3}, []int64{epoch(2) + 4294967295, epoch(3) + 1, epoch(3) + 3}},
		// Just before one: a running xid of the next epoch.
		{epoch(3) - 2, []int64{4294967290, 0x7fffffff, 1}, []int64{epoch(2) + 4294967290, epoch(2) + 0x7fffffff, epoch(3) + 1}},
		{110, []int64{99, 110, 4000}, []int64{99, 110, 4000}},
	}
	for _, c := range cases {
		var full []int64
		require.NoError(t, db.Conn.QueryRow(context.Background(),
			`SELECT array_agg(`+widenedXid("x", "$2::bigint")+` ORDER BY o) FROM unnest($1::bigint[]) WITH ORDINALITY AS u(x, o)`, c.xids, c.xmax).Scan(&full))
		require.Equal(t, c.full, full, "xmax %d", c.xmax)
	}
}

// A commit is awaited while a snapshot sees it running: in progress when
// the snapshot was taken, or at or above its xmax.
func TestCommitIsAwaitedWhileASnapshotSeesItRunning(t *testing.T) {
	db := pgtest.NewDB(t)
	for snapshot, want := range map[string][]int64{
		"100:110:105":     {105, 110, 111},
		"100:110:":        {110, 111},
		"100:110:101,108": {101, 108, 110, 111},
	} {
		var running []int64
		require.NoError(t, db.Conn.QueryRow(context.Background(), stillRunningSQL, []int64{99, 101, 105, 108, 109, 110, 111}, snapshot).Scan(&running), snapshot)
		require.Equal(t, want, running, snapshot)
	}
	// A new snapshot: this session's own transaction, which holds an xid, is
	// running; an xid long done is not.
	tx, err := db.Conn.Begin(context.Background())
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	var own int64
	require.NoError(t, tx.QueryRow(context.Background(), `SELECT (pg_current_xact_id()::text::bigint) & 4294967295`).Scan(&own))
	other := db.Connect(t)
	var running []int64
	require.NoError(t, other.QueryRow(context.Background(), stillRunningSQL, []int64{3, own}, nil).Scan(&running))
	require.Equal(t, []int64{own}, running)
}

// The monitor may be busy asking Postgres about earlier commits while the
// stream receives thousands more; every one must still reach it, in order,
// or its wake-up is lost.
func TestCommitsReachTheMonitorInOrderHoweverFarItFallsBehind(t *testing.T) {
	q := newXidQueue()
	const n = 100_000
	for xid := uint32(1); xid <= n/2; xid++ {
		q.push(xid)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for xid := uint32(n/2 + 1); xid <= n; xid++ {
			q.push(xid)
		}
	}()
	var got []uint32
	for len(got) < n {
		select {
		case <-q.ready:
			got = append(got, q.take()...)
		case <-t.Context().Done():
			t.Fatal("timed out")
		}
	}
	<-done
	want := make([]uint32, n)
	for i := range want {
		want[i] = uint32(i + 1)
	}
	require.Equal(t, want, got)
	require.Empty(t, q.take())
}
