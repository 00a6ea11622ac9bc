package cometd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type testBundle struct {
	bus    *Bus
	server *Server
	http   *httptest.Server
	clock  *fakeClock
	url    string
}

const goodToken = "00D000000000001!token"

func setup(t testing.TB, opts Options) *testBundle {
	t.Helper()
	tb := &testBundle{clock: &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}
	tb.bus = NewBus(0, tb.clock.Now)
	if opts.Authenticate == nil {
		opts.Authenticate = func(r *http.Request) error {
			if r.Header.Get("Authorization") != "OAuth "+goodToken && r.Header.Get("Authorization") != "Bearer "+goodToken {
				return errors.New("bad token")
			}
			return nil
		}
	}
	if opts.ValidChannel == nil {
		opts.ValidChannel = func(ch string) bool {
			entity, all, _ := EntityForChannel(ch)
			return all || entity == "Account" || entity == "Contact" || entity == "Widget__c"
		}
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 2 * time.Second
	}
	opts.Clock = tb.clock.Now
	tb.server = NewServer(tb.bus, opts)
	tb.http = httptest.NewServer(tb.server)
	t.Cleanup(tb.http.Close)
	tb.url = tb.http.URL + "/cometd/62.0"
	return tb
}

// post sends a batch of Bayeux messages and returns the answers.
func (tb *testBundle) post(t testing.TB, token string, msgs ...map[string]any) []map[string]any {
	t.Helper()
	body, err := json.Marshal(msgs)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, tb.url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "OAuth "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	require.Equal(t, "application/json;charset=UTF-8", resp.Header.Get("Content-Type"))
	var out []map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	require.NoError(t, d.Decode(&out))
	return out
}

func (tb *testBundle) handshake(t testing.TB) string {
	t.Helper()
	out := tb.post(t, goodToken, map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}, "id": "1"})
	require.Len(t, out, 1)
	require.Equal(t, true, out[0]["successful"])
	return out[0]["clientId"].(string)
}

func connectMsg(clientID string) map[string]any {
	return map[string]any{"channel": "/meta/connect", "clientId": clientID, "connectionType": "long-polling", "id": "c"}
}

func subscribeMsg(clientID, channel string, replay any) map[string]any {
	m := map[string]any{"channel": "/meta/subscribe", "clientId": clientID, "subscription": channel, "id": "s"}
	if replay != nil {
		m["ext"] = map[string]any{"replay": map[string]any{channel: replay}}
	}
	return m
}

// start handshakes, then sends the batched first connect + subscribe like faye, and returns the client id
// and the answers.
func (tb *testBundle) start(t testing.TB, channel string, replay any) (string, []map[string]any) {
	t.Helper()
	id := tb.handshake(t)
	first := connectMsg(id)
	first["advice"] = map[string]any{"timeout": 0}
	out := tb.post(t, goodToken, first, subscribeMsg(id, channel, replay))
	return id, out
}

func events(msgs []map[string]any) []map[string]any {
	var out []map[string]any
	for _, m := range msgs {
		if !strings.HasPrefix(m["channel"].(string), "/meta/") {
			out = append(out, m)
		}
	}
	return out
}

func replayID(t testing.TB, ev map[string]any) int64 {
	t.Helper()
	n, err := ev["data"].(map[string]any)["event"].(map[string]any)["replayId"].(json.Number).Int64()
	require.NoError(t, err)
	return n
}

func publishAccount(b *Bus, name string) int64 {
	return b.Publish("Account", map[string]any{
		"ChangeEventHeader": map[string]any{"entityName": "Account", "changeType": "CREATE", "recordIds": []string{"001000000000001AAA"}},
		"Name":              name,
	})
}

func TestHandshakeAdvertisesLongPollingAndReplay(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	out := tb.post(t, goodToken, map[string]any{"channel": "/meta/handshake", "version": "1.0", "id": "1",
		"supportedConnectionTypes": []string{"websocket", "long-polling"}})
	require.Len(t, out, 1)
	h := out[0]
	require.Equal(t, "/meta/handshake", h["channel"])
	require.Equal(t, "1", h["id"])
	require.Equal(t, "1.0", h["version"])
	require.Equal(t, "1.0", h["minimumVersion"])
	require.Equal(t, true, h["successful"])
	require.Equal(t, []any{"long-polling"}, h["supportedConnectionTypes"])
	require.Equal(t, map[string]any{"replay": true, "payload.format": true}, h["ext"])
	require.Len(t, h["clientId"], 27)
}

