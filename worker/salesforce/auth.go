package salesforce

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Grant names the OAuth flow a TokenSource uses.
type Grant string

const (
	GrantPassword          Grant = "password"
	GrantRefreshToken      Grant = "refresh_token"
	GrantClientCredentials Grant = "client_credentials"
	GrantJWTBearer         Grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// jwtLifetime is how long a JWT bearer assertion is valid. Salesforce accepts up
// to a few minutes; clients conventionally use three.
const jwtLifetime = 3 * time.Minute

// Token is an access token and what the token endpoint said about it.
type Token struct {
	AccessToken string
	InstanceURL string
	// ID is the identity URL, .../id/<orgId>/<userId>.
	ID       string
	OrgID    string
	UserID   string
	IssuedAt time.Time
	Scope    string
	// RefreshToken is set when the endpoint issued (or rotated) one.
	RefreshToken string
}

// Credentials select and parameterise the OAuth flow.
type Credentials struct {
	LoginURL      string // e.g. https://login.salesforce.com, or the simulator's URL
	ClientID      string
	ClientSecret  string
	Username      string
	Password      string // password with the security token appended
	PrivateKeyPEM []byte // JWT bearer flow
	RefreshToken  string
	// RefreshTokenFile keeps the refresh token across restarts when the
	// connected app rotates refresh tokens (each refresh answers a new one
	// and invalidates the one used): the newest is written there, and a
	// token found there at start replaces RefreshToken, which an earlier
	// run used up.
	RefreshTokenFile string
}

// Grant returns the flow the credentials select: a private key means JWT
// bearer, a refresh token means refresh_token, a username and password mean
// the password flow, and a bare client id and secret mean client_credentials.
func (c Credentials) Grant() (Grant, error) {
	switch {
	case len(c.PrivateKeyPEM) > 0:
		if c.ClientID == "" || c.Username == "" {
			return "", errors.New("salesforce: the JWT bearer flow needs a client id and a username besides the private key")
		}
		return GrantJWTBearer, nil
	case c.RefreshToken != "":
		if c.ClientID == "" {
			return "", errors.New("salesforce: the refresh token flow needs a client id")
		}
		return GrantRefreshToken, nil
	case c.Username != "" || c.Password != "":
		if c.Username == "" || c.Password == "" || c.ClientID == "" || c.ClientSecret == "" {
			return "", errors.New("salesforce: the password flow needs client id, client secret, username and password")
		}
		return GrantPassword, nil
	case c.ClientID != "" && c.ClientSecret != "":
		return GrantClientCredentials, nil
	}
	return "", errors.New("salesforce: no credentials: set a private key, a refresh token, a username and password, or a client id and secret")
}

// TokenSource fetches and caches an access token. It is safe for concurrent use;
// concurrent callers that find the token stale share one refresh.
type TokenSource struct {
	creds Credentials
	grant Grant
	key   *rsa.PrivateKey
	http  *http.Client
	now   func() time.Time

	mu  sync.Mutex
	tok *Token
	// refreshToken follows rotation: a newer refresh token replaces the configured one.
	refreshToken string
	// persistErr is the failure to write a rotated refresh token to
	// Credentials.RefreshTokenFile.
	persistErr error
}

// PersistError reports why the latest rotated refresh token could not be
// written to Credentials.RefreshTokenFile, or nil.
func (ts *TokenSource) PersistError() error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.persistErr
}

