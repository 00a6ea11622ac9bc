package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgforce/pgforce/sim/soql"
)

// soqlCatalog shows the org's catalog to the SOQL binder.
type soqlCatalog struct{ c *Catalog }

func fieldInfo(f *Field) soql.FieldInfo {
	fi := soql.FieldInfo{Name: f.Name, Type: f.Type, RelationshipName: f.RelationshipName}
	if len(f.ReferenceTo) > 0 {
		fi.ReferenceTo = f.ReferenceTo[0]
	}
	return fi
}

func (sc soqlCatalog) ObjectName(name string) (string, bool) {
	if o := sc.c.Object(name); o != nil {
		return o.Name, true
	}
	return "", false
}

func (sc soqlCatalog) Field(object, field string) (soql.FieldInfo, bool) {
	o := sc.c.Object(object)
	if o == nil {
		return soql.FieldInfo{}, false
	}
	f := o.Field(field)
	if f == nil {
		return soql.FieldInfo{}, false
	}
	return fieldInfo(f), true
}

func (sc soqlCatalog) Relationship(object, rel string) (soql.FieldInfo, bool) {
	o := sc.c.Object(object)
	if o == nil {
		return soql.FieldInfo{}, false
	}
	f := o.relByLower[strings.ToLower(rel)]
	if f == nil {
		return soql.FieldInfo{}, false
	}
	return fieldInfo(f), true
}

// ChildRelationship resolves a parent-to-child relationship name (Account.Contacts) for subqueries.
func (sc soqlCatalog) ChildRelationship(parent, rel string) (string, soql.FieldInfo, string, bool) {
	o := sc.c.Object(parent)
	if o == nil {
		return "", soql.FieldInfo{}, "", false
	}
	for _, ch := range o.children {
		if ch.RelationshipName != "" && strings.EqualFold(ch.RelationshipName, rel) {
			co := sc.c.Object(ch.Object)
			return co.Name, fieldInfo(co.Field(ch.Field)), ch.RelationshipName, true
		}
	}
	return "", soql.FieldInfo{}, "", false
}

// row is a stored record as the evaluator sees it.
type row struct {
	st  *Store
	ctx context.Context
	o   *Object
	r   *record
}

func (w row) Value(field string) any {
	f := w.o.byName[field]
	if f == nil {
		return nil
	}
	if f.Index < 0 {
		return addressJSON(f, w.r.vals)
	}
	return w.r.vals[f.Index]
}

func (w row) Parent(referenceField string) soql.Row {
	f := w.o.byName[referenceField]
	if f == nil || f.Index < 0 {
		return nil
	}
	id, _ := w.r.vals[f.Index].(string)
	if id == "" {
		return nil
	}
	o, r := w.st.parent(w.ctx, id)
	if r == nil {
		return nil
	}
	return row{st: w.st, ctx: w.ctx, o: o, r: r}
}

// queryResult is an evaluated query: the matching records in result order.
type queryResult struct {
	q    *soql.Query
	obj  *Object
	rows []*record
	// fields holds, for each selected path, the objects reached by its relationships and the final field.
	fields []pathFields
	// subs are the parent-to-child subqueries, each with its matching children grouped by parent id.
	subs []*subResult
	// agg holds the AggregateResult records of an aggregate query (rows is then empty).
	agg []*orderedJSON
}

// subResult is an evaluated parent-to-child subquery.
type subResult struct {
	after    int
	name     string
	res      *queryResult
	byParent map[string][]*record
}

type pathFields struct {
	path    soql.Path
	objects []*Object
	field   *Field
}

// runQuery parses, binds and evaluates soql over a snapshot of the store.
func (s *Server) runQuery(ctx context.Context, text string, all bool) (*queryResult, error) {
	q, err := soql.Parse(text)
	if err != nil {
		return nil, err
	}
	if err := q.Bind(soqlCatalog{s.cat}); err != nil {
		return nil, err
	}
	return s.evalQuery(ctx, q, all)
}

