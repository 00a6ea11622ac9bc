package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/pgforce/pgforce/sim/cometd"
)

// The operator hooks are not part of Salesforce's API: tests, benchmarks and the demo use them to watch and
// disturb the org. Each exists twice, as a method on *Server and as JSON under /__sim/ (see docs/sim.md).

var backgroundCtx = context.Background()

// Fault disturbs matching requests: added latency, and for a share of them an error answer or a dropped
// connection. Path is a prefix of the request path ("" matches every API path, i.e. everything but the
// hooks); Method ("" = any) narrows it further.
type Fault struct {
	Path      string        `json:"path,omitempty"`
	Method    string        `json:"method,omitempty"`
	Latency   time.Duration `json:"-"`
	LatencyMS int           `json:"latencyMs,omitempty"`
	// ErrorRate is the share (0..1] of matching requests that fail; 0 means all of them when Status or
	// Reset is set.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// Status answers with this HTTP status and a Salesforce-like error body (500 UNKNOWN_EXCEPTION, 503
	// SERVER_UNAVAILABLE, 401 INVALID_SESSION_ID, 403 REQUEST_LIMIT_EXCEEDED, ...).
	Status int `json:"status,omitempty"`
	// Reset closes the connection without any answer (the client sees ECONNRESET / EOF).
	Reset bool `json:"reset,omitempty"`
	// LoseAnswer carries the request out, then closes the connection without the answer: a call
	// whose outcome the client cannot know, as when Salesforce commits and the response is lost.
	LoseAnswer bool `json:"loseAnswer,omitempty"`
	// Count ends the fault after this many failures (0 = until cleared).
	Count int `json:"count,omitempty"`
}

type activeFault struct {
	Fault
	ID    int `json:"id"`
	fired int
}

func (s *Server) count(r *http.Request) {
	key := r.Method + " " + endpointKey(r.URL.Path)
	s.mu.Lock()
	s.calls[key]++
	s.mu.Unlock()
}

// endpointKey folds versions, ids and locators out of a path so that calls group by endpoint.
func endpointKey(p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i, seg := range segs {
		switch {
		case i == 2 && segs[0] == "services" && segs[1] == "data" && versionPath.MatchString("/services/data/"+seg):
			segs[i] = "vXX.X"
		case i == 1 && segs[0] == "cometd":
			segs[i] = "XX.X"
		case segs[0] == "id" && i > 0:
			segs[i] = "{id}"
		case i > 0 && (segs[i-1] == "query" || segs[i-1] == "queryAll") && i > 3:
			segs[i] = "{locator}"
		case looksLikeID(seg):
			segs[i] = "{id}"
		case i == 6 && len(segs) == 7 && segs[3] == "sobjects":
			segs[i] = "{value}"
		}
	}
	return "/" + strings.Join(segs, "/")
}

func looksLikeID(s string) bool {
	if len(s) != 15 && len(s) != 18 {
		return false
	}
	digit := false
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
		if s[i] >= '0' && s[i] <= '9' {
			digit = true
		}
	}
	return digit
}

// Calls returns the number of requests per endpoint ("GET /services/data/vXX.X/query") since the last reset.
func (s *Server) Calls() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the per-endpoint counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	s.calls = map[string]int64{}
	s.mu.Unlock()
}

// APIUsage returns the API requests counted against the daily allocation.
func (s *Server) APIUsage() int64 { return s.apiUsed.Load() }

// SetAPIUsage sets the counted API requests, e.g. to just below the limit.
func (s *Server) SetAPIUsage(n int64) { s.apiUsed.Store(n) }

// ForceLimitExceeded makes every API call answer 403 REQUEST_LIMIT_EXCEEDED until called with false.
func (s *Server) ForceLimitExceeded(on bool) { s.forceLimit.Store(on) }

