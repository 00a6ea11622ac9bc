package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// orderedJSON is a JSON object whose keys keep their insertion order, as Salesforce writes records
// ("attributes" first, then fields in describe or SELECT order).
type orderedJSON struct {
	keys []string
	vals []any
}

func (o *orderedJSON) set(k string, v any) {
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

func (o *orderedJSON) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := marshalNoEscape(o.vals[i])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (c *call) base() string { return "/services/data/v" + c.version }

func (c *call) notFound() {
	writeErrors(c.w, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "The requested resource does not exist"})
}

func (c *call) methodNotAllowed(allowed string) {
	writeErrors(c.w, http.StatusMethodNotAllowed, APIError{Code: "METHOD_NOT_ALLOWED",
		Message: fmt.Sprintf("HTTP Method '%s' not allowed. Allowed are %s", c.r.Method, allowed)})
}

// route dispatches a /services/data/vXX.X call by its path segments.
func (c *call) route() {
	segs, m := c.segs, c.r.Method
	if len(segs) == 0 {
		c.resources()
		return
	}
	switch segs[0] {
	case "limits":
		c.limits()
	case "sobjects":
		c.sobjects()
	case "query", "queryAll":
		if m != http.MethodGet {
			c.methodNotAllowed("GET,HEAD")
			return
		}
		c.query(segs[0] == "queryAll")
	case "composite":
		c.composite()
	case "tooling":
		c.tooling()
	case "search":
		c.search()
	default:
		c.notFound()
	}
}

func (c *call) resources() {
	b := c.base()
	out := &orderedJSON{}
	for _, k := range []string{"tooling", "metadata", "eclair", "folders", "prechatForms", "chatter", "tabs", "appMenu",
		"quickActions", "queryAll", "commerce", "wave", "iot", "analytics", "search", "identity", "composite",
		"parameterizedSearch", "fingerprint", "theme", "nouns", "domino", "event", "serviceTemplates", "recent",
		"connect", "licensing", "limits", "process", "async-queries", "query", "match", "emailConnect",
		"compactLayouts", "knowledgeManagement", "sobjects", "actions", "support", "jobs"} {
		if k == "identity" {
			out.set(k, c.s.identityURL())
			continue
		}
		out.set(k, b+"/"+k)
	}
	writeJSON(c.w, http.StatusOK, out)
}

func (c *call) limits() {
	max := int64(c.s.cfg.APILimit)
	remaining := max - c.s.apiUsed.Load()
	if remaining < 0 || c.s.forceLimit.Load() {
		remaining = 0
	}
	records := 0
	for _, o := range c.s.cat.objects {
		records += c.s.store.Count(o)
	}
	lim := func(m, r int64) map[string]int64 { return map[string]int64{"Max": m, "Remaining": r} }
	dataMB := int64(1024)
	usedMB := int64(records) * 2 / 1024 // Salesforce counts about 2 KB per record
	writeJSON(c.w, http.StatusOK, map[string]any{
		"DailyApiRequests":                     lim(max, remaining),
		"DailyAsyncApexExecutions":             lim(250000, 250000),
		"DailyBulkApiBatches":                  lim(15000, 15000),
		"DailyBulkV2QueryJobs":                 lim(10000, 10000),
		"DailyBulkV2QueryFileStorageMB":        lim(976562, 976562),
		"DailyDeliveredPlatformEvents":         lim(50000, 50000),
		"DailyDurableStreamingApiEvents":       lim(1000000, 1000000),
		"DailyStreamingApiEvents":              lim(1000000, 1000000),
		"DurableStreamingApiConcurrentClients": lim(2000, 2000),
		"StreamingApiConcurrentClients":        lim(2000, 2000),
		"ConcurrentAsyncGetReportInstances":    lim(200, 200),
		"HourlyPublishedPlatformEvents":        lim(250000, 250000),
		"DataStorageMB":                        lim(dataMB, max64(dataMB-usedMB, 0)),
		"FileStorageMB":                        lim(20480, 20480),
		"SingleEmail":                          lim(5000, 5000),
	})
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// decodeBody reads a JSON request body with exact numbers; on failure it answers JSON_PARSER_ERROR.
func (c *call) decodeBody(v any) bool {
	b, err := io.ReadAll(io.LimitReader(c.r.Body, 64<<20))
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		err = dec.Decode(v)
	}
	if err != nil {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "JSON_PARSER_ERROR", Message: "Unexpected character or end of input: " + err.Error() + " at [line:1, column:1]"})
		return false
	}
	return true
}