// evalQuery evaluates a bound query, with its subqueries, over a snapshot of the store.
func (s *Server) evalQuery(ctx context.Context, q *soql.Query, all bool) (*queryResult, error) {
	if q.HasSemiJoins() {
		var err error
		q, err = q.WithSemiJoins(func(sub *soql.Query) ([]string, error) {
			res, err := s.evalQuery(ctx, sub, false)
			if err != nil {
				return nil, err
			}
			p := sub.Fields()[0]
			ids := make([]string, 0, len(res.rows))
			for _, r := range res.rows {
				if id, ok := p.Resolve(row{st: s.store, ctx: ctx, o: res.obj, r: r}).(string); ok {
					ids = append(ids, id)
				}
			}
			return ids, nil
		})
		if err != nil {
			return nil, err
		}
	}
	o := s.cat.Object(q.Object())
	snap := s.store.Snapshot(ctx, o, all)
	now := s.cfg.Clock().UTC()
	out := snap[:0:0]
	if q.HasWhere() {
		for _, r := range snap {
			if q.Match(row{st: s.store, ctx: ctx, o: o, r: r}, now) {
				out = append(out, r)
			}
		}
	} else {
		out = snap
	}
	if q.IsAggregate() {
		return &queryResult{q: q, obj: o, agg: s.evalAggregate(ctx, q, o, out, now)}, nil
	}
	if q.HasOrder() {
		sort.SliceStable(out, func(i, j int) bool {
			return q.Less(row{st: s.store, ctx: ctx, o: o, r: out[i]}, row{st: s.store, ctx: ctx, o: o, r: out[j]})
		})
	}
	if off := q.Offset(); off > 0 {
		if off >= len(out) {
			out = nil
		} else {
			out = out[off:]
		}
	}
	if n, ok := q.Limit(); ok && n < len(out) {
		out = out[:n]
	}
	res := &queryResult{q: q, obj: o, rows: out}
	for _, p := range q.Fields() {
		pf := pathFields{path: p}
		cur := o
		for _, rel := range p.Relationships {
			f := cur.byName[rel]
			cur = s.cat.Object(f.ReferenceTo[0])
			pf.objects = append(pf.objects, cur)
		}
		pf.field = cur.byName[p.Field]
		res.fields = append(res.fields, pf)
	}
	for _, sq := range q.Subqueries() {
		sr, err := s.evalSubquery(ctx, sq, all)
		if err != nil {
			return nil, err
		}
		res.subs = append(res.subs, sr)
	}
	return res, nil
}

// evalSubquery evaluates a parent-to-child subquery once for the whole result: the matching children,
// grouped by the parent they point at, each group sorted and cut by the subquery's ORDER BY, OFFSET, LIMIT.
func (s *Server) evalSubquery(ctx context.Context, sq soql.Subquery, all bool) (*subResult, error) {
	lim, hasLim := sq.Query.Limit()
	off := sq.Query.Offset()
	// Evaluate WHERE over every child without ORDER/LIMIT/OFFSET, which apply per parent.
	res, err := s.evalQuery(ctx, sq.Query.Unpaged(), all)
	if err != nil {
		return nil, err
	}
	child := res.obj
	ref := child.byName[sq.ChildField]
	sr := &subResult{after: sq.After, name: sq.RelationshipName, res: res, byParent: map[string][]*record{}}
	for _, r := range res.rows {
		if id, _ := r.vals[ref.Index].(string); id != "" {
			sr.byParent[id] = append(sr.byParent[id], r)
		}
	}
	for id, rows := range sr.byParent {
		if sq.Query.HasOrder() {
			sort.SliceStable(rows, func(i, j int) bool {
				return sq.Query.Less(row{st: s.store, ctx: ctx, o: child, r: rows[i]}, row{st: s.store, ctx: ctx, o: child, r: rows[j]})
			})
		}
		if off > 0 {
			if off >= len(rows) {
				rows = nil
			} else {
				rows = rows[off:]
			}
		}
		if hasLim && lim < len(rows) {
			rows = rows[:lim]
		}
		sr.byParent[id] = rows
	}
	return sr, nil
}

// cursor is an open query locator.
type cursor struct {
	res     *queryResult
	ctx     context.Context
	version string
	used    time.Time
}

const (
	cursorIdle = 15 * time.Minute
	maxCursors = 50
)

func queryBatchSize(r *http.Request) int {
	n := 2000
	for _, part := range strings.Split(r.Header.Get("Sforce-Query-Options"), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.EqualFold(k, "batchSize") {
			if x, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				n = x
			}
		}
	}
	return min(max(n, 200), 2000)
}

// query serves GET /query?q=, /queryAll?q= and the next pages /query/<locator>.
func (c *call) query(all bool) {
	batch := queryBatchSize(c.r)
	if len(c.segs) == 2 {
		c.queryMore(c.segs[1], batch)
		return
	}
	if len(c.segs) != 1 {
		c.notFound()
		return
	}
	text, ok := c.queryText()
	if !ok {
		return
	}
	res, err := c.s.runQuery(c.ctx, text, all)
	if err != nil {
		c.queryError(err)
		return
	}
	if res.q.IsAggregate() {
		out := &orderedJSON{}
		out.set("totalSize", len(res.agg))
		out.set("done", true)
		out.set("records", res.agg)
		writeJSON(c.w, http.StatusOK, out)
		return
	}
	if res.q.IsCount() {
		out := &orderedJSON{}
		out.set("totalSize", len(res.rows))
		out.set("done", true)
		out.set("records", []any{})
		writeJSON(c.w, http.StatusOK, out)
		return
	}
	cur := &cursor{res: res, ctx: context.WithoutCancel(c.ctx), version: c.version}
	c.writePage(cur, 0, batch)
}

// queryText returns the q parameter of a query call, answering
// MALFORMED_QUERY when there is none.
func (c *call) queryText() (string, bool) {
	text := c.r.URL.Query().Get("q")
	if strings.TrimSpace(text) == "" {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MALFORMED_QUERY", Message: "A query string has to be specified"})
		return "", false
	}
	return text, true
}