// Inject adds a fault and returns its id.
func (s *Server) Inject(f Fault) int {
	if f.Latency == 0 && f.LatencyMS > 0 {
		f.Latency = time.Duration(f.LatencyMS) * time.Millisecond
	}
	f.LatencyMS = int(f.Latency / time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	id := 1
	for _, a := range s.faults {
		if a.ID >= id {
			id = a.ID + 1
		}
	}
	s.faults = append(s.faults, &activeFault{Fault: f, ID: id})
	return id
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// applyFaults runs the faults matching r; it reports whether it answered (or dropped) the request,
// and whether the request is to be carried out with its answer lost.
func (s *Server) applyFaults(w http.ResponseWriter, r *http.Request) (handled, loseAnswer bool) {
	s.mu.Lock()
	var latency time.Duration
	var fail *activeFault
	for _, f := range s.faults {
		if f.Path != "" && !strings.HasPrefix(r.URL.Path, f.Path) || f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		latency += f.Latency
		if fail == nil && (f.Status != 0 || f.Reset || f.LoseAnswer) && (f.Count == 0 || f.fired < f.Count) {
			if f.ErrorRate <= 0 || f.ErrorRate >= 1 || rand.Float64() < f.ErrorRate {
				f.fired++
				fail = f
			}
		}
	}
	var failure Fault
	if fail != nil {
		failure = fail.Fault
	}
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true, false
		}
	}
	if fail == nil {
		return false, false
	}
	if failure.LoseAnswer {
		return false, true
	}
	if failure.Reset {
		dropConnection(w)
		return true, false
	}
	switch failure.Status {
	case http.StatusUnauthorized:
		writeErrors(w, failure.Status, APIError{Code: "INVALID_SESSION_ID", Message: "Session expired or invalid"})
	case http.StatusForbidden:
		writeErrors(w, failure.Status, APIError{Code: "REQUEST_LIMIT_EXCEEDED", Message: "TotalRequests Limit exceeded."})
	case http.StatusServiceUnavailable:
		writeErrors(w, failure.Status, APIError{Code: "SERVER_UNAVAILABLE", Message: "Server is temporarily unavailable. Please try again later."})
	case http.StatusInternalServerError:
		writeErrors(w, failure.Status, APIError{Code: "UNKNOWN_EXCEPTION", Message: "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)"})
	default:
		writeErrors(w, failure.Status, APIError{Code: "UNKNOWN_EXCEPTION", Message: http.StatusText(failure.Status)})
	}
	return true, false
}

// ExpireSessions ends every access token; refresh tokens stay valid, so clients can refresh.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	s.sessions = map[string]*session{}
	s.mu.Unlock()
}

// FailStreamingConnects answers every CometD /meta/connect unsuccessfully with errText (see
// cometd.Server.FailConnects); "" ends it.
func (s *Server) FailStreamingConnects(errText string) { s.streams.FailConnects(errText) }

// DropStreamingSessions makes every CometD client's next request fail with 403::Unknown client.
func (s *Server) DropStreamingSessions() { s.streams.DropSessions() }

// ExpireReplay makes replay ids up to and including upTo unavailable (0: every event published so far), so a
// subscriber resuming from one gets the invalid replay id error.
func (s *Server) ExpireReplay(upTo int64) {
	if upTo <= 0 {
		upTo = s.bus.Latest()
	}
	s.bus.ExpireBefore(upTo + 1)
}

// ForceGap publishes a gap event (GAP_CREATE, GAP_UPDATE, GAP_DELETE, GAP_UNDELETE or GAP_OVERFLOW) for
// records of object, as Salesforce does when it cannot produce the full change event.
func (s *Server) ForceGap(object, changeType string, ids ...string) error {
	o := s.cat.Object(object)
	if o == nil {
		return fmt.Errorf("sim: unknown object %q", object)
	}
	if o.NoCDC {
		return fmt.Errorf("sim: %s is not selected for Change Data Capture", o.Name)
	}
	switch changeType {
	case "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW":
	default:
		return fmt.Errorf("sim: change type %q is not a gap type", changeType)
	}
	norm := make([]string, 0, len(ids))
	for _, id := range ids {
		n, ok := normalizeID(id)
		if !ok {
			return fmt.Errorf("sim: malformed id %q", id)
		}
		norm = append(norm, n)
	}
	if changeType == "GAP_OVERFLOW" && len(norm) == 0 {
		norm = []string{o.KeyPrefix + "000000000000000"}
	}
	if len(norm) == 0 {
		return errors.New("sim: a gap event needs record ids")
	}
	t := s.store.begin(Tx{User: s.userID})
	t.events = append(t.events, pendingEvent{obj: o, kind: changeType, ids: norm})
	t.end(true)
	return nil
}

