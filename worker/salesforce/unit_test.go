package salesforce

import (
	"bytes"
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
	"net"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseLimitInfoReadsAPIUsageAmongOtherSegments(t *testing.T) {
	used, max, ok := ParseLimitInfo("api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)")
	require.True(t, ok)
	require.Equal(t, 25, used)
	require.Equal(t, 5000, max)

	_, _, ok = ParseLimitInfo("api-bursts=1/750")
	require.False(t, ok)
	_, _, ok = ParseLimitInfo("")
	require.False(t, ok)
}

func TestAPIErrorParsesTheDocumentedArrayShape(t *testing.T) {
	body := []byte(`[{"message":"Required fields are missing: [Name]","errorCode":"REQUIRED_FIELD_MISSING","fields":["Name"]},
		{"message":"second","errorCode":"UNABLE_TO_LOCK_ROW"}]`)
	e := parseAPIError(400, "POST", "/services/data/v62.0/sobjects/Account", body)
	require.Equal(t, 400, e.HTTPStatus)
	require.Equal(t, "REQUIRED_FIELD_MISSING", e.ErrorCode)
	require.Equal(t, []string{"Name"}, e.Fields)
	require.Len(t, e.More, 1)
	require.Contains(t, e.Error(), "REQUIRED_FIELD_MISSING")
	// A lock conflict anywhere in the list makes the whole call worth retrying.
	require.True(t, IsTransient(e))
}

func TestAPIErrorKeepsAnUnstructuredBodyAsTheMessage(t *testing.T) {
	e := parseAPIError(502, "GET", "/x", []byte("<html>Bad Gateway</html>"))
	require.Equal(t, "", e.ErrorCode)
	require.Equal(t, "<html>Bad Gateway</html>", e.Message)
	require.True(t, IsTransient(e))
}

func TestIsTransientAndIsLimitExceededClassifyErrors(t *testing.T) {
	limit := &APIError{HTTPStatus: 403, ErrorCode: CodeRequestLimitExceeded, Message: "TotalRequests Limit exceeded."}
	require.True(t, IsTransient(limit))
	require.True(t, IsLimitExceeded(fmt.Errorf("wrapped: %w", limit)))

	require.True(t, IsTransient(&APIError{HTTPStatus: 503, ErrorCode: CodeServerUnavailable}))
	require.True(t, IsTransient(&APIError{HTTPStatus: 500}))
	require.False(t, IsTransient(&APIError{HTTPStatus: 400, ErrorCode: "MALFORMED_QUERY"}))
	require.False(t, IsTransient(&APIError{HTTPStatus: 403, ErrorCode: "INSUFFICIENT_ACCESS"}))
	require.False(t, IsLimitExceeded(&APIError{HTTPStatus: 403, ErrorCode: "INSUFFICIENT_ACCESS"}))

	require.True(t, IsTransient(&RecordError{StatusCode: CodeUnableToLockRow}))
	require.False(t, IsTransient(&RecordError{StatusCode: "FIELD_CUSTOM_VALIDATION_EXCEPTION"}))

	require.True(t, IsTransient(fmt.Errorf("salesforce: GET /x: %w", syscall.ECONNRESET)))
	require.True(t, IsTransient(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}))
	require.True(t, IsTransient(io.ErrUnexpectedEOF))
	require.True(t, IsTransient(context.DeadlineExceeded))
	require.False(t, IsTransient(context.Canceled))
	require.False(t, IsTransient(errors.New("something else")))
	require.False(t, IsTransient(nil))
	require.True(t, IsTransient(&OAuthError{HTTPStatus: 503}))
	require.False(t, IsTransient(&OAuthError{HTTPStatus: 400, Code: "invalid_grant"}))
}

func TestTokenResponseParsesIdentityAndIssuedAt(t *testing.T) {
	tok, err := parseTokenResponse([]byte(`{"access_token":"00D!x","instance_url":"http://127.0.0.1:9/",
		"id":"http://127.0.0.1:9/id/00D5g000004XXXXEAM/0055g00000YYYYYAAA","token_type":"Bearer",
		"issued_at":"1699999999999","signature":"x","unknown":1}`))
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:9", tok.InstanceURL)
	require.Equal(t, "00D5g000004XXXXEAM", tok.OrgID)
	require.Equal(t, "0055g00000YYYYYAAA", tok.UserID)
	require.Equal(t, time.UnixMilli(1699999999999).UTC(), tok.IssuedAt)

	_, err = parseTokenResponse([]byte(`{"access_token":"x","instance_url":"http://h","issued_at":"yesterday"}`))
	require.Error(t, err)
}

func TestCredentialsChooseTheFlowFromWhatIsSet(t *testing.T) {
	cases := []struct {
		c    Credentials
		want Grant
	}{
		{Credentials{ClientID: "c", Username: "u", PrivateKeyPEM: []byte("k")}, GrantJWTBearer},
		{Credentials{ClientID: "c", RefreshToken: "r"}, GrantRefreshToken},
		{Credentials{ClientID: "c", ClientSecret: "s", Username: "u", Password: "p"}, GrantPassword},
		{Credentials{ClientID: "c", ClientSecret: "s"}, GrantClientCredentials},
	}
	for _, tc := range cases {
		g, err := tc.c.Grant()
		require.NoError(t, err)
		require.Equal(t, tc.want, g)
	}
	_, err := Credentials{Username: "u", Password: "p"}.Grant()
	require.ErrorContains(t, err, "client id")
	_, err = Credentials{}.Grant()
	require.Error(t, err)
}