func TestFirstConnectBatchedWithSubscribeIsAnsweredAtOnceWithAdvice(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 110 * time.Second})
	start := time.Now()
	id, out := tb.start(t, "/data/AccountChangeEvent", -1)
	require.Less(t, time.Since(start), time.Second)
	require.Len(t, out, 2)
	// The subscribe answer precedes the connect answer so a client registers the subscription first.
	require.Equal(t, map[string]any{"clientId": id, "channel": "/meta/subscribe", "id": "s",
		"subscription": "/data/AccountChangeEvent", "successful": true}, out[0])
	require.Equal(t, map[string]any{"clientId": id, "channel": "/meta/connect", "id": "c", "successful": true,
		"advice": map[string]any{"interval": json.Number("0"), "timeout": json.Number("110000"), "reconnect": "retry"}}, out[1])
}

func TestHeldConnectIsWokenByPublishAndCarriesTheEvent(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 10 * time.Second})
	id, _ := tb.start(t, "/data/AccountChangeEvent", -1)

	done := make(chan []map[string]any, 1)
	go func() { done <- tb.post(t, goodToken, connectMsg(id)) }()
	waitHeld(t, tb.server, id)
	contactID := tb.bus.Publish("Contact", map[string]any{"LastName": "x"})
	select {
	case <-done:
		t.Fatal("an event on another entity's channel must not answer the connect")
	case <-time.After(30 * time.Millisecond):
	}
	rid := publishAccount(tb.bus, "Acme")
	require.Equal(t, contactID+1, rid)
	var out []map[string]any
	select {
	case out = <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("publish did not wake the held connect")
	}
	require.Len(t, out, 2)
	ev := out[0]
	require.Equal(t, "/data/AccountChangeEvent", ev["channel"])
	data := ev["data"].(map[string]any)
	require.Len(t, data["schema"], 22)
	require.Equal(t, "Acme", data["payload"].(map[string]any)["Name"])
	require.Equal(t, rid, replayID(t, ev))
	require.Len(t, data["event"].(map[string]any)["EventUuid"], 36)
	require.Equal(t, map[string]any{"clientId": id, "channel": "/meta/connect", "id": "c", "successful": true}, out[1])
}

// waitHeld waits until the server is holding a connect for the client.
func waitHeld(t testing.TB, s *Server, id string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		c := s.clients[id]
		s.mu.Unlock()
		if c != nil {
			c.mu.Lock()
			polling := c.polling
			c.mu.Unlock()
			if polling {
				return
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Fatal("connect was not held")
}

func TestHeldConnectIsAnsweredEmptyAfterConnectTimeout(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 50 * time.Millisecond})
	id, _ := tb.start(t, "/data/AccountChangeEvent", -1)
	start := time.Now()
	out := tb.post(t, goodToken, connectMsg(id))
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	require.Equal(t, []map[string]any{{"clientId": id, "channel": "/meta/connect", "id": "c", "successful": true}}, out)
}

func TestReplayMinusOneDeliversOnlyNewEvents(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 50 * time.Millisecond})
	publishAccount(tb.bus, "old")
	id, out := tb.start(t, "/data/AccountChangeEvent", -1)
	require.Empty(t, events(out))
	newID := publishAccount(tb.bus, "new")
	evs := events(tb.post(t, goodToken, connectMsg(id)))
	require.Len(t, evs, 1)
	require.Equal(t, newID, replayID(t, evs[0]))
}

func TestReplayMinusTwoDeliversAllRetainedEvents(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	for i := 0; i < 3; i++ {
		publishAccount(tb.bus, fmt.Sprint(i))
	}
	tb.bus.Publish("Contact", map[string]any{"LastName": "x"})
	_, out := tb.start(t, "/data/AccountChangeEvent", -2)
	evs := events(out)
	require.Len(t, evs, 3)
	for i, ev := range evs {
		require.Equal(t, int64(i+1), replayID(t, ev))
	}
}

func TestReplayFromStoredIDDeliversEventsAfterIt(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	for i := 0; i < 5; i++ {
		publishAccount(tb.bus, fmt.Sprint(i))
	}
	_, out := tb.start(t, "/data/AccountChangeEvent", 3)
	evs := events(out)
	require.Len(t, evs, 2)
	require.Equal(t, int64(4), replayID(t, evs[0]))
	require.Equal(t, int64(5), replayID(t, evs[1]))
}

func TestReplayIDOutsideRetentionIsRejectedWithSalesforceText(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	for i := 0; i < 5; i++ {
		publishAccount(tb.bus, fmt.Sprint(i))
	}
	tb.bus.ExpireBefore(3)
	for _, bad := range []int64{2, 99} {
		_, out := tb.start(t, "/data/AccountChangeEvent", bad)
		require.Equal(t, false, out[0]["successful"])
		require.Equal(t, fmt.Sprintf("400::The replayId {%d} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.", bad),
			out[0]["error"])
	}
	// -2 now starts at the oldest retained event.
	_, out := tb.start(t, "/data/AccountChangeEvent", -2)
	require.Equal(t, int64(3), replayID(t, events(out)[0]))
}

