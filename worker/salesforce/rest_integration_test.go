package salesforce_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

func seedAccounts(t *testing.T, s *sim.Server, n int) {
	t.Helper()
	_, err := s.Seed(t.Context(), "Account", n, func(i int) map[string]any {
		return map[string]any{"Name": fmt.Sprintf("Seed %05d", i), "Ext_Id__c": fmt.Sprintf("seed-%05d", i)}
	})
	require.NoError(t, err)
}

// callsMatching sums the simulator's per-endpoint counters whose key contains all parts.
func callsMatching(s *sim.Server, parts ...string) int64 {
	var n int64
next:
	for k, v := range s.Calls() {
		for _, p := range parts {
			if !strings.Contains(k, p) {
				continue next
			}
		}
		n += v
	}
	return n
}

func TestPasswordFlowLogsInAndLearnsOrgAndUserFromTheIdentityURL(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	tok, err := c.TokenSource().Token(t.Context())
	require.NoError(t, err)
	require.Equal(t, salesforce.GrantPassword, c.TokenSource().Grant())
	require.Equal(t, strings.TrimRight(s.URL(), "/"), tok.InstanceURL)
	require.Equal(t, s.OrgID(), tok.OrgID)
	require.Equal(t, s.UserID(), tok.UserID)
	require.WithinDuration(t, time.Now(), tok.IssuedAt, time.Minute)
}

func TestWrongPasswordFailsWithInvalidGrant(t *testing.T) {
	s := simtest.Start(t)
	cfg := simtest.Config(s)
	cfg.Password = "wrong"
	_, err := salesforce.New(t.Context(), cfg)
	var oe *salesforce.OAuthError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "invalid_grant", oe.Code)
	require.NotContains(t, err.Error(), "wrong", "the password must not leak into errors")
}

func TestClientCredentialsFlowLogsIn(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s, func(cfg *salesforce.Config) { cfg.Username, cfg.Password = "", "" })
	require.Equal(t, salesforce.GrantClientCredentials, c.TokenSource().Grant())
	_, err := c.Limits(t.Context())
	require.NoError(t, err)
}

func TestJWTBearerFlowLogsInWithAnAssertionTheOrgVerifies(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	s := simtest.Start(t, func(cfg *sim.Config) {
		cfg.JWTCertPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	c := simtest.Client(t, s, func(cfg *salesforce.Config) {
		cfg.ClientSecret, cfg.Password, cfg.PrivateKeyPEM = "", "", keyPEM
	})
	require.Equal(t, salesforce.GrantJWTBearer, c.TokenSource().Grant())
	tok, err := c.TokenSource().Token(t.Context())
	require.NoError(t, err)
	require.Equal(t, s.UserID(), tok.UserID)

	// A key the org does not know is refused.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	cfg := simtest.Config(s)
	cfg.ClientSecret, cfg.Password = "", ""
	cfg.PrivateKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)})
	_, err = salesforce.New(t.Context(), cfg)
	var oe *salesforce.OAuthError
	require.ErrorAs(t, err, &oe)
}

func TestClientRefreshesTokenAfterSessionExpiry(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	before, err := c.TokenSource().Token(t.Context())
	require.NoError(t, err)

	s.ExpireSessions()
	n, err := c.Count(t.Context(), "SELECT COUNT() FROM Account")
	require.NoError(t, err, "the call is replayed once with a fresh token")
	require.Equal(t, 0, n)
	after, err := c.TokenSource().Token(t.Context())
	require.NoError(t, err)
	require.NotEqual(t, before.AccessToken, after.AccessToken)
}

func TestClientFailsAfterOneRefreshWhenTheSessionStaysInvalid(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	s.Inject(sim.Fault{Path: "/services/data/v62.0/limits", Status: 401})
	_, err := c.Limits(t.Context())
	require.Error(t, err)
	require.True(t, salesforce.IsInvalidSession(err), "got %v", err)
	require.EqualValues(t, 2, callsMatching(s, "GET", "/limits"), "exactly one replay after the refresh")
}

