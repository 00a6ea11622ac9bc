package soql

import (
	"strings"
	"time"
)

// fieldClass groups describe types by how their values compare.
type fieldClass uint8

const (
	classText  fieldClass = iota // string, textarea, email, phone, url, picklist, combobox, ...
	classID                      // id, reference: 15/18-character record ids
	classMulti                   // multipicklist: "a;b;c"
	classBool
	classNumber
	classDate
	classDateTime
	classTime
)

func classOf(describeType string) fieldClass {
	switch strings.ToLower(describeType) {
	case "id", "reference":
		return classID
	case "multipicklist":
		return classMulti
	case "boolean":
		return classBool
	case "int", "integer", "long", "double", "currency", "percent":
		return classNumber
	case "date":
		return classDate
	case "datetime":
		return classDateTime
	case "time":
		return classTime
	}
	return classText
}

// typeWord is the type name Salesforce uses in "value of filter criterion ... must be of type X".
func typeWord(fi FieldInfo) string {
	switch classOf(fi.Type) {
	case classBool:
		return "boolean"
	case classNumber:
		if strings.EqualFold(fi.Type, "int") || strings.EqualFold(fi.Type, "integer") {
			return "integer"
		}
		return "double"
	case classDate:
		return "date"
	case classDateTime:
		return "dateTime"
	case classTime:
		return "time"
	}
	return "string"
}

// Bind resolves the object, every field path and every literal through cat. Errors are *Error with
// code INVALID_TYPE (unknown object), INVALID_FIELD (unknown field or relationship, literal of the
// wrong type) or INVALID_QUERY_FILTER_OPERATOR (malformed id literal).
func (q *Query) Bind(cat Catalog) error {
	obj, ok := cat.ObjectName(q.object.text)
	if !ok {
		return q.caretError(CodeInvalidType, q.object.tok, unsupportedType(q.object.text))
	}
	return q.bindAs(cat, obj)
}

func (q *Query) bindAs(cat Catalog, obj string) error {
	// SOQL "OFFSET": at most 2,000 rows; in a parent-to-child subquery only when the outer query has LIMIT 1.
	if q.hasOff && q.offset > maxOffset {
		return &Error{Code: "NUMBER_OUTSIDE_VALID_RANGE", Message: "Maximum SOQL offset allowed is 2000"}
	}
	for _, s := range q.subs {
		if s.q.hasOff && !(q.hasLim && q.limit == 1) {
			return s.q.caretError(CodeMalformedQuery, s.q.offsetTok, "OFFSET in a subquery is only allowed when the outer query has LIMIT 1")
		}
		cc, ok := cat.(ChildCatalog)
		var child, canonical string
		var ref FieldInfo
		if ok {
			child, ref, canonical, ok = cc.ChildRelationship(obj, s.q.object.text)
		}
		if !ok {
			return s.q.caretError(CodeInvalidType, s.q.object.tok, "Didn't understand relationship '"+s.q.object.text+
				"' in FROM part of query call. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.")
		}
		s.q.relName, s.q.childRef = canonical, ref
		if err := s.q.bindAs(cat, child); err != nil {
			return err
		}
	}
	b := binder{q: q, cat: cat, object: obj}
	fields := make([]Path, 0, len(q.selects))
	for _, s := range q.selects {
		p, err := b.resolve(s)
		if err != nil {
			return err
		}
		fields = append(fields, p)
	}
	if q.where != nil {
		if err := b.bindExpr(q.where); err != nil {
			return err
		}
	}
	if err := b.bindAggregates(fields); err != nil {
		return err
	}
	keys := make([]orderKey, 0, len(q.orders))
	for _, o := range q.orders {
		if o.agg != nil {
			if !q.IsAggregate() {
				return q.caretError(CodeMalformedQuery, o.agg.tok, "Ordered field must be grouped or aggregated: "+o.agg.arg.text)
			}
			k, err := b.aggregateOrderKey(*o.agg, o)
			if err != nil {
				return err
			}
			keys = append(keys, k)
			continue
		}
		p, err := b.resolve(o.field)
		if err != nil {
			return err
		}
		nullsFirst := !o.desc
		if o.nullsSet {
			nullsFirst = o.nullsFirst
		}
		keys = append(keys, orderKey{path: p, class: classOf(p.FieldInfo.Type), desc: o.desc, nullsFirst: nullsFirst})
	}
	q.objName, q.fields, q.orderKeys, q.bound = obj, fields, keys, true
	return nil
}

