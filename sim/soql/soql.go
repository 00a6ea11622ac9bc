// Package soql parses, binds and evaluates the subset of SOQL that sync tools send to Salesforce:
// SELECT lists with parent relationship paths, COUNT(), aggregate functions and one level of
// parent-to-child subqueries, FROM one object, WHERE with AND/OR/NOT, comparison, IN (lists and
// semi-/anti-join subqueries), LIKE, INCLUDES/EXCLUDES, date and relative-date literals, GROUP BY, HAVING,
// ORDER BY, LIMIT and OFFSET.
//
// The work is split in three steps so the simulator pays for names and types once per query, not once
// per record: Parse checks syntax only, Bind resolves names through a Catalog and compiles every
// literal into the form its field compares against, and Match/Less then evaluate rows without
// allocating. Errors carry Salesforce's errorCode and message text (including the caret excerpt), so
// clients that parse those messages behave as they do against a real org.
package soql

import (
	"time"
)

// FieldInfo describes one field of an object, as the catalog knows it.
type FieldInfo struct {
	Name             string // canonical API name, e.g. "AccountId"
	Type             string // describe type: id, string, textarea, email, phone, url, picklist, multipicklist, boolean, int, double, currency, percent, date, datetime, time, reference
	ReferenceTo      string // for reference fields: the target object's canonical name ("" otherwise; for polymorphic fields the first target)
	RelationshipName string // for reference fields: e.g. "Account" for Contact.AccountId, "Owner" for OwnerId, "Parent__r" for Parent__c
}

// Catalog resolves names case-insensitively, as Salesforce does.
type Catalog interface {
	ObjectName(name string) (canonical string, ok bool)
	Field(object, field string) (FieldInfo, bool)
	Relationship(object, relationshipName string) (FieldInfo, bool) // the reference field whose RelationshipName matches
}

// Row is one stored record seen by the evaluator.
type Row interface {
	// Value returns the value of a canonical field: nil, string (text, picklist, id, reference, multipicklist "a;b"),
	// bool, json.Number (int/double/currency/percent, exact decimal text), or time.Time (date: UTC midnight;
	// datetime: UTC; time: 0000-01-01 UTC).
	Value(field string) any
	// Parent follows the reference field (canonical name) to its parent record, or returns nil.
	Parent(referenceField string) Row
}

