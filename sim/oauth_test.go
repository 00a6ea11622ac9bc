package sim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPasswordGrantAnswersSalesforceTokenShape(t *testing.T) {
	b := setup(t)
	status, body := b.form("/services/oauth2/token", url.Values{"grant_type": {"password"}, "client_id": {DefaultClientID},
		"client_secret": {DefaultClientSecret}, "username": {DefaultUsername}, "password": {DefaultPassword}})
	require.Equal(t, http.StatusOK, status)
	var tok map[string]any
	require.NoError(t, json.Unmarshal(body, &tok))
	require.Equal(t, b.http.URL, tok["instance_url"])
	require.Equal(t, "Bearer", tok["token_type"])
	require.Equal(t, b.http.URL+"/id/"+b.srv.OrgID()+"/"+b.srv.UserID(), tok["id"])
	require.IsType(t, "", tok["issued_at"], "issued_at is a string of epoch milliseconds")
	require.Equal(t, "1740830400000", tok["issued_at"])
	require.NotEmpty(t, tok["signature"])
	require.NotContains(t, tok, "refresh_token", "the username-password flow issues no refresh token")
	require.NotContains(t, tok, "scope", "classic username-password answers carry no scope")
	require.True(t, strings.HasPrefix(tok["access_token"].(string), b.srv.OrgID()[:15]+"!"))
}

func TestTokenErrorsUseSalesforceErrorShapes(t *testing.T) {
	b := setup(t)
	good := url.Values{"grant_type": {"password"}, "client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret},
		"username": {DefaultUsername}, "password": {DefaultPassword}}
	with := func(k, v string) url.Values {
		out := url.Values{}
		for key, vals := range good {
			out[key] = vals
		}
		if v == "" {
			out.Del(k)
		} else {
			out.Set(k, v)
		}
		return out
	}
	cases := []struct {
		name       string
		form       url.Values
		code, desc string
	}{
		{"wrong password", with("password", "nope"), "invalid_grant", "authentication failure"},
		{"unknown user", with("username", "x@y.z"), "invalid_grant", "authentication failure"},
		{"unknown client", with("client_id", "other"), "invalid_client_id", "client identifier invalid"},
		{"wrong secret", with("client_secret", "bad"), "invalid_client", "invalid client credentials"},
		{"no grant type", with("grant_type", ""), "invalid_request", "grant type is missing"},
		{"unknown grant", with("grant_type", "authorization_code"), "unsupported_grant_type", "grant type not supported"},
		{"dead refresh token", url.Values{"grant_type": {"refresh_token"}, "client_id": {DefaultClientID}, "refresh_token": {"gone"}}, "invalid_grant", "expired access/refresh token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := b.form("/services/oauth2/token", tc.form)
			require.Equal(t, http.StatusBadRequest, status)
			require.JSONEq(t, `{"error":"`+tc.code+`","error_description":"`+tc.desc+`"}`, string(body))
		})
	}
}