func TestAPIUsageFollowsTheLimitInfoHeader(t *testing.T) {
	s := simtest.Start(t, func(cfg *sim.Config) { cfg.APILimit = 5000 })
	c := simtest.Client(t, s)
	s.SetAPIUsage(1234)
	_, err := c.DescribeGlobal(t.Context())
	require.NoError(t, err)
	used, max := c.APIUsage()
	require.Equal(t, 5000, max)
	require.InDelta(t, 1235, used, 1)
}

// The outbound worker tells its own writes from later edits by a time
// after their SystemModstamp, on Salesforce's clock (see noteWritten in
// worker/outbound): the Date of the answers, rounded down to the second.
func TestServerTimeIsTheAnswersDateAndASavedRecordsStampIsWithinASecondOfIt(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	require.True(t, c.ServerTime().IsZero(), "no answer yet")
	res, err := c.Create(t.Context(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Dated"})})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	res, err = c.Update(t.Context(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Id": res[0].ID, "Name": "Dated again"})})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	answered := c.ServerTime()
	require.False(t, answered.IsZero())
	require.Zero(t, answered.Nanosecond(), "the Date header counts whole seconds")
	var stamp time.Time
	require.NoError(t, c.Query(t.Context(), "SELECT Id, SystemModstamp FROM Account WHERE Id = '"+res[0].ID+"'", func(r salesforce.Record) error {
		v, _ := r.Get("SystemModstamp")
		stamp, err = salesforce.ParseDateTime(v.(string))
		return err
	}))
	require.True(t, stamp.Before(answered.Add(time.Second)), "the update's stamp %s is after its answer's Date %s plus a second", stamp, answered)
	require.False(t, c.ServerTime().Before(answered), "the latest Date is kept")
}

func TestLimitExceededIsTypedAndTransient(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	s.ForceLimitExceeded(true)
	_, err := c.Limits(t.Context())
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 403, ae.HTTPStatus)
	require.True(t, salesforce.IsLimitExceeded(err))
	require.True(t, salesforce.IsTransient(err))

	s.ForceLimitExceeded(false)
	_, err = c.Limits(t.Context())
	require.NoError(t, err)
}

func TestServerErrorsAndDroppedConnectionsAreTransient(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	s.Inject(sim.Fault{Path: "/services/data/v62.0/limits", Status: 503, Count: 1})
	_, err := c.Limits(t.Context())
	require.True(t, salesforce.IsTransient(err), "got %v", err)

	// A POST, because Go's transport silently retries an idempotent GET whose
	// reused connection drops before any answer.
	s.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects", Reset: true, Count: 1})
	_, err = c.Create(t.Context(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "x"})})
	require.Error(t, err)
	require.True(t, salesforce.IsTransient(err), "got %v", err)

	_, err = c.Limits(t.Context())
	require.NoError(t, err, "faults with a count end by themselves")
}

func TestVersionsAndLimitsAnswer(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	vs, err := c.Versions(t.Context())
	require.NoError(t, err)
	require.NotEmpty(t, vs)
	require.Equal(t, "62.0", vs[len(vs)-1].Version)
	limits, err := c.Limits(t.Context())
	require.NoError(t, err)
	require.Positive(t, limits["DailyApiRequests"].Max)
}

func TestDescribeReportsCustomFieldsAndObjectFlags(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	g, err := c.DescribeGlobal(t.Context())
	require.NoError(t, err)
	var names []string
	for _, o := range g.SObjects {
		names = append(names, o.Name)
	}
	require.Contains(t, names, "Account")

	d, err := c.Describe(t.Context(), "Account")
	require.NoError(t, err)
	require.Equal(t, "Account", d.Name)
	require.True(t, d.Queryable)
	require.True(t, d.Replicateable)
	require.Equal(t, "001", d.KeyPrefix)

	ext, ok := d.Field("Ext_Id__c")
	require.True(t, ok)
	require.True(t, ext.ExternalID)
	require.True(t, ext.Unique)
	require.True(t, ext.Custom)
	require.Equal(t, "string", ext.Type)
	require.Equal(t, 40, ext.Length)

	amt, ok := d.Field("Amount__c")
	require.True(t, ok)
	require.Equal(t, "currency", amt.Type)
	require.Equal(t, 18, amt.Precision)
	require.Equal(t, 2, amt.Scale)

	id, ok := d.Field("Id")
	require.True(t, ok)
	require.Equal(t, "id", id.Type)
	require.False(t, id.Nillable)

	owner, ok := d.Field("OwnerId")
	require.True(t, ok)
	require.Equal(t, "reference", owner.Type)
	require.NotEmpty(t, owner.ReferenceTo)
	require.Equal(t, "Owner", owner.RelationshipName)
}

