package sql_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	pgforcesql "github.com/pgforce/pgforce/sql"
)

func TestInstallOnEmptyDatabaseInstallsCurrentVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmptyDB(t)

	from, to, err := pgforcesql.Install(ctx, db.Conn)
	require.NoError(t, err)
	require.Empty(t, from)
	require.Equal(t, pgforcesql.Version, to)

	var version string
	require.NoError(t, db.Conn.QueryRow(ctx, "SELECT version FROM pgforce.schema_version").Scan(&version))
	require.Equal(t, pgforcesql.Version, version)
	var orgs []string
	rows, err := db.Conn.Query(ctx, "SELECT name FROM pgforce.org")
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		orgs = append(orgs, n)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"default"}, orgs)
}