// maxOffset is the largest OFFSET SOQL accepts.
const maxOffset = 2000

type binder struct {
	having bool // binding the HAVING clause: aggregates allowed
	q      *Query
	cat    Catalog
	object string
}

// resolve turns "Account.Owner.Name" into the chain of reference fields from the queried object. A
// leading segment naming the queried object itself ("Contact.Name" in FROM Contact) is allowed, as in
// Salesforce.
func (b *binder) resolve(pe pathExpr) (Path, error) {
	segs := strings.Split(pe.text, ".")
	obj := b.object
	if len(segs) > 1 && strings.EqualFold(segs[0], b.object) {
		if _, isRel := b.cat.Relationship(obj, segs[0]); !isRel {
			segs = segs[1:]
		}
	}
	var p Path
	for _, rel := range segs[:len(segs)-1] {
		fi, ok := b.cat.Relationship(obj, rel)
		if !ok || fi.ReferenceTo == "" {
			return Path{}, b.q.caretError(CodeInvalidField, pe.tok, badRelationship(rel))
		}
		p.Relationships = append(p.Relationships, fi.Name)
		p.Names = append(p.Names, fi.RelationshipName)
		p.Objects = append(p.Objects, fi.ReferenceTo)
		obj = fi.ReferenceTo
	}
	last := segs[len(segs)-1]
	fi, ok := b.cat.Field(obj, last)
	if !ok {
		return Path{}, b.q.caretError(CodeInvalidField, pe.tok, noSuchColumn(last, obj))
	}
	p.Field, p.FieldInfo = fi.Name, fi
	return p, nil
}

func (b *binder) bindExpr(e *expr) error {
	if e.kind != exprCmp {
		for _, c := range e.children {
			if err := b.bindExpr(c); err != nil {
				return err
			}
		}
		return nil
	}
	var p Path
	var c *comparison
	if e.agg != nil {
		if !b.having {
			return b.q.caretError(CodeMalformedQuery, e.agg.tok, "aggregate functions are not allowed in WHERE; use HAVING")
		}
		ref, err := b.aggregateRef(*e.agg)
		if err != nil {
			return err
		}
		p = ref
		c = &comparison{path: p, class: classOf(p.FieldInfo.Type), op: e.op}
	} else {
		var err error
		p, err = b.resolve(e.field)
		if err != nil {
			return err
		}
		c = &comparison{path: p, class: classOf(p.FieldInfo.Type), op: e.op}
	}
	if e.semi != nil {
		// Salesforce documents that HAVING can't contain semi- or anti-joins. Only WHERE's subqueries are
		// evaluated (WithSemiJoins), so one bound here would silently match no group.
		if b.having {
			return b.q.caretError(CodeMalformedQuery, e.field.tok, "semi join and anti join sub-selects are not allowed in the HAVING clause")
		}
		if err := b.bindSemiJoin(e, c); err != nil {
			return err
		}
		e.cmp = c
		return nil
	}
	if (e.op == opIncludes || e.op == opExcludes) && c.class != classMulti {
		return b.q.caretError(CodeInvalidField, e.field.tok, "includes or excludes operator only valid on multipicklist field")
	}
	if c.class == classMulti && (e.op == opLike || e.op == opLt || e.op == opLe || e.op == opGt || e.op == opGe) {
		return b.q.caretError(CodeInvalidField, e.field.tok, "invalid operator on multipicklist field")
	}
	for _, lit := range e.lits {
		v, err := b.compileValue(e, c, lit)
		if err != nil {
			return err
		}
		c.vals = append(c.vals, v)
	}
	if e.op == opLike {
		v := c.vals[0]
		if !v.null {
			c.like = compileLike(e.lits[0].str)
		}
	}
	if e.op == opIncludes || e.op == opExcludes {
		c.compileIncludes()
	}
	if e.op == opIn || e.op == opNotIn {
		c.compileSet()
	}
	e.cmp = c
	return nil
}

