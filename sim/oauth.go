package sim

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	grantPassword = "password"
	grantRefresh  = "refresh_token"
	grantClient   = "client_credentials"
	grantJWT      = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func writeOAuthError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, oauthError{code, desc})
}

// serveToken is POST /services/oauth2/token for the password, refresh token, client credentials and JWT
// bearer grants, answering with Salesforce's success and error shapes.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeOAuthError(w, "invalid_request", "must use HTTP POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, "invalid_request", "invalid request body")
		return
	}
	form := r.PostForm
	clientID, clientSecret := form.Get("client_id"), form.Get("client_secret")
	if id, secret, ok := r.BasicAuth(); ok {
		clientID, clientSecret = id, secret
	}
	grant := form.Get("grant_type")
	var scope string
	switch grant {
	case "":
		writeOAuthError(w, "invalid_request", "grant type is missing")
		return
	case grantPassword:
		if !s.checkClient(w, clientID, clientSecret, true) {
			return
		}
		// The password may carry a 24-character security token at its end, as clients append it.
		pw := form.Get("password")
		pwOK := pw == s.cfg.Password || (strings.HasPrefix(pw, s.cfg.Password) && len(pw) == len(s.cfg.Password)+24)
		if form.Get("username") != s.cfg.Username || !pwOK {
			writeOAuthError(w, "invalid_grant", "authentication failure")
			return
		}
		// The username-password flow issues no refresh token on Salesforce; IssueRefreshToken stands in
		// for the web-server flow that does.
	case grantRefresh:
		if clientID != s.cfg.ClientID {
			writeOAuthError(w, "invalid_client_id", "client identifier invalid")
			return
		}
		if clientSecret != "" && clientSecret != s.cfg.ClientSecret {
			writeOAuthError(w, "invalid_client", "invalid client credentials")
			return
		}
		s.mu.Lock()
		user, ok := s.refresh[form.Get("refresh_token")]
		rotated := ""
		if ok && s.cfg.RotateRefreshTokens {
			// With rotation the token just used is invalidated and a new one answered.
			delete(s.refresh, form.Get("refresh_token"))
			rotated = s.orgID[:15] + "!" + randomToken(40)
			s.refresh[rotated] = user
		}
		s.mu.Unlock()
		if !ok {
			writeOAuthError(w, "invalid_grant", "expired access/refresh token")
			return
		}
		// Without rotation (the default on a connected app) the refresh token stays the same and the answer
		// carries none.
		scope = "api refresh_token"
		if rotated != "" {
			s.issueTokenWith(w, scope, map[string]string{"refresh_token": rotated})
			return
		}
	case grantClient:
		if !s.checkClient(w, clientID, clientSecret, true) {
			return
		}
		scope = "api"
	case grantJWT:
		if desc, code := s.checkAssertion(form.Get("assertion")); code != "" {
			writeOAuthError(w, code, desc)
			return
		}
		scope = "api"
	default:
		writeOAuthError(w, "unsupported_grant_type", "grant type not supported")
		return
	}
	s.issueToken(w, scope)
}

// checkClient verifies the connected app's credentials and answers the error itself.
func (s *Server) checkClient(w http.ResponseWriter, id, secret string, needSecret bool) bool {
	if id != s.cfg.ClientID {
		writeOAuthError(w, "invalid_client_id", "client identifier invalid")
		return false
	}
	if needSecret && secret != s.cfg.ClientSecret {
		writeOAuthError(w, "invalid_client", "invalid client credentials")
		return false
	}
	return true
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// IssueRefreshToken returns a new refresh token for the org's user, valid for the refresh_token grant until
// revoked. On Salesforce a user gets one by approving the connected app in the web-server (authorization
// code) flow, which needs a browser; the simulator hands it out directly instead, so clients can be
// configured the way production ones are. The password grant deliberately issues none.
func (s *Server) IssueRefreshToken() string {
	refresh := s.orgID[:15] + "!" + randomToken(40)
	s.mu.Lock()
	s.refresh[refresh] = s.userID
	s.mu.Unlock()
	return refresh
}

// issueToken starts a session for the org's user and answers the token JSON.
func (s *Server) issueToken(w http.ResponseWriter, scope string) {
	s.issueTokenWith(w, scope, nil)
}

// issueTokenWith is issueToken with extra keys in the answer.
func (s *Server) issueTokenWith(w http.ResponseWriter, scope string, extra map[string]string) {
	now := s.cfg.Clock()
	token := s.orgID[:15] + "!" + randomToken(48)
	s.mu.Lock()
	s.sessions[token] = &session{user: s.userID, expires: now.Add(s.cfg.TokenTTL)}
	s.mu.Unlock()
	id := s.identityURL()
	issued := strconv.FormatInt(now.UnixMilli(), 10)
	mac := hmac.New(sha256.New, []byte(s.cfg.ClientSecret))
	mac.Write([]byte(id + issued))
	out := map[string]string{
		"access_token": token,
		"instance_url": s.url,
		"id":           id,
		"token_type":   "Bearer",
		"issued_at":    issued,
		"signature":    base64.StdEncoding.EncodeToString(mac.Sum(nil)),
	}
	if scope != "" {
		out["scope"] = scope
	}
	for k, v := range extra {
		out[k] = v
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) identityURL() string { return s.url + "/id/" + s.orgID + "/" + s.userID }

// checkAssertion verifies a JWT bearer assertion: RS256 signature against the configured key, iss = client
// id, sub = username, aud = a login host or this org, exp in the future. It returns the OAuth error.
func (s *Server) checkAssertion(assertion string) (desc, code string) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "invalid assertion", "invalid_grant"
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &header); err != nil || header.Alg != "RS256" {
		return "invalid assertion", "invalid_grant"
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "invalid assertion", "invalid_grant"
	}
	if s.jwtKey == nil {
		return "invalid assertion", "invalid_grant" // no certificate uploaded for the app
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil {
		return "invalid assertion", "invalid_grant"
	}
	pub, ok := s.jwtKey.(*rsa.PublicKey)
	if !ok {
		return "invalid assertion", "invalid_grant"
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
		return "invalid assertion", "invalid_grant"
	}
	if claims.Iss != s.cfg.ClientID {
		return "client identifier invalid", "invalid_client_id"
	}
	var auds []string
	if err := json.Unmarshal(claims.Aud, &auds); err != nil {
		var one string
		if json.Unmarshal(claims.Aud, &one) != nil {
			return "audience is invalid", "invalid_grant"
		}
		auds = []string{one}
	}
	audOK := false
	for _, a := range auds {
		a = strings.TrimSuffix(a, "/")
		if a == "https://login.salesforce.com" || a == "https://test.salesforce.com" || a == s.url {
			audOK = true
		}
	}
	if !audOK {
		return "audience is invalid", "invalid_grant"
	}
	exp, err := claims.Exp.Int64()
	if err != nil || !s.cfg.Clock().Before(time.Unix(exp, 0)) {
		return "expired authorization code", "invalid_grant"
	}
	if claims.Sub != s.cfg.Username {
		return "user hasn't approved this consumer", "invalid_grant"
	}
	return "", ""
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	return dec.Decode(v)
}

// parseJWTKey reads an RSA public key from a certificate, PKIX or PKCS#1 PEM block.
func parseJWTKey(b []byte) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("sim: JWT certificate: no PEM block found")
	}
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sim: JWT certificate: %w", err)
		}
		if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
			return nil, errors.New("sim: JWT certificate: not an RSA key (RS256 needs one)")
		}
		return cert.PublicKey, nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sim: JWT public key: %w", err)
		}
		if _, ok := k.(*rsa.PublicKey); !ok {
			return nil, errors.New("sim: JWT public key: not an RSA key (RS256 needs one)")
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sim: JWT public key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("sim: JWT certificate: unexpected PEM block %q (want CERTIFICATE or PUBLIC KEY)", block.Type)
}