// NewTokenSource checks the credentials and prepares the flow; it does not
// contact the token endpoint.
func NewTokenSource(creds Credentials, httpClient *http.Client) (*TokenSource, error) {
	if creds.LoginURL == "" {
		creds.LoginURL = "https://login.salesforce.com"
	}
	creds.LoginURL = strings.TrimRight(creds.LoginURL, "/")
	if _, err := url.Parse(creds.LoginURL); err != nil {
		return nil, fmt.Errorf("salesforce: login URL: %w", err)
	}
	g, err := creds.Grant()
	if err != nil {
		return nil, err
	}
	ts := &TokenSource{creds: creds, grant: g, http: httpClient, now: time.Now, refreshToken: creds.RefreshToken}
	if g == GrantRefreshToken && creds.RefreshTokenFile != "" {
		tok, err := ts.keptToken()
		if err != nil {
			return nil, err
		}
		if tok != "" {
			ts.refreshToken = tok
		}
		// The first refresh may rotate the token and spend the configured one: find out now, before
		// any token request, whether a rotated token could be kept.
		if err := checkWritable(creds.RefreshTokenFile); err != nil {
			return nil, fmt.Errorf("salesforce: refresh token file %s cannot be written, so a rotated refresh token would be lost: %w", creds.RefreshTokenFile, err)
		}
	}
	if ts.http == nil {
		ts.http = http.DefaultClient
	}
	if g == GrantJWTBearer {
		if ts.key, err = ParseRSAPrivateKey(creds.PrivateKeyPEM); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// Grant returns the flow in use.
func (ts *TokenSource) Grant() Grant { return ts.grant }

// Token returns the cached token, fetching one first if there is none.
func (ts *TokenSource) Token(ctx context.Context) (*Token, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok != nil {
		return ts.tok, nil
	}
	return ts.fetchLocked(ctx)
}

// Refresh replaces stale, the access token a call was refused with, by a new
// one. If another caller already replaced it, the newer token is returned
// without another round trip.
func (ts *TokenSource) Refresh(ctx context.Context, stale string) (*Token, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok != nil && ts.tok.AccessToken != stale {
		return ts.tok, nil
	}
	ts.tok = nil
	return ts.fetchLocked(ctx)
}

func (ts *TokenSource) fetchLocked(ctx context.Context) (*Token, error) {
	tok, err := ts.exchangeLocked(ctx, ts.refreshToken)
	if oe := (*OAuthError)(nil); ts.grant == GrantRefreshToken && errors.As(err, &oe) && oe.Code == "invalid_grant" {
		// The refresh token in use was refused. Another worker sharing the token file may have rotated
		// it (the newer one is in the file), or the file holds a token from an earlier authorization
		// while a fresh one is configured: try those before giving up.
		tried := []string{ts.refreshToken}
		for _, next := range ts.otherRefreshTokens() {
			var oe *OAuthError
			if !errors.As(err, &oe) || oe.Code != "invalid_grant" {
				break
			}
			if slices.Contains(tried, next) {
				continue
			}
			tried = append(tried, next)
			if tok, err = ts.exchangeLocked(ctx, next); err == nil {
				ts.refreshToken = next
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken != "" && ts.grant == GrantRefreshToken && tok.RefreshToken != ts.refreshToken {
		ts.refreshToken = tok.RefreshToken
		if ts.creds.RefreshTokenFile != "" {
			// The token works for this run whatever happens to the file;
			// a failure to keep it is reported by PersistError (New
			// fails on it at start-up).
			ts.persistErr = nil
			if err := writeFileAtomic(resolveLinks(ts.creds.RefreshTokenFile), []byte(tok.RefreshToken+"\n"+tokenOrigin(ts.creds.RefreshToken)+"\n")); err != nil {
				ts.persistErr = fmt.Errorf("salesforce: the connected app rotated the refresh token and the new one could not be kept in %s, so a restart could not log in: %w", ts.creds.RefreshTokenFile, err)
			}
		}
	}
	ts.tok = tok
	return tok, nil
}

// otherRefreshTokens lists, after the one in use was refused, the refresh tokens still worth a try: the
// token file's current content, then the configured token.
func (ts *TokenSource) otherRefreshTokens() []string {
	var out []string
	if ts.creds.RefreshTokenFile != "" {
		if tok, err := ts.keptToken(); err == nil && tok != "" {
			out = append(out, tok)
		}
	}
	return append(out, ts.creds.RefreshToken)
}

// keptToken returns the refresh token kept in the token file, "" when there
// is none yet or when it does not descend from the configured one. The file
// holds the token and, on a second line, the origin of its chain (see
// tokenOrigin): a token configured anew (the app was authorized again after
// its access was revoked) starts a new chain, and a kept token of the old
// one, revoked with it or logging in as the old authorization, must not
// replace it. A file of one line is taken as it is.
func (ts *TokenSource) keptToken() (string, error) {
	b, err := os.ReadFile(ts.creds.RefreshTokenFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("salesforce: refresh token file: %w", err)
	}
	tok, from, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	tok, from = strings.TrimSpace(tok), strings.TrimSpace(from)
	if from != "" && from != tokenOrigin(ts.creds.RefreshToken) {
		return "", nil
	}
	return tok, nil
}

// tokenOrigin names the configured refresh token a kept, rotated one
// descends from, without writing the token itself.
func tokenOrigin(configured string) string {
	sum := sha256.Sum256([]byte(configured))
	return "from-sha256:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// exchangeLocked makes one token request; refreshToken is used by the refresh_token grant.
func (ts *TokenSource) exchangeLocked(ctx context.Context, refreshToken string) (*Token, error) {
	form := url.Values{}
	form.Set("grant_type", string(ts.grant))
	switch ts.grant {
	case GrantPassword:
		form.Set("client_id", ts.creds.ClientID)
		form.Set("client_secret", ts.creds.ClientSecret)
		form.Set("username", ts.creds.Username)
		form.Set("password", ts.creds.Password)
	case GrantRefreshToken:
		form.Set("refresh_token", refreshToken)
		form.Set("client_id", ts.creds.ClientID)
		if ts.creds.ClientSecret != "" {
			form.Set("client_secret", ts.creds.ClientSecret)
		}
	case GrantClientCredentials:
		form.Set("client_id", ts.creds.ClientID)
		form.Set("client_secret", ts.creds.ClientSecret)
	case GrantJWTBearer:
		assertion, err := jwtAssertion(ts.key, ts.creds.ClientID, ts.creds.Username, audience(ts.creds.LoginURL), ts.now())
		if err != nil {
			return nil, err
		}
		form.Set("assertion", assertion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.creds.LoginURL+"/services/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := ts.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("salesforce: oauth token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("salesforce: oauth token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		oe := &OAuthError{HTTPStatus: resp.StatusCode}
		var w struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &w) == nil && w.Error != "" {
			oe.Code, oe.Description = w.Error, w.Description
		} else {
			oe.Description = strings.TrimSpace(string(body))
		}
		return nil, oe
	}
	return parseTokenResponse(body)
}

func parseTokenResponse(body []byte) (*Token, error) {
	var w struct {
		AccessToken  string `json:"access_token"`
		InstanceURL  string `json:"instance_url"`
		ID           string `json:"id"`
		IssuedAt     string `json:"issued_at"`
		Scope        string `json:"scope"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("salesforce: oauth token response is not JSON: %w", err)
	}
	if w.AccessToken == "" || w.InstanceURL == "" {
		return nil, errors.New("salesforce: oauth token response lacks access_token or instance_url")
	}
	tok := &Token{AccessToken: w.AccessToken, InstanceURL: strings.TrimRight(w.InstanceURL, "/"), ID: w.ID, Scope: w.Scope, RefreshToken: w.RefreshToken}
	tok.OrgID, tok.UserID = identityIDs(w.ID)
	if w.IssuedAt != "" {
		ms, err := strconv.ParseInt(w.IssuedAt, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("salesforce: oauth issued_at %q is not epoch milliseconds", w.IssuedAt)
		}
		tok.IssuedAt = time.UnixMilli(ms).UTC()
	}
	return tok, nil
}

// identityIDs takes the org and user ids from the last two path segments of
// the identity URL (https://login.salesforce.com/id/<orgId>/<userId>).
func identityIDs(id string) (org, user string) {
	u, err := url.Parse(id)
	if err != nil {
		return "", ""
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 {
		return "", ""
	}
	return parts[len(parts)-2], parts[len(parts)-1]
}

// audience is the JWT aud claim for a login at loginURL. Salesforce takes
// only https://login.salesforce.com (production), https://test.salesforce.com
// (sandboxes and scratch orgs) or an Experience Cloud site's URL, whatever
// host the assertion is posted to: a My Domain URL as the audience is refused
// with "audience is invalid", as Salesforce's CLI and other clients found. So
// a My Domain login URL, which Salesforce recommends and which the
// client-credentials flow needs, maps to the audience of its kind of org.
// Any other host (a site, or pgforce sim) is its own audience.
func audience(loginURL string) string {
	u, err := url.Parse(loginURL)
	if err != nil || u.Host == "" {
		return loginURL
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case host == "test.salesforce.com",
		strings.HasSuffix(host, ".sandbox.my.salesforce.com"),
		strings.HasSuffix(host, ".scratch.my.salesforce.com"),
		// Sandboxes before enhanced domains: <domain>--<sandbox>.my.salesforce.com.
		strings.HasSuffix(host, ".my.salesforce.com") && strings.Contains(host, "--"):
		return "https://test.salesforce.com"
	case host == "login.salesforce.com", strings.HasSuffix(host, ".salesforce.com"):
		return "https://login.salesforce.com"
	case strings.HasSuffix(host, ".site.com"), strings.HasSuffix(host, ".force.com"):
		// An Experience Cloud site is named by its URL, path included.
		return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/")
	}
	return u.Scheme + "://" + u.Host
}

// ParseRSAPrivateKey reads a PEM RSA key in PKCS#1 or PKCS#8 form.
func ParseRSAPrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("salesforce: private key is not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("salesforce: private key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("salesforce: private key is not RSA; the JWT bearer flow needs RS256")
	}
	return rk, nil
}

// jwtAssertion builds the RS256-signed assertion of the JWT bearer flow. It is
// small enough that a JWT library would add more than it saves.
func jwtAssertion(key *rsa.PrivateKey, clientID, username, aud string, now time.Time) (string, error) {
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss": clientID,
		"sub": username,
		"aud": aud,
		"exp": now.Add(jwtLifetime).Unix(),
	})
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("salesforce: signing JWT assertion: %w", err)
	}
	return signingInput + "." + enc.EncodeToString(sig), nil
}

// resolveLinks follows symbolic links from path, so that the file they lead to is replaced rather than
// the link itself; a dangling link resolves to where it points.
func resolveLinks(path string) string {
	for range 40 {
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return path
		}
		dest, err := os.Readlink(path)
		if err != nil {
			return path
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(path), dest)
		}
		path = dest
	}
	return path
}

// checkWritable reports whether a file can be created next to path (where writeFileAtomic puts its
// temporary file) and renamed over it.
func checkWritable(path string) error {
	path = resolveLinks(path)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// writeFileAtomic replaces path with data (mode 0600) through a temporary
// file and a rename, so a crash never leaves half a token.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
