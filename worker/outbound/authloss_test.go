package outbound_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// loginBreaker passes every call through, except that while broken the
// token endpoint is sent a wrong password: what Salesforce answers once
// the integration user's password was reset or the user frozen
// (invalid_grant "authentication failure").
type loginBreaker struct {
	broken atomic.Bool
	next   http.RoundTripper
}

func (l *loginBreaker) RoundTrip(r *http.Request) (*http.Response, error) {
	if l.broken.Load() && r.URL.Path == "/services/oauth2/token" && r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		form, _ := url.ParseQuery(string(b))
		form.Set("password", "not-the-password")
		enc := form.Encode()
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader([]byte(enc)))
		r.ContentLength = int64(len(enc))
	}
	return l.next.RoundTrip(r)
}

// startWithBreakableLogin starts the service with a client whose login
// the returned breaker can make Salesforce refuse.
func (b *bundle) startWithBreakableLogin(t *testing.T) *loginBreaker {
	t.Helper()
	lb := &loginBreaker{next: http.DefaultTransport}
	sf, err := salesforce.New(context.Background(), salesforce.Config{LoginURL: b.sim.URL(), ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword,
		HTTPClient: &http.Client{Transport: lb}})
	require.NoError(t, err)
	b.startWithClient(t, sf, fastOptions())
	return lb
}

// A session that expires while the login cannot be renewed (the
// integration user's password was reset, the user frozen, the refresh
// token revoked) is the org's problem, not the records': the changes made
// meanwhile must wait and reach Salesforce once the login works again,
// not be turned into one INVALID_SESSION_ID error row each that only a
// manual pgforce.retry sends again.
func TestChangesMadeWhileTheLoginIsRefusedAreSentOnceItWorksAgain(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	lb := b.startWithBreakableLogin(t)

	var first int
	b.scalar(t, &first, `INSERT INTO salesforce.account (name) VALUES ('Before') RETURNING id`)
	b.waitSfid(t, "account", first)

	// The login stops working and the session expires.
	lb.broken.Store(true)
	b.sim.ExpireSessions()
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('During') RETURNING id`)
	time.Sleep(3 * time.Second) // several attempts and backoffs

	// An administrator fixes the login.
	lb.broken.Store(false)
	sfid := ""
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && sfid == "" {
		sfid = b.rowSfid(t, "account", id)
		time.Sleep(50 * time.Millisecond)
	}
	var errs []string
	rows, err := b.pool.Query(ctx, `SELECT coalesce(error_code, '') || ': ' || coalesce(message, '') FROM pgforce.error WHERE mapping_id = $1`, b.accountID)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		errs = append(errs, s)
	}
	require.NoError(t, rows.Err())
	require.Empty(t, errs, "a refused login is recorded as a failure of the record")
	require.NotEmpty(t, sfid, "the change made while the login was refused never reached Salesforce")
}

// While the login is refused, the changes wait and the worker retries;
// pgforce.status says since when the writes fail and why, and stops
// saying it once a write works again.
func TestStatusSaysSinceWhenAndWhyWritesFailWhileTheLoginIsRefused(t *testing.T) {
	b := setup(t, setupOptions{})
	lb := b.startWithBreakableLogin(t)
	failing := func() (since, failure string) {
		b.scalar(t, &since, `SELECT coalesce(failing_since::text, '') FROM pgforce.status WHERE mapping_id = $1`, b.accountID)
		b.scalar(t, &failure, `SELECT coalesce(failure, '') FROM pgforce.status WHERE mapping_id = $1`, b.accountID)
		return since, failure
	}
	var first int
	b.scalar(t, &first, `INSERT INTO salesforce.account (name) VALUES ('Before') RETURNING id`)
	b.waitSfid(t, "account", first)
	since, failure := failing()
	require.Empty(t, since, "nothing failed: %s", failure)

	lb.broken.Store(true)
	b.sim.ExpireSessions()
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('During') RETURNING id`)
	eventually(t, 10*time.Second, "the failure in pgforce.status", func() bool {
		since, failure = failing()
		return since != "" && strings.HasPrefix(failure, "outbound: ") && strings.Contains(failure, "authentication failure")
	})
	t.Logf("pgforce.status.failure: %s", failure)
	var attempts int
	eventually(t, 10*time.Second, "more attempts", func() bool {
		b.scalar(t, &attempts, `SELECT attempts FROM pgforce.sync_failure WHERE mapping_id = $1 AND direction = 'outbound'`, b.accountID)
		return attempts >= 3
	})
	again, _ := failing()
	require.Equal(t, since, again, "since is the first failure's time")

	lb.broken.Store(false)
	b.waitSfid(t, "account", id)
	eventually(t, 10*time.Second, "the failure to go", func() bool {
		since, failure = failing()
		return since == ""
	})
}