// value is a literal compiled for the class of the field it is compared with.
type value struct {
	null bool
	str  string // text, id (decoded, escapes removed)
	num  decimal
	b    bool
	t    time.Time
	rel  *relative
}

func (b *binder) mismatch(e *expr, c *comparison, quoted bool) error {
	how := "should not be enclosed in quotes"
	if quoted {
		how = "should be enclosed in quotes"
	}
	return b.q.caretError(CodeInvalidField, e.field.tok,
		"value of filter criterion for field '"+c.path.Field+"' must be of type "+typeWord(c.path.FieldInfo)+" and "+how)
}

func (b *binder) compileValue(e *expr, c *comparison, lit literal) (value, error) {
	if lit.kind == litNull {
		if e.op == opLike || e.op == opIncludes || e.op == opExcludes {
			return value{}, b.q.unexpectedToken(lit.tok)
		}
		return value{null: true}, nil
	}
	isText := c.class == classText || c.class == classID || c.class == classMulti
	if e.op == opLike && lit.kind != litString {
		return value{}, b.mismatch(e, c, isText)
	}
	switch c.class {
	case classText, classMulti:
		if lit.kind != litString {
			return value{}, b.mismatch(e, c, true)
		}
		s := unescapeLike(lit.str)
		// Salesforce stores empty text as null, so '' compares like null.
		return value{str: s, null: s == "" && e.op != opLike}, nil
	case classID:
		if lit.kind != litString {
			return value{}, b.mismatch(e, c, true)
		}
		s := unescapeLike(lit.str)
		if s == "" {
			return value{null: e.op != opLike}, nil
		}
		if e.op != opLike && !validID(s) {
			return value{}, b.q.caretError("INVALID_QUERY_FILTER_OPERATOR", e.field.tok, "invalid ID field: "+s)
		}
		return value{str: s}, nil
	case classBool:
		if lit.kind != litBool {
			return value{}, b.mismatch(e, c, false)
		}
		return value{b: lit.b}, nil
	case classNumber:
		if lit.kind != litNumber {
			return value{}, b.mismatch(e, c, false)
		}
		d, ok := parseDecimal(lit.text)
		if !ok {
			return value{}, b.q.unexpectedToken(lit.tok)
		}
		return value{num: d}, nil
	case classDate, classDateTime:
		switch {
		case lit.kind == litRelative:
			r := compileRelative(lit.text, lit.n)
			return value{rel: &r}, nil
		case lit.kind == litDate && c.class == classDate:
			t, ok := parseDateLiteral(lit.text)
			if !ok {
				return value{}, b.q.caretError(CodeMalformedQuery, lit.tok, "value of filter criterion for field '"+c.path.Field+"' must be a valid date")
			}
			return value{t: t}, nil
		case lit.kind == litDateTime && c.class == classDateTime:
			t, ok := parseDateTimeLiteral(lit.text)
			if !ok {
				return value{}, b.q.caretError(CodeMalformedQuery, lit.tok, "value of filter criterion for field '"+c.path.Field+"' must be a valid dateTime")
			}
			return value{t: t}, nil
		}
		return value{}, b.mismatch(e, c, false)
	case classTime:
		if lit.kind != litTime {
			return value{}, b.mismatch(e, c, false)
		}
		t, ok := parseTimeLiteral(lit.text)
		if !ok {
			return value{}, b.q.caretError(CodeMalformedQuery, lit.tok, "value of filter criterion for field '"+c.path.Field+"' must be a valid time")
		}
		return value{t: t}, nil
	}
	return value{}, b.mismatch(e, c, isText)
}

// unescapeLike turns the lexer's LIKE-escaped form into plain text (\_ → _, \% → %, \\ → \).
func unescapeLike(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// validID reports whether s looks like a Salesforce record id: 15 or 18 letters and digits.
func validID(s string) bool {
	if len(s) != 15 && len(s) != 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