func TestDescribeOfAnUnknownObjectIsNotFound(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	_, err := c.Describe(t.Context(), "Nope__c")
	require.True(t, salesforce.IsNotFound(err), "got %v", err)
}

func TestQueryFollowsNextRecordsURLAcrossPages(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 450)
	c := simtest.Client(t, s, func(cfg *salesforce.Config) { cfg.QueryBatchSize = 200 })
	s.ResetCalls()

	seen := map[string]bool{}
	err := c.Query(t.Context(), "SELECT Id, Name, Ext_Id__c FROM Account", func(r salesforce.Record) error {
		require.Equal(t, "Account", r.Type)
		require.NotContains(t, r.Fields, "attributes")
		seen[r.ID()] = true
		return nil
	})
	require.NoError(t, err)
	require.Len(t, seen, 450)
	require.EqualValues(t, 3, callsMatching(s, "GET", "/query"), "450 rows at 200 per page is three pages: %v", s.Calls())
}

func TestQueryStopsWhenTheCallbackFails(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 450)
	c := simtest.Client(t, s, func(cfg *salesforce.Config) { cfg.QueryBatchSize = 200 })
	stop := errors.New("enough")
	n := 0
	err := c.Query(t.Context(), "SELECT Id FROM Account", func(salesforce.Record) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, 10, n)
}

func TestQueryKeepsDecimalsExactAndParentsNested(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	res, err := c.Create(t.Context(), []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "Exact", "Amount__c": json.Number("1234567890123456.78")}),
	})
	require.NoError(t, err)
	require.True(t, res[0].Success, "%+v", res[0])

	var got []salesforce.Record
	require.NoError(t, c.Query(t.Context(), "SELECT Id, Amount__c, Owner.Name FROM Account WHERE Name = 'Exact'", func(r salesforce.Record) error {
		got = append(got, r)
		return nil
	}))
	require.Len(t, got, 1)
	require.Equal(t, json.Number("1234567890123456.78"), got[0].Fields["Amount__c"])
	owner, ok := got[0].Get("Owner.Name")
	require.True(t, ok)
	require.NotEmpty(t, owner)
}

func TestCountReturnsTheNumberOfMatchingRows(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 37)
	c := simtest.Client(t, s)
	n, err := c.Count(t.Context(), "SELECT COUNT() FROM Account")
	require.NoError(t, err)
	require.Equal(t, 37, n)
	n, err = c.Count(t.Context(), "SELECT COUNT() FROM Account WHERE Ext_Id__c = 'seed-00003'")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestMalformedQueryIsANonTransientAPIError(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	err := c.Query(t.Context(), "SELECT NoSuchField__c FROM Account", func(salesforce.Record) error { return nil })
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 400, ae.HTTPStatus)
	require.Equal(t, "INVALID_FIELD", ae.ErrorCode)
	require.False(t, salesforce.IsTransient(err))
}

func TestCollectionsCreateSplitsBatchesAbove200AndKeepsInputOrder(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	recs := make([]salesforce.Record, 450)
	for i := range recs {
		recs[i] = salesforce.NewRecord("Account", map[string]any{"Name": fmt.Sprintf("C%03d", i), "Ext_Id__c": fmt.Sprintf("c-%03d", i)})
	}
	s.ResetCalls()
	res, err := c.Create(t.Context(), recs)
	require.NoError(t, err)
	require.Len(t, res, 450)
	require.EqualValues(t, 3, callsMatching(s, "POST", "/composite/sobjects"), "%v", s.Calls())

	got, err := c.Retrieve(t.Context(), "Account", []string{res[0].ID, res[449].ID}, []string{"Id", "Name"})
	require.NoError(t, err)
	require.Equal(t, "C000", got[0].Fields["Name"])
	require.Equal(t, "C449", got[1].Fields["Name"])
}

