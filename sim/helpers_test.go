package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim/bulk"
)

// testSchema adds an external id to Account and a custom object with a validation rule.
const testSchema = `{"objects":[
 {"name":"Account","fields":[{"name":"External_Id__c","type":"string","length":40,"externalId":true,"unique":true},
   {"name":"Legacy_Key__c","type":"string","length":20,"externalId":true}]},
 {"name":"Invoice__c","label":"Invoice","fields":[
   {"name":"Amount__c","type":"currency","precision":18,"scale":2,"required":true},
   {"name":"Account__c","type":"reference","referenceTo":"Account"},
   {"name":"Status__c","type":"picklist","picklistValues":["Draft","Sent","Paid"],"restricted":true,"defaultValue":"Draft"},
   {"name":"Due__c","type":"date"}],
  "validationRules":[{"name":"NoNegative","field":"Amount__c","op":"<","value":"0","message":"Amount must not be negative"}]}
]}`

// fakeClock is a settable clock shared by the org and the test.
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
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type bundle struct {
	t     testing.TB
	srv   *Server
	http  *httptest.Server
	token string
	clock *fakeClock
}

func setup(t testing.TB, mutate ...func(*Config)) *bundle {
	t.Helper()
	schema, err := ParseSchema([]byte(testSchema))
	require.NoError(t, err)
	clock := &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := Config{Schema: schema, Clock: clock.Now}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	s.SetURL(hs.URL)
	b := &bundle{t: t, srv: s, http: hs, clock: clock}
	b.token = b.login()
	return b
}

func (b *bundle) login() string {
	b.t.Helper()
	status, body := b.form("/services/oauth2/token", url.Values{"grant_type": {"password"}, "client_id": {DefaultClientID},
		"client_secret": {DefaultClientSecret}, "username": {DefaultUsername}, "password": {DefaultPassword}})
	require.Equal(b.t, http.StatusOK, status, string(body))
	var tok map[string]string
	require.NoError(b.t, json.Unmarshal(body, &tok))
	return tok["access_token"]
}

func (b *bundle) form(path string, v url.Values) (int, []byte) {
	b.t.Helper()
	resp, err := http.PostForm(b.http.URL+path, v)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&v), string(r.body))
	return v
}

func (r response) object(t testing.TB) map[string]any {
	t.Helper()
	m, ok := r.json(t).(map[string]any)
	require.True(t, ok, string(r.body))
	return m
}

// firstError returns errorCode and message of an error array answer.
func (r response) firstError(t testing.TB) (string, string) {
	t.Helper()
	arr, ok := r.json(t).([]any)
	require.True(t, ok, string(r.body))
	require.NotEmpty(t, arr)
	e := arr[0].(map[string]any)
	return e["errorCode"].(string), e["message"].(string)
}

// do sends an authenticated request; path is relative to /services/data/v62.0 unless it starts with /.
func (b *bundle) do(method, path string, body any, headers ...string) response {
	b.t.Helper()
	if !strings.HasPrefix(path, "/") {
		path = "/services/data/v62.0/" + path
	}
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			raw, err := json.Marshal(body)
			require.NoError(b.t, err)
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, b.http.URL+path, rd)
	require.NoError(b.t, err)
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// create inserts a record and returns its id.
func (b *bundle) create(object string, fields map[string]any) string {
	b.t.Helper()
	r := b.do("POST", "sobjects/"+object, fields)
	require.Equal(b.t, http.StatusCreated, r.status, string(r.body))
	return r.object(b.t)["id"].(string)
}

type bulkRecord = bulk.Record