// queryError answers a query that did not parse or bind, with the SOQL
// error's code (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, ...).
func (c *call) queryError(err error) {
	var se *soql.Error
	if errors.As(err, &se) {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: se.Code, Message: se.Message})
		return
	}
	writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MALFORMED_QUERY", Message: err.Error()})
}

func (c *call) queryMore(locator string, batch int) {
	id, offStr, ok := strings.Cut(locator, "-")
	off, err := strconv.Atoi(offStr)
	c.s.mu.Lock()
	cur := c.s.cursors[id]
	if cur != nil {
		cur.used = c.s.cfg.Clock()
	}
	c.s.mu.Unlock()
	if !ok || err != nil || cur == nil || off < 0 || off > len(cur.res.rows) {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_QUERY_LOCATOR", Message: "invalid query locator"})
		return
	}
	c.writePage(cur, off, batch)
	if off+batch >= len(cur.res.rows) {
		c.s.mu.Lock()
		delete(c.s.cursors, id)
		c.s.mu.Unlock()
	}
}

// writePage answers one page of a result, opening a locator when more rows follow.
func (c *call) writePage(cur *cursor, off, batch int) {
	rows := cur.res.rows
	end := min(off+batch, len(rows))
	out := &orderedJSON{}
	out.set("totalSize", len(rows))
	out.set("done", end >= len(rows))
	if end < len(rows) {
		id := c.s.openCursor(cur, off)
		out.set("nextRecordsUrl", fmt.Sprintf("/services/data/v%s/query/%s-%d", c.version, id, end))
	}
	recs := make([]*orderedJSON, 0, end-off)
	for _, r := range rows[off:end] {
		recs = append(recs, c.s.queryRecord(cur.ctx, cur.res, r, c.version))
	}
	out.set("records", recs)
	writeJSON(c.w, http.StatusOK, out)
}

// openCursor registers cur (once) and returns its locator id, an 18-character 01g id.
func (s *Server) openCursor(cur *cursor, off int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock()
	for id, existing := range s.cursors {
		if existing == cur {
			return id
		}
		if now.Sub(existing.used) > cursorIdle {
			delete(s.cursors, id)
		}
	}
	if len(s.cursors) >= maxCursors {
		// Like Salesforce, the oldest locator is the one that stops working.
		var oldest string
		for id, existing := range s.cursors {
			if oldest == "" || existing.used.Before(s.cursors[oldest].used) {
				oldest = id
			}
		}
		delete(s.cursors, oldest)
	}
	n := s.locatorSeq.Add(1)
	var b [15]byte
	copy(b[:], "01gR0")
	for i := 14; i >= 5; i-- {
		b[i] = base62[n%62]
		n /= 62
	}
	id := to18(string(b[:]))
	cur.used = now
	s.cursors[id] = cur
	return id
}

// queryRecord renders one result record: selected fields in order, parents nested under their
// relationship names with their own attributes, or null when the lookup is empty.
func (s *Server) queryRecord(ctx context.Context, res *queryResult, r *record, version string) *orderedJSON {
	root := &orderedJSON{}
	root.set("attributes", map[string]string{"type": res.obj.Name, "url": "/services/data/v" + version + "/sobjects/" + res.obj.Name + "/" + r.id()})
	nextSub := 0
	writeSubs := func(upTo int) {
		for ; nextSub < len(res.subs) && res.subs[nextSub].after <= upTo; nextSub++ {
			sr := res.subs[nextSub]
			children := sr.byParent[r.id()]
			if len(children) == 0 {
				root.set(sr.name, nil)
				continue
			}
			recs := make([]*orderedJSON, 0, len(children))
			for _, ch := range children {
				recs = append(recs, s.queryRecord(ctx, sr.res, ch, version))
			}
			nested := &orderedJSON{}
			nested.set("totalSize", len(children))
			nested.set("done", true)
			nested.set("records", recs)
			root.set(sr.name, nested)
		}
	}
	for i, pf := range res.fields {
		writeSubs(i)
		cur := root
		var at soql.Row = row{st: s.store, ctx: ctx, o: res.obj, r: r}
		skip := false
		for i, rel := range pf.path.Relationships {
			name := pf.path.Names[i]
			at = at.Parent(rel)
			existing, found := cur.get(name)
			if found {
				if existing == nil {
					skip = true
					break
				}
				cur = existing.(*orderedJSON)
				continue
			}
			if at == nil {
				cur.set(name, nil)
				skip = true
				break
			}
			p := at.(row)
			nested := &orderedJSON{}
			nested.set("attributes", map[string]string{"type": p.o.Name, "url": "/services/data/v" + version + "/sobjects/" + p.o.Name + "/" + p.r.id()})
			cur.set(name, nested)
			cur = nested
		}
		if skip {
			continue
		}
		p := at.(row)
		if _, dup := cur.get(pf.field.Name); dup {
			continue
		}
		cur.set(pf.field.Name, fieldJSON(pf.field, p.r.vals))
	}
	writeSubs(len(res.fields))
	return root
}

func (o *orderedJSON) get(k string) (any, bool) {
	for i, key := range o.keys {
		if key == k {
			return o.vals[i], true
		}
	}
	return nil, false
}