func (c *call) object(name string) *Object {
	o := c.s.cat.Object(name)
	if o == nil {
		writeErrors(c.w, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "The requested resource does not exist"})
	}
	return o
}

func (c *call) sobjects() {
	segs, m := c.segs, c.r.Method
	if len(segs) == 1 {
		if m != http.MethodGet {
			c.methodNotAllowed("GET,HEAD")
			return
		}
		c.describeGlobal()
		return
	}
	o := c.object(segs[1])
	if o == nil {
		return
	}
	switch {
	case len(segs) == 2:
		switch m {
		case http.MethodGet:
			writeJSON(c.w, http.StatusOK, map[string]any{"objectDescribe": c.s.globalEntry(o, c.version), "recentItems": []any{}})
		case http.MethodPost:
			c.create(o)
		default:
			c.methodNotAllowed("GET,HEAD,POST")
		}
	case len(segs) == 3 && segs[2] == "describe":
		c.describe(o)
	case len(segs) == 3 && (segs[2] == "updated" || segs[2] == "deleted"):
		c.replication(o, segs[2] == "deleted")
	case len(segs) == 3 && strings.EqualFold(segs[2], "Id") && m == http.MethodPost:
		c.create(o)
	case len(segs) == 3:
		c.byID(o, segs[2])
	case len(segs) == 4:
		c.byExternalID(o, segs[2], segs[3])
	default:
		c.notFound()
	}
}

// create is POST /sobjects/X.
func (c *call) create(o *Object) {
	var body map[string]any
	if !c.decodeBody(&body) {
		return
	}
	for k := range body {
		if strings.EqualFold(k, "Id") {
			// REST "Create a Record": the documented answer to a body that names the Id.
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_FIELD", Message: "The Id field should not be specified in the sobject data."})
			return
		}
	}
	res := c.s.store.Apply(c.ctx, c.tx(), []Op{{Kind: "insert", Object: o, Fields: body}}, true)[0]
	if !res.OK() {
		writeRecordErrors(c.w, http.StatusBadRequest, res.Errors...)
		return
	}
	writeJSON(c.w, http.StatusCreated, saveResult(res, false))
}

type saveJSON struct {
	ID      string      `json:"id"`
	Success bool        `json:"success"`
	Errors  []wireError `json:"errors"`
	Created *bool       `json:"created,omitempty"`
}

func saveResult(res Result, withCreated bool) saveJSON {
	out := saveJSON{ID: res.ID, Success: true, Errors: []wireError{}}
	if withCreated {
		created := res.Created
		out.Created = &created
	}
	return out
}

// byID serves GET/PATCH/DELETE /sobjects/X/{id}.
func (c *call) byID(o *Object, raw string) {
	id, ok := normalizeID(raw)
	if !ok {
		if len(raw) == 15 || len(raw) == 18 {
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MALFORMED_ID", Message: fmt.Sprintf("%s ID: id value of incorrect type: %s", o.Label, raw), Fields: []string{"Id"}})
			return
		}
		writeErrors(c.w, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "Provided external ID field does not exist or is not accessible: " + raw})
		return
	}
	if id[:3] != o.KeyPrefix {
		c.notFound()
		return
	}
	switch c.r.Method {
	case http.MethodGet, http.MethodHead:
		vals, deleted := c.s.store.Get(c.ctx, o, id)
		if vals == nil || deleted {
			c.notFound()
			return
		}
		c.writeRecord(o, vals)
	case http.MethodPatch:
		var body map[string]any
		if !c.decodeBody(&body) {
			return
		}
		res := c.s.store.Apply(c.ctx, c.tx(), []Op{{Kind: "update", Object: o, ID: id, Fields: body}}, true)[0]
		if res.NotFound {
			c.notFound()
			return
		}
		if !res.OK() {
			writeRecordErrors(c.w, http.StatusBadRequest, res.Errors...)
			return
		}
		c.w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		res := c.s.store.Apply(c.ctx, c.tx(), []Op{{Kind: "delete", Object: o, ID: id}}, true)[0]
		if !res.OK() {
			status := http.StatusBadRequest
			if res.NotFound {
				status = http.StatusNotFound
			}
			writeRecordErrors(c.w, status, res.Errors...)
			return
		}
		c.w.WriteHeader(http.StatusNoContent)
	default:
		c.methodNotAllowed("GET,HEAD,PATCH,DELETE")
	}
}

