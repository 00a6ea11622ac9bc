package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

const maxCollection = 200

type itemError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

type itemResult struct {
	ID      string      `json:"id,omitempty"`
	Success bool        `json:"success"`
	Errors  []itemError `json:"errors"`
	Created *bool       `json:"created,omitempty"`
}

func toItem(res Result, withCreated bool) itemResult {
	out := itemResult{ID: res.ID, Success: res.OK(), Errors: []itemError{}}
	for _, e := range res.Errors {
		f := e.Fields
		if f == nil {
			f = []string{}
		}
		out.Errors = append(out.Errors, itemError{StatusCode: e.Code, Message: e.Message, Fields: f})
	}
	if withCreated && res.OK() {
		created := res.Created
		out.Created = &created
	}
	if len(res.Matches) > 0 {
		out.Errors = []itemError{{StatusCode: "DUPLICATE_EXTERNAL_ID", Message: "A user-specified external ID matches more than one record during an upsert.", Fields: []string{}}}
	}
	return out
}

func (c *call) composite() {
	segs, m := c.segs, c.r.Method
	switch {
	case len(segs) == 1 && m == http.MethodPost:
		c.compositeBatch()
	case len(segs) >= 2 && segs[1] == "sobjects":
		c.collections()
	case len(segs) == 3 && segs[1] == "tree" && m == http.MethodPost:
		c.tree(segs[2])
	case len(segs) == 1:
		c.methodNotAllowed("POST")
	default:
		c.notFound()
	}
}

type collectionBody struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
	IDs       []string         `json:"ids"`
	Fields    []string         `json:"fields"`
}

func recordType(rec map[string]any) string {
	attrs, _ := rec["attributes"].(map[string]any)
	t, _ := attrs["type"].(string)
	return t
}

// collections serves /composite/sobjects: create (POST), update (PATCH), upsert (PATCH .../X/Field),
// delete (DELETE ?ids=) and retrieve (GET or POST .../X).
func (c *call) collections() {
	segs, m := c.segs, c.r.Method
	switch {
	case len(segs) == 2 && m == http.MethodDelete:
		c.collectionDelete()
		return
	case len(segs) == 3 && (m == http.MethodGet || m == http.MethodPost):
		c.collectionRetrieve(segs[2])
		return
	case len(segs) == 2 && (m == http.MethodPost || m == http.MethodPatch):
	case len(segs) == 4 && m == http.MethodPatch:
	default:
		c.methodNotAllowed("POST,PATCH,DELETE")
		return
	}
	var body collectionBody
	if !c.decodeBody(&body) {
		return
	}
	if len(body.Records) > maxCollection {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "EXCEEDED_ID_LIMIT", Message: "record limit reached. cannot submit more than 200 records into this call"})
		return
	}
	var upsertObj *Object
	var extField *Field
	if len(segs) == 4 {
		if upsertObj = c.object(segs[2]); upsertObj == nil {
			return
		}
		extField = upsertObj.Field(segs[3])
		if extField == nil || !(extField.ExternalID || extField.Name == "Id") {
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_FIELD", Message: "Field name provided, " + segs[3] + " is not an External ID or indexed field for " + upsertObj.Name})
			return
		}
	}
	ops := make([]Op, len(body.Records))
	for i, rec := range body.Records {
		typ := recordType(rec)
		if typ == "" && upsertObj != nil {
			typ = upsertObj.Name
		}
		o := c.s.cat.Object(typ)
		if o == nil {
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_TYPE", Message: fmt.Sprintf("sObject type '%s' is not supported.", typ)})
			return
		}
		fields := make(map[string]any, len(rec))
		for k, v := range rec {
			if k != "attributes" {
				fields[k] = v
			}
		}
		switch {
		case upsertObj != nil:
			if o != upsertObj {
				writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_TYPE", Message: "Upsert of sObject collections supports one type only: " + upsertObj.Name})
				return
			}
			v, _ := lookupKey(fields, extField.Name)
			ops[i] = Op{Kind: "upsert", Object: o, ExtField: extField, ExtValue: stringOf(v), Fields: fields}
		case m == http.MethodPost:
			ops[i] = Op{Kind: "insert", Object: o, Fields: fields}
		default:
			id, _ := lookupKey(fields, "Id")
			ops[i] = Op{Kind: "update", Object: o, ID: stringOf(id), Fields: fields}
		}
	}
	results := c.s.store.Apply(c.ctx, c.tx(), ops, body.AllOrNone)
	out := make([]itemResult, len(results))
	for i, res := range results {
		if ops[i].Kind == "update" && ops[i].ID == "" && !res.OK() {
			res = errResult("MISSING_ARGUMENT", "Id not specified in an update call", "Id")
			results[i] = res
		}
		out[i] = toItem(res, upsertObj != nil)
	}
	writeJSON(c.w, http.StatusOK, out)
}

