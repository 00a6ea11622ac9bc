// Package streaming is a CometD (Bayeux long-polling) client for Salesforce
// Change Data Capture and other Streaming API channels at /cometd/{version}.
//
// Events are handed to a handler synchronously, one at a time and in order. A
// replay id counts as processed only once the handler has returned nil for it,
// and that is the id a re-subscription after a lost session starts from, so
// the caller decides what "processed" means (for pgforce: committed to
// Postgres together with the replay id).
package streaming

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// Replay presets for Subscribe.
const (
	ReplayTip int64 = -1 // only events published after subscribing
	ReplayAll int64 = -2 // every retained event
)

// Auth supplies access tokens; *salesforce.TokenSource implements it.
type Auth interface {
	Token(ctx context.Context) (*salesforce.Token, error)
	Refresh(ctx context.Context, stale string) (*salesforce.Token, error)
}

// Handler receives events. Returning an error stops Run with that error and
// leaves the event unprocessed.
type Handler func(ctx context.Context, ev *Event) error

// Config configures a Client.
type Config struct {
	Auth       Auth
	APIVersion string // default salesforce.DefaultAPIVersion
	// HTTPClient is copied; the copy gets its own cookie jar (Salesforce ties
	// a Bayeux session to its cookies) and no overall timeout (long polls last
	// up to the server's advice timeout; each request has its own deadline).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// OnSubscribe, if set, is called after the server accepted a subscription,
	// with the replay position it was made from (also after re-subscribing).
	OnSubscribe func(channel string, replayFrom int64)
	// MaxBackoff caps the wait between attempts after transport failures.
	// Default 30s.
	MaxBackoff time.Duration
}

// ReplayIDError says the server refused a subscription's replay id (expired or
// unknown). The stored position is useless: resynchronise the object, then
// subscribe again from ReplayTip.
type ReplayIDError struct {
	Channel  string
	ReplayID int64
	Message  string
}

func (e *ReplayIDError) Error() string {
	return fmt.Sprintf("streaming: replay id %d refused on %s: %s", e.ReplayID, e.Channel, e.Message)
}

// SubscribeError is any other refused subscription (unknown channel, no access).
type SubscribeError struct {
	Channel string
	Message string
}

func (e *SubscribeError) Error() string {
	return fmt.Sprintf("streaming: subscribe to %s refused: %s", e.Channel, e.Message)
}

// BayeuxError is a failure the server told us not to retry
// (advice reconnect "none", a denied handshake, an exhausted allocation).
type BayeuxError struct {
	Channel string // /meta/handshake or /meta/connect
	Message string // e.g. 403::Organization total events daily limit exceeded
}

func (e *BayeuxError) Error() string {
	return fmt.Sprintf("streaming: %s failed: %s", e.Channel, e.Message)
}

type subscription struct {
	replayFrom    int64
	lastProcessed int64
	processed     bool
}

// position is where a (re-)subscription starts.
func (s *subscription) position() int64 {
	if s.processed {
		return s.lastProcessed
	}
	return s.replayFrom
}

type advice struct {
	Interval  *int64 `json:"interval,omitempty"`
	Timeout   *int64 `json:"timeout,omitempty"`
	Reconnect string `json:"reconnect,omitempty"`
}

// message is an incoming Bayeux message.
type message struct {
	Channel      string          `json:"channel"`
	ClientID     string          `json:"clientId"`
	Successful   *bool           `json:"successful"`
	Error        string          `json:"error"`
	Advice       *advice         `json:"advice"`
	Subscription json.RawMessage `json:"subscription"`
	Data         json.RawMessage `json:"data"`
	Ext          json.RawMessage `json:"ext"`
}

func (m *message) ok() bool { return m.Successful != nil && *m.Successful }

