package sim

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/pgforce/pgforce/sim/bulk"
	"github.com/pgforce/pgforce/sim/soql"
)

// bulkBackend is the store as the Bulk API 2.0 engine sees it: ingest batches become store transactions (so
// they validate like REST writes and produce change events with a bulkapi changeOrigin), query jobs read a
// snapshot through the same SOQL evaluator as REST.
type bulkBackend struct{ s *Server }

type bulkOriginKey struct{}

func newBulk(s *Server) bulkServer {
	return bulk.NewServer(bulkBackend{s}, bulk.Options{
		InstanceURL: func() string { return s.url },
		APIVersion:  s.cfg.APIVersion,
		Clock:       s.cfg.Clock,
		UserID:      to18("005R00000000001"),
		// The delay runs on the wall clock: the configured Clock may be a test's frozen one.
		ProcessDelay: s.cfg.BulkProcessDelay,
	})
}

// withBulkOrigin records the changeOrigin of a Bulk API request in its context; the engine passes it on to
// Ingest when it derives the processing context from the request.
func withBulkOrigin(r *http.Request, version string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), bulkOriginKey{}, origin("bulkapi", version, r)))
}

func (b bulkBackend) tx(ctx context.Context) Tx {
	o, _ := ctx.Value(bulkOriginKey{}).(string)
	if o == "" {
		o = "com/salesforce/api/bulkapi/" + b.s.cfg.APIVersion
	}
	return Tx{User: b.s.userID, Origin: o}
}

func (b bulkBackend) ValidateJob(_ context.Context, operation, object, extID string) error {
	o := b.s.cat.Object(object)
	if o == nil {
		return &bulk.QueryError{Code: "INVALIDJOB", Message: "InvalidJob : Unable to find object: " + object}
	}
	if operation == "upsert" {
		if extID == "" {
			return &bulk.QueryError{Code: "INVALIDJOB", Message: "InvalidJob : External ID was blank for " + o.Name + ". An External ID must be specified for upsert."}
		}
		f := o.Field(extID)
		if f == nil || !(f.ExternalID || f.Name == "Id") {
			return &bulk.QueryError{Code: "INVALIDJOB", Message: "InvalidJob : Field name provided, " + extID + " is not an External ID or indexed field for " + o.Name}
		}
	}
	if (operation == "delete" || operation == "hardDelete") && !o.Deletable {
		return &bulk.QueryError{Code: "INVALIDJOB", Message: "InvalidJob : Entity type " + o.Name + " does not support delete"}
	}
	return nil
}

func (b bulkBackend) ValidateColumns(_ context.Context, operation, object string, columns []string) error {
	o := b.s.cat.Object(object)
	if o == nil {
		return errors.New("InvalidBatch : Unable to find object: " + object)
	}
	for _, col := range columns {
		if o.Field(col) == nil && !b.externalLookupColumn(o, col) {
			return errors.New("InvalidBatch : Field name not found : " + col)
		}
	}
	if operation == "update" || operation == "delete" || operation == "hardDelete" {
		for _, col := range columns {
			if strings.EqualFold(col, "Id") {
				return nil
			}
		}
		return errors.New("InvalidBatch : Field name not found : Id")
	}
	return nil
}

// externalLookupColumn reports whether col sets a lookup through the parent's external id
// ("Account.External_Id__c").
func (b bulkBackend) externalLookupColumn(o *Object, col string) bool {
	rel, ext, ok := strings.Cut(col, ".")
	if !ok {
		return false
	}
	lookup := o.relByLower[strings.ToLower(rel)]
	if lookup == nil || len(lookup.ReferenceTo) == 0 {
		return false
	}
	parent := b.s.cat.Object(lookup.ReferenceTo[0])
	if parent == nil {
		return false
	}
	f := parent.Field(ext)
	return f != nil && (f.ExternalID || f.Unique)
}

func (b bulkBackend) Ingest(ctx context.Context, operation, object, extID string, records []bulk.Record) []bulk.Result {
	o := b.s.cat.Object(object)
	out := make([]bulk.Result, len(records))
	if o == nil {
		for i := range out {
			out[i].Err = &bulk.RecordError{StatusCode: "INVALID_TYPE", Message: "sObject type '" + object + "' is not supported.", Fields: []string{}}
		}
		return out
	}
	var ext *Field
	if operation == "upsert" {
		ext = o.Field(extID)
	}
	ops := make([]Op, len(records))
	for i, rec := range records {
		fields := make(map[string]any, len(rec))
		var id string
		for k, c := range rec {
			if strings.EqualFold(k, "Id") {
				id = c.Value
				if operation != "upsert" || ext == nil || ext.Name != "Id" {
					continue
				}
			}
			if c.Null {
				fields[k] = nil
			} else {
				fields[k] = csvCell(c.Value)
			}
		}
		op := Op{Kind: operation, Object: o, ID: id, Fields: fields}
		if ext != nil {
			op.ExtField = ext
			if c, ok := lookupCell(rec, ext.Name); ok {
				op.ExtValue = c.Value
			}
			if ext.Name == "Id" {
				delete(fields, "Id")
			}
		}
		if (operation == "update" || operation == "delete" || operation == "hardDelete") && id == "" {
			op.Kind = "missingId"
		}
		ops[i] = op
	}
	results := b.s.store.Apply(ctx, b.tx(ctx), ops, false)
	for i, res := range results {
		if ops[i].Kind == "missingId" {
			res = errResult("MISSING_ARGUMENT", "Id not specified in an "+operation+" call", "Id")
		}
		out[i] = bulk.Result{ID: res.ID, Created: res.Created}
		if len(res.Matches) > 0 {
			res.Errors = []APIError{{Code: "DUPLICATE_EXTERNAL_ID", Message: "A user-specified external ID matches more than one record during an upsert.", Fields: []string{ext.Name}}}
		}
		if !res.OK() {
			e := res.Errors[0]
			out[i].Err = &bulk.RecordError{StatusCode: e.Code, Message: e.Message, Fields: e.Fields}
		}
	}
	return out
}

