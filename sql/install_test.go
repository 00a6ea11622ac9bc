package sql_test

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

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

func TestInstallTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t) // installed once already, from the template
	before := catalog(t, db.Conn)
	_, err := db.Conn.Exec(ctx, `INSERT INTO pgforce.mapping (sobject) VALUES ('Account')`)
	require.NoError(t, err)

	from, to, err := pgforcesql.Install(ctx, db.Conn)
	require.NoError(t, err)
	require.Equal(t, pgforcesql.Version, from)
	require.Equal(t, pgforcesql.Version, to)
	require.Equal(t, before, catalog(t, db.Conn))
	var versions, mappings int
	require.NoError(t, db.Conn.QueryRow(ctx, `SELECT count(*) FROM pgforce.schema_version`).Scan(&versions))
	require.NoError(t, db.Conn.QueryRow(ctx, `SELECT count(*) FROM pgforce.mapping`).Scan(&mappings))
	require.Equal(t, 1, versions)
	require.Equal(t, 1, mappings)
}

// fakeRelease is a two-version history of a tiny schema, to exercise the
// upgrade walk without waiting for a real second release.
var fakeRelease = fstest.MapFS{
	"010_schema.sql": {Data: []byte(`CREATE SCHEMA pgforce;
		CREATE TABLE pgforce.schema_version (version text PRIMARY KEY, installed_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE pgforce.thing (id int PRIMARY KEY);`)},
	"upgrade/0.0.1--0.0.2.sql": {Data: []byte(`ALTER TABLE pgforce.thing ADD COLUMN label text;`)},
	"upgrade/0.0.2--0.0.3.sql": {Data: []byte(`CREATE INDEX thing_label_idx ON pgforce.thing (label);`)},
	"upgrade/README.md":        {Data: []byte(`not a step`)},
}

func TestInstallUpgradesAnOlderInstallThroughEachStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmptyDB(t)

	from, to, err := pgforcesql.InstallFS(ctx, db.Conn, fakeRelease, "0.0.1")
	require.NoError(t, err)
	require.Equal(t, "", from)
	require.Equal(t, "0.0.1", to)

	from, to, err = pgforcesql.InstallFS(ctx, db.Conn, fakeRelease, "0.0.3")
	require.NoError(t, err)
	require.Equal(t, "0.0.1", from)
	require.Equal(t, "0.0.3", to)
	var hasLabel, hasIndex bool
	require.NoError(t, db.Conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'pgforce' AND table_name = 'thing' AND column_name = 'label'),
		to_regclass('pgforce.thing_label_idx') IS NOT NULL`).Scan(&hasLabel, &hasIndex))
	require.True(t, hasLabel)
	require.True(t, hasIndex)
	var versions []string
	rows, err := db.Conn.Query(ctx, `SELECT version FROM pgforce.schema_version ORDER BY version`)
	require.NoError(t, err)
	versions, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"0.0.1", "0.0.2", "0.0.3"}, versions)

	// An older binary refuses to touch the newer database.
	_, _, err = pgforcesql.InstallFS(ctx, db.Conn, fakeRelease, "0.0.2")
	require.ErrorContains(t, err, "this database has pgforce 0.0.3, newer than this binary's 0.0.2")
	// A version with no path is refused without changes.
	_, _, err = pgforcesql.InstallFS(ctx, db.Conn, fakeRelease, "0.1.0")
	require.ErrorContains(t, err, "no upgrade path from pgforce 0.0.3 to 0.1.0")
}

func TestFailedUpgradeLeavesTheDatabaseAsItWas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmptyDB(t)
	broken := fstest.MapFS{
		"010_schema.sql":           fakeRelease["010_schema.sql"],
		"upgrade/0.0.1--0.0.2.sql": {Data: []byte(`ALTER TABLE pgforce.thing ADD COLUMN label text; SELECT 1/0;`)},
	}
	_, _, err := pgforcesql.InstallFS(ctx, db.Conn, broken, "0.0.1")
	require.NoError(t, err)
	_, _, err = pgforcesql.InstallFS(ctx, db.Conn, broken, "0.0.2")
	require.ErrorContains(t, err, "upgrade pgforce 0.0.1 to 0.0.2")
	var hasLabel bool
	require.NoError(t, db.Conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'pgforce' AND column_name = 'label')`).Scan(&hasLabel))
	require.False(t, hasLabel)
}

func TestConcurrentInstallsInstallOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmptyDB(t)
	conns := []*pgx.Conn{db.Conn, db.Connect(t), db.Connect(t)}
	results := make(chan string, len(conns))
	errs := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			from, _, err := pgforcesql.Install(ctx, c)
			results <- from
			errs <- err
		}()
	}
	var fresh int
	for range conns {
		require.NoError(t, <-errs)
		if <-results == "" {
			fresh++
		}
	}
	require.Equal(t, 1, fresh, "exactly one installer installs; the others find it installed")
}

func TestInstallRefusesASchemaItDidNotCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmptyDB(t)
	_, err := db.Conn.Exec(ctx, `CREATE SCHEMA pgforce`)
	require.NoError(t, err)
	_, _, err = pgforcesql.Install(ctx, db.Conn)
	require.ErrorContains(t, err, "schema pgforce exists but holds no pgforce.schema_version")
}

func TestScriptHoldsEveryNumberedFileInOrder(t *testing.T) {
	t.Parallel()
	s := pgforcesql.Script()
	prev := -1
	files, err := filepath.Glob("[0-9][0-9][0-9]_*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	sort.Strings(files)
	for _, name := range files {
		i := strings.Index(s, "-- "+name+"\n")
		require.Greater(t, i, prev, name)
		prev = i
	}
}
