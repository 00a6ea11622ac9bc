package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	pgsql "github.com/pgforce/pgforce/sql"
)

func TestInstallInstallsThenReportsAlreadyInstalled(t *testing.T) {
	db := pgtest.NewEmptyDB(t)
	t.Setenv("DATABASE_URL", db.ConnString)

	code, out, errOut := run(t, "install")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "installed pgforce "+pgsql.Version+"\n", out)

	code, out, errOut = run(t, "install")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "pgforce "+pgsql.Version+" is already installed\n", out)

	var n int
	require.NoError(t, db.Conn.QueryRow(t.Context(), `SELECT count(*) FROM pgforce.org WHERE name = 'default'`).Scan(&n))
	require.Equal(t, 1, n)
}

func TestInstallWithoutDatabaseURLExplainsWhatToSet(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	code, _, errOut := run(t, "install")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "set DATABASE_URL")
}

func TestInstallRefusesExtraArguments(t *testing.T) {
	code, _, errOut := run(t, "install", "now")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unexpected argument "now"`)
}