func TestJWTAssertionCarriesClaimsAndVerifiesWithThePublicKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	parsed, err := ParseRSAPrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	require.NoError(t, err)

	now := time.Unix(1_700_000_000, 0)
	a, err := jwtAssertion(parsed, "client-id", "user@example.com", audience("http://127.0.0.1:4321/some/path"), now)
	require.NoError(t, err)
	parts := strings.Split(a, ".")
	require.Len(t, parts, 3)

	var header map[string]string
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(hb, &header))
	require.Equal(t, "RS256", header["alg"])

	var claims map[string]any
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(cb, &claims))
	require.Equal(t, "client-id", claims["iss"])
	require.Equal(t, "user@example.com", claims["sub"])
	require.Equal(t, "http://127.0.0.1:4321", claims["aud"])
	require.Equal(t, float64(now.Add(3*time.Minute).Unix()), claims["exp"])

	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	require.NoError(t, rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig))
}

func TestParseRSAPrivateKeyAcceptsPKCS1AndRejectsGarbage(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	k, err := ParseRSAPrivateKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	require.NoError(t, err)
	require.True(t, key.Equal(k))
	_, err = ParseRSAPrivateKey([]byte("not a key"))
	require.Error(t, err)
}

func TestRecordKeepsNumbersExactAndAttributesOutOfFields(t *testing.T) {
	var r Record
	require.NoError(t, json.Unmarshal([]byte(`{"attributes":{"type":"Contact","url":"/services/data/v62.0/sobjects/Contact/003"},
		"Id":"003","Amount__c":12345678901234567.891,"Email":null,"Active__c":true,
		"Account":{"attributes":{"type":"Account","url":"/x"},"Name":"Acme","Big__c":1e400},
		"Owner":null,
		"MailingAddress":{"city":"Oakland","latitude":37.80436},
		"Cases":{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Case"},"Id":"500"}]}}`), &r))
	require.Equal(t, "Contact", r.Type)
	require.Equal(t, "003", r.ID())
	require.NotContains(t, r.Fields, "attributes")
	require.Equal(t, json.Number("12345678901234567.891"), r.Fields["Amount__c"])
	require.Nil(t, r.Fields["Email"])
	require.Equal(t, true, r.Fields["Active__c"])

	name, ok := r.Get("account.name")
	require.True(t, ok)
	require.Equal(t, "Acme", name)
	big, _ := r.Get("Account.Big__c")
	require.Equal(t, json.Number("1e400"), big)
	ownerName, ok := r.Get("Owner.Name")
	require.True(t, ok)
	require.Nil(t, ownerName)

	city, ok := r.Get("MailingAddress.city")
	require.True(t, ok)
	require.Equal(t, "Oakland", city)
	lat, _ := r.Get("MailingAddress.latitude")
	require.Equal(t, json.Number("37.80436"), lat)

	sq, ok := r.Fields["Cases"].(*SubQuery)
	require.True(t, ok)
	require.Equal(t, 1, sq.TotalSize)
	require.Equal(t, "500", sq.Records[0].ID())

	out, err := json.Marshal(NewRecord("Account", map[string]any{"Name": "A", "Amount": json.Number("1.10")}))
	require.NoError(t, err)
	require.JSONEq(t, `{"attributes":{"type":"Account"},"Name":"A","Amount":1.10}`, string(out))
}

func TestParseDateTimeReadsEveryFormTheAPIsEmit(t *testing.T) {
	want := time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"2024-01-31T12:00:00.000+0000", "2024-01-31T12:00:00.000Z", "2024-01-31T12:00:00Z", "2024-01-31T14:00:00.000+02:00"} {
		got, err := ParseDateTime(s)
		require.NoError(t, err, s)
		require.True(t, want.Equal(got), s)
	}
	require.Equal(t, "2024-01-31T12:00:00.000Z", FormatDateTime(want))
}

func TestCSVWriterUsesNAForNullAndEmptyForUnchanged(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewCSVWriter(&buf, []string{"Id", "Name", "Description", "Amount", "Active", "Closed"})
	require.NoError(t, err)
	require.NoError(t, w.Write("001", `Acme, "the" best`, nil, json.Number("12.50"), true, time.Date(2024, 1, 2, 3, 4, 5, 6e6, time.UTC)))
	require.NoError(t, w.Write("002", "line1\nline2", Unchanged, 3, false, ""))
	require.Error(t, w.Write("003"))
	require.NoError(t, w.Flush())
	require.Equal(t, "Id,Name,Description,Amount,Active,Closed\n"+
		"001,\"Acme, \"\"the\"\" best\",#N/A,12.50,true,2024-01-02T03:04:05.006Z\n"+
		"002,\"line1\nline2\",,3,false,#N/A\n", buf.String())
}

