// Package config reads the worker's settings from the environment.
//
// Secrets (the Salesforce credentials) come only from here: pgforce never
// stores them in tables, and String redacts them so a logged Config leaks
// nothing.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// Help lists the settings, for `pgforce run -h`; the README's "Running the
// worker" says more.
const Help = `Settings, from the environment:
  DATABASE_URL                  the Postgres to sync (required)
  SALESFORCE_LOGIN_URL          https://login.salesforce.com (default), https://test.salesforce.com,
                                your My Domain URL, or the URL pgforce sim prints
  SALESFORCE_CLIENT_ID          the connected app's consumer key
  SALESFORCE_CLIENT_SECRET      and secret
  one OAuth flow:
    SALESFORCE_USERNAME + SALESFORCE_PRIVATE_KEY_FILE   JWT bearer
    SALESFORCE_REFRESH_TOKEN                            refresh token
      (+ SALESFORCE_REFRESH_TOKEN_FILE, a writable file that keeps the newest token
       when the connected app rotates refresh tokens)
    SALESFORCE_USERNAME + SALESFORCE_PASSWORD           password (followed by the security token)
    none of these                                       client credentials
  PGFORCE_ORG                   the row of pgforce.org this worker syncs (default "default")
  PGFORCE_HTTP_ADDR             /healthz and /metrics (default 127.0.0.1:9187)
  PGFORCE_LOG_LEVEL             debug, info (default), warn or error
`

// Config is everything `pgforce run` needs.
type Config struct {
	DatabaseURL string `env:"DATABASE_URL"`

	LoginURL       string `env:"SALESFORCE_LOGIN_URL, default=https://login.salesforce.com"`
	ClientID       string `env:"SALESFORCE_CLIENT_ID"`
	ClientSecret   string `env:"SALESFORCE_CLIENT_SECRET"`
	Username       string `env:"SALESFORCE_USERNAME"`
	Password       string `env:"SALESFORCE_PASSWORD"`
	PrivateKeyFile string `env:"SALESFORCE_PRIVATE_KEY_FILE"`
	RefreshToken   string `env:"SALESFORCE_REFRESH_TOKEN"`
	// RefreshTokenFile keeps a rotated refresh token across restarts.
	RefreshTokenFile string `env:"SALESFORCE_REFRESH_TOKEN_FILE"`

	// Org is the row of pgforce.org this worker syncs: one worker process
	// serves one org, because the Salesforce credentials above are one org's.
	Org      string `env:"PGFORCE_ORG, default=default"`
	HTTPAddr string `env:"PGFORCE_HTTP_ADDR, default=127.0.0.1:9187"`
	LogLevel string `env:"PGFORCE_LOG_LEVEL, default=info"`
}

// orgName is pgforce.org's rule for names (org_name_valid).
var orgName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// Flow names the OAuth flow a Config selects.
type Flow string

const (
	FlowPassword          Flow = "password"
	FlowJWTBearer         Flow = "jwt-bearer"
	FlowRefreshToken      Flow = "refresh_token"
	FlowClientCredentials Flow = "client_credentials"
)

// Load reads the process environment and validates it.
func Load(ctx context.Context) (*Config, error) {
	return LoadFrom(ctx, envconfig.OsLookuper())
}