func TestRetentionExpiryDropsEventsOlderThanTheWindow(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	publishAccount(tb.bus, "old")
	tb.clock.Advance(DefaultRetention - time.Hour)
	keep := publishAccount(tb.bus, "recent")
	tb.clock.Advance(2 * time.Hour)
	require.Equal(t, 1, tb.bus.Len())

	_, out := tb.start(t, "/data/AccountChangeEvent", 1)
	require.Contains(t, out[0]["error"], "400::The replayId {1} you provided was invalid.")
	_, out = tb.start(t, "/data/AccountChangeEvent", -2)
	evs := events(out)
	require.Len(t, evs, 1)
	require.Equal(t, keep, replayID(t, evs[0]))
}

func TestReplayMapWithoutTheChannelIsRejected(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	id := tb.handshake(t)
	msg := subscribeMsg(id, "/data/AccountChangeEvent", nil)
	msg["ext"] = map[string]any{"replay": map[string]any{"/data/ContactChangeEvent": -1}}
	out := tb.post(t, goodToken, msg)
	require.Equal(t, "400::The replayId for channel {/data/AccountChangeEvent} wasn't found using the provided replay ID map "+
		"{{/data/ContactChangeEvent=-1}}. Ensure that the channel name you provided in the replay map is valid and matches the channel name used for subscribing.",
		out[0]["error"])
}

func TestUnknownChannelIsRejected(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	for _, ch := range []string{"/data/FooChangeEvent", "/topic/Whatever"} {
		_, out := tb.start(t, ch, -1)
		require.Equal(t, false, out[0]["successful"])
		require.Equal(t, "400::The channel you requested to subscribe to doesn't exist {"+ch+"}", out[0]["error"])
	}
}

func TestChangeEventsChannelLabelsEventsWithTheSubscribedChannel(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	publishAccount(tb.bus, "a")
	tb.bus.Publish("Widget__c", map[string]any{"Size__c": 3})
	_, out := tb.start(t, "/data/ChangeEvents", -2)
	evs := events(out)
	require.Len(t, evs, 2)
	for _, ev := range evs {
		require.Equal(t, "/data/ChangeEvents", ev["channel"])
	}
	_, out = tb.start(t, "/data/Widget__ChangeEvent", -2)
	evs = events(out)
	require.Len(t, evs, 1)
	require.Equal(t, "/data/Widget__ChangeEvent", evs[0]["channel"])
}

func TestSubscribeOnAnotherRequestWakesTheHeldConnect(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 10 * time.Second})
	publishAccount(tb.bus, "backlog")
	id := tb.handshake(t)
	first := connectMsg(id)
	require.Len(t, tb.post(t, goodToken, first), 1)

	done := make(chan []map[string]any, 1)
	go func() { done <- tb.post(t, goodToken, connectMsg(id)) }()
	waitHeld(t, tb.server, id)
	sub := tb.post(t, goodToken, subscribeMsg(id, "/data/AccountChangeEvent", -2))
	require.Equal(t, true, sub[0]["successful"])
	select {
	case out := <-done:
		require.Len(t, events(out), 1)
	case <-time.After(2 * time.Second):
		t.Fatal("the replayed backlog was not delivered to the held connect")
	}
}

func TestDropSessionsMakesEveryClientUnknown(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 10 * time.Second})
	id, _ := tb.start(t, "/data/AccountChangeEvent", -1)
	done := make(chan []map[string]any, 1)
	go func() { done <- tb.post(t, goodToken, connectMsg(id)) }()
	waitHeld(t, tb.server, id)
	tb.server.DropSessions()

	unknown := map[string]any{"advice": map[string]any{"interval": json.Number("0"), "reconnect": "handshake"},
		"channel": "/meta/connect", "id": "c", "error": "403::Unknown client", "successful": false}
	select {
	case out := <-done:
		require.Equal(t, []map[string]any{unknown}, out)
	case <-time.After(2 * time.Second):
		t.Fatal("held connect was not released by DropSessions")
	}
	require.Equal(t, []map[string]any{unknown}, tb.post(t, goodToken, connectMsg(id)))
	require.Equal(t, 0, tb.server.Clients())
}

func TestWebSocketUpgradeIsRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	req, err := http.NewRequest(http.MethodGet, tb.url, nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestUnsubscribeStopsDeliveryAndDisconnectEndsTheSession(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 50 * time.Millisecond})
	id, _ := tb.start(t, "/data/AccountChangeEvent", -1)
	out := tb.post(t, goodToken, map[string]any{"channel": "/meta/unsubscribe", "clientId": id,
		"subscription": "/data/AccountChangeEvent", "id": "u"})
	require.Equal(t, map[string]any{"clientId": id, "channel": "/meta/unsubscribe", "id": "u",
		"subscription": "/data/AccountChangeEvent", "successful": true}, out[0])
	publishAccount(tb.bus, "unseen")
	require.Empty(t, events(tb.post(t, goodToken, connectMsg(id))))

	out = tb.post(t, goodToken, map[string]any{"channel": "/meta/disconnect", "clientId": id, "id": "d"})
	require.Equal(t, map[string]any{"clientId": id, "channel": "/meta/disconnect", "id": "d", "successful": true}, out[0])
	require.Equal(t, "403::Unknown client", tb.post(t, goodToken, connectMsg(id))[0]["error"])
}

func TestAuthenticationFailuresUseSalesforceErrors(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	out := tb.post(t, "revoked", map[string]any{"channel": "/meta/handshake", "version": "1.0", "id": "1"})
	require.Equal(t, "403::Handshake denied", out[0]["error"])
	require.Equal(t, map[string]any{"sfdc": map[string]any{"failureReason": "401::Authentication invalid"}, "replay": true}, out[0]["ext"])
	require.Equal(t, map[string]any{"reconnect": "none"}, out[0]["advice"])

	id := tb.handshake(t)
	out = tb.post(t, "revoked", connectMsg(id))
	require.Equal(t, map[string]any{"clientId": id, "advice": map[string]any{"interval": json.Number("0"), "reconnect": "none"},
		"channel": "/meta/connect", "id": "c", "error": "401::Authentication invalid", "successful": false}, out[0])

	out = tb.post(t, "", map[string]any{"channel": "/meta/handshake", "version": "1.0", "id": "1"})
	require.Equal(t, "401::Request requires authentication", out[0]["error"])
}

func TestSessionEndsWhenClientDoesNotReconnectInTime(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	id, _ := tb.start(t, "/data/AccountChangeEvent", -1)
	tb.clock.Advance(DefaultSessionTimeout + time.Second)
	require.Equal(t, "403::Unknown client", tb.post(t, goodToken, connectMsg(id))[0]["error"])
}

func TestLargeBacklogIsDeliveredInBoundedResponses(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ConnectTimeout: 20 * time.Millisecond})
	const n = 2500
	for i := 0; i < n; i++ {
		publishAccount(tb.bus, fmt.Sprint(i))
	}
	id, out := tb.start(t, "/data/AccountChangeEvent", -2)
	got := events(out)
	require.Len(t, got, maxEventsPerResponse)
	for len(got) < n {
		more := events(tb.post(t, goodToken, connectMsg(id)))
		require.NotEmpty(t, more)
		got = append(got, more...)
	}
	for i, ev := range got {
		require.Equal(t, int64(i+1), replayID(t, ev))
	}
}

func TestRequestLargerThanLimitIsRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	big := `[{"channel":"/meta/handshake","pad":"` + strings.Repeat("x", MaxRequestBytes) + `"}]`
	req, err := http.NewRequest(http.MethodPost, tb.url, strings.NewReader(big))
	require.NoError(t, err)
	req.Header.Set("Authorization", "OAuth "+goodToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

func TestChannelNamesFollowSalesforceConventions(t *testing.T) {
	t.Parallel()
	require.Equal(t, "/data/AccountChangeEvent", ChannelFor("Account"))
	require.Equal(t, "/data/Widget__ChangeEvent", ChannelFor("Widget__c"))
	entity, all, ok := EntityForChannel("/data/Widget__ChangeEvent")
	require.Equal(t, "Widget__c", entity)
	require.False(t, all)
	require.True(t, ok)
	_, all, ok = EntityForChannel("/data/ChangeEvents")
	require.True(t, all && ok)
	_, _, ok = EntityForChannel("/topic/Foo")
	require.False(t, ok)
}

// BenchmarkPublishToDelivery measures the time from Publish to the held /meta/connect's answer arriving at
// the HTTP client.
func BenchmarkPublishToDelivery(b *testing.B) {
	tb := setup(b, Options{ConnectTimeout: 10 * time.Second})
	id, _ := tb.start(b, "/data/AccountChangeEvent", -1)
	body, _ := json.Marshal([]map[string]any{connectMsg(id)})
	var total time.Duration
	var worst time.Duration
	for i := 0; i < b.N; i++ {
		done := make(chan time.Time, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, tb.url, bytes.NewReader(body))
			req.Header.Set("Authorization", "OAuth "+goodToken)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			done <- time.Now()
		}()
		waitHeld(b, tb.server, id)
		start := time.Now()
		publishAccount(tb.bus, "x")
		lat := (<-done).Sub(start)
		total += lat
		worst = max(worst, lat)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/delivery")
	b.ReportMetric(float64(worst.Microseconds()), "µs-worst")
}
