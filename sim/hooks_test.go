package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func (b *bundle) hook(method, path string, body any) response {
	b.t.Helper()
	return b.do(method, "/__sim"+path, body)
}

func TestCallCountersGroupByEndpointAndReset(t *testing.T) {
	b := setup(t)
	id := b.create("Account", map[string]any{"Name": "A"})
	b.do("GET", "sobjects/Account/"+id, nil)
	b.do("GET", "sobjects/Account/"+id, nil)
	calls := b.hook("GET", "/calls", nil).object(t)
	counts := calls["calls"].(map[string]any)
	require.Equal(t, json.Number("2"), counts["GET /services/data/vXX.X/sobjects/Account/{id}"])
	require.Equal(t, json.Number("1"), counts["POST /services/data/vXX.X/sobjects/Account"])
	require.Equal(t, json.Number("1"), counts["POST /services/oauth2/token"])
	require.Equal(t, json.Number("3"), calls["apiUsage"], "hooks and OAuth are not API calls")
	b.hook("DELETE", "/calls", nil)
	require.Empty(t, b.srv.Calls())
}

func TestInjectedFaultsAnswerErrorsDropConnectionsAndAddLatency(t *testing.T) {
	b := setup(t)
	r := b.hook("POST", "/faults", map[string]any{"path": "/services/data/v62.0/limits", "status": 503, "count": 1})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	r = b.do("GET", "limits", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	code, _ := r.firstError(t)
	require.Equal(t, "SERVER_UNAVAILABLE", code)
	require.Equal(t, http.StatusOK, b.do("GET", "limits", nil).status, "the fault fired its one time")

	b.srv.Inject(Fault{Path: "/services/data/v62.0/sobjects", Reset: true})
	req, _ := http.NewRequest("GET", b.http.URL+"/services/data/v62.0/sobjects", nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	_, err := http.DefaultTransport.RoundTrip(req)
	require.Error(t, err, "the connection was closed without an answer")
	b.hook("DELETE", "/faults", nil)

	b.srv.Inject(Fault{Latency: 150 * time.Millisecond})
	start := time.Now()
	require.Equal(t, http.StatusOK, b.do("GET", "limits", nil).status)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	b.srv.ClearFaults()
}

// A lost answer is a call the org carried out: the client cannot tell it
// from one that never arrived.
func TestAFaultThatLosesTheAnswerCarriesTheRequestOut(t *testing.T) {
	b := setup(t)
	r := b.hook("POST", "/faults", map[string]any{"path": "/services/data/v62.0/sobjects/Account", "method": "POST", "loseAnswer": true, "count": 1})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	req, _ := http.NewRequest("POST", b.http.URL+"/services/data/v62.0/sobjects/Account", strings.NewReader(`{"Name": "Unanswered"}`))
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Content-Type", "application/json")
	_, err := http.DefaultTransport.RoundTrip(req)
	require.Error(t, err, "the connection was closed without an answer")
	q := b.do("GET", "query?q="+url.QueryEscape("SELECT Id FROM Account WHERE Name = 'Unanswered'"), nil).object(t)
	require.Equal(t, json.Number("1"), q["totalSize"], "the record was created all the same")
}

func TestSessionAndLimitHooksForceClientRecoveryPaths(t *testing.T) {
	b := setup(t)
	require.Equal(t, http.StatusOK, b.hook("POST", "/sessions/expire", nil).status)
	r := b.do("GET", "limits", nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	b.token = b.login()

	b.hook("POST", "/limits", map[string]any{"exceeded": true})
	r = b.do("GET", "limits", nil)
	require.Equal(t, http.StatusForbidden, r.status)
	code, _ := r.firstError(t)
	require.Equal(t, "REQUEST_LIMIT_EXCEEDED", code)
	b.hook("POST", "/limits", map[string]any{"exceeded": false, "used": 99990})
	r = b.do("GET", "limits", nil)
	require.Equal(t, "api-usage=99991/100000", r.header.Get("Sforce-Limit-Info"))
}

func TestSeedUIEditGapAndResetHooks(t *testing.T) {
	b := setup(t)
	r := b.hook("POST", "/seed", map[string]any{"object": "Account", "count": 250, "fields": map[string]any{"Name": "Seeded {n}", "Industry": "Banking"}})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	seeded := r.object(t)
	require.Equal(t, json.Number("250"), seeded["created"])
	id := seeded["firstId"].(string)
	rec := b.do("GET", "sobjects/Account/"+id, nil).object(t)
	require.Equal(t, "Seeded 0", rec["Name"])

	r = b.hook("POST", "/ui-edit", map[string]any{"object": "Account", "id": id, "fields": map[string]any{"Name": "By hand"}})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "By hand", b.do("GET", "sobjects/Account/"+id, nil).object(t)["Name"])
	r = b.hook("POST", "/ui-edit", map[string]any{"object": "Account", "id": id, "fields": map[string]any{"Industry": "Dreams", "Name": ""}})
	require.Equal(t, http.StatusBadRequest, r.status)

	require.Equal(t, http.StatusOK, b.hook("POST", "/gap", map[string]any{"object": "Account", "changeType": "GAP_DELETE", "ids": []string{id}}).status)
	require.Equal(t, http.StatusBadRequest, b.hook("POST", "/gap", map[string]any{"object": "Account", "changeType": "GAP_DELETE"}).status)
	require.Equal(t, http.StatusOK, b.hook("POST", "/replay/expire", map[string]any{}).status)
	require.Equal(t, http.StatusOK, b.hook("POST", "/cometd/drop", nil).status)

	require.Equal(t, http.StatusOK, b.hook("POST", "/reset", nil).status)
	count := b.do("GET", "query?q="+url.QueryEscape("SELECT COUNT() FROM Account"), nil).object(t)["totalSize"]
	require.Equal(t, json.Number("0"), count)
	users := b.do("GET", "query?q="+url.QueryEscape("SELECT Username FROM User"), nil).object(t)
	require.Equal(t, json.Number("1"), users["totalSize"], "reset keeps the org's user")
	require.Equal(t, http.StatusNotFound, b.hook("GET", "/nope", nil).status)
}

func TestStartServesOnALoopbackPortUntilTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s, err := Start(ctx, "127.0.0.1:0", Config{})
	require.NoError(t, err)
	resp, err := http.Get(s.URL() + "/services/data/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	require.Eventually(t, func() bool {
		_, err := http.Get(s.URL() + "/services/data/")
		return err != nil
	}, 2*time.Second, 20*time.Millisecond)
}