// Error is a query error with Salesforce's errorCode: MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, ...
// Message follows Salesforce's text, including the row/column caret form.
type Error struct {
	Code, Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes produced by this package.
const (
	CodeMalformedQuery = "MALFORMED_QUERY"
	CodeInvalidField   = "INVALID_FIELD"
	CodeInvalidType    = "INVALID_TYPE"
)

// Path is a selected (or filtered, or sorted) field: Relationships is the chain of reference fields
// (canonical field names, e.g. ["AccountId"]) followed from the queried object; Field is the canonical
// field at the end; Names are the relationship names as Salesforce returns them in JSON (e.g. ["Account"])
// so the caller can nest {"Account": {"attributes":..., "Name": ...}}. Objects are the canonical object
// names reached by each relationship (parallel to Relationships), for the nested "attributes".
type Path struct {
	Relationships []string
	Names         []string
	Objects       []string
	Field         string
	FieldInfo     FieldInfo
}

// Resolve follows the chain of parents and returns the field's value; nil if any parent is nil.
func (p Path) Resolve(r Row) any { return resolve(&p, r) }

// resolve is Resolve without copying the Path, for the evaluator's hot path.
func resolve(p *Path, r Row) any {
	for _, rel := range p.Relationships {
		if r == nil {
			return nil
		}
		r = r.Parent(rel)
	}
	if r == nil {
		return nil
	}
	return r.Value(p.Field)
}

// String returns the dotted SOQL form of the path, e.g. "Account.Owner.Name".
func (p Path) String() string {
	n := len(p.Field)
	for _, s := range p.Names {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range p.Names {
		b = append(b, s...)
		b = append(b, '.')
	}
	return string(append(b, p.Field...))
}

// Query is a parsed SOQL statement. After Bind it is read-only, so one bound Query may be used by
// several goroutines at once.
type Query struct {
	src  string
	toks []token

	count     bool
	object    pathExpr
	selects   []pathExpr
	where     *expr
	orders    []orderItem
	limit     int
	hasLim    bool
	offset    int
	hasOff    bool
	offsetTok int

	// subs are the parent-to-child subqueries of the SELECT list; isSub marks a subquery itself, whose
	// FROM names a child relationship of the outer object.
	subs  []subSelect
	isSub bool

	// aggregate queries
	aggs       []aggSelect
	selAlias   []string // parallel to selects
	groupBy    []pathExpr
	having     *expr
	boundAggs  []Aggregate
	groupPaths []Path
	fieldKeys  []string

	bound     bool
	objName   string
	relName   string    // subquery: canonical child relationship name, e.g. "Contacts"
	childRef  FieldInfo // subquery: the child's reference field pointing at the outer object
	fields    []Path
	orderKeys []orderKey
}

// subSelect is a subquery and its place in the SELECT list: after the first `after` plain fields.
type subSelect struct {
	after int
	q     *Query
	tok   int // its opening parenthesis
}

// Subquery is a bound parent-to-child relationship subquery of the SELECT list.
type Subquery struct {
	// After is the number of plain selected fields (Fields) that precede the subquery in the SELECT list.
	After int
	// RelationshipName is the child relationship as Salesforce names it in results ("Contacts").
	RelationshipName string
	// ChildField is the child object's reference field (canonical name) that points at the outer record.
	ChildField string
	// Query is the bound subquery; its Object is the child object.
	Query *Query
}

// ChildCatalog is implemented by catalogs that know child relationships (Account.Contacts); without it
// parent-to-child subqueries fail to bind.
type ChildCatalog interface {
	// ChildRelationship returns the child object and the child's reference field of the relationship
	// relationshipName (case-insensitive) of parent, with the relationship's canonical name.
	ChildRelationship(parent, relationshipName string) (childObject string, field FieldInfo, canonical string, ok bool)
}

// Subqueries returns the parent-to-child subqueries in SELECT order (after Bind).
func (q *Query) Subqueries() []Subquery {
	out := make([]Subquery, 0, len(q.subs))
	for _, s := range q.subs {
		out = append(out, Subquery{After: s.after, RelationshipName: s.q.relName, ChildField: s.q.childRef.Name, Query: s.q})
	}
	return out
}

// Object returns the canonical name of the queried object (after Bind).
func (q *Query) Object() string { return q.objName }

// Fields returns the selected fields in SELECT order (after Bind); empty for COUNT().
func (q *Query) Fields() []Path { return q.fields }

// IsCount reports whether the query is SELECT COUNT() FROM ...
func (q *Query) IsCount() bool { return q.count }

// HasOrder reports whether the query has an ORDER BY clause.
func (q *Query) HasOrder() bool { return len(q.orders) > 0 }

// Limit returns the LIMIT value and whether the query has one.
func (q *Query) Limit() (n int, ok bool) { return q.limit, q.hasLim }

// Offset returns the OFFSET value, 0 when absent.
func (q *Query) Offset() int { return q.offset }

// HasOffset reports whether the query has an OFFSET clause (OFFSET 0 included).
func (q *Query) HasOffset() bool { return q.hasOff }

// HasWhere reports whether the query has a WHERE clause.
func (q *Query) HasWhere() bool { return q.where != nil }

// Match reports whether r satisfies the WHERE clause; relative date literals (TODAY, LAST_N_DAYS:n, ...)
// are evaluated against now in UTC. A query without WHERE matches every row. Bind must have succeeded.
func (q *Query) Match(r Row, now time.Time) bool {
	if !q.bound {
		panic("soql: Match called on a query without a successful Bind")
	}
	if q.where == nil {
		return true
	}
	return q.where.eval(r, now)
}

// Less reports whether row a sorts before row b under ORDER BY. Nulls sort first for ASC and last for
// DESC unless NULLS FIRST/LAST says otherwise, as in Salesforce. Rows that compare equal on every key
// are not less; callers wanting a stable order should use a stable sort.
func (q *Query) Less(a, b Row) bool {
	for i := range q.orderKeys {
		k := &q.orderKeys[i]
		c := k.compare(a, b)
		if c != 0 {
			return c < 0
		}
	}
	return false
}

// Unpaged returns a copy of a bound query without ORDER BY, LIMIT and OFFSET: a subquery's filter applied
// to every child at once, its ordering and paging applied per parent by the caller.
func (q *Query) Unpaged() *Query {
	c := *q
	c.orders, c.orderKeys, c.limit, c.hasLim, c.offset, c.hasOff = nil, nil, 0, false, 0, false
	return &c
}

// MatchHaving reports whether a group row (see AggregateKey) satisfies the HAVING clause; true without one.
func (q *Query) MatchHaving(r Row, now time.Time) bool {
	if q.having == nil {
		return true
	}
	return q.having.eval(r, now)
}
