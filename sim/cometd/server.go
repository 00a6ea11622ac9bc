package cometd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults taken from Salesforce's Streaming API.
const (
	DefaultConnectTimeout = 110 * time.Second
	DefaultSessionTimeout = 40 * time.Second // a client that does not reconnect within this is dropped
	MaxRequestBytes       = 32768
	// maxEventsPerResponse bounds one /meta/connect answer so a -2 replay of a large backlog arrives in
	// digestible pieces; with advice.interval 0 the client reconnects at once for the rest.
	maxEventsPerResponse = 1000
)

// Salesforce's error strings (reference §7.4); clients match on them.
const (
	errUnknownClient   = "403::Unknown client"
	errAuthInvalid     = "401::Authentication invalid"
	errAuthRequired    = "401::Request requires authentication"
	errHandshakeDenied = "403::Handshake denied"
)

// InvalidReplayIDError is the subscribe error for a replay id outside retention (note the two spaces).
func InvalidReplayIDError(replayID int64) string {
	return fmt.Sprintf("400::The replayId {%d} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.", replayID)
}

// UnknownChannelError is the subscribe error for a channel that does not exist.
func UnknownChannelError(channel string) string {
	return "400::The channel you requested to subscribe to doesn't exist {" + channel + "}"
}

// Options configures the Bayeux endpoint.
type Options struct {
	// Authenticate returns nil when "Authorization: OAuth <token>" (or Bearer) is valid. nil accepts everyone.
	Authenticate func(r *http.Request) error
	// ValidChannel reports whether a change-event channel exists (its entity exists and is CDC-enabled).
	// nil accepts every well-formed /data/...ChangeEvent(s) channel.
	ValidChannel func(channel string) bool
	// ConnectTimeout is how long a /meta/connect is held with nothing to deliver (Salesforce: 110 s).
	ConnectTimeout time.Duration
	// SessionTimeout drops a client that has not come back this long after its last answer (Salesforce: 40 s).
	SessionTimeout time.Duration
	Clock          func() time.Time
}

// Server is the Bayeux long-polling endpoint mounted at /cometd/{version}.
type Server struct {
	bus  *Bus
	opts Options

	mu      sync.Mutex
	clients map[string]*client
	// connectErr, when set, answers every /meta/connect unsuccessfully
	// with it (FailConnects).
	connectErr string
}

// FailConnects answers every /meta/connect with successful false and errText
// (no advice), as Salesforce answers a subscriber once the org's event
// delivery allocation is spent ("403::Organization total events daily limit
// exceeded") or the server is overloaded ("503::Server is too busy"); ""
// ends it.
func (s *Server) FailConnects(errText string) {
	s.mu.Lock()
	s.connectErr = errText
	s.mu.Unlock()
}

type subscription struct {
	channel string
	entity  string // "" with all
	all     bool
	after   int64 // deliver events with replay id > after
}

type client struct {
	id string

	mu       sync.Mutex
	subs     map[string]*subscription
	order    []string // subscribed channels in a stable order
	lastSeen time.Time
	polling  bool          // a /meta/connect is being held right now
	connects int           // connects seen (the first is answered at once)
	release  chan struct{} // closed to end the currently held connect (a newer connect arrived)
	kick     chan struct{} // closed and replaced when subscriptions change
	gone     chan struct{} // closed when the session ends
	dropped  bool          // ended by DropSessions (vs. /meta/disconnect)
}

// NewServer returns the endpoint for bus.
func NewServer(bus *Bus, opts Options) *Server {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = DefaultSessionTimeout
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Server{bus: bus, opts: opts, clients: map[string]*client{}}
}

// DropSessions forgets every client: held connects and the next request of each client get
// "403::Unknown client" with advice to handshake again.
func (s *Server) DropSessions() {
	s.mu.Lock()
	old := s.clients
	s.clients = map[string]*client{}
	s.mu.Unlock()
	for _, c := range old {
		c.end(true)
	}
}

// Clients is the number of live Bayeux sessions.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

func (c *client) end(dropped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.gone:
	default:
		c.dropped = dropped
		close(c.gone)
	}
}

// message is an incoming Bayeux message; only the fields Salesforce's server looks at.
type message struct {
	Channel      string                     `json:"channel"`
	ClientID     string                     `json:"clientId"`
	ID           json.RawMessage            `json:"id"`
	Subscription string                     `json:"subscription"`
	Advice       *struct{ Timeout *int64 }  `json:"advice"`
	Ext          map[string]json.RawMessage `json:"ext"`
}