// LoadFrom reads settings through l, so tests need not touch the process
// environment.
func LoadFrom(ctx context.Context, l envconfig.Lookuper) (*Config, error) {
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: l}); err != nil {
		return nil, fmt.Errorf("reading the environment: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports the first missing or contradictory setting, naming the
// variable and what to do, because a worker that starts half-configured
// fails later in ways that are harder to read.
func (c *Config) Validate() error {
	if c.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set: set it to the Postgres connection string, e.g. postgres://user@host/db")
	}
	u, err := url.Parse(c.LoginURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("SALESFORCE_LOGIN_URL %q is not an http(s) URL: use https://login.salesforce.com, https://test.salesforce.com, your My Domain URL, or the URL pgforce sim prints", c.LoginURL)
	}
	if c.ClientID == "" {
		return errors.New("SALESFORCE_CLIENT_ID is not set: use the consumer key of your connected app")
	}
	if _, err := c.Flow(); err != nil {
		return err
	}
	if _, err := c.Level(); err != nil {
		return err
	}
	if c.Org != "" && !orgName.MatchString(c.Org) {
		return fmt.Errorf("PGFORCE_ORG %q is not an org name: use the name of a row of pgforce.org, e.g. default", c.Org)
	}
	return nil
}

// Flow decides the OAuth flow from which credentials are present, and refuses
// combinations whose intent is ambiguous.
func (c *Config) Flow() (Flow, error) {
	var flows []Flow
	if c.PrivateKeyFile != "" {
		flows = append(flows, FlowJWTBearer)
	}
	if c.RefreshToken != "" {
		flows = append(flows, FlowRefreshToken)
	}
	if c.Password != "" {
		flows = append(flows, FlowPassword)
	}
	if len(flows) > 1 {
		names := make([]string, len(flows))
		for i, f := range flows {
			names[i] = flowVariable(f)
		}
		both := "both"
		if len(names) > 2 {
			both = "all"
		}
		return "", fmt.Errorf("%s are %s set: set only the one for the OAuth flow you use", strings.Join(names, " and "), both)
	}
	flow := FlowClientCredentials
	if len(flows) == 1 {
		flow = flows[0]
	}
	switch flow {
	case FlowJWTBearer:
		if c.Username == "" {
			return "", errors.New("SALESFORCE_PRIVATE_KEY_FILE is set but SALESFORCE_USERNAME is not: the JWT bearer flow needs the integration user's username")
		}
		if _, err := os.Stat(c.PrivateKeyFile); err != nil {
			return "", fmt.Errorf("SALESFORCE_PRIVATE_KEY_FILE: %v", err)
		}
	case FlowPassword:
		if c.Username == "" {
			return "", errors.New("SALESFORCE_PASSWORD is set but SALESFORCE_USERNAME is not: the password flow needs both")
		}
		if c.ClientSecret == "" {
			return "", errors.New("SALESFORCE_CLIENT_SECRET is not set: the password flow needs the connected app's consumer secret")
		}
	case FlowRefreshToken:
		// A refresh token alone is enough; the secret is optional for
		// connected apps that do not require it.
	case FlowClientCredentials:
		if c.ClientSecret == "" {
			return "", errors.New("no Salesforce credentials are set: set SALESFORCE_USERNAME and SALESFORCE_PASSWORD (password flow), SALESFORCE_USERNAME and SALESFORCE_PRIVATE_KEY_FILE (JWT bearer flow), SALESFORCE_REFRESH_TOKEN, or SALESFORCE_CLIENT_SECRET alone (client credentials flow)")
		}
	}
	return flow, nil
}

func flowVariable(f Flow) string {
	switch f {
	case FlowJWTBearer:
		return "SALESFORCE_PRIVATE_KEY_FILE"
	case FlowRefreshToken:
		return "SALESFORCE_REFRESH_TOKEN"
	default:
		return "SALESFORCE_PASSWORD"
	}
}

// Level parses PGFORCE_LOG_LEVEL.
func (c *Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("PGFORCE_LOG_LEVEL %q is not a level: use debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

// LogValue keeps secrets out of structured logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database", redactURL(c.DatabaseURL)),
		slog.String("login_url", c.LoginURL),
		slog.String("client_id", c.ClientID),
		slog.String("username", c.Username),
		slog.String("org", c.Org),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("log_level", c.LogLevel),
	)
}

// String is LogValue for fmt, so %v never prints a secret either.
func (c Config) String() string { return c.LogValue().String() }

// redactURL drops the password from a connection URL; key=value strings are
// reduced to their host because they may carry password=.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(set)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	// password=, and sslpassword= (the passphrase of the client's key),
	// and whatever else a driver may take a secret in.
	q := u.Query()
	redacted := false
	for k := range q {
		if l := strings.ToLower(k); strings.Contains(l, "password") || strings.Contains(l, "secret") || strings.Contains(l, "token") {
			q.Set(k, "redacted")
			redacted = true
		}
	}
	if redacted {
		u.RawQuery = q.Encode()
	}
	return u.String()
}