// UIEdit changes a record as a person would in the Salesforce UI: through validation, with the org's user,
// and with an empty changeOrigin on the change event.
func (s *Server) UIEdit(ctx context.Context, object, id string, fields map[string]any) error {
	o := s.cat.Object(object)
	if o == nil {
		return fmt.Errorf("sim: unknown object %q", object)
	}
	res := s.store.Apply(ctx, Tx{User: s.userID}, []Op{{Kind: "update", Object: o, ID: id, Fields: fields}}, true)
	if !res[0].OK() {
		e := res[0].Errors[0]
		return fmt.Errorf("sim: %s: %s", e.Code, e.Message)
	}
	return nil
}

// Seed inserts n records of object in one transaction without HTTP; gen returns the fields of record i
// (Go values: string, bool, int, float64, json.Number, time.Time, nil). More than 100,000 records produce a
// single GAP_OVERFLOW event, as such a transaction does in Salesforce. It returns the first id created.
func (s *Server) Seed(ctx context.Context, object string, n int, gen func(i int) map[string]any) (string, error) {
	o := s.cat.Object(object)
	if o == nil {
		return "", fmt.Errorf("sim: unknown object %q", object)
	}
	t := s.store.begin(Tx{User: s.userID, Origin: "com/salesforce/api/bulkapi/" + s.cfg.APIVersion + ";client=pgforce-sim-seed"})
	t.noUndo = true
	if n > s.store.overflow {
		// The transaction will overflow: skip building events that would be dropped anyway.
		t.overflowed = []*Object{o}
	}
	tbl := s.store.tables[o]
	var first string
	for i := 0; i < n; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			t.end(true)
			return first, ctx.Err()
		}
		res := t.insert(tbl, gen(i), nil, nil)
		if !res.OK() {
			t.end(true)
			e := res.Errors[0]
			return first, fmt.Errorf("sim: seed record %d: %s: %s", i, e.Code, e.Message)
		}
		if first == "" {
			first = res.ID
		}
	}
	t.end(true)
	return first, nil
}

// Reset empties the org: records (the user is recreated), change events, bulk jobs, query cursors, counters,
// faults and API usage. Sessions survive, so connected clients carry on.
func (s *Server) Reset() {
	s.store.mu.Lock()
	s.store.resetTables()
	s.store.mu.Unlock()
	s.seedUser()
	s.bus.Reset()
	s.bulk.Reset()
	s.mu.Lock()
	s.cursors = map[string]*cursor{}
	s.calls = map[string]int64{}
	s.faults = nil
	s.mu.Unlock()
	s.apiUsed.Store(0)
	s.forceLimit.Store(false)
}