func TestRetrieveReturnsNilForIDsThatDoNotExist(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	res, err := c.Create(t.Context(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Here"})})
	require.NoError(t, err)
	_, err = c.Delete(t.Context(), []string{res[0].ID})
	require.NoError(t, err)
	res2, err := c.Create(t.Context(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Still here"})})
	require.NoError(t, err)

	got, err := c.Retrieve(t.Context(), "Account", []string{res[0].ID, res2[0].ID}, []string{"Id", "Name"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Nil(t, got[0])
	require.Equal(t, "Still here", got[1].Fields["Name"])
}

func TestCollectionsUpdateReportsPerRecordErrorsWithoutFailingTheBatch(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	created, err := c.Create(t.Context(), []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "A"}),
		salesforce.NewRecord("Account", map[string]any{"Name": "B"}),
		salesforce.NewRecord("Account", map[string]any{"Name": "C"}),
	})
	require.NoError(t, err)

	res, err := c.Update(t.Context(), []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Id": created[0].ID, "Score__c": 1}),
		salesforce.NewRecord("Account", map[string]any{"Id": created[1].ID, "Score__c": -5}),
		salesforce.NewRecord("Account", map[string]any{"Id": created[2].ID, "Score__c": 3}),
	})
	require.NoError(t, err, "record failures are results, not a call error")
	require.Len(t, res, 3)
	require.True(t, res[0].Success)
	require.True(t, res[2].Success)
	require.False(t, res[1].Success)
	require.Len(t, res[1].Errors, 1)
	require.Equal(t, "FIELD_CUSTOM_VALIDATION_EXCEPTION", res[1].Errors[0].StatusCode)
	require.Equal(t, simtest.RuleMessage, res[1].Errors[0].Message)
	require.False(t, salesforce.IsTransient(res[1].Err()))

	got, err := c.Retrieve(t.Context(), "Account", []string{created[0].ID, created[1].ID, created[2].ID}, []string{"Score__c"})
	require.NoError(t, err)
	require.Equal(t, json.Number("1"), got[0].Fields["Score__c"])
	require.Nil(t, got[1].Fields["Score__c"])
	require.Equal(t, json.Number("3"), got[2].Fields["Score__c"])
}

func TestCollectionsCreateReportsRequiredFieldMissing(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	res, err := c.Create(t.Context(), []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Note__c": "no name"}),
		salesforce.NewRecord("Account", map[string]any{"Name": "named"}),
	})
	require.NoError(t, err)
	require.False(t, res[0].Success)
	require.Equal(t, "REQUIRED_FIELD_MISSING", res[0].Errors[0].StatusCode)
	require.Equal(t, []string{"Name"}, res[0].Errors[0].Fields)
	require.True(t, res[1].Success)
	require.NotEmpty(t, res[1].ID)
}

func TestUpsertByExternalIDReportsCreatedThenUpdated(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	rec := func(name string) salesforce.Record {
		return salesforce.NewRecord("Account", map[string]any{"Name": name, "Ext_Id__c": "ext-1"})
	}
	first, err := c.UpsertByExternalID(t.Context(), "Account", "Ext_Id__c", []salesforce.Record{rec("v1")})
	require.NoError(t, err)
	require.True(t, first[0].Success)
	require.True(t, first[0].Created)

	second, err := c.UpsertByExternalID(t.Context(), "Account", "Ext_Id__c", []salesforce.Record{rec("v2")})
	require.NoError(t, err)
	require.True(t, second[0].Success)
	require.False(t, second[0].Created)
	require.Equal(t, first[0].ID, second[0].ID)

	n, err := c.Count(t.Context(), "SELECT COUNT() FROM Account WHERE Ext_Id__c = 'ext-1'")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestUpsertOfOneRecordReturnsCreatedOnInsertOnly(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	r, err := c.Upsert(t.Context(), "Account", "Ext_Id__c", "one", map[string]any{"Name": "One"})
	require.NoError(t, err)
	require.True(t, r.Created)
	require.NotEmpty(t, r.ID)
	r2, err := c.Upsert(t.Context(), "Account", "Ext_Id__c", "one", map[string]any{"Name": "One again"})
	require.NoError(t, err)
	require.False(t, r2.Created)
	require.Equal(t, r.ID, r2.ID)

	_, err = c.Upsert(t.Context(), "Account", "Ext_Id__c", "two", map[string]any{"Name": "Two", "Score__c": -1})
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "FIELD_CUSTOM_VALIDATION_EXCEPTION", ae.ErrorCode)
}

func TestCollectionsDeleteReportsEachID(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	created, err := c.Create(t.Context(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": "Doomed"})})
	require.NoError(t, err)
	res, err := c.Delete(t.Context(), []string{created[0].ID, created[0].ID[:3] + "000000000000AAA"})
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.True(t, res[0].Success)
	require.Equal(t, created[0].ID, res[0].ID)
	require.False(t, res[1].Success)
	require.NotEmpty(t, res[1].Errors)

	var deleted []string
	require.NoError(t, c.QueryAll(t.Context(), "SELECT Id, IsDeleted FROM Account WHERE IsDeleted = true", func(r salesforce.Record) error {
		deleted = append(deleted, r.ID())
		return nil
	}))
	require.Equal(t, []string{created[0].ID}, deleted, "queryAll sees the deleted row")
	n, err := c.Count(t.Context(), "SELECT COUNT() FROM Account")
	require.NoError(t, err)
	require.Equal(t, 0, n, "query does not")
}

func TestUpdatedAndDeletedListChangesInTheWindow(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	start := time.Now().Add(-time.Minute)
	created, err := c.Create(t.Context(), []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "Kept"}),
		salesforce.NewRecord("Account", map[string]any{"Name": "Gone"}),
	})
	require.NoError(t, err)
	_, err = c.Delete(t.Context(), []string{created[1].ID})
	require.NoError(t, err)
	end := time.Now().Add(time.Minute)

	upd, err := c.Updated(t.Context(), "Account", start, end)
	require.NoError(t, err)
	require.Contains(t, upd.IDs, created[0].ID)
	require.False(t, upd.LatestDateCovered.IsZero())

	del, err := c.Deleted(t.Context(), "Account", start, end)
	require.NoError(t, err)
	require.Len(t, del.Records, 1)
	require.Equal(t, created[1].ID, del.Records[0].ID)
	require.WithinDuration(t, time.Now(), del.Records[0].DeletedDate, time.Minute)
}

