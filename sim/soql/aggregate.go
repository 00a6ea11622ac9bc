package soql

import (
	"strconv"
	"strings"
)

// Aggregate queries: COUNT(f), COUNT_DISTINCT(f), SUM, AVG, MIN and MAX in the SELECT list (with optional
// aliases), GROUP BY over plain field paths, and ORDER BY over grouped fields or aggregate expressions.
// Results are AggregateResult records: grouped fields under their field name (or alias), aggregates under
// their alias or the implied exprN, N counting the aggregates without an alias from 0.

var aggregateFuncs = map[string]bool{"COUNT": true, "COUNT_DISTINCT": true, "SUM": true, "AVG": true, "MIN": true, "MAX": true}

// aggExpr is an aggregate function call as written in the query.
type aggExpr struct {
	fn    string // upper case
	arg   pathExpr
	alias string
	tok   int // the function name's token
}

type aggSelect struct {
	after int // plain selected fields before it
	agg   aggExpr
}

// Aggregate is a bound aggregate expression of the SELECT list (or of ORDER BY only).
type Aggregate struct {
	// After is the number of plain selected fields (Fields) that precede it in the SELECT list; -1 for an
	// expression that appears only in ORDER BY.
	After int
	// Func is COUNT, COUNT_DISTINCT, SUM, AVG, MIN or MAX.
	Func string
	// Path is the field aggregated.
	Path Path
	// Key is the JSON key of the value in an AggregateResult: the alias or exprN.
	Key string
}

// isAggregateCall reports whether the current token starts an aggregate call other than COUNT().
func (p *parser) isAggregateCall() bool {
	t := p.peek()
	if t.kind != tokIdent || !aggregateFuncs[strings.ToUpper(t.text)] {
		return false
	}
	next := p.q.toks[p.pos+1]
	if next.kind != tokPunct || next.text != "(" {
		return false
	}
	after := p.q.toks[p.pos+2]
	return !(after.kind == tokPunct && after.text == ")")
}

// parseAggregateCall reads FN(path); the current token is FN.
func (p *parser) parseAggregateCall() (aggExpr, error) {
	a := aggExpr{fn: strings.ToUpper(p.peek().text), tok: p.pos}
	p.pos += 2
	t := p.peek()
	if t.kind != tokIdent || isReserved(t.text) {
		return a, p.unexpected()
	}
	a.arg = pathExpr{text: t.text, tok: p.pos}
	p.pos++
	if err := p.expectPunct(")"); err != nil {
		return a, err
	}
	return a, nil
}

// parseAlias reads an optional alias after a selected item.
func (p *parser) parseAlias() string {
	// Only a name followed by "," or FROM is an alias, so a misspelled keyword ("SELECT Id FORM Account")
	// is still reported at itself.
	t := p.peek()
	if t.kind != tokIdent || isReserved(t.text) || strings.Contains(t.text, ".") {
		return ""
	}
	next := p.q.toks[p.pos+1]
	if (next.kind == tokPunct && next.text == ",") || (next.kind == tokIdent && strings.EqualFold(next.text, "FROM")) {
		p.pos++
		return t.text
	}
	return ""
}

// parseGroupBy reads the field list after GROUP BY.
func (p *parser) parseGroupBy() error {
	for {
		t := p.peek()
		if t.kind != tokIdent || isReserved(t.text) {
			return p.unexpected()
		}
		p.q.groupBy = append(p.q.groupBy, pathExpr{text: t.text, tok: p.pos})
		p.pos++
		if !p.isPunct(",") {
			return nil
		}
		p.pos++
	}
}

// IsAggregate reports whether the query has aggregate functions (other than COUNT()) or GROUP BY.
func (q *Query) IsAggregate() bool { return len(q.aggs) > 0 || len(q.groupBy) > 0 }

// Aggregates returns the bound aggregate expressions: those of the SELECT list in order, then those that
// appear only in ORDER BY (After -1).
func (q *Query) Aggregates() []Aggregate { return q.boundAggs }

// GroupBy returns the bound GROUP BY paths.
func (q *Query) GroupBy() []Path { return q.groupPaths }

// FieldKeys returns the JSON keys of the plain selected fields in an AggregateResult: the alias, or the
// field's own name (the last element of a path).
func (q *Query) FieldKeys() []string { return q.fieldKeys }