func stringOf(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case json.Number:
		return string(t)
	}
	return fmt.Sprint(v)
}

func (c *call) collectionDelete() {
	q := c.r.URL.Query()
	raw := q.Get("ids")
	if raw == "" {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MISSING_ARGUMENT", Message: "ids is required"})
		return
	}
	ids := strings.Split(raw, ",")
	if len(ids) > maxCollection {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "EXCEEDED_ID_LIMIT", Message: "record limit reached. cannot submit more than 200 records into this call"})
		return
	}
	ops := make([]Op, len(ids))
	bad := map[int]Result{}
	for i, id := range ids {
		norm, ok := normalizeID(id)
		o := c.s.cat.ObjectForID(norm)
		if !ok || o == nil {
			bad[i] = errResult("MALFORMED_ID", "malformed id "+id)
			o = c.s.cat.Object("Account")
		}
		ops[i] = Op{Kind: "delete", Object: o, ID: norm}
	}
	allOrNone := q.Get("allOrNone") == "true"
	var results []Result
	if len(bad) > 0 {
		// A malformed id fails alone, or the whole call under allOrNone.
		var okOps []Op
		var idx []int
		for i := range ops {
			if _, isBad := bad[i]; !isBad {
				okOps = append(okOps, ops[i])
				idx = append(idx, i)
			}
		}
		results = make([]Result, len(ops))
		for i, r := range bad {
			results[i] = r
		}
		if !allOrNone {
			for j, r := range c.s.store.Apply(c.ctx, c.tx(), okOps, false) {
				results[idx[j]] = r
			}
		} else {
			for _, i := range idx {
				results[i] = Result{Errors: []APIError{{Code: "ALL_OR_NONE_OPERATION_ROLLED_BACK", Message: "Record rolled back because not all records were valid and the request was using AllOrNone header", Fields: []string{}}}}
			}
		}
	} else {
		results = c.s.store.Apply(c.ctx, c.tx(), ops, allOrNone)
	}
	out := make([]itemResult, len(results))
	for i, res := range results {
		if res.ID == "" && !res.OK() && res.Errors[0].Code != "ALL_OR_NONE_OPERATION_ROLLED_BACK" {
			res.ID = ops[i].ID
		}
		out[i] = toItem(res, false)
	}
	writeJSON(c.w, http.StatusOK, out)
}

func (c *call) collectionRetrieve(objName string) {
	o := c.object(objName)
	if o == nil {
		return
	}
	var ids, names []string
	if c.r.Method == http.MethodPost {
		var body collectionBody
		if !c.decodeBody(&body) {
			return
		}
		ids, names = body.IDs, body.Fields
	} else {
		q := c.r.URL.Query()
		if v := q.Get("ids"); v != "" {
			ids = strings.Split(v, ",")
		}
		if v := q.Get("fields"); v != "" {
			names = strings.Split(v, ",")
		}
	}
	if len(ids) == 0 || len(names) == 0 {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MISSING_ARGUMENT", Message: "ids and fields are required"})
		return
	}
	fields := make([]*Field, 0, len(names))
	for _, n := range names {
		f := o.Field(strings.TrimSpace(n))
		if f == nil {
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", n, o.Name)})
			return
		}
		fields = append(fields, f)
	}
	out := make([]any, len(ids))
	for i, raw := range ids {
		id, ok := normalizeID(strings.TrimSpace(raw))
		if !ok {
			writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MALFORMED_ID", Message: fmt.Sprintf("%s ID: id value of incorrect type: %s", o.Label, raw)})
			return
		}
		if vals, deleted := c.s.store.Get(c.ctx, o, id); vals != nil && !deleted {
			out[i] = c.s.recordJSON(o, vals, fields, c.version)
		}
	}
	writeJSON(c.w, http.StatusOK, out)
}

// recorder captures a subrequest's answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

type subrequest struct {
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	ReferenceID string            `json:"referenceId"`
	Body        json.RawMessage   `json:"body"`
	HTTPHeaders map[string]string `json:"httpHeaders"`
}

type subresponse struct {
	Body           any               `json:"body"`
	HTTPHeaders    map[string]string `json:"httpHeaders"`
	HTTPStatusCode int               `json:"httpStatusCode"`
	ReferenceID    string            `json:"referenceId"`
}

var refPattern = regexp.MustCompile(`@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])+)\}`)

var processingHalted = []wireError{{ErrorCode: "PROCESSING_HALTED", Message: "The transaction was rolled back since another operation in the same transaction failed."}}