// serveHooks answers /__sim/... .
func (s *Server) serveHooks(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/__sim"), "/")
	var body map[string]json.RawMessage
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil && err.Error() != "EOF" {
			hookError(w, http.StatusBadRequest, "body must be a JSON object: "+err.Error())
			return
		}
	}
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(body[k], &v)
		return v
	}
	ok := map[string]any{"ok": true}
	switch {
	case p == "/calls" && r.Method == http.MethodGet:
		calls := s.Calls()
		keys := make([]string, 0, len(calls))
		for k := range calls {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		writeJSON(w, http.StatusOK, map[string]any{"calls": calls, "apiUsage": s.APIUsage(), "apiLimit": s.cfg.APILimit})
	case p == "/calls" && r.Method == http.MethodDelete, p == "/calls/reset" && r.Method == http.MethodPost:
		s.ResetCalls()
		writeJSON(w, http.StatusOK, ok)
	case p == "/faults" && r.Method == http.MethodPost:
		var f Fault
		raw, _ := json.Marshal(body)
		if err := json.Unmarshal(raw, &f); err != nil {
			hookError(w, http.StatusBadRequest, "fault: "+err.Error())
			return
		}
		if f.Status == 0 && !f.Reset && !f.LoseAnswer && f.LatencyMS == 0 {
			hookError(w, http.StatusBadRequest, "fault: set latencyMs, status, reset or loseAnswer")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": s.Inject(f)})
	case p == "/faults" && r.Method == http.MethodGet:
		s.mu.Lock()
		list := make([]activeFault, 0, len(s.faults))
		for _, f := range s.faults {
			list = append(list, *f)
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"faults": list})
	case p == "/faults" && r.Method == http.MethodDelete:
		s.ClearFaults()
		writeJSON(w, http.StatusOK, ok)
	case p == "/refresh-token" && r.Method == http.MethodPost:
		writeJSON(w, http.StatusOK, map[string]any{"refresh_token": s.IssueRefreshToken()})
	case p == "/sessions/expire" && r.Method == http.MethodPost:
		s.ExpireSessions()
		writeJSON(w, http.StatusOK, ok)
	case p == "/limits" && r.Method == http.MethodPost:
		if v, has := body["exceeded"]; has {
			var on bool
			_ = json.Unmarshal(v, &on)
			s.ForceLimitExceeded(on)
		}
		if v, has := body["used"]; has {
			var n int64
			if err := json.Unmarshal(v, &n); err != nil {
				hookError(w, http.StatusBadRequest, "used must be an integer")
				return
			}
			s.SetAPIUsage(n)
		}
		writeJSON(w, http.StatusOK, map[string]any{"apiUsage": s.APIUsage(), "apiLimit": s.cfg.APILimit, "exceeded": s.forceLimit.Load()})
	case p == "/cometd/drop" && r.Method == http.MethodPost:
		s.DropStreamingSessions()
		writeJSON(w, http.StatusOK, ok)
	case p == "/replay/expire" && r.Method == http.MethodPost:
		var upTo int64
		if v, has := body["upTo"]; has {
			_ = json.Unmarshal(v, &upTo)
		}
		s.ExpireReplay(upTo)
		writeJSON(w, http.StatusOK, ok)
	case p == "/gap" && r.Method == http.MethodPost:
		var ids []string
		_ = json.Unmarshal(body["ids"], &ids)
		if err := s.ForceGap(str("object"), str("changeType"), ids...); err != nil {
			hookError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, ok)
	case p == "/ui-edit" && r.Method == http.MethodPost:
		var fields map[string]any
		dec := json.NewDecoder(strings.NewReader(string(body["fields"])))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			hookError(w, http.StatusBadRequest, "fields must be a JSON object")
			return
		}
		if err := s.UIEdit(r.Context(), str("object"), str("id"), fields); err != nil {
			hookError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, ok)
	case p == "/seed" && r.Method == http.MethodPost:
		s.serveSeed(w, r, body)
	case p == "/undelete" && r.Method == http.MethodPost:
		var ids []string
		_ = json.Unmarshal(body["ids"], &ids)
		if err := s.Undelete(r.Context(), str("object"), ids...); err != nil {
			hookError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, ok)
	case p == "/reset" && r.Method == http.MethodPost:
		s.Reset()
		writeJSON(w, http.StatusOK, ok)
	default:
		hookError(w, http.StatusNotFound, "no hook "+r.Method+" /__sim"+p)
	}
}