// AggregateKey is the Row field name under which a group row answers the value of aggregate i, for
// ORDER BY over aggregates.
func AggregateKey(i int) string { return "\x00agg" + strconv.Itoa(i) }

// bindAggregates checks and resolves the aggregate parts of the query; fields are the resolved plain
// selects.
func (b *binder) bindAggregates(fields []Path) error {
	q := b.q
	if !q.IsAggregate() {
		return nil
	}
	groups := make([]Path, 0, len(q.groupBy))
	for _, g := range q.groupBy {
		p, err := b.resolve(g)
		if err != nil {
			return err
		}
		groups = append(groups, p)
	}
	grouped := func(p Path) bool {
		for _, g := range groups {
			if strings.EqualFold(g.String(), p.String()) {
				return true
			}
		}
		return false
	}
	keys := make([]string, len(fields))
	for i, f := range fields {
		if !grouped(f) {
			return q.caretError(CodeMalformedQuery, q.selects[i].tok, "Field must be grouped or aggregated: "+f.Field)
		}
		keys[i] = f.Field
		if q.selAlias[i] != "" {
			keys[i] = q.selAlias[i]
		}
	}
	implied := 0
	var aggs []Aggregate
	for _, s := range q.aggs {
		a, err := b.bindAggregate(s.agg)
		if err != nil {
			return err
		}
		a.After = s.after
		if s.agg.alias != "" {
			a.Key = s.agg.alias
		} else {
			a.Key = "expr" + strconv.Itoa(implied)
			implied++
		}
		aggs = append(aggs, a)
	}
	q.boundAggs, q.groupPaths, q.fieldKeys = aggs, groups, keys
	if q.having != nil {
		b.having = true
		err := b.bindExpr(q.having)
		b.having = false
		if err != nil {
			return err
		}
	}
	return nil
}

// aggregateRef binds an aggregate expression of HAVING or ORDER BY to the group row field that answers
// its value, reusing an equal expression of the SELECT list or adding one with After -1.
func (b *binder) aggregateRef(e aggExpr) (Path, error) {
	a, err := b.bindAggregate(e)
	if err != nil {
		return Path{}, err
	}
	idx := -1
	for i, x := range b.q.boundAggs {
		if x.Func == a.Func && strings.EqualFold(x.Path.String(), a.Path.String()) {
			idx = i
			break
		}
	}
	if idx < 0 {
		a.After = -1
		b.q.boundAggs = append(b.q.boundAggs, a)
		idx = len(b.q.boundAggs) - 1
	}
	typ := "double"
	switch a.Func {
	case "COUNT", "COUNT_DISTINCT":
		typ = "int"
	case "MIN", "MAX":
		typ = a.Path.FieldInfo.Type
	}
	return Path{Field: AggregateKey(idx), FieldInfo: FieldInfo{Name: e.fn + "(" + a.Path.String() + ")", Type: typ}}, nil
}

func (b *binder) bindAggregate(e aggExpr) (Aggregate, error) {
	p, err := b.resolve(e.arg)
	if err != nil {
		return Aggregate{}, err
	}
	class := classOf(p.FieldInfo.Type)
	if (e.fn == "SUM" || e.fn == "AVG") && class != classNumber {
		return Aggregate{}, b.q.caretError(CodeMalformedQuery, e.tok, "field "+p.Field+" does not support aggregate operator "+e.fn)
	}
	return Aggregate{Func: e.fn, Path: p}, nil
}

// aggregateOrderKey binds ORDER BY over an aggregate expression.
func (b *binder) aggregateOrderKey(e aggExpr, o orderItem) (orderKey, error) {
	p, err := b.aggregateRef(e)
	if err != nil {
		return orderKey{}, err
	}
	nullsFirst := !o.desc
	if o.nullsSet {
		nullsFirst = o.nullsFirst
	}
	return orderKey{path: p, class: classOf(p.FieldInfo.Type), desc: o.desc, nullsFirst: nullsFirst}, nil
}

// CompareValues orders two non-null values of a field of the given describe type, as ORDER BY does
// (MIN and MAX use it).
func CompareValues(describeType string, a, b any) int {
	return compareValues(classOf(describeType), a, b)
}