// compositeBatch is POST /composite: up to 25 subrequests in one transaction, later ones referring to the
// answers of earlier ones through @{referenceId.path}.
func (c *call) compositeBatch() {
	var body struct {
		AllOrNone        bool         `json:"allOrNone"`
		CompositeRequest []subrequest `json:"compositeRequest"`
	}
	if !c.decodeBody(&body) {
		return
	}
	if n := len(body.CompositeRequest); n == 0 || n > 25 {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_BATCH_REQUEST", Message: fmt.Sprintf("compositeRequest must contain between 1 and 25 subrequests, not %d", n)})
		return
	}
	t := c.s.store.begin(c.tx())
	ctx := withTxn(c.ctx, t)
	answers := map[string]any{}
	out := make([]subresponse, 0, len(body.CompositeRequest))
	failed := -1
	for i, sr := range body.CompositeRequest {
		resp := subresponse{ReferenceID: sr.ReferenceID, HTTPHeaders: map[string]string{}}
		if failed >= 0 && body.AllOrNone {
			resp.HTTPStatusCode, resp.Body = http.StatusBadRequest, processingHalted
			out = append(out, resp)
			continue
		}
		url, errMsg := resolveRefs(sr.URL, answers, true)
		payload, errMsg2 := resolveRefs(string(sr.Body), answers, false)
		if errMsg == "" {
			errMsg = errMsg2
		}
		if errMsg != "" {
			resp.HTTPStatusCode = http.StatusBadRequest
			resp.Body = []wireError{{ErrorCode: "PROCESSING_HALTED", Message: errMsg}}
			out = append(out, resp)
			if failed < 0 {
				failed = i
			}
			continue
		}
		rec := c.subrequest(ctx, sr.Method, url, payload, sr.HTTPHeaders)
		resp.HTTPStatusCode = rec.status
		for k := range rec.header {
			if k == "Location" {
				resp.HTTPHeaders[k] = rec.header.Get(k)
			}
		}
		if rec.body.Len() > 0 {
			var v any
			dec := json.NewDecoder(&rec.body)
			dec.UseNumber()
			if dec.Decode(&v) == nil {
				resp.Body = v
				if sr.ReferenceID != "" && rec.status < 300 {
					answers[sr.ReferenceID] = v
				}
			}
		}
		if rec.status == http.StatusCreated {
			if m, ok := resp.Body.(map[string]any); ok {
				if id, ok := m["id"].(string); ok && strings.Contains(url, "/sobjects/") {
					resp.HTTPHeaders["Location"] = strings.SplitN(url, "?", 2)[0] + "/" + id
				}
			}
		}
		if rec.status >= 400 && failed < 0 {
			failed = i
		}
		out = append(out, resp)
	}
	if failed >= 0 && body.AllOrNone {
		t.end(false)
		for i := range out {
			if i != failed {
				out[i].HTTPStatusCode, out[i].Body, out[i].HTTPHeaders = http.StatusBadRequest, processingHalted, map[string]string{}
			}
		}
	} else {
		t.end(true)
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"compositeResponse": out})
}

// subrequest runs one composite subrequest through the REST router inside the composite's transaction.
func (c *call) subrequest(ctx context.Context, method, url, body string, headers map[string]string) *recorder {
	rec := &recorder{header: http.Header{}}
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		writeErrors(rec, http.StatusBadRequest, APIError{Code: "INVALID_BATCH_REQUEST", Message: err.Error()})
		return rec
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if req.Header.Get("Sforce-Call-Options") == "" {
		req.Header.Set("Sforce-Call-Options", c.r.Header.Get("Sforce-Call-Options"))
	}
	m := versionPath.FindStringSubmatch(req.URL.Path)
	if m == nil {
		writeErrors(rec, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "The requested resource does not exist"})
		return rec
	}
	rest := strings.Trim(m[2], "/")
	var segs []string
	if rest != "" {
		segs = strings.Split(rest, "/")
	}
	if len(segs) > 0 && (segs[0] == "jobs" || (segs[0] == "composite" && len(segs) == 1)) {
		writeErrors(rec, http.StatusBadRequest, APIError{Code: "INVALID_BATCH_REQUEST", Message: "This resource is not supported in a composite request: " + req.URL.Path})
		return rec
	}
	sub := &call{s: c.s, w: rec, r: req, ctx: ctx, version: m[1], segs: segs, user: c.user}
	sub.route()
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec
}

