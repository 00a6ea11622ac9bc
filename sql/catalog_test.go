package sql_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	pgforcesql "github.com/pgforce/pgforce/sql"
)

// catalogQueries describe every object in schema pgforce, one text line per
// object, in an order that does not depend on OIDs or creation order.
var catalogQueries = map[string]string{
	"relations": `SELECT c.relname || ' ' || c.relkind::text || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
		FROM pg_class c WHERE c.relnamespace = 'pgforce'::regnamespace`,
	"columns": `SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
			|| ' notnull=' || a.attnotnull || ' identity=' || a.attidentity::text
			|| ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
			|| ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
		WHERE c.relnamespace = 'pgforce'::regnamespace`,
	"constraints": `SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE connamespace = 'pgforce'::regnamespace`,
	"indexes": `SELECT indexdef FROM pg_indexes WHERE schemaname = 'pgforce'`,
	"functions": `SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || pg_get_function_result(p.oid)
			|| ' ' || p.prokind::text || ' ' || p.provolatile::text || ' secdef=' || p.prosecdef
			|| ' config=' || coalesce(array_to_string(p.proconfig, ','), '') || ' lang=' || l.lanname
			|| ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '') || E'\n' || p.prosrc
		FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.pronamespace = 'pgforce'::regnamespace`,
	"triggers": `SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		WHERE c.relnamespace = 'pgforce'::regnamespace AND NOT t.tgisinternal`,
	"views": `SELECT c.relname || E'\n' || pg_get_viewdef(c.oid) FROM pg_class c
		WHERE c.relnamespace = 'pgforce'::regnamespace AND c.relkind = 'v'`,
	"types": `SELECT t.typname || ' ' || t.typtype::text FROM pg_type t WHERE t.typnamespace = 'pgforce'::regnamespace`,
	"publications": `SELECT p.pubname || ' ' || pr.prrelid::regclass || ' ins=' || p.pubinsert || ' upd=' || p.pubupdate || ' del=' || p.pubdelete
		FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid`,
}

func catalog(t *testing.T, conn *pgx.Conn) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	for name, q := range catalogQueries {
		rows, err := conn.Query(ctx, "SELECT line FROM ("+q+") x(line) ORDER BY line")
		require.NoError(t, err, name)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err, name)
		out[name] = lines
	}
	return out
}

// createExtension runs CREATE EXTENSION pgforce, failing with the fix when
// the extension files are not in the server's share directory.
func createExtension(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	_, err := conn.Exec(context.Background(), "CREATE EXTENSION pgforce")
	if err != nil && (strings.Contains(err.Error(), "control file") || strings.Contains(err.Error(), "no installation script") || strings.Contains(err.Error(), "is not available")) {
		t.Fatalf("the pgforce extension is not installed in the Postgres share directory: run make install-extension (%v)", err)
	}
	require.NoError(t, err)
}

func TestExtensionAndInstallCreateTheSameCatalog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	viaExtension := pgtest.NewEmptyDB(t)
	viaInstall := pgtest.NewEmptyDB(t)

	createExtension(t, viaExtension.Conn)
	var extVersion string
	require.NoError(t, viaExtension.Conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'pgforce'").Scan(&extVersion))
	require.Equal(t, pgforcesql.Version, extVersion, "the installed extension files are stale: run make install-extension")
	_, _, err := pgforcesql.Install(ctx, viaInstall.Conn)
	require.NoError(t, err)

	ext, inst := catalog(t, viaExtension.Conn), catalog(t, viaInstall.Conn)
	for name := range catalogQueries {
		require.NotEmpty(t, inst[name], name)
		require.Equal(t, inst[name], ext[name], "pgforce %s differ between CREATE EXTENSION and pgforce install; if sql/ changed since, run make install-extension", name)
	}
}

func TestExtensionMarksConfigurationTablesForPgDump(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmptyDB(t)
	createExtension(t, db.Conn)

	rows, err := db.Conn.Query(ctx, `SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) c
		WHERE e.extname = 'pgforce' ORDER BY 1`)
	require.NoError(t, err)
	dumped, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Subset(t, dumped, []string{"pgforce.error", "pgforce.error_id_seq", "pgforce.mapping", "pgforce.mapping_id_seq",
		"pgforce.org", "pgforce.outbox", "pgforce.outbox_id_seq"})
}

func TestInstallRefusesADatabaseWithTheExtension(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDB(t)
	createExtension(t, db.Conn)

	_, _, err := pgforcesql.Install(context.Background(), db.Conn)
	require.ErrorContains(t, err, "installed as an extension")
	require.ErrorContains(t, err, "ALTER EXTENSION pgforce UPDATE")
}

func TestExtensionControlFileHasThePackageVersion(t *testing.T) {
	t.Parallel()
	control, err := os.ReadFile("../extension/pgforce.control")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^default_version\s*=\s*'([^']+)'`).FindSubmatch(control)
	require.NotNil(t, m, "default_version missing from pgforce.control")
	require.Equal(t, pgforcesql.Version, string(m[1]))
}