// reply is an outgoing meta message; field order follows what Salesforce sends.
type reply struct {
	Ext                      any             `json:"ext,omitempty"`
	Advice                   any             `json:"advice,omitempty"`
	MinimumVersion           string          `json:"minimumVersion,omitempty"`
	ClientID                 string          `json:"clientId,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	Channel                  string          `json:"channel"`
	ID                       json.RawMessage `json:"id,omitempty"`
	Subscription             string          `json:"subscription,omitempty"`
	Version                  string          `json:"version,omitempty"`
	Error                    string          `json:"error,omitempty"`
	Successful               bool            `json:"successful"`
}

type advice struct {
	Interval  int    `json:"interval"`
	Timeout   *int64 `json:"timeout,omitempty"`
	Reconnect string `json:"reconnect"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// faye probes a WebSocket upgrade first; Salesforce only does long-polling, so refuse and let it fall back.
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "WebSocket transport is not supported; use long-polling", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Bayeux long-polling requires POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		http.Error(w, "cannot read request body", http.StatusBadRequest)
		return
	}
	if len(body) > MaxRequestBytes {
		http.Error(w, "Maximum Request Size Exceeded", http.StatusRequestEntityTooLarge)
		return
	}
	msgs, err := parseMessages(body)
	if err != nil {
		http.Error(w, "malformed Bayeux message: "+err.Error(), http.StatusBadRequest)
		return
	}

	authErr := ""
	if r.Header.Get("Authorization") == "" {
		authErr = errAuthRequired
	} else if s.opts.Authenticate != nil && s.opts.Authenticate(r) != nil {
		authErr = errAuthInvalid
	}

	var (
		replies []reply
		connect *message
		kicked  []*client
	)
	for i := range msgs {
		m := &msgs[i]
		if authErr != "" {
			replies = append(replies, authFailure(m, authErr))
			continue
		}
		switch m.Channel {
		case "/meta/handshake":
			replies = append(replies, s.handshake(m))
		case "/meta/connect":
			// Answered last so that subscribe replies precede any events in the same array; faye only
			// dispatches events for subscriptions it already knows about.
			connect = m
		case "/meta/subscribe":
			rep, c := s.subscribe(m)
			replies = append(replies, rep)
			if c != nil {
				kicked = append(kicked, c)
			}
		case "/meta/unsubscribe":
			replies = append(replies, s.unsubscribe(m))
		case "/meta/disconnect":
			replies = append(replies, s.disconnect(m))
		default:
			replies = append(replies, reply{Channel: m.Channel, ID: m.ID, ClientID: m.ClientID,
				Error: "403::Publishing is not supported", Successful: false})
		}
	}

	var events [][]byte
	if connect != nil {
		var rep reply
		rep, events = s.connect(r.Context(), connect, len(kicked) > 0)
		replies = append(replies, rep)
	}
	writeResponse(w, replies, events)
	// Wake a connect held on another request only now, after this subscribe answer is on the wire, so the
	// client registers the subscription before the events arrive.
	for _, c := range kicked {
		c.signal()
	}
}

func parseMessages(body []byte) ([]message, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '{' {
		var m message
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return []message{m}, nil
	}
	var msgs []message
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, errors.New("empty message array")
	}
	return msgs, nil
}

func writeResponse(w http.ResponseWriter, replies []reply, events [][]byte) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	first := true
	sep := func() {
		if !first {
			buf.WriteByte(',')
		}
		first = false
	}
	// Non-connect replies first, then events, then the connect answer (which is always last in replies).
	n := len(replies)
	connectLast := n > 0 && replies[n-1].Channel == "/meta/connect"
	head := replies
	if connectLast {
		head = replies[:n-1]
	}
	for _, rep := range head {
		sep()
		b, _ := json.Marshal(rep)
		buf.Write(b)
	}
	for _, e := range events {
		sep()
		buf.Write(e)
	}
	if connectLast {
		sep()
		b, _ := json.Marshal(replies[n-1])
		buf.Write(b)
	}
	buf.WriteByte(']')
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = w.Write(buf.Bytes())
}

func authFailure(m *message, errText string) reply {
	if m.Channel == "/meta/handshake" {
		if errText == errAuthRequired {
			return reply{Channel: m.Channel, ID: m.ID, Advice: map[string]any{"reconnect": "none"},
				Error: errText, Successful: false}
		}
		return reply{Ext: map[string]any{"sfdc": map[string]any{"failureReason": errText}, "replay": true},
			Advice: map[string]any{"reconnect": "none"}, Channel: m.Channel, ID: m.ID,
			Error: errHandshakeDenied, Successful: false}
	}
	return reply{ClientID: m.ClientID, Advice: advice{Interval: 0, Reconnect: "none"}, Channel: m.Channel,
		ID: m.ID, Subscription: m.Subscription, Error: errText, Successful: false}
}