func (m *message) subscriptions() []string {
	var one string
	if json.Unmarshal(m.Subscription, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(m.Subscription, &many)
	return many
}

// Client is a CometD client for one org. Subscribe and Unsubscribe may be
// called at any time; Run drives the session.
type Client struct {
	auth       Auth
	version    string
	http       *http.Client
	log        *slog.Logger
	maxBackoff time.Duration
	onSub      func(channel string, replayFrom int64)

	nextID  atomic.Int64
	running atomic.Bool

	mu        sync.Mutex
	clientID  string
	tok       *salesforce.Token // token of the current session
	subs      map[string]*subscription
	timeout   time.Duration // server's advice.timeout: how long it may hold a connect
	interval  time.Duration
	reconnect string
}

// New returns a client; it does not contact the server.
func New(cfg Config) (*Client, error) {
	if cfg.Auth == nil {
		return nil, errors.New("streaming: Config.Auth is required")
	}
	hc := &http.Client{}
	if cfg.HTTPClient != nil {
		copied := *cfg.HTTPClient
		hc = &copied
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	hc.Jar = jar
	hc.Timeout = 0
	c := &Client{
		auth:       cfg.Auth,
		version:    strings.TrimPrefix(cfg.APIVersion, "v"),
		http:       hc,
		log:        cfg.Logger,
		maxBackoff: cfg.MaxBackoff,
		onSub:      cfg.OnSubscribe,
		subs:       map[string]*subscription{},
		timeout:    110 * time.Second,
	}
	if c.version == "" {
		c.version = salesforce.DefaultAPIVersion
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = 30 * time.Second
	}
	return c, nil
}

// LastReplayID returns the last replay id the handler processed on channel.
func (c *Client) LastReplayID(channel string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.subs[channel]
	if !ok || !s.processed {
		return 0, false
	}
	return s.lastProcessed, true
}

// Subscribe adds channel (e.g. /data/AccountChangeEvent or /data/ChangeEvents)
// starting after replayFrom (a stored replay id, ReplayTip or ReplayAll),
// replacing any earlier subscription to it. If a session is live the
// subscription is sent at once and a refusal (*ReplayIDError,
// *SubscribeError) returned and the channel dropped; otherwise it is sent when
// Run next handshakes, and a refusal there ends Run.
func (c *Client) Subscribe(ctx context.Context, channel string, replayFrom int64) error {
	sub := &subscription{replayFrom: replayFrom}
	c.mu.Lock()
	c.subs[channel] = sub
	live := c.clientID != ""
	c.mu.Unlock()
	if !live {
		return nil
	}
	err := c.subscribe(ctx, []string{channel})
	if errors.Is(err, errRehandshake) {
		return nil // Run re-subscribes everything after its next handshake
	}
	var (
		re *ReplayIDError
		se *SubscribeError
	)
	if errors.As(err, &re) || errors.As(err, &se) {
		// Refused for good: forget it, or the next re-handshake would fail on it.
		c.mu.Lock()
		if c.subs[channel] == sub {
			delete(c.subs, channel)
		}
		c.mu.Unlock()
	}
	return err
}

// Unsubscribe removes channel. Events already in flight on it are dropped.
func (c *Client) Unsubscribe(ctx context.Context, channel string) error {
	c.mu.Lock()
	_, had := c.subs[channel]
	delete(c.subs, channel)
	clientID := c.clientID
	c.mu.Unlock()
	if !had || clientID == "" {
		return nil
	}
	replies, err := c.post(ctx, []map[string]any{{
		"channel": "/meta/unsubscribe", "clientId": clientID, "subscription": channel, "id": c.id(),
	}}, 30*time.Second)
	if err != nil {
		return err
	}
	for _, m := range replies {
		if m.Channel == "/meta/unsubscribe" && !m.ok() && !isUnknownClient(m.Error) {
			return &SubscribeError{Channel: channel, Message: "unsubscribe: " + m.Error}
		}
	}
	return nil
}

// errRehandshake ends a session that the server no longer knows.
var errRehandshake = errors.New("streaming: session lost, handshake again")

// errUnauthorized is an HTTP 401 from the CometD endpoint.
var errUnauthorized = errors.New("streaming: HTTP 401")

// Run handshakes, subscribes and long-polls until ctx ends (returning
// ctx.Err() after a best-effort disconnect), the handler fails, or the server
// refuses in a way retrying cannot fix (*ReplayIDError, *SubscribeError,
// *BayeuxError, an authentication failure that a token refresh did not cure).
// A lost session (403::Unknown client, reconnect advice "handshake") is
// re-established and every channel re-subscribed from its last processed
// replay id. Run must not be called concurrently.
func (c *Client) Run(ctx context.Context, handler Handler) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("streaming: Run is already running")
	}
	defer c.running.Store(false)
	defer c.disconnect()

	refreshed := false // a token refresh happened and no session has worked since
	backoff := time.Duration(0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		established, err := c.session(ctx, handler)
		if established {
			refreshed, backoff = false, 0
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errRehandshake):
			continue
		case errors.Is(err, errUnauthorized):
			if refreshed {
				return fmt.Errorf("streaming: authentication still refused after a token refresh: %w", err)
			}
			refreshed = true
			if err := c.refreshToken(ctx); err != nil {
				return err
			}
			continue
		}
		var (
			re *ReplayIDError
			se *SubscribeError
			be *BayeuxError
		)
		if errors.As(err, &re) || errors.As(err, &se) || errors.As(err, &be) {
			return err
		}
		var he *handlerError
		if errors.As(err, &he) {
			return he.err
		}
		// Transport trouble: wait and try a fresh handshake.
		backoff = min(max(backoff*2, 500*time.Millisecond), c.maxBackoff)
		c.log.WarnContext(ctx, "cometd session failed; retrying", "error", err, "backoff", backoff)
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
	}
}

