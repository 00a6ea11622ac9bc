package outbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/budget"
)

// slotBehind is how many bytes of WAL the database's slot keeps behind
// the server's current position (from its confirmed position).
func (b *bundle) slotBehind(t *testing.T) int64 {
	var n int64
	b.scalar(t, &n, `SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn))::bigint, -1)
		FROM pg_replication_slots WHERE database = current_database()`)
	return n
}

// Writes held by the API budget wait for hours (the allocation is a
// rolling 24 hours) inside a drain cycle. The changes are safe in the
// outbox meanwhile, and the stream only says "look", yet the slot stays
// at the last commit received before that cycle began: it pins every byte
// of WAL the whole server writes for as long as the budget holds, which
// on a busy server fills the disk, with nothing in pgforce.status to say
// so. The slot must keep moving while writes are held.
func TestWritesHeldByTheAPIBudgetDoNotPinTheServersWAL(t *testing.T) {
	for _, held := range []bool{false, true} {
		name := "flowing"
		if held {
			name = "held"
		}
		t.Run(name, func(t *testing.T) {
			b := setup(t, setupOptions{})
			opts := fastOptions()
			if held {
				opts.Budget = budget.New(func() (int, int) { return 60_000, 100_000 }, 50)
				opts.Budget.SetProbe(nil, 100*time.Millisecond)
			}
			b.start(t, opts)
			eventually(t, 10*time.Second, "streaming", func() bool { return b.feedStatus(t) == "logical_replication" })
			var row int
			b.scalar(t, &row, `INSERT INTO salesforce.account (name) VALUES ('A change') RETURNING id`)
			time.Sleep(time.Second)

			// The application and everything else on the server go on
			// writing: 40 MB of WAL or so.
			b.exec(t, `CREATE TABLE public.other_app (g int, pad text)`)
			for i := 0; i < 4; i++ {
				b.exec(t, `INSERT INTO public.other_app SELECT g, repeat('x', 400) FROM generate_series(1, 20000) g`)
			}
			var behind int64
			deadline := time.Now().Add(20 * time.Second)
			for {
				behind = b.slotBehind(t)
				if behind >= 0 && behind < 4<<20 || time.Now().After(deadline) {
					break
				}
				// Commits nobody publishes, as on any live server.
				_, _ = b.pool.Exec(context.Background(), `INSERT INTO public.other_app VALUES (0, 'tick')`)
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("%s: the slot keeps %d MB of WAL behind the server", name, behind>>20)
			require.Less(t, behind, int64(4<<20), "the slot pins the server's WAL")
		})
	}
}