func unknownClient(m *message) reply {
	return reply{Advice: advice{Interval: 0, Reconnect: "handshake"}, Channel: m.Channel, ID: m.ID,
		Subscription: m.Subscription, Error: errUnknownClient, Successful: false}
}

func newClientID() string {
	// Salesforce client ids look like 27 lowercase base-36 characters.
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [27]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

func (s *Server) handshake(m *message) reply {
	now := s.opts.Clock()
	c := &client{id: newClientID(), subs: map[string]*subscription{}, lastSeen: now,
		kick: make(chan struct{}), gone: make(chan struct{})}
	s.mu.Lock()
	s.sweepLocked(now)
	s.clients[c.id] = c
	s.mu.Unlock()
	return reply{Ext: map[string]any{"replay": true, "payload.format": true}, MinimumVersion: "1.0",
		ClientID: c.id, SupportedConnectionTypes: []string{"long-polling"}, Channel: m.Channel, ID: m.ID,
		Version: "1.0", Successful: true}
}

// sweepLocked drops sessions whose client stopped polling longer than SessionTimeout ago.
func (s *Server) sweepLocked(now time.Time) {
	for id, c := range s.clients {
		if c.expired(now, s.opts.SessionTimeout) {
			delete(s.clients, id)
			c.end(false)
		}
	}
}

func (c *client) expired(now time.Time, timeout time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.polling && now.Sub(c.lastSeen) > timeout
}

// lookup finds a live client and marks it seen.
func (s *Server) lookup(id string) *client {
	now := s.opts.Clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[id]
	if c == nil {
		return nil
	}
	if c.expired(now, s.opts.SessionTimeout) {
		delete(s.clients, id)
		c.end(false)
		return nil
	}
	c.mu.Lock()
	c.lastSeen = now
	c.mu.Unlock()
	return c
}

func (s *Server) subscribe(m *message) (reply, *client) {
	c := s.lookup(m.ClientID)
	if c == nil {
		return unknownClient(m), nil
	}
	fail := func(text string) (reply, *client) {
		return reply{ClientID: c.id, Channel: m.Channel, ID: m.ID, Subscription: m.Subscription,
			Error: text, Successful: false}, nil
	}
	channel := m.Subscription
	entity, all, ok := EntityForChannel(channel)
	if !ok || (s.opts.ValidChannel != nil && !s.opts.ValidChannel(channel)) {
		return fail(UnknownChannelError(channel))
	}

	replay := int64(-1) // no replay extension: new events only
	if raw, has := m.Ext["replay"]; has {
		var replayMap map[string]json.Number
		if err := json.Unmarshal(raw, &replayMap); err != nil {
			return fail("400::The replay ID map is malformed: " + err.Error())
		}
		v, found := replayMap[channel]
		if !found {
			return fail(fmt.Sprintf("400::The replayId for channel {%s} wasn't found using the provided replay ID map {%s}. "+
				"Ensure that the channel name you provided in the replay map is valid and matches the channel name used for subscribing.",
				channel, javaMap(replayMap)))
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return fail(InvalidReplayIDError(0))
		}
		replay = n
	}
	after, valid := s.bus.replayStart(replay)
	if !valid {
		return fail(InvalidReplayIDError(replay))
	}

	c.mu.Lock()
	if _, exists := c.subs[channel]; !exists {
		c.order = append(c.order, channel)
		sort.Strings(c.order)
	}
	c.subs[channel] = &subscription{channel: channel, entity: entity, all: all, after: after}
	c.mu.Unlock()
	return reply{ClientID: c.id, Channel: m.Channel, ID: m.ID, Subscription: channel, Successful: true}, c
}

// javaMap renders a replay map the way Salesforce's Java server prints it in error text: {a=1, b=2}.
func javaMap(m map[string]json.Number) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + string(m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (s *Server) unsubscribe(m *message) reply {
	c := s.lookup(m.ClientID)
	if c == nil {
		return unknownClient(m)
	}
	c.mu.Lock()
	if _, ok := c.subs[m.Subscription]; ok {
		delete(c.subs, m.Subscription)
		for i, ch := range c.order {
			if ch == m.Subscription {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
	}
	c.mu.Unlock()
	return reply{ClientID: c.id, Channel: m.Channel, ID: m.ID, Subscription: m.Subscription, Successful: true}
}

func (s *Server) disconnect(m *message) reply {
	s.mu.Lock()
	c := s.clients[m.ClientID]
	delete(s.clients, m.ClientID)
	s.mu.Unlock()
	if c == nil {
		return unknownClient(m)
	}
	c.end(false)
	return reply{ClientID: c.id, Channel: m.Channel, ID: m.ID, Successful: true}
}

// signal wakes a held connect because the subscriptions changed.
func (c *client) signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.kick)
	c.kick = make(chan struct{})
}

// connect answers a /meta/connect: at once for the first connect (or one asking for timeout 0, or when events
// are already waiting), otherwise held until an event for one of the client's subscriptions is published, the
// subscriptions change, ConnectTimeout passes, or the session ends.
func (s *Server) connect(ctx context.Context, m *message, subscribedNow bool) (reply, [][]byte) {
	c := s.lookup(m.ClientID)
	if c == nil {
		return unknownClient(m), nil
	}
	s.mu.Lock()
	failure := s.connectErr
	s.mu.Unlock()
	if failure != "" {
		return reply{ClientID: c.id, Channel: m.Channel, ID: m.ID, Error: failure, Successful: false}, nil
	}
	ok := reply{ClientID: c.id, Channel: m.Channel, ID: m.ID, Successful: true}

	c.mu.Lock()
	c.connects++
	first := c.connects == 1
	if c.release != nil {
		close(c.release) // a newer connect replaces the held one, as in CometD
	}
	release := make(chan struct{})
	c.release = release
	c.polling = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.release == release {
			c.release = nil
			c.polling = false
		}
		c.lastSeen = s.opts.Clock()
		c.mu.Unlock()
	}()

	immediate := first || subscribedNow || (m.Advice != nil && m.Advice.Timeout != nil && *m.Advice.Timeout == 0)
	if first {
		timeout := s.opts.ConnectTimeout.Milliseconds()
		ok.Advice = advice{Interval: 0, Timeout: &timeout, Reconnect: "retry"}
	}

	var timer *time.Timer
	for {
		c.mu.Lock()
		kick := c.kick
		c.mu.Unlock()
		events, wake := s.collect(c)
		if len(events) > 0 || immediate {
			return ok, events
		}
		if timer == nil {
			timer = time.NewTimer(s.opts.ConnectTimeout)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-kick:
		case <-timer.C:
			return ok, nil
		case <-release:
			return ok, nil
		case <-c.gone:
			c.mu.Lock()
			dropped := c.dropped
			c.mu.Unlock()
			if dropped {
				return unknownClient(m), nil
			}
			return ok, nil
		case <-ctx.Done():
			return ok, nil
		}
	}
}

// collect renders the client's pending events (in replay-id order, one message per matching subscription)
// and advances its subscriptions. It also returns the bus's current wake channel, taken under the same lock,
// so that an event published right after collect still wakes the caller.
func (s *Server) collect(c *client) ([][]byte, <-chan struct{}) {
	b := s.bus
	c.mu.Lock()
	defer c.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(b.clock())
	wake := b.wake
	if len(c.order) == 0 {
		return nil, wake
	}
	subs := make([]*subscription, len(c.order))
	minAfter := int64(1<<63 - 1)
	for i, ch := range c.order {
		subs[i] = c.subs[ch]
		// After Bus.Reset replay ids start again at 1; a position beyond the tip would starve the subscriber.
		subs[i].after = min(subs[i].after, b.lastID)
		minAfter = min(minAfter, subs[i].after)
	}
	var out [][]byte
	scanned := minAfter
	for i := b.searchLocked(minAfter + 1); i < len(b.events) && len(out) < maxEventsPerResponse; i++ {
		e := &b.events[i]
		info := &b.entities[e.entity]
		for _, sub := range subs {
			if e.id <= sub.after || !(sub.all || sub.channel == info.channel) {
				continue
			}
			msg := make([]byte, 0, len(e.data)+len(sub.channel)+24)
			msg = append(msg, `{"data":`...)
			msg = append(msg, e.data...)
			msg = append(msg, `,"channel":`...)
			msg = strconv.AppendQuote(msg, sub.channel)
			msg = append(msg, '}')
			out = append(out, msg)
		}
		scanned = e.id
	}
	if len(out) < maxEventsPerResponse {
		scanned = max(scanned, b.lastID) // everything up to the tip was looked at
	}
	for _, sub := range subs {
		sub.after = max(sub.after, scanned)
	}
	return out, wake
}
