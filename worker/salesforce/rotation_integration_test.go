package salesforce_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

// With "Enable Refresh Token Rotation" on the connected app, every refresh
// answers a new refresh token and invalidates the one used. A worker that
// kept the new one only in memory could not log in again once restarted
// with its configuration: the configured token had been used up.
func TestAWorkerRestartedAfterItsRefreshTokenRotatedLogsInAgain(t *testing.T) {
	s := simtest.Start(t, func(c *sim.Config) { c.RotateRefreshTokens = true })
	cfg := salesforce.Config{LoginURL: s.URL(), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		RefreshToken: s.IssueRefreshToken(), RefreshTokenFile: filepath.Join(t.TempDir(), "refresh_token")}
	c, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	s.ExpireSessions()
	_, err = c.Limits(t.Context())
	require.NoError(t, err, "a refresh with the rotated token")

	// The worker restarts with the same configuration.
	c2, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	_, err = c2.Limits(t.Context())
	require.NoError(t, err)
}
