package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

// Error codes the worker reacts to. The full list is Salesforce's; these are the
// ones with behaviour attached.
const (
	CodeInvalidSession       = "INVALID_SESSION_ID"
	CodeRequestLimitExceeded = "REQUEST_LIMIT_EXCEEDED"
	CodeUnableToLockRow      = "UNABLE_TO_LOCK_ROW"
	CodeServerUnavailable    = "SERVER_UNAVAILABLE"
	CodeNotFound             = "NOT_FOUND"
	CodeInvalidQueryLocator  = "INVALID_QUERY_LOCATOR"
	CodeJobNotComplete       = "JOB_NOT_COMPLETE"
	CodeMultipleChoices      = "MULTIPLE_CHOICES"
)

// APIError is a failed REST or Bulk API call. Salesforce answers errors with a
// JSON array of {message, errorCode, fields}; the first element is kept here and
// any further ones in More.
type APIError struct {
	HTTPStatus int
	ErrorCode  string
	Message    string
	Fields     []string
	// More holds the remaining elements when Salesforce returned several.
	More []APIError
	// Method and Path identify the call (never the query string, which may carry
	// data the logs should not see).
	Method, Path string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "salesforce: %s %s: HTTP %d", e.Method, e.Path, e.HTTPStatus)
	if e.ErrorCode != "" {
		b.WriteString(" ")
		b.WriteString(e.ErrorCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(strings.TrimSpace(e.Message))
	}
	if len(e.Fields) > 0 {
		fmt.Fprintf(&b, " (fields %s)", strings.Join(e.Fields, ", "))
	}
	return b.String()
}

// OAuthError is a failed call to the token endpoint ({error, error_description}).
type OAuthError struct {
	HTTPStatus  int
	Code        string // e.g. invalid_grant
	Description string // e.g. authentication failure
}

func (e *OAuthError) Error() string {
	return fmt.Sprintf("salesforce: oauth token request failed: HTTP %d %s: %s", e.HTTPStatus, e.Code, e.Description)
}

type wireError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields"`
}

// parseAPIError builds an APIError from a failed response body. Bodies that are
// not the documented array (proxies, HTML error pages, the single-object form
// some endpoints use) still give a useful error.
func parseAPIError(status int, method, path string, body []byte) *APIError {
	e := &APIError{HTTPStatus: status, Method: method, Path: path}
	var arr []wireError
	if err := json.Unmarshal(body, &arr); err == nil && len(arr) > 0 {
		e.ErrorCode, e.Message, e.Fields = arr[0].ErrorCode, arr[0].Message, arr[0].Fields
		for _, w := range arr[1:] {
			e.More = append(e.More, APIError{HTTPStatus: status, ErrorCode: w.ErrorCode, Message: w.Message, Fields: w.Fields, Method: method, Path: path})
		}
		return e
	}
	var one wireError
	if err := json.Unmarshal(body, &one); err == nil && (one.ErrorCode != "" || one.Message != "") {
		e.ErrorCode, e.Message, e.Fields = one.ErrorCode, one.Message, one.Fields
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	e.Message = msg
	return e
}

// IsTransient reports whether err is worth retrying later without any change:
// server errors, timeouts, dropped connections, row-lock contention and
// exhausted request limits.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.HTTPStatus >= 500 || ae.HTTPStatus == 420 || ae.HTTPStatus == 429 {
			return true
		}
		for _, code := range ae.codes() {
			switch code {
			case CodeUnableToLockRow, CodeRequestLimitExceeded, CodeServerUnavailable:
				return true
			}
		}
		return false
	}
	var re *RecordError
	if errors.As(err, &re) {
		return re.StatusCode == CodeUnableToLockRow || re.StatusCode == CodeRequestLimitExceeded
	}
	var oe *OAuthError
	if errors.As(err, &oe) {
		// The token endpoint failing is transient; a refused grant is not.
		return oe.HTTPStatus >= 500
	}
	// A context that the caller cancelled is not transient; a deadline that
	// fired inside the HTTP client is.
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var ope *net.OpError
	return errors.As(err, &ope)
}

// IsLimitExceeded reports whether err says the org's API allocation (or the
// concurrent-request limit) is spent: HTTP 403 REQUEST_LIMIT_EXCEEDED.
func IsLimitExceeded(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		for _, code := range ae.codes() {
			if code == CodeRequestLimitExceeded {
				return true
			}
		}
	}
	var re *RecordError
	return errors.As(err, &re) && re.StatusCode == CodeRequestLimitExceeded
}

// IsNotFound reports whether err is a 404 / NOT_FOUND answer.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.HTTPStatus == 404 || ae.ErrorCode == CodeNotFound)
}

// IsInvalidSession reports whether err is a 401 that a token refresh did not cure.
func IsInvalidSession(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.HTTPStatus == 401 || ae.ErrorCode == CodeInvalidSession)
}

func (e *APIError) codes() []string {
	out := []string{e.ErrorCode}
	for _, m := range e.More {
		out = append(out, m.ErrorCode)
	}
	return out
}

// IsAuthFailure reports whether err says the client could not act as its
// user at all: a 401 that a token refresh did not cure, or a token
// endpoint that refused the login (invalid_grant after a password reset,
// a revoked refresh token, a frozen user). It is the login's failure, not
// the call's: the same call succeeds once the credentials work again.
func IsAuthFailure(err error) bool {
	if IsInvalidSession(err) {
		return true
	}
	var oe *OAuthError
	return errors.As(err, &oe)
}
