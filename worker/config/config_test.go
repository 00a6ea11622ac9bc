package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
)

func load(t *testing.T, env map[string]string) (*Config, error) {
	t.Helper()
	return LoadFrom(context.Background(), envconfig.MapLookuper(env))
}

func base() map[string]string {
	return map[string]string{
		"DATABASE_URL":             "postgres://app:s3cret@db.example/app",
		"SALESFORCE_CLIENT_ID":     "cid",
		"SALESFORCE_CLIENT_SECRET": "csecret",
		"SALESFORCE_USERNAME":      "user@example.com",
		"SALESFORCE_PASSWORD":      "hunter2",
	}
}

func TestLoadSelectsPasswordFlowAndAppliesDefaults(t *testing.T) {
	t.Parallel()
	c, err := load(t, base())
	require.NoError(t, err)
	flow, err := c.Flow()
	require.NoError(t, err)
	require.Equal(t, FlowPassword, flow)
	require.Equal(t, "https://login.salesforce.com", c.LoginURL)
	require.Equal(t, "127.0.0.1:9187", c.HTTPAddr)
	require.Equal(t, "default", c.Org)
	lvl, err := c.Level()
	require.NoError(t, err)
	require.Equal(t, slog.LevelInfo, lvl)
}

func TestLoadNamesTheMissingVariable(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"DATABASE_URL", "SALESFORCE_CLIENT_ID"} {
		env := base()
		delete(env, name)
		_, err := load(t, env)
		require.ErrorContains(t, err, name)
	}
}

func TestLoadRefusesTwoFlowsAtOnce(t *testing.T) {
	t.Parallel()
	env := base()
	env["SALESFORCE_REFRESH_TOKEN"] = "rt"
	_, err := load(t, env)
	require.ErrorContains(t, err, "SALESFORCE_REFRESH_TOKEN and SALESFORCE_PASSWORD are both set")
}

func TestLoadRequiresUsernameForJWTBearer(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "key.pem")
	require.NoError(t, os.WriteFile(key, []byte("not read here"), 0o600))
	env := base()
	delete(env, "SALESFORCE_PASSWORD")
	delete(env, "SALESFORCE_USERNAME")
	env["SALESFORCE_PRIVATE_KEY_FILE"] = key
	_, err := load(t, env)
	require.ErrorContains(t, err, "SALESFORCE_USERNAME")

	env["SALESFORCE_USERNAME"] = "user@example.com"
	c, err := load(t, env)
	require.NoError(t, err)
	flow, _ := c.Flow()
	require.Equal(t, FlowJWTBearer, flow)
}

func TestLoadFallsBackToClientCredentialsWithOnlyASecret(t *testing.T) {
	t.Parallel()
	env := base()
	delete(env, "SALESFORCE_PASSWORD")
	delete(env, "SALESFORCE_USERNAME")
	c, err := load(t, env)
	require.NoError(t, err)
	flow, _ := c.Flow()
	require.Equal(t, FlowClientCredentials, flow)

	delete(env, "SALESFORCE_CLIENT_SECRET")
	_, err = load(t, env)
	require.ErrorContains(t, err, "no Salesforce credentials are set")
}

func TestLoadRefusesAnUnknownLogLevelAndABadLoginURL(t *testing.T) {
	t.Parallel()
	env := base()
	env["PGFORCE_LOG_LEVEL"] = "loud"
	_, err := load(t, env)
	require.ErrorContains(t, err, "PGFORCE_LOG_LEVEL")

	env = base()
	env["SALESFORCE_LOGIN_URL"] = "login.salesforce.com"
	_, err = load(t, env)
	require.ErrorContains(t, err, "SALESFORCE_LOGIN_URL")
}

func TestConfigNeverPrintsSecrets(t *testing.T) {
	t.Parallel()
	c, err := load(t, base())
	require.NoError(t, err)
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("starting", "config", c)
	out := sb.String() + fmt.Sprint(*c) + fmt.Sprintf("%v", c)
	for _, secret := range []string{"s3cret", "csecret", "hunter2"} {
		require.NotContains(t, out, secret)
	}
	require.Contains(t, out, "db.example")
}

func TestLoadRefusesAnOrgNameThatCannotExist(t *testing.T) {
	t.Parallel()
	env := base()
	env["PGFORCE_ORG"] = "Sandbox Org"
	_, err := load(t, env)
	require.ErrorContains(t, err, "PGFORCE_ORG")
}

// The passphrase of the client's TLS key, given as sslpassword= in
// DATABASE_URL, is a secret too.
func TestConfigNeverPrintsTheDatabaseSSLPassword(t *testing.T) {
	t.Parallel()
	env := base()
	env["DATABASE_URL"] = "postgres://app@db.example/app?sslmode=verify-full&sslkey=/etc/pgforce/client.key&sslpassword=k3y-passphrase"
	c, err := load(t, env)
	require.NoError(t, err)
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("starting", "config", c)
	out := sb.String() + fmt.Sprintf("%v", c)
	require.NotContains(t, out, "k3y-passphrase")
	require.Contains(t, out, "sslkey=%2Fetc%2Fpgforce%2Fclient.key", "the rest of the URL is kept")
}
