package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	pgsql "github.com/pgforce/pgforce/sql"
	"github.com/pgforce/pgforce/worker"
	"github.com/pgforce/pgforce/worker/config"
)

// pgforce is installed by a role that owns the database (so it may create
// in public, through pg_database_owner), and the worker logs in as a member
// of it, which the README allows ("the role the worker runs as, or a
// member of it"). The role that can create in public is pgforce's owner
// itself, whose rights the worker has and whose functions it runs: nothing
// it could plant is a risk the worker does not already take. The worker
// refused to start, naming pgforce's own owner as the untrusted writer.
func TestRunStartsAsAMemberOfPgforcesOwnerThatOwnsTheDatabase(t *testing.T) {
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	own, wrk := "pgforce_owner_"+suffix, "pgforce_worker_"+suffix
	admin, err := pgx.Connect(ctx, pgtest.AdminConnString(t))
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s NOLOGIN; CREATE ROLE %s LOGIN IN ROLE %[1]s`, own, wrk))
	require.NoError(t, err)
	t.Cleanup(func() { // after the database is dropped (cleanups run last first)
		c, err := pgx.Connect(context.Background(), pgtest.AdminConnString(t))
		if err == nil {
			_, _ = c.Exec(context.Background(), fmt.Sprintf("DROP ROLE IF EXISTS %s; DROP ROLE IF EXISTS %s", wrk, own))
			c.Close(context.Background())
		}
	})
	db := pgtest.NewEmptyDB(t)
	_, err = db.Conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s OWNER TO %s`, pgx.Identifier{db.Name}.Sanitize(), own))
	require.NoError(t, err)
	_, err = db.Conn.Exec(ctx, "SET ROLE "+own)
	require.NoError(t, err)
	_, _, err = pgsql.Install(ctx, db.Conn)
	require.NoError(t, err, "pgforce installs as the database's owner")
	_, err = db.Conn.Exec(ctx, "RESET ROLE")
	require.NoError(t, err)

	u, err := url.Parse(db.ConnString)
	require.NoError(t, err)
	u.User = url.User(wrk)
	// No Salesforce behind this URL: a worker past its database checks
	// fails at the login.
	cfg := &config.Config{DatabaseURL: u.String(), LoginURL: "http://127.0.0.1:1", ClientID: "x", ClientSecret: "y", Org: "default", LogLevel: "info", HTTPAddr: freeAddr(t)}
	err = worker.Run(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "is not safe", "refused for pgforce's own owner")
	require.Contains(t, err.Error(), "salesforce login")
}
