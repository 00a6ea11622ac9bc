// Package soql parses, binds and evaluates the subset of SOQL that sync tools send to Salesforce:
// SELECT lists with parent relationship paths and COUNT(), FROM one object, WHERE with AND/OR/NOT,
// comparison, IN, LIKE, INCLUDES/EXCLUDES, date and relative-date literals, ORDER BY, LIMIT and OFFSET.
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

	count   bool
	object  pathExpr
	selects []pathExpr
	where   *expr
	orders  []orderItem
	limit   int
	hasLim  bool
	offset  int

	bound     bool
	objName   string
	fields    []Path
	orderKeys []orderKey
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
