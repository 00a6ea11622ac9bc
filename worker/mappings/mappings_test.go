package mappings_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/worker/mappings"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newPool(t *testing.T) (*pgtest.DB, *pgxpool.Pool) {
	db := pgtest.NewDB(t)
	pool, err := pgxpool.New(context.Background(), db.ConnString)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return db, pool
}

func TestWatchSeesInsertedAndPausedMappingsWithoutRestart(t *testing.T) {
	db, pool := newPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []mappings.Mapping, 16)
	go mappings.Watch(ctx, pool, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ms []mappings.Mapping) { got <- ms })

	require.Empty(t, <-got, "the first call lists the (empty) mapping set")
	// Watch may re-read more than once per change (the listener also signals
	// when it connects), so wait for the list that shows the change.
	await := func(what string, ok func([]mappings.Mapping) bool) []mappings.Mapping {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ms := <-got:
				if ok(ms) {
					return ms
				}
			case <-deadline:
				t.Fatal("no re-read after " + what)
			}
		}
	}
	_, err := db.Conn.Exec(ctx, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Account', '{Name}')`)
	require.NoError(t, err)
	ms := await("INSERT INTO pgforce.mapping", func(ms []mappings.Mapping) bool { return len(ms) == 1 })
	require.Equal(t, "Account", ms[0].SObject)
	require.Equal(t, "salesforce", ms[0].Schema)
	require.Equal(t, `"salesforce"."account"`, ms[0].Table())
	require.Equal(t, time.Minute, ms[0].PollInterval)
	require.False(t, ms[0].Paused)

	_, err = db.Conn.Exec(ctx, `SELECT pgforce.pause('Account')`)
	require.NoError(t, err)
	ms = await("pgforce.pause", func(ms []mappings.Mapping) bool { return len(ms) == 1 && ms[0].Paused })
	require.Equal(t, mappings.StatePaused, ms[0].State)
}

func TestInboundLeaseIsHeldByOneWorkerUntilItExpires(t *testing.T) {
	db, _ := newPool(t)
	ctx := context.Background()
	var id int
	require.NoError(t, db.Conn.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Account', '{Name}') RETURNING id`).Scan(&id))
	claim := func(owner, lease string) bool {
		var ok bool
		require.NoError(t, db.Conn.QueryRow(ctx, `SELECT pgforce.inbound_claim($1, $2, $3::interval)`, id, owner, lease).Scan(&ok))
		return ok
	}
	require.True(t, claim("a", "200 milliseconds"))
	require.False(t, claim("b", "1 minute"), "a live lease belongs to its owner")
	require.True(t, claim("a", "200 milliseconds"), "the owner renews")
	time.Sleep(300 * time.Millisecond)
	require.True(t, claim("b", "1 minute"), "an expired lease is taken over")
	_, err := db.Conn.Exec(ctx, `SELECT pgforce.inbound_release($1, 'b')`, id)
	require.NoError(t, err)
	_, err = db.Conn.Exec(ctx, `SELECT pgforce.pause($1::integer)`, id)
	require.NoError(t, err)
	require.False(t, claim("a", "1 minute"), "a paused mapping is never claimed")
}

func TestEditingFieldsOfMappingInErrorDescribesItAgain(t *testing.T) {
	db, pool := newPool(t)
	ctx := context.Background()
	var id int
	require.NoError(t, db.Conn.QueryRow(ctx, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Account', '{Nme}') RETURNING id`).Scan(&id))
	require.NoError(t, mappings.SetState(ctx, pool, id, mappings.StateError, "no field Nme"))
	_, err := db.Conn.Exec(ctx, `UPDATE pgforce.mapping SET fields = '{Name}' WHERE id = $1`, id)
	require.NoError(t, err)
	m, err := mappings.Get(ctx, pool, id)
	require.NoError(t, err)
	require.Equal(t, mappings.StateNew, m.State)
}