// writeRecord answers one record with every field, or the ?fields= list.
func (c *call) writeRecord(o *Object, vals []any) {
	fields := o.Fields
	if list := c.r.URL.Query().Get("fields"); list != "" {
		fields = nil
		for _, name := range strings.Split(list, ",") {
			f := o.Field(strings.TrimSpace(name))
			if f == nil {
				writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", strings.TrimSpace(name), o.Name)})
				return
			}
			fields = append(fields, f)
		}
	}
	writeJSON(c.w, http.StatusOK, c.s.recordJSON(o, vals, fields, c.version))
}

// recordJSON renders a record with attributes and the given fields.
func (s *Server) recordJSON(o *Object, vals []any, fields []*Field, version string) *orderedJSON {
	out := &orderedJSON{}
	out.set("attributes", map[string]string{"type": o.Name, "url": "/services/data/v" + version + "/sobjects/" + o.Name + "/" + vals[0].(string)})
	for _, f := range fields {
		out.set(f.Name, fieldJSON(f, vals))
	}
	return out
}

// fieldJSON renders one field of a record, building address compounds from their parts.
func fieldJSON(f *Field, vals []any) any {
	if f.Type == "address" {
		return addressJSON(f, vals)
	}
	return jsonValue(f, vals[f.Index])
}

func addressJSON(f *Field, vals []any) any {
	out := map[string]any{"countryCode": nil, "stateCode": nil}
	empty := true
	for _, p := range f.compound {
		key := strings.ToLower(p.Component[:1]) + p.Component[1:]
		v := vals[p.Index]
		if v != nil {
			empty = false
		}
		out[key] = jsonValue(p, v)
	}
	if empty {
		return nil
	}
	return out
}

// byExternalID serves /sobjects/X/{Field}/{value}: upsert (PATCH), read (GET) and delete.
func (c *call) byExternalID(o *Object, fieldName, value string) {
	f := o.Field(fieldName)
	if f == nil || !(f.ExternalID || f.Name == "Id") {
		writeErrors(c.w, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "Provided external ID field does not exist or is not accessible: " + fieldName})
		return
	}
	switch c.r.Method {
	case http.MethodPatch, http.MethodPost:
		var body map[string]any
		if !c.decodeBody(&body) {
			return
		}
		if c.r.URL.Query().Get("updateOnly") == "true" {
			if ids := c.s.matchExternal(c, o, f, value); len(ids) == 0 {
				c.notFound()
				return
			}
		}
		res := c.s.store.Apply(c.ctx, c.tx(), []Op{{Kind: "upsert", Object: o, ExtField: f, ExtValue: value, Fields: body}}, true)[0]
		if len(res.Matches) > 0 {
			c.multipleChoices(o, res.Matches)
			return
		}
		if res.NotFound {
			c.notFound()
			return
		}
		if !res.OK() {
			writeRecordErrors(c.w, http.StatusBadRequest, res.Errors...)
			return
		}
		if res.Created {
			writeJSON(c.w, http.StatusCreated, saveResult(res, true))
			return
		}
		if versionBelow(c.version, 46) {
			c.w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(c.w, http.StatusOK, saveResult(res, true))
	case http.MethodGet, http.MethodHead, http.MethodDelete:
		ids := c.s.matchExternal(c, o, f, value)
		switch {
		case len(ids) == 0:
			c.notFound()
		case len(ids) > 1:
			c.multipleChoices(o, ids)
		case c.r.Method == http.MethodDelete:
			res := c.s.store.Apply(c.ctx, c.tx(), []Op{{Kind: "delete", Object: o, ID: ids[0]}}, true)[0]
			if !res.OK() {
				writeRecordErrors(c.w, http.StatusBadRequest, res.Errors...)
				return
			}
			c.w.WriteHeader(http.StatusNoContent)
		default:
			vals, _ := c.s.store.Get(c.ctx, o, ids[0])
			c.writeRecord(o, vals)
		}
	default:
		c.methodNotAllowed("GET,HEAD,PATCH,DELETE")
	}
}

