package salesforce_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

func rotatingConfig(t *testing.T, s *sim.Server, file string) salesforce.Config {
	return salesforce.Config{LoginURL: s.URL(), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		RefreshToken: s.IssueRefreshToken(), RefreshTokenFile: file}
}

// A token file the worker cannot write (here: its directory does not exist yet) must fail the start
// before the configured refresh token is spent: New used to log in first, so the connected app rotated
// the token, the new one was lost with the failing process, and once the operator fixed the path the
// configured token was used up too; only a new authorization in the browser would help.
func TestAnUnwritableTokenFileFailsTheStartWithoutSpendingTheRefreshToken(t *testing.T) {
	s := simtest.Start(t, func(c *sim.Config) { c.RotateRefreshTokens = true })
	dir := filepath.Join(t.TempDir(), "state")
	cfg := rotatingConfig(t, s, filepath.Join(dir, "refresh_token"))
	_, err := salesforce.New(t.Context(), cfg)
	require.Error(t, err)
	require.NotContains(t, err.Error(), cfg.RefreshToken)

	// The operator creates the directory and restarts the worker with the same configuration.
	require.NoError(t, os.Mkdir(dir, 0o700))
	_, err = salesforce.New(t.Context(), cfg)
	require.NoError(t, err, "the configured refresh token was spent by the failed start")
}

// A token file that is a symlink (a file on a volume linked into the config directory, as secret and
// config mounts do) must have its target updated: renaming over the link replaced the link with a
// regular file and left the target holding the spent token.
func TestARotatedRefreshTokenIsWrittenThroughASymlink(t *testing.T) {
	s := simtest.Start(t, func(c *sim.Config) { c.RotateRefreshTokens = true })
	volume, conf := t.TempDir(), t.TempDir()
	target := filepath.Join(volume, "refresh_token")
	link := filepath.Join(conf, "refresh_token")
	require.NoError(t, os.Symlink(target, link))
	cfg := rotatingConfig(t, s, link)
	_, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)

	fi, err := os.Lstat(link)
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&os.ModeSymlink, "the link was replaced by a regular file")
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	require.NotEmpty(t, strings.TrimSpace(string(b)))
	fi, err = os.Stat(target)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// The config directory is rebuilt at the next start (a new pod); the volume keeps the token.
	cfg.RefreshTokenFile = target
	_, err = salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
}

// Two workers started with the same configuration share the token file. Each refresh rotates the
// token, so the one that refreshed second spent the token the first one held in memory; the first one
// must pick up the newer token from the file instead of failing with invalid_grant for good.
func TestWorkersSharingATokenFileKeepLoggingIn(t *testing.T) {
	s := simtest.Start(t, func(c *sim.Config) { c.RotateRefreshTokens = true })
	cfg := rotatingConfig(t, s, filepath.Join(t.TempDir(), "refresh_token"))
	a, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	b, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		s.ExpireSessions()
		_, err = a.Limits(t.Context())
		require.NoError(t, err, "worker a, round %d", i)
		s.ExpireSessions()
		_, err = b.Limits(t.Context())
		require.NoError(t, err, "worker b, round %d", i)
	}
}

// A token file left by an earlier authorization (or holding garbage) must not lock the worker out when
// the operator configures a fresh refresh token: the file's token is refused, the configured one works.
func TestAStaleTokenFileDoesNotOverrideAWorkingConfiguredToken(t *testing.T) {
	s := simtest.Start(t, func(c *sim.Config) { c.RotateRefreshTokens = true })
	file := filepath.Join(t.TempDir(), "refresh_token")
	require.NoError(t, os.WriteFile(file, []byte("00Dold!spent-token\n"), 0o600))
	cfg := rotatingConfig(t, s, file)
	_, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NotContains(t, string(b), "spent-token")
}