func TestReadCSVHandsOverQuotedRowsWithTheirHeader(t *testing.T) {
	in := "\"Id\",\"Name\",\"Note\"\n\"001\",\"Acme, Inc\",\"\"\n\"002\",\"say \"\"hi\"\"\",\"a\nb\"\n"
	var rows []Row
	require.NoError(t, ReadCSV(strings.NewReader(in), func(r Row) error { rows = append(rows, r); return nil }))
	require.Len(t, rows, 2)
	name, ok := rows[0].Get("Name")
	require.True(t, ok)
	require.Equal(t, "Acme, Inc", name)
	note, _ := rows[1].Get("Note")
	require.Equal(t, "a\nb", note)
	n, _ := rows[1].Get("Name")
	require.Equal(t, `say "hi"`, n)
	_, ok = rows[0].Get("Missing")
	require.False(t, ok)

	require.NoError(t, ReadCSV(strings.NewReader(""), func(Row) error { t.Fatal("no rows expected"); return nil }))
	require.Error(t, ReadCSV(strings.NewReader("A,B\n1\n"), func(Row) error { return nil }))
}

// A quoted field keeps every byte between its quotes: Salesforce text
// holds CR LF line breaks, which must read as they are. Records end with
// LF or CR LF, the last one with none.
func TestReadCSVKeepsQuotedCarriageReturnsAndReadsEitherLineEnding(t *testing.T) {
	in := "Id,Note,Plain\r\n001,\"a\r\nb\",x\r\n\r\n002,\"\"\"q\"\"\r\n\r\nc\",\n003,,last"
	var got [][]string
	require.NoError(t, ReadCSV(strings.NewReader(in), func(r Row) error { got = append(got, r.Values); return nil }))
	require.Equal(t, [][]string{{"001", "a\r\nb", "x"}, {"002", "\"q\"\r\n\r\nc", ""}, {"003", "", "last"}}, got)

	require.ErrorContains(t, ReadCSV(strings.NewReader("A\n\"open\n"), func(Row) error { return nil }), "no closing quote")
	// A body cut short inside a field that spans lines is an error, not a
	// last record: a reload takes every record it did not read for deleted.
	cut := io.MultiReader(strings.NewReader("Id,Note,Name\n001,\"two\nlines\",Acme Corporat"), iotest.ErrReader(io.ErrUnexpectedEOF))
	require.ErrorIs(t, ReadCSV(cut, func(Row) error { return nil }), io.ErrUnexpectedEOF)
	cut = io.MultiReader(strings.NewReader("Id,Note\n001,\"two\nli"), iotest.ErrReader(io.ErrUnexpectedEOF))
	require.ErrorIs(t, ReadCSV(cut, func(Row) error { return nil }), io.ErrUnexpectedEOF)
	require.ErrorContains(t, ReadCSV(strings.NewReader("A\n\"x\"y\n"), func(Row) error { return nil }), "after a closing quote")
}

func TestParseBulkErrorSplitsCodeMessageAndFields(t *testing.T) {
	e := ParseBulkError("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --")
	require.Equal(t, RecordError{StatusCode: "REQUIRED_FIELD_MISSING", Message: "Required fields are missing: [Name]", Fields: []string{"Name"}}, e)

	e = ParseBulkError("FIELD_CUSTOM_VALIDATION_EXCEPTION:Amount: must be positive:--")
	require.Equal(t, "FIELD_CUSTOM_VALIDATION_EXCEPTION", e.StatusCode)
	require.Equal(t, "Amount: must be positive", e.Message)
	require.Empty(t, e.Fields)

	e = ParseBulkError("STRING_TOO_LONG:Name: data value too large:Name,Site --")
	require.Equal(t, []string{"Name", "Site"}, e.Fields)
	require.Equal(t, "Name: data value too large", e.Message)
}

// Salesforce refuses a JWT whose audience is a My Domain URL ("audience is
// invalid"): the audience names the kind of org, whatever host the
// assertion is posted to.
func TestTheJWTAudienceOfAMyDomainLoginIsLoginOrTestSalesforceCom(t *testing.T) {
	for loginURL, want := range map[string]string{
		"https://login.salesforce.com":                     "https://login.salesforce.com",
		"https://login.salesforce.com/":                    "https://login.salesforce.com",
		"https://test.salesforce.com":                      "https://test.salesforce.com",
		"https://acme.my.salesforce.com":                   "https://login.salesforce.com",
		"https://ACME.my.salesforce.com/":                  "https://login.salesforce.com",
		"https://acme-dev-ed.develop.my.salesforce.com":    "https://login.salesforce.com",
		"https://acme--uat.sandbox.my.salesforce.com":      "https://test.salesforce.com",
		"https://acme--uat.my.salesforce.com":              "https://test.salesforce.com",
		"https://power-fun-1234.scratch.my.salesforce.com": "https://test.salesforce.com",
		"https://acme.my.site.com/customers/":              "https://acme.my.site.com/customers",
		"http://127.0.0.1:4321/some/path":                  "http://127.0.0.1:4321",
	} {
		require.Equal(t, want, audience(loginURL), loginURL)
	}
}