type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// session runs one Bayeux session: handshake, subscribe, connect loop.
// established reports whether the handshake succeeded.
func (c *Client) session(ctx context.Context, handler Handler) (established bool, err error) {
	if err := c.handshake(ctx); err != nil {
		return false, err
	}
	c.mu.Lock()
	channels := make([]string, 0, len(c.subs))
	for ch := range c.subs {
		channels = append(channels, ch)
	}
	c.mu.Unlock()
	if len(channels) > 0 {
		if err := c.subscribe(ctx, channels); err != nil {
			return true, err
		}
	}
	return true, c.connectLoop(ctx, handler)
}

func (c *Client) id() string { return strconv.FormatInt(c.nextID.Add(1), 10) }

func (c *Client) refreshToken(ctx context.Context) error {
	c.mu.Lock()
	stale := ""
	if c.tok != nil {
		stale = c.tok.AccessToken
	}
	c.mu.Unlock()
	tok, err := c.auth.Refresh(ctx, stale)
	if err != nil {
		return fmt.Errorf("streaming: token refresh: %w", err)
	}
	c.mu.Lock()
	c.tok = tok
	c.mu.Unlock()
	return nil
}

func (c *Client) handshake(ctx context.Context) error {
	tok, err := c.auth.Token(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.tok, c.clientID = tok, ""
	c.mu.Unlock()
	replies, err := c.post(ctx, []map[string]any{{
		"channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}, "id": c.id(),
	}}, 30*time.Second)
	if err != nil {
		return err
	}
	for _, m := range replies {
		if m.Channel != "/meta/handshake" {
			continue
		}
		if m.ok() && m.ClientID != "" {
			c.mu.Lock()
			c.clientID = m.ClientID
			c.applyAdvice(m.Advice)
			c.mu.Unlock()
			return nil
		}
		// A revoked token shows as 403::Handshake denied with the real reason
		// in ext.sfdc.failureReason.
		var ext struct {
			Sfdc struct {
				FailureReason string `json:"failureReason"`
			} `json:"sfdc"`
		}
		_ = json.Unmarshal(m.Ext, &ext)
		if strings.HasPrefix(m.Error, "401") || strings.HasPrefix(ext.Sfdc.FailureReason, "401") {
			return fmt.Errorf("%w: %s %s", errUnauthorized, m.Error, ext.Sfdc.FailureReason)
		}
		if m.Advice != nil && m.Advice.Reconnect == "retry" {
			return fmt.Errorf("streaming: handshake refused, retrying: %s", m.Error)
		}
		return &BayeuxError{Channel: "/meta/handshake", Message: m.Error}
	}
	return errors.New("streaming: handshake answer lacks a /meta/handshake reply")
}

func (c *Client) subscribe(ctx context.Context, channels []string) error {
	c.mu.Lock()
	clientID := c.clientID
	msgs := make([]map[string]any, 0, len(channels))
	from := map[string]int64{}
	for _, ch := range channels {
		s, ok := c.subs[ch]
		if !ok {
			continue
		}
		from[ch] = s.position()
		msgs = append(msgs, map[string]any{
			"channel": "/meta/subscribe", "clientId": clientID, "subscription": ch, "id": c.id(),
			"ext": map[string]any{"replay": map[string]int64{ch: s.position()}},
		})
	}
	c.mu.Unlock()
	// Salesforce refuses a CometD POST of more than 32,768 bytes (413
	// Maximum Request Size Exceeded), so the subscriptions re-sent after a
	// handshake go in as many POSTs as they need: in one, a worker with
	// about 150 channels or more never got them through.
	for len(msgs) > 0 {
		n, size := 0, 2 // the array's brackets
		for n < len(msgs) {
			b, err := json.Marshal(msgs[n])
			if err != nil {
				return err
			}
			if n > 0 && size+1+len(b) > maxRequestBytes {
				break
			}
			size += len(b) + 1
			n++
		}
		batch := make([]string, 0, n)
		for _, m := range msgs[:n] {
			batch = append(batch, m["subscription"].(string))
		}
		if err := c.subscribeBatch(ctx, msgs[:n], batch, from); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// maxRequestBytes is the largest CometD request body Salesforce accepts.
const maxRequestBytes = 32768

// subscribeBatch sends the subscribe messages msgs, for channels, in one POST.
func (c *Client) subscribeBatch(ctx context.Context, msgs []map[string]any, channels []string, from map[string]int64) error {
	replies, err := c.post(ctx, msgs, 30*time.Second)
	if err != nil {
		return err
	}
	for _, m := range replies {
		if m.Channel != "/meta/subscribe" || m.ok() {
			continue
		}
		if isUnknownClient(m.Error) {
			return errRehandshake
		}
		ch := ""
		if subs := m.subscriptions(); len(subs) > 0 {
			ch = subs[0]
		}
		if strings.HasPrefix(m.Error, "401") {
			return fmt.Errorf("%w: %s", errUnauthorized, m.Error)
		}
		if strings.Contains(m.Error, "replayId") {
			return &ReplayIDError{Channel: ch, ReplayID: from[ch], Message: m.Error}
		}
		return &SubscribeError{Channel: ch, Message: m.Error}
	}
	c.log.DebugContext(ctx, "cometd subscribed", "channels", channels)
	if c.onSub != nil {
		for _, ch := range channels {
			if pos, ok := from[ch]; ok {
				c.onSub(ch, pos)
			}
		}
	}
	return nil
}

func isUnknownClient(e string) bool { return strings.HasPrefix(e, "403::Unknown client") }

func (c *Client) applyAdvice(a *advice) {
	if a == nil {
		return
	}
	if a.Timeout != nil {
		c.timeout = time.Duration(*a.Timeout) * time.Millisecond
	}
	if a.Interval != nil {
		c.interval = time.Duration(*a.Interval) * time.Millisecond
	}
	if a.Reconnect != "" {
		c.reconnect = a.Reconnect
	}
}

// connectLoop long-polls /meta/connect, delivering events, until the session
// ends. The first connect asks for an immediate answer (advice timeout 0).
func (c *Client) connectLoop(ctx context.Context, handler Handler) error {
	first := true
	failures := 0
	refused := 0 // connects answered unsuccessfully in a row
	for {
		c.mu.Lock()
		clientID, hold, interval, reconnect := c.clientID, c.timeout, c.interval, c.reconnect
		c.mu.Unlock()
		msg := map[string]any{"channel": "/meta/connect", "clientId": clientID, "connectionType": "long-polling", "id": c.id()}
		if first {
			msg["advice"] = map[string]any{"timeout": 0}
		}
		// Give the server its full hold time plus margin before giving up on
		// the request (faye waits 1.2 × timeout).
		replies, err := c.post(ctx, []map[string]any{msg}, hold+hold/5+5*time.Second)
		if err != nil {
			if errors.Is(err, errUnauthorized) || ctx.Err() != nil {
				return err
			}
			failures++
			if failures > 3 {
				return err // let Run back off and start a new session
			}
			if err := sleep(ctx, time.Duration(failures)*500*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		failures = 0
		first = false
		var connect *message
		for i := range replies {
			m := &replies[i]
			if m.Channel == "/meta/connect" {
				connect = m
				continue
			}
			if strings.HasPrefix(m.Channel, "/meta/") || len(m.Data) == 0 {
				continue
			}
			if err := c.deliver(ctx, m, handler); err != nil {
				return err
			}
		}
		if connect == nil {
			continue
		}
		c.mu.Lock()
		c.applyAdvice(connect.Advice)
		reconnect, interval = c.reconnect, c.interval
		c.mu.Unlock()
		if !connect.ok() {
			switch {
			case strings.HasPrefix(connect.Error, "401"):
				return fmt.Errorf("%w: %s", errUnauthorized, connect.Error)
			case isUnknownClient(connect.Error), reconnect == "handshake":
				c.log.InfoContext(ctx, "cometd session lost; handshaking again", "error", connect.Error)
				return errRehandshake
			case reconnect == "none":
				return &BayeuxError{Channel: "/meta/connect", Message: connect.Error}
			}
			// reconnect "retry" (or no advice): connect again, but not at
			// once. A refusal that lasts (the org's event allocation is
			// spent, the server is too busy) would otherwise be asked
			// again thousands of times a second.
			refused++
			wait := min(time.Duration(1<<min(refused-1, 10))*500*time.Millisecond, c.maxBackoff)
			if refused == 1 {
				c.log.WarnContext(ctx, "cometd connect refused; retrying with backoff", "error", connect.Error)
			}
			if err := sleep(ctx, max(wait, interval)); err != nil {
				return err
			}
			continue
		} else if reconnect == "none" {
			return &BayeuxError{Channel: "/meta/connect", Message: "server advised not to reconnect"}
		} else if reconnect == "handshake" {
			return errRehandshake
		}
		refused = 0
		if interval > 0 {
			if err := sleep(ctx, interval); err != nil {
				return err
			}
		}
	}
}

func (c *Client) deliver(ctx context.Context, m *message, handler Handler) error {
	c.mu.Lock()
	sub, ok := c.subs[m.Channel]
	c.mu.Unlock()
	if !ok {
		return nil // unsubscribed meanwhile
	}
	ev, err := parseEvent(m.Channel, m.Data)
	if err != nil {
		return &handlerError{err: err}
	}
	if err := handler(ctx, ev); err != nil {
		return &handlerError{err: err}
	}
	c.mu.Lock()
	// The subscription may have been replaced by a new Subscribe meanwhile;
	// only the one the event belonged to records it.
	if cur, ok := c.subs[m.Channel]; ok && cur == sub {
		sub.lastProcessed, sub.processed = ev.ReplayID, true
	}
	c.mu.Unlock()
	return nil
}

// disconnect ends the session politely; best effort, bounded in time.
func (c *Client) disconnect() {
	c.mu.Lock()
	clientID := c.clientID
	c.clientID = ""
	c.mu.Unlock()
	if clientID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = c.post(ctx, []map[string]any{{"channel": "/meta/disconnect", "clientId": clientID, "id": c.id()}}, 2*time.Second)
}

// post sends a batch of Bayeux messages and returns the replies.
func (c *Client) post(ctx context.Context, msgs []map[string]any, timeout time.Duration) ([]message, error) {
	c.mu.Lock()
	tok := c.tok
	c.mu.Unlock()
	if tok == nil {
		var err error
		if tok, err = c.auth.Token(ctx); err != nil {
			return nil, err
		}
	}
	body, err := json.Marshal(msgs)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, tok.InstanceURL+"/cometd/"+c.version, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "OAuth "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("streaming: POST /cometd/%s: %w", c.version, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("streaming: reading CometD answer: %w", err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("%w: %s", errUnauthorized, strings.TrimSpace(string(data)))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("streaming: POST /cometd/%s: HTTP %d: %.200s", c.version, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var replies []message
	if err := json.Unmarshal(data, &replies); err != nil {
		return nil, fmt.Errorf("streaming: CometD answer is not a message array: %w", err)
	}
	return replies, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
