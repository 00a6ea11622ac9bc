package feed

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// The two causes a new install meets are named with their fix, in the
// words of Postgres 15 and of later versions; anything else is left as it
// is.
func TestWhyLogicalReplicationIsUnavailableComesWithItsFix(t *testing.T) {
	walLevel := &pgconn.PgError{Code: "55000", Message: "logical decoding requires wal_level >= logical"}
	require.Contains(t, replicationFix(walLevel), "set wal_level = logical")
	for _, msg := range []string{"must be superuser or replication role to start walsender", "permission denied to start WAL sender"} {
		require.Contains(t, replicationFix(&pgconn.PgError{Code: "42501", Message: msg}), "REPLICATION attribute", msg)
	}
	require.Empty(t, replicationFix(errors.New("connection refused")))
}
