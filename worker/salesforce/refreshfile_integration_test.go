package salesforce_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

// An administrator who revoked the worker's access (or whose rotated token
// expired) authorizes the connected app again and configures the new
// refresh token. The worker must log in with it: the token kept in
// SALESFORCE_REFRESH_TOKEN_FILE descends from the token configured before,
// not from this one, and used in its place it kept the worker from ever
// logging in again ("expired access/refresh token"), whatever the
// configuration said, until someone found and deleted the file.
func TestANewlyConfiguredRefreshTokenIsUsedRatherThanTheOneKeptFromTheOldToken(t *testing.T) {
	s := simtest.Start(t, func(c *sim.Config) { c.RotateRefreshTokens = true })
	file := filepath.Join(t.TempDir(), "refresh_token")
	cfg := salesforce.Config{LoginURL: s.URL(), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		RefreshToken: s.IssueRefreshToken(), RefreshTokenFile: file}
	_, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	kept, err := os.ReadFile(file)
	require.NoError(t, err)

	// The administrator revokes the app's access: the kept token is ended.
	tok := strings.TrimSpace(strings.SplitN(string(kept), "\n", 2)[0])
	resp, err := http.PostForm(s.URL()+"/services/oauth2/revoke", url.Values{"token": {tok}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// ... authorizes it again and configures the new token.
	cfg.RefreshToken = s.IssueRefreshToken()
	c, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err, "the worker logs in with the newly configured refresh token")
	_, err = c.Limits(t.Context())
	require.NoError(t, err)

	// And a restart after that still logs in (the file follows the new token).
	c2, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	_, err = c2.Limits(t.Context())
	require.NoError(t, err)
}