// serveRevoke is POST /services/oauth2/revoke: it ends an access or refresh token.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	tok := r.Form.Get("token")
	s.mu.Lock()
	_, isAccess := s.sessions[tok]
	_, isRefresh := s.refresh[tok]
	delete(s.sessions, tok)
	delete(s.refresh, tok)
	s.mu.Unlock()
	if !isAccess && !isRefresh {
		writeOAuthError(w, "unsupported_token_type", "this token type is not supported")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) userFields() map[string]any {
	vals, _ := s.store.Get(backgroundCtx, s.cat.Object("User"), s.userID)
	u := s.cat.Object("User")
	get := func(name string) any { return vals[u.Field(name).Index] }
	return map[string]any{"username": get("Username"), "email": get("Email"), "first": get("FirstName"), "last": get("LastName"), "name": get("Name")}
}

// serveUserInfo is the OpenID Connect userinfo endpoint.
func (s *Server) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticate(r); !ok {
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("Bad_OAuth_Token"))
		return
	}
	u := s.userFields()
	writeJSON(w, http.StatusOK, map[string]any{
		"sub": s.identityURL(), "user_id": s.userID, "organization_id": s.orgID,
		"preferred_username": u["username"], "nickname": "simuser", "name": u["name"], "email": u["email"],
		"email_verified": true, "given_name": u["first"], "family_name": u["last"], "zoneinfo": "UTC",
		"active": true, "user_type": "STANDARD", "language": "en_US", "locale": "en_US", "utcOffset": 0,
		"is_app_installed": true, "urls": s.identityURLs(),
	})
}

func (s *Server) identityURLs() map[string]string {
	base := s.url + "/services/data/v{version}/"
	return map[string]string{
		"rest": base, "sobjects": base + "sobjects/", "query": base + "query/", "search": base + "search/",
		"recent": base + "recent/", "limits": base + "limits/",
		"enterprise": s.url + "/services/Soap/c/{version}/" + s.orgID[:15],
		"partner":    s.url + "/services/Soap/u/{version}/" + s.orgID[:15],
		"metadata":   s.url + "/services/Soap/m/{version}/" + s.orgID[:15],
		"profile":    s.url + "/" + s.userID,
	}
}

// serveIdentity is the identity URL /id/<org>/<user> (token as Bearer or ?oauth_token=).
func (s *Server) serveIdentity(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticate(r); !ok {
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("Bad_OAuth_Token"))
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/id/"), "/"), "/")
	if len(parts) != 2 || parts[0] != s.orgID && parts[0] != s.orgID[:15] || parts[1] != s.userID && parts[1] != s.userID[:15] {
		writeErrors(w, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "The requested resource does not exist"})
		return
	}
	u := s.userFields()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": s.identityURL(), "asserted_user": true, "user_id": s.userID, "organization_id": s.orgID,
		"username": u["username"], "nick_name": "simuser", "display_name": u["name"], "email": u["email"],
		"email_verified": true, "first_name": u["first"], "last_name": u["last"], "timezone": "UTC",
		"active": true, "user_type": "STANDARD", "language": "en_US", "locale": "en_US", "utcOffset": 0,
		"is_app_installed": true, "urls": s.identityURLs(),
	})
}