func lookupCell(rec bulk.Record, name string) (bulk.Cell, bool) {
	for k, c := range rec {
		if strings.EqualFold(k, name) {
			return c, true
		}
	}
	return bulk.Cell{}, false
}

func (b bulkBackend) Query(ctx context.Context, text string, all bool) (bulk.Cursor, error) {
	res, err := b.s.runQuery(ctx, text, all)
	if err != nil {
		var se *soql.Error
		if errors.As(err, &se) {
			return nil, &bulk.QueryError{Code: se.Code, Message: se.Message}
		}
		return nil, &bulk.QueryError{Code: "MALFORMED_QUERY", Message: err.Error()}
	}
	if res.q.IsCount() {
		return nil, &bulk.QueryError{Code: "API_ERROR", Message: "COUNT() is not supported by Bulk API queries"}
	}
	if res.q.IsAggregate() {
		// "Understanding Bulk API 2.0 Query": no GROUP BY, no aggregate functions. The message text is not documented.
		return nil, &bulk.QueryError{Code: "API_ERROR", Message: "Aggregate queries are not supported by Bulk API 2.0 queries"}
	}
	if len(res.subs) > 0 {
		// Bulk API 2.0 supports child-to-parent paths only, not parent-to-child subqueries.
		return nil, &bulk.QueryError{Code: "API_ERROR", Message: "Parent-to-child relationship queries are not supported by Bulk API 2.0 queries"}
	}
	for _, pf := range res.fields {
		if pf.field.Type == "address" {
			// "Understanding Bulk API 2.0 Query": compound address and geolocation fields are not supported;
			// the job is refused at creation with this message (observed, e.g. airbytehq/airbyte#8206).
			return nil, &bulk.QueryError{Code: "API_ERROR", Message: "Selecting compound data not supported in Bulk Query"}
		}
	}
	if res.q.HasOffset() {
		// "Understanding Bulk API 2.0 Query": OFFSET is not supported. The message text is not documented.
		return nil, &bulk.QueryError{Code: "API_ERROR", Message: "OFFSET is not supported by Bulk API 2.0 queries"}
	}
	cols := make([]string, len(res.fields))
	for i, pf := range res.fields {
		cols[i] = pf.path.String()
	}
	return &bulkCursor{s: b.s, ctx: context.WithoutCancel(ctx), res: res, cols: cols}, nil
}

// bulkCursor pages a query result as CSV-formatted rows; it supports Len and Seek, so the engine renders
// each results page straight from the snapshot.
type bulkCursor struct {
	s    *Server
	ctx  context.Context
	res  *queryResult
	cols []string
	pos  int
}

func (c *bulkCursor) Columns() []string { return c.cols }
func (c *bulkCursor) Len() int          { return len(c.res.rows) }
func (c *bulkCursor) Object() string    { return c.res.obj.Name }

func (c *bulkCursor) Seek(row int) error {
	if row < 0 || row > len(c.res.rows) {
		return errors.New("locator out of range")
	}
	c.pos = row
	return nil
}

// Next renders the next n rows. A results page of a large load is rendered
// while the client waits for it, and the store it reads is the simulator's
// whole heap, which every garbage collection scans: so the rows' cells share
// one allocation, and a field of the queried object itself is read without
// going through soql.Row (boxing a row per cell was most of the cost).
func (c *bulkCursor) Next(n int) ([][]string, bool, error) {
	end := min(c.pos+n, len(c.res.rows))
	width := len(c.res.fields)
	out := make([][]string, 0, end-c.pos)
	cells := make([]string, (end-c.pos)*width)
	for k, r := range c.res.rows[c.pos:end] {
		line := cells[k*width : (k+1)*width : (k+1)*width]
		for i, pf := range c.res.fields {
			vals := r.vals
			if len(pf.path.Relationships) > 0 {
				var at soql.Row = row{st: c.s.store, ctx: c.ctx, o: c.res.obj, r: r}
				for _, rel := range pf.path.Relationships {
					if at = at.Parent(rel); at == nil {
						break
					}
				}
				if at == nil {
					continue
				}
				vals = at.(row).r.vals
			}
			line[i] = csvValue(pf.field, fieldJSONRaw(pf.field, vals))
		}
		out = append(out, line)
	}
	c.pos = end
	return out, c.pos >= len(c.res.rows), nil
}

// fieldJSONRaw returns a stored value, with address compounds built from their parts.
func fieldJSONRaw(f *Field, vals []any) any {
	if f.Type == "address" {
		return addressJSON(f, vals)
	}
	return vals[f.Index]
}