// resolveRefs replaces @{ref.path} with values from earlier answers; in JSON bodies a string value that is
// exactly one reference keeps the referenced value's JSON type.
func resolveRefs(s string, answers map[string]any, inURL bool) (string, string) {
	var errMsg string
	out := refPattern.ReplaceAllStringFunc(s, func(m string) string {
		sub := refPattern.FindStringSubmatch(m)
		v, ok := answers[sub[1]]
		if ok {
			v, ok = walkRef(v, sub[2])
		}
		if !ok {
			if errMsg == "" {
				errMsg = fmt.Sprintf("Invalid reference specified. No value for %s%s found in %s. Provided referenceId ids must start with a letter or a number, and they can contain only letters, numbers and underscores (_).", sub[1], sub[2], sub[1])
			}
			return m
		}
		str := stringOf(v)
		if !inURL {
			b, _ := json.Marshal(str)
			return strings.Trim(string(b), `"`)
		}
		return str
	})
	return out, errMsg
}

var refStep = regexp.MustCompile(`\.([A-Za-z0-9_]+)|\[(\d+)\]`)

func walkRef(v any, path string) (any, bool) {
	for _, step := range refStep.FindAllStringSubmatch(path, -1) {
		if step[1] != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[step[1]]; !ok {
				return nil, false
			}
			continue
		}
		i, _ := strconv.Atoi(step[2])
		a, ok := v.([]any)
		if !ok || i >= len(a) {
			return nil, false
		}
		v = a[i]
	}
	return v, v != nil
}

// tree is POST /composite/tree/X: records with nested child records, all created or none.
func (c *call) tree(rootName string) {
	root := c.object(rootName)
	if root == nil {
		return
	}
	var body struct {
		Records []map[string]any `json:"records"`
	}
	if !c.decodeBody(&body) {
		return
	}
	type treeResult struct {
		ReferenceID string      `json:"referenceId"`
		ID          string      `json:"id,omitempty"`
		Errors      []itemError `json:"errors,omitempty"`
	}
	var results []treeResult
	var failures []treeResult
	total := 0
	t := c.s.store.begin(c.tx())
	var insert func(o *Object, rec map[string]any, parentField string, parentID string, depth int) bool
	insert = func(o *Object, rec map[string]any, parentField, parentID string, depth int) bool {
		total++
		attrs, _ := rec["attributes"].(map[string]any)
		ref, _ := attrs["referenceId"].(string)
		if typ, _ := attrs["type"].(string); typ != "" && !strings.EqualFold(typ, o.Name) {
			failures = append(failures, treeResult{ReferenceID: ref, Errors: []itemError{{StatusCode: "INVALID_TYPE", Message: "sObject type '" + typ + "' does not match the expected type " + o.Name, Fields: []string{}}}})
			return false
		}
		if total > maxCollection || depth > 5 {
			failures = append(failures, treeResult{ReferenceID: ref, Errors: []itemError{{StatusCode: "INVALID_BATCH_REQUEST", Message: "A tree request may hold 200 records in 5 levels at most", Fields: []string{}}}})
			return false
		}
		fields := map[string]any{}
		type childSet struct {
			obj     *Object
			field   string
			records []any
		}
		var children []childSet
		for k, v := range rec {
			if k == "attributes" {
				continue
			}
			if nested, ok := v.(map[string]any); ok {
				if recs, ok := nested["records"].([]any); ok {
					var found *childRel
					for i := range o.children {
						if strings.EqualFold(o.children[i].RelationshipName, k) {
							found = &o.children[i]
						}
					}
					if found == nil {
						failures = append(failures, treeResult{ReferenceID: ref, Errors: []itemError{{StatusCode: "INVALID_FIELD", Message: fmt.Sprintf("No such column '%s' on sobject of type %s", k, o.Name), Fields: []string{}}}})
						return false
					}
					children = append(children, childSet{obj: c.s.cat.Object(found.Object), field: found.Field, records: recs})
					continue
				}
			}
			fields[k] = v
		}
		if parentField != "" {
			fields[parentField] = parentID
		}
		res := t.apply(&Op{Kind: "insert", Object: o, Fields: fields})
		if !res.OK() {
			failures = append(failures, treeResult{ReferenceID: ref, Errors: toItem(res, false).Errors})
			return false
		}
		results = append(results, treeResult{ReferenceID: ref, ID: res.ID})
		for _, ch := range children {
			for _, r := range ch.records {
				m, _ := r.(map[string]any)
				if !insert(ch.obj, m, ch.field, res.ID, depth+1) {
					return false
				}
			}
		}
		return true
	}
	for _, rec := range body.Records {
		if !insert(root, rec, "", "", 1) {
			break
		}
	}
	if len(failures) > 0 {
		t.end(false)
		writeJSON(c.w, http.StatusBadRequest, map[string]any{"hasErrors": true, "results": failures})
		return
	}
	t.end(true)
	writeJSON(c.w, http.StatusCreated, map[string]any{"hasErrors": false, "results": results})
}
