package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultAPIVersion is the REST API version used when Config leaves it empty.
const DefaultAPIVersion = "62.0"

// Config configures a Client. The OAuth flow is chosen from the credentials
// present (see Credentials.Grant).
type Config struct {
	LoginURL      string
	ClientID      string
	ClientSecret  string
	Username      string
	Password      string
	PrivateKeyPEM []byte
	RefreshToken  string
	// RefreshTokenFile keeps a rotated refresh token across restarts (see
	// Credentials.RefreshTokenFile).
	RefreshTokenFile string
	// APIVersion such as "62.0"; default DefaultAPIVersion.
	APIVersion string
	// HTTPClient defaults to a client without an overall timeout; every call is
	// bounded by its context instead.
	HTTPClient *http.Client
	// CallOptionsClient goes into Sforce-Call-Options: client=<it> on every
	// call; Salesforce copies it into the changeOrigin of the CDC events our
	// writes cause, which is how echoes are recognised. Default "pgforce".
	CallOptionsClient string
	// QueryBatchSize asks for this many records per query page (200–2000);
	// zero leaves the server default (2000).
	QueryBatchSize int
}

// Client talks to one org. It is safe for concurrent use.
type Client struct {
	tokens      *TokenSource
	http        *http.Client
	version     string
	callOptions string
	batchSize   int

	apiUsed atomic.Int64
	apiMax  atomic.Int64
	// serverTime is the latest Date of an answer, in Unix seconds.
	serverTime atomic.Int64
}

// New builds a client and logs in, so bad credentials fail at start-up rather
// than on the first call.
func New(ctx context.Context, cfg Config) (*Client, error) {
	hc := cfg.HTTPClient
	if hc == nil {
		// The default transport keeps only two idle connections per host;
		// the worker runs loads, writes and polls side by side.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		hc = &http.Client{Transport: tr}
	}
	ts, err := NewTokenSource(Credentials{
		LoginURL: cfg.LoginURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		Username: cfg.Username, Password: cfg.Password, PrivateKeyPEM: cfg.PrivateKeyPEM,
		RefreshToken: cfg.RefreshToken, RefreshTokenFile: cfg.RefreshTokenFile,
	}, hc)
	if err != nil {
		return nil, err
	}
	c := &Client{tokens: ts, http: hc, version: strings.TrimPrefix(cfg.APIVersion, "v"), callOptions: cfg.CallOptionsClient, batchSize: cfg.QueryBatchSize}
	if c.version == "" {
		c.version = DefaultAPIVersion
	}
	if c.callOptions == "" {
		c.callOptions = "pgforce"
	}
	if c.batchSize != 0 && (c.batchSize < 200 || c.batchSize > 2000) {
		return nil, fmt.Errorf("salesforce: QueryBatchSize %d is outside 200..2000", c.batchSize)
	}
	if _, err := ts.Token(ctx); err != nil {
		return nil, err
	}
	if err := ts.PersistError(); err != nil {
		return nil, err
	}
	return c, nil
}

// TokenSource returns the client's token source, shared with the streaming client.
func (c *Client) TokenSource() *TokenSource { return c.tokens }

// HTTPClient returns the HTTP client the Client uses.
func (c *Client) HTTPClient() *http.Client { return c.http }

// APIVersion returns the version in use, such as "62.0".
func (c *Client) APIVersion() string { return c.version }

// CallOptionsClient returns the client name sent in Sforce-Call-Options.
func (c *Client) CallOptionsClient() string { return c.callOptions }

// UserID returns the Id of the user the client acts as, from the identity
// URL of its token: the CreatedById of the records it creates.
func (c *Client) UserID(ctx context.Context) (string, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return "", err
	}
	if tok.UserID == "" {
		return "", fmt.Errorf("salesforce: the token answer named no user (identity URL %q)", tok.ID)
	}
	return tok.UserID, nil
}

// APIUsage returns the latest api-usage figures from Sforce-Limit-Info: calls
// used in the rolling 24 hours and the org's allocation. Both are zero until
// the first answer that carries the header.
func (c *Client) APIUsage() (used, max int) {
	return int(c.apiUsed.Load()), int(c.apiMax.Load())
}