func TestChangeEventSelectionListsOnlyTheObjectsSelectedForCDC(t *testing.T) {
	schema, err := sim.ParseSchema([]byte(`{"objects":[{"name":"Contact","cdc":false},
 {"name":"Invoice__c","fields":[{"name":"Amount__c","type":"currency"}]}]}`))
	require.NoError(t, err)
	s := simtest.Start(t, func(c *sim.Config) { c.Schema = schema })
	c := simtest.Client(t, s)

	selected, err := c.ChangeEventSelection(t.Context())
	require.NoError(t, err)
	require.True(t, selected["accountchangeevent"])
	require.True(t, selected["invoice__changeevent"])
	require.False(t, selected["contactchangeevent"], "Contact is not selected for Change Data Capture")
	require.Equal(t, int64(1), callsMatching(s, "tooling/query"), "one Tooling API call")
}

// A session that expired while the login cannot be renewed (the token
// endpoint answers 503) makes a transient error, which callers retry,
// rather than an invalid session.
func TestAnExpiredSessionThatCannotBeRenewedJustNowIsTransient(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	s.ExpireSessions()
	s.Inject(sim.Fault{Path: "/services/oauth2/token", Status: 503})
	_, err := c.Limits(t.Context())
	require.Error(t, err)
	require.True(t, salesforce.IsTransient(err), "got %v", err)
	require.False(t, salesforce.IsInvalidSession(err), "got %v", err)

	s.ClearFaults()
	_, err = c.Limits(t.Context())
	require.NoError(t, err, "the next call renews the session")
}
