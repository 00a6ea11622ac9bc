package pgtest_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDBHasPgforceInstalledAndIsIsolated(t *testing.T) {
	t.Parallel()
	a, b := pgtest.NewDB(t), pgtest.NewDB(t)
	require.NotEqual(t, a.Name, b.Name)
	_, err := a.Conn.Exec(t.Context(), `INSERT INTO pgforce.mapping (sobject) VALUES ('Account')`)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.Conn.QueryRow(t.Context(), `SELECT count(*) FROM pgforce.mapping`).Scan(&n))
	require.Zero(t, n, "databases of different tests share nothing")
}

func TestNewEmptyDBHasNoPgforce(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDB(t)
	var installed bool
	require.NoError(t, db.Conn.QueryRow(t.Context(), `SELECT to_regnamespace('pgforce') IS NOT NULL`).Scan(&installed))
	require.False(t, installed)
}

func TestServerIsReadyForLogicalReplication(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDB(t)
	settings := map[string]string{}
	rows, err := db.Pool(t).Query(t.Context(), `SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders')`)
	require.NoError(t, err)
	for rows.Next() {
		var name, setting string
		require.NoError(t, rows.Scan(&name, &setting))
		settings[name] = setting
	}
	require.NoError(t, rows.Err())
	require.Equal(t, "logical", settings["wal_level"])
	for _, name := range []string{"max_replication_slots", "max_wal_senders"} {
		n, err := strconv.Atoi(settings[name])
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, 10, name)
	}
}

func TestClusterListensOnlyOnItsOwnSocket(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDB(t)
	var listen, sockets string
	require.NoError(t, db.Conn.QueryRow(t.Context(), `SELECT current_setting('listen_addresses'), current_setting('unix_socket_directories')`).Scan(&listen, &sockets))
	if pgtest.UsingExternalServer() {
		// Nothing to check about a server we did not start; the query above
		// still proved it answers.
		return
	}
	require.Empty(t, listen)
	require.Contains(t, sockets, "pgforce-pgtest-")
}