// ServerTime returns the latest time Salesforce gave in the Date header of
// an answer (to the second; zero before the first answer that had one):
// Salesforce's clock, which sets SystemModstamp, rather than this host's.
// A record saved by a call that has answered has a SystemModstamp before
// ServerTime plus a second.
func (c *Client) ServerTime() time.Time {
	if s := c.serverTime.Load(); s != 0 {
		return time.Unix(s, 0).UTC()
	}
	return time.Time{}
}

var apiUsageRe = regexp.MustCompile(`api-usage=(\d+)/(\d+)`)

// ParseLimitInfo reads the api-usage segment of a Sforce-Limit-Info header
// ("api-usage=18/15000; per-app-api-usage=…").
func ParseLimitInfo(h string) (used, max int, ok bool) {
	m := apiUsageRe.FindStringSubmatch(h)
	if m == nil {
		return 0, 0, false
	}
	u, err1 := strconv.Atoi(m[1])
	x, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return u, x, true
}

// request describes one HTTP call relative to the instance URL.
type request struct {
	method string
	path   string // absolute path on the instance, e.g. /services/data/v62.0/limits
	query  url.Values
	// body returns a fresh body for each attempt, so a call can be replayed
	// after a token refresh.
	body        func() (io.ReadCloser, error)
	contentType string
	accept      string
	header      http.Header
	// noAuth skips the Authorization header (the versions list needs none).
	noAuth bool
}

// dataPath is the REST base for this client's API version.
func (c *Client) dataPath(p string) string {
	return "/services/data/v" + c.version + p
}

func jsonBody(v any) (func() (io.ReadCloser, error), error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, nil
}

// do sends r and returns the response when its status is 2xx; the caller closes
// the body. Any other status becomes an *APIError. A 401 refreshes the token
// and replays the call once.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, r, tok)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		ae := parseAPIError(resp.StatusCode, r.method, r.path, body)
		if resp.StatusCode == http.StatusMultipleChoices && ae.ErrorCode == "" {
			ae.ErrorCode = CodeMultipleChoices
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && !r.noAuth {
			if tok, err = c.tokens.Refresh(ctx, tok.AccessToken); err != nil {
				if IsTransient(err) {
					// The login could not be renewed just now (the token
					// endpoint is down, the network failed): the call is
					// worth making again later, like any outage. Reported
					// as the expired session, the outbound side recorded
					// every record of the call as refused by Salesforce.
					return nil, fmt.Errorf("renew the session after %s: %w", ae.ErrorCode, err)
				}
				return nil, fmt.Errorf("%w (token refresh failed: %v)", ae, err)
			}
			continue
		}
		return nil, ae
	}
}

func (c *Client) send(ctx context.Context, r request, tok *Token) (*http.Response, error) {
	u := tok.InstanceURL + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.ReadCloser
	if r.body != nil {
		var err error
		if body, err = r.body(); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return nil, err
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if !r.noAuth {
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	}
	req.Header.Set("Sforce-Call-Options", "client="+c.callOptions)
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	} else {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("salesforce: %s %s: %w", r.method, r.path, err)
	}
	if used, max, ok := ParseLimitInfo(resp.Header.Get("Sforce-Limit-Info")); ok {
		c.apiUsed.Store(int64(used))
		c.apiMax.Store(int64(max))
	}
	if at, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		// The latest: answers of calls made at once arrive in any order.
		for cur := c.serverTime.Load(); at.Unix() > cur && !c.serverTime.CompareAndSwap(cur, at.Unix()); cur = c.serverTime.Load() {
		}
	}
	return resp, nil
}

// call sends r and decodes a JSON answer into out (unless out is nil or the
// answer is empty).
func (c *Client) call(ctx context.Context, r request, out any) (int, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("salesforce: %s %s: decoding answer: %w", r.method, r.path, err)
	}
	return resp.StatusCode, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	_, err := c.call(ctx, request{method: http.MethodGet, path: path, query: q}, out)
	return err
}

func (c *Client) sendJSON(ctx context.Context, method, path string, q url.Values, in, out any) (int, error) {
	r := request{method: method, path: path, query: q}
	if in != nil {
		b, err := jsonBody(in)
		if err != nil {
			return 0, err
		}
		r.body, r.contentType = b, "application/json"
	}
	return c.call(ctx, r, out)
}
