package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// MaxCompositeSubrequests is the documented cap of one composite request.
const MaxCompositeSubrequests = 25

// CompositeSubrequest is one step of a composite request. URL may be a full
// /services/data/... path or relative to the API version ("/sobjects/Account").
// Later steps can refer to earlier results as "@{ReferenceID.id}", which is how
// a child is created with its new parent's Id in one round trip.
type CompositeSubrequest struct {
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	ReferenceID string            `json:"referenceId"`
	Body        any               `json:"body,omitempty"`
	HTTPHeaders map[string]string `json:"httpHeaders,omitempty"`
}

// CompositeSubresponse is the outcome of one step.
type CompositeSubresponse struct {
	Body           json.RawMessage   `json:"body"`
	HTTPHeaders    map[string]string `json:"httpHeaders"`
	HTTPStatusCode int               `json:"httpStatusCode"`
	ReferenceID    string            `json:"referenceId"`
}

// Err returns the step's failure as an *APIError (the body is the REST error
// array), or nil for a 2xx step.
func (r CompositeSubresponse) Err() error {
	if r.HTTPStatusCode >= 200 && r.HTTPStatusCode < 300 {
		return nil
	}
	return parseAPIError(r.HTTPStatusCode, "composite", r.ReferenceID, r.Body)
}

// ID returns the id a create step answered with, or "".
func (r CompositeSubresponse) ID() string {
	var w struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(r.Body, &w)
	return w.ID
}

// Composite runs up to MaxCompositeSubrequests steps in one call. With
// allOrNone, one failing step rolls back the others (they report
// PROCESSING_HALTED). Step failures are in the results, not the error.
func (c *Client) Composite(ctx context.Context, allOrNone bool, steps []CompositeSubrequest) ([]CompositeSubresponse, error) {
	if len(steps) == 0 {
		return nil, nil
	}
	if len(steps) > MaxCompositeSubrequests {
		return nil, fmt.Errorf("salesforce: composite takes at most %d subrequests, got %d", MaxCompositeSubrequests, len(steps))
	}
	reqs := make([]CompositeSubrequest, len(steps))
	for i, s := range steps {
		if !strings.HasPrefix(s.URL, "/services/") {
			s.URL = c.dataPath(s.URL)
		}
		reqs[i] = s
	}
	body := map[string]any{"allOrNone": allOrNone, "collateSubrequests": false, "compositeRequest": reqs}
	var out struct {
		CompositeResponse []CompositeSubresponse `json:"compositeResponse"`
	}
	if _, err := c.sendJSON(ctx, http.MethodPost, c.dataPath("/composite"), nil, body, &out); err != nil {
		return nil, err
	}
	return out.CompositeResponse, nil
}