func TestClientCredentialsGrantAcceptsHTTPBasic(t *testing.T) {
	b := setup(t)
	req, _ := http.NewRequest("POST", b.http.URL+"/services/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(DefaultClientID, DefaultClientSecret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var tok map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	require.Equal(t, "api", tok["scope"])
	require.NotContains(t, tok, "refresh_token")
}

func signJWT(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	signing := enc(map[string]string{"alg": "RS256"}) + "." + enc(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	require.NoError(t, err)
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestJWTBearerGrantVerifiesSignatureAndClaims(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgforce"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	b := setup(t, func(c *Config) { c.JWTCertPEM = certPEM })
	exp := b.clock.Now().Add(3 * time.Minute).Unix()
	good := map[string]any{"iss": DefaultClientID, "sub": DefaultUsername, "aud": "https://login.salesforce.com", "exp": exp}
	grant := func(assertion string) (int, []byte) {
		return b.form("/services/oauth2/token", url.Values{"grant_type": {grantJWT}, "assertion": {assertion}})
	}

	status, body := grant(signJWT(t, key, good))
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"access_token"`)

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	status, body = grant(signJWT(t, other, good))
	require.Equal(t, http.StatusBadRequest, status)
	require.JSONEq(t, `{"error":"invalid_grant","error_description":"invalid assertion"}`, string(body))

	bad := func(k string, v any) map[string]any {
		m := map[string]any{}
		for key, val := range good {
			m[key] = val
		}
		m[k] = v
		return m
	}
	_, body = grant(signJWT(t, key, bad("iss", "someone-else")))
	require.JSONEq(t, `{"error":"invalid_client_id","error_description":"client identifier invalid"}`, string(body))
	_, body = grant(signJWT(t, key, bad("aud", "https://evil.example.com")))
	require.JSONEq(t, `{"error":"invalid_grant","error_description":"audience is invalid"}`, string(body))
	_, body = grant(signJWT(t, key, bad("exp", b.clock.Now().Add(-time.Minute).Unix())))
	require.JSONEq(t, `{"error":"invalid_grant","error_description":"expired authorization code"}`, string(body))
	_, body = grant(signJWT(t, key, bad("sub", "stranger@pgforce.dev")))
	require.JSONEq(t, `{"error":"invalid_grant","error_description":"user hasn't approved this consumer"}`, string(body))
	// The org's own URL is an accepted audience (it is the login URL of the simulator).
	status, _ = grant(signJWT(t, key, bad("aud", b.http.URL)))
	require.Equal(t, http.StatusOK, status)
}

func TestExpiredTokenAnswers401AndIssuedRefreshTokenGetsANewOneWithoutRotation(t *testing.T) {
	b := setup(t, func(c *Config) { c.TokenTTL = time.Minute })
	refresh := b.srv.IssueRefreshToken()
	require.True(t, strings.HasPrefix(refresh, b.srv.OrgID()[:15]+"!"))
	require.Equal(t, http.StatusOK, b.do("GET", "limits", nil).status)

	b.clock.Advance(61 * time.Second)
	r := b.do("GET", "limits", nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.JSONEq(t, `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`, string(r.body))
	require.Equal(t, "application/json;charset=UTF-8", r.header.Get("Content-Type"))

	for range 2 { // the token is not rotated: it keeps working
		status, body := b.form("/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {DefaultClientID},
			"client_secret": {DefaultClientSecret}, "refresh_token": {refresh}})
		require.Equal(t, http.StatusOK, status, string(body))
		var fresh map[string]string
		require.NoError(t, json.Unmarshal(body, &fresh))
		require.Equal(t, "api refresh_token", fresh["scope"])
		require.NotContains(t, fresh, "refresh_token", "rotation is off, so no new refresh token")
		b.token = fresh["access_token"]
		require.Equal(t, http.StatusOK, b.do("GET", "limits", nil).status)
	}
}

func TestRefreshTokenHookHandsOutATokenTheRefreshGrantAccepts(t *testing.T) {
	b := setup(t)
	r := b.do("POST", "/__sim/refresh-token", nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	refresh, _ := r.object(t)["refresh_token"].(string)
	require.NotEmpty(t, refresh)
	status, body := b.form("/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {DefaultClientID},
		"refresh_token": {refresh}})
	require.Equal(t, http.StatusOK, status, string(body))

	status, _ = b.form("/services/oauth2/revoke", url.Values{"token": {refresh}})
	require.Equal(t, http.StatusOK, status)
	status, body = b.form("/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {DefaultClientID},
		"refresh_token": {refresh}})
	require.Equal(t, http.StatusBadRequest, status)
	require.JSONEq(t, `{"error":"invalid_grant","error_description":"expired access/refresh token"}`, string(body))
}

func TestRevokeEndsTheSessionAndIdentityDescribesTheUser(t *testing.T) {
	b := setup(t)
	r := b.do("GET", "/services/oauth2/userinfo", nil)
	require.Equal(t, http.StatusOK, r.status)
	info := r.object(t)
	require.Equal(t, b.srv.UserID(), info["user_id"])
	require.Equal(t, b.srv.OrgID(), info["organization_id"])

	r = b.do("GET", "/id/"+b.srv.OrgID()+"/"+b.srv.UserID(), nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, DefaultUsername, r.object(t)["username"])

	status, _ := b.form("/services/oauth2/revoke", url.Values{"token": {b.token}})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, http.StatusUnauthorized, b.do("GET", "limits", nil).status)
}