func versionBelow(v string, major int) bool {
	var n int
	_, _ = fmt.Sscanf(v, "%d", &n)
	return n < major
}

// matchExternal returns the live records whose external id field equals value.
func (s *Server) matchExternal(c *call, o *Object, f *Field, value string) []string {
	if f.Name == "Id" {
		id, ok := normalizeID(value)
		if !ok {
			return nil
		}
		if vals, deleted := s.store.Get(c.ctx, o, id); vals != nil && !deleted {
			return []string{id}
		}
		return nil
	}
	v, err := convertJSON(f, value)
	if err != nil {
		return nil
	}
	k, ok := keyOf(f, v)
	if !ok {
		return nil
	}
	if s.store.txnFrom(c.ctx) == nil {
		s.store.mu.RLock()
		defer s.store.mu.RUnlock()
	}
	return append([]string(nil), s.store.tables[o].keys[f][k]...)
}

func (c *call) multipleChoices(o *Object, ids []string) {
	urls := make([]string, len(ids))
	for i, id := range ids {
		urls[i] = c.base() + "/sobjects/" + o.Name + "/" + id
	}
	writeJSON(c.w, http.StatusMultipleChoices, urls)
}

// replication serves /sobjects/X/updated/ and /deleted/ (?start=&end=, ISO 8601).
func (c *call) replication(o *Object, deleted bool) {
	q := c.r.URL.Query()
	dt := &Field{Type: "datetime", Label: "date"}
	parse := func(name string) (time.Time, bool) {
		raw := strings.ReplaceAll(q.Get(name), " ", "+") // an unescaped + arrives as a space
		if raw == "" {
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MISSING_ARGUMENT", Message: name + " is not specified"})
			return time.Time{}, false
		}
		v, err := parseTemporal(dt, raw)
		if err != nil {
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_REPLICATION_DATE", Message: name + " date is not a valid date: " + raw})
			return time.Time{}, false
		}
		return v.(time.Time), true
	}
	start, ok := parse("start")
	if !ok {
		return
	}
	end, ok := parse("end")
	if !ok {
		return
	}
	if !start.Before(end) {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_REPLICATION_DATE", Message: "startDate must chronologically precede endDate"})
		return
	}
	// Results go back no more than 30 days before the call; Salesforce
	// refuses an older start rather than cutting the window short.
	if start.Before(c.s.cfg.Clock().Add(-ReplicationWindow)) {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_REPLICATION_DATE", Message: "startDate cannot be more than 30 days ago"})
		return
	}
	// Salesforce covers whole minutes: the end is rounded down.
	covered := end.Truncate(time.Minute)
	stamp := o.Field("SystemModstamp").Index
	del := c.s.store.tables[o].del
	rows := c.s.store.Snapshot(c.ctx, o, true)
	if deleted {
		recs := []map[string]string{}
		earliest := start
		for _, r := range rows {
			if del < 0 || r.vals[del] != true {
				continue
			}
			at := r.vals[stamp].(time.Time)
			if at.Before(earliest) {
				earliest = at
			}
			if !at.Before(start) && at.Before(covered) {
				recs = append(recs, map[string]string{"id": r.id(), "deletedDate": at.Format(restDateTime)})
			}
		}
		writeJSON(c.w, http.StatusOK, map[string]any{"deletedRecords": recs, "earliestDateAvailable": earliest.Format(restDateTime), "latestDateCovered": covered.Format(restDateTime)})
		return
	}
	ids := []string{}
	for _, r := range rows {
		if del >= 0 && r.vals[del] == true {
			continue
		}
		at := r.vals[stamp].(time.Time)
		if !at.Before(start) && at.Before(covered) {
			ids = append(ids, r.id())
		}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"ids": ids, "latestDateCovered": covered.Format(restDateTime)})
}

// ReplicationWindow is how far back the updated and deleted resources
// reach: a start older than this is refused with INVALID_REPLICATION_DATE.
const ReplicationWindow = 30 * 24 * time.Hour