// serveSeed is POST /__sim/seed {"object":"Account","count":1000,"fields":{"Name":"Account {n}"}}: every
// string field value has {n} replaced by the record's number (0-based).
func (s *Server) serveSeed(w http.ResponseWriter, r *http.Request, body map[string]json.RawMessage) {
	var object string
	var count int
	_ = json.Unmarshal(body["object"], &object)
	if err := json.Unmarshal(body["count"], &count); err != nil || count <= 0 {
		hookError(w, http.StatusBadRequest, "count must be a positive integer")
		return
	}
	var tmpl map[string]any
	if raw, has := body["fields"]; has {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(&tmpl); err != nil {
			hookError(w, http.StatusBadRequest, "fields must be a JSON object")
			return
		}
	}
	start := time.Now()
	first, err := s.Seed(r.Context(), object, count, func(i int) map[string]any {
		n := fmt.Sprint(i)
		out := make(map[string]any, len(tmpl))
		for k, v := range tmpl {
			if sv, ok := v.(string); ok {
				v = strings.ReplaceAll(sv, "{n}", n)
			}
			out[k] = v
		}
		return out
	})
	if err != nil {
		hookError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"created": count, "firstId": first, "elapsedMs": time.Since(start).Milliseconds()})
}

func hookError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": msg})
}

// Events returns up to limit retained change events with a replay id above after, oldest first.
func (s *Server) Events(after int64, limit int) []cometd.Event { return s.bus.Since(after, limit) }

// Undelete restores records from the recycle bin (Salesforce offers this through SOAP and Apex, not REST).
func (s *Server) Undelete(ctx context.Context, object string, ids ...string) error {
	o := s.cat.Object(object)
	if o == nil {
		return fmt.Errorf("sim: unknown object %q", object)
	}
	ops := make([]Op, len(ids))
	for i, id := range ids {
		ops[i] = Op{Kind: "undelete", Object: o, ID: id}
	}
	for _, res := range s.store.Apply(ctx, Tx{User: s.userID, Origin: "com/salesforce/api/soap/" + s.cfg.APIVersion}, ops, true) {
		if !res.OK() {
			return fmt.Errorf("sim: undelete: %s: %s", res.Errors[0].Code, res.Errors[0].Message)
		}
	}
	return nil
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // no hijacking (HTTP/2): abort the response instead
}

// unanswered takes a handler's answer and throws it away (see Fault.LoseAnswer).
type unanswered struct{ header http.Header }

func (u *unanswered) Header() http.Header         { return u.header }
func (u *unanswered) Write(b []byte) (int, error) { return len(b), nil }
func (u *unanswered) WriteHeader(int)             {}

// HideField takes a field away from the integration user, as removing its field-level security (or deleting
// the field) does in a real org: describe stops listing it, and queries, reads and writes that name it fail
// with INVALID_FIELD. Stored values are kept.
func (s *Server) HideField(object, field string) error {
	o, f, err := s.field(object, field)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f.hidden = true
	delete(o.byLower, strings.ToLower(f.Name))
	delete(o.byName, f.Name)
	return nil
}

// ShowField gives a field HideField took away back to the integration user, as granting its field-level
// security does: describe lists it again, with the values it kept.
func (s *Server) ShowField(object, field string) error {
	o := s.cat.Object(object)
	if o == nil {
		return fmt.Errorf("sim: no object %s", object)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range o.Fields {
		if f.hidden && strings.EqualFold(f.Name, field) {
			f.hidden = false
			o.byLower[strings.ToLower(f.Name)] = f
			o.byName[f.Name] = f
			return nil
		}
	}
	return fmt.Errorf("sim: no hidden field %s.%s", object, field)
}

// AlterField changes a field's definition in place, as an admin editing it in Setup does (a longer text
// field, more digits).
func (s *Server) AlterField(object, field string, change func(f *Field)) error {
	_, f, err := s.field(object, field)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	change(f)
	return nil
}

// field finds a field for the schema hooks.
func (s *Server) field(object, field string) (*Object, *Field, error) {
	o := s.cat.Object(object)
	if o == nil {
		return nil, nil, fmt.Errorf("sim: no object %s", object)
	}
	f := o.Field(field)
	if f == nil {
		return nil, nil, fmt.Errorf("sim: no field %s.%s", object, field)
	}
	return o, f, nil
}
