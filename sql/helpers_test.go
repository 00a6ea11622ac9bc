package sql_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
)

// testBundle is what most tests need: a fresh database with pgforce.
type testBundle struct {
	db   *pgtest.DB
	conn *pgx.Conn
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := pgtest.NewDB(t)
	return &testBundle{db: db, conn: db.Conn}
}

func (b *testBundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.conn.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

func (b *testBundle) scalar(t *testing.T, dst any, sql string, args ...any) {
	t.Helper()
	require.NoError(t, b.conn.QueryRow(context.Background(), sql, args...).Scan(dst), sql)
}

// refused runs sql and requires it to fail with a message and a hint that
// contain the given texts.
func (b *testBundle) refused(t *testing.T, message, hint, sql string, args ...any) *pgconn.PgError {
	t.Helper()
	_, err := b.conn.Exec(context.Background(), sql, args...)
	require.Error(t, err, sql)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "not a Postgres error: %v", err)
	require.Contains(t, pgErr.Message, message)
	require.Contains(t, pgErr.Hint, hint)
	return pgErr
}

// accountColumns is what the worker passes to ensure_table after describing
// Account with these fields.
const accountColumns = `[
	{"name":"Id","type":"id","length":18},
	{"name":"SystemModstamp","type":"datetime"},
	{"name":"IsDeleted","type":"boolean"},
	{"name":"CreatedDate","type":"datetime"},
	{"name":"Name","type":"string","length":255},
	{"name":"Industry","type":"picklist","length":40},
	{"name":"AnnualRevenue","type":"currency","precision":18,"scale":2}
]`

// mapAccount maps Account in the given mode and creates its table.
func (b *testBundle) mapAccount(t *testing.T, mode string) int {
	t.Helper()
	var id int
	b.scalar(t, &id, `INSERT INTO pgforce.mapping (sobject, fields, mode) VALUES ('Account', '{Name,Industry,AnnualRevenue}', $1) RETURNING id`, mode)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, id, accountColumns)
	return id
}

// syncedAccounts inserts n accounts as the worker loading them would:
// sfids 001000000000000001 and on, names a1..an, annualrevenue 1..n.
func (b *testBundle) syncedAccounts(t *testing.T, n int) {
	t.Helper()
	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name, annualrevenue)
		SELECT '001' || lpad(i::text, 15, '0'), 'a' || i, i FROM generate_series(1, $1::integer) i`, n)
}

// asWorker runs sql as the worker applying Salesforce changes.
func (b *testBundle) asWorker(t *testing.T, sql string, args ...any) {
	t.Helper()
	b.inWorkerTx(t, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), sql, args...)
		return err
	})
}

// inWorkerTx runs fn in a transaction of the worker's (pgforce.origin =
// 'salesforce'), and commits it.
func (b *testBundle) inWorkerTx(t *testing.T, fn func(tx pgx.Tx) error) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "SET LOCAL pgforce.origin = 'salesforce'")
	require.NoError(t, err)
	require.NoError(t, fn(tx))
	require.NoError(t, tx.Commit(ctx))
}

type outboxEntry struct {
	Op       string
	RecordID int
	SFID     *string
	New      map[string]any
	Old      map[string]any
}

func (b *testBundle) outbox(t *testing.T) []outboxEntry {
	t.Helper()
	rows, err := b.conn.Query(context.Background(), `SELECT op, record_id, sfid, new, old FROM pgforce.outbox ORDER BY id`)
	require.NoError(t, err)
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxEntry, error) {
		var e outboxEntry
		err := row.Scan(&e.Op, &e.RecordID, &e.SFID, &e.New, &e.Old)
		return e, err
	})
	require.NoError(t, err)
	return entries
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func contextWithShortTimeout(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), 300*time.Millisecond)
}

// afterTrigger gives salesforce.account an application's AFTER ... FOR
// EACH ROW trigger, name, on event, running body (PL/pgSQL statements).
func (b *testBundle) afterTrigger(t *testing.T, name, event, body string) {
	t.Helper()
	b.exec(t, fmt.Sprintf(`CREATE FUNCTION public.%s() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN%s
			RETURN NULL;
		END $$`, name, body))
	b.exec(t, fmt.Sprintf(`CREATE TRIGGER %[1]s AFTER %[2]s ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.%[1]s()`, name, event))
}
