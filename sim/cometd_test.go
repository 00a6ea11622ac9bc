package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"

	"github.com/stretchr/testify/require"
)

// bayeux is a minimal long-polling CometD client over the org's real HTTP endpoint, authenticated with the
// bundle's access token, with a cookie jar as Salesforce's server expects.
type bayeux struct {
	b        *bundle
	http     *http.Client
	clientID string
	seq      int
}

func newBayeux(b *bundle) *bayeux {
	jar, _ := cookiejar.New(nil)
	return &bayeux{b: b, http: &http.Client{Jar: jar}}
}

// send posts messages as one batch and returns the answers.
func (c *bayeux) send(msgs ...map[string]any) []map[string]any {
	c.b.t.Helper()
	for _, m := range msgs {
		c.seq++
		m["id"] = json.Number(jsonInt(c.seq))
		if c.clientID != "" {
			m["clientId"] = c.clientID
		}
	}
	raw, err := json.Marshal(msgs)
	require.NoError(c.b.t, err)
	req, err := http.NewRequest("POST", c.b.http.URL+"/cometd/62.0", bytes.NewReader(raw))
	require.NoError(c.b.t, err)
	req.Header.Set("Authorization", "OAuth "+c.b.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	require.NoError(c.b.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(c.b.t, http.StatusOK, resp.StatusCode, string(body))
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	require.NoError(c.b.t, dec.Decode(&out), string(body))
	return out
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

// handshake opens a session and answers the first connect, which Salesforce answers at once.
func (c *bayeux) handshake() {
	c.b.t.Helper()
	out := c.send(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}})
	require.Equal(c.b.t, true, out[0]["successful"], out)
	c.clientID = out[0]["clientId"].(string)
	out = c.send(map[string]any{"channel": "/meta/connect", "connectionType": "long-polling", "advice": map[string]any{"timeout": 0}})
	require.Equal(c.b.t, true, out[len(out)-1]["successful"], out)
}

// subscribe answers the /meta/subscribe reply for channel with the given replay id.
func (c *bayeux) subscribe(channel string, replay int64) map[string]any {
	c.b.t.Helper()
	out := c.send(map[string]any{"channel": "/meta/subscribe", "subscription": channel,
		"ext": map[string]any{"replay": map[string]any{channel: replay}}})
	require.Len(c.b.t, out, 1)
	return out[0]
}

// connect holds a /meta/connect and returns the delivered event messages (everything but the reply).
func (c *bayeux) connect() []map[string]any {
	c.b.t.Helper()
	out := c.send(map[string]any{"channel": "/meta/connect", "connectionType": "long-polling"})
	var events []map[string]any
	for _, m := range out {
		if m["channel"] != "/meta/connect" {
			events = append(events, m)
		}
	}
	return events
}
