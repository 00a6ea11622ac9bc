package soql

import "strings"

// Semi-joins and anti-joins: "WHERE Id IN (SELECT AccountId FROM Contact)" and NOT IN. The subquery is
// parsed and bound with the outer query; its ids are only known against the data, so the caller evaluates
// each subquery and WithSemiJoins returns a copy of the query in which every semi-join is a plain IN list.

// parseSemiJoin reads "(SELECT field FROM Object [WHERE ...])" after IN or NOT IN; the current token is
// the opening parenthesis.
func (p *parser) parseSemiJoin() (*Query, error) {
	q := p.q
	if q.isSub {
		return nil, p.q.unexpectedToken(p.pos + 1) // no nesting
	}
	sub := &Query{src: q.src, toks: q.toks, isSub: true}
	sp := &parser{q: sub, pos: p.pos + 1}
	if err := sp.parseQuery(); err != nil {
		return nil, err
	}
	if len(sub.subs) > 0 || sub.count || len(sub.aggs) > 0 || len(sub.groupBy) > 0 || len(sub.selects) != 1 {
		return nil, q.unexpectedToken(p.pos + 2)
	}
	p.pos = sp.pos + 1 // past ")"
	return sub, nil
}

// isSemiJoinStart reports whether the current "(" opens a subquery.
func (p *parser) isSemiJoinStart() bool {
	if !p.isPunct("(") {
		return false
	}
	t := p.q.toks[p.pos+1]
	return t.kind == tokIdent && strings.EqualFold(t.text, "SELECT")
}

// bindSemiJoin binds the subquery of an IN/NOT IN comparison on an id or reference field.
func (b *binder) bindSemiJoin(e *expr, c *comparison) error {
	if c.class != classID {
		return b.q.caretError(CodeMalformedQuery, e.field.tok, "semi join sub-selects are only allowed on ID fields: "+c.path.Field)
	}
	if e.semi.hasOff {
		return e.semi.caretError(CodeMalformedQuery, e.semi.offsetTok, "OFFSET is not allowed in a semi-join subquery")
	}
	if err := e.semi.Bind(b.cat); err != nil {
		return err
	}
	sel := e.semi.fields[0]
	if classOf(sel.FieldInfo.Type) != classID {
		return e.semi.caretError(CodeMalformedQuery, e.semi.selects[0].tok, "semi join sub-select can only select an ID field: "+sel.Field)
	}
	c.semi = e.semi
	return nil
}

// HasSemiJoins reports whether the WHERE clause has IN/NOT IN subqueries.
func (q *Query) HasSemiJoins() bool { return hasSemi(q.where) }

func hasSemi(e *expr) bool {
	if e == nil {
		return false
	}
	if e.kind == exprCmp {
		return e.cmp != nil && e.cmp.semi != nil
	}
	for _, c := range e.children {
		if hasSemi(c) {
			return true
		}
	}
	return false
}

// WithSemiJoins returns a copy of a bound query in which each semi-join subquery is replaced by the ids
// eval returns for it (the values of its one selected field over the matching records). The query itself
// is not changed, so it stays safe for concurrent use.
func (q *Query) WithSemiJoins(eval func(sub *Query) ([]string, error)) (*Query, error) {
	where, err := cloneSemi(q.where, eval)
	if err != nil {
		return nil, err
	}
	c := *q
	c.where = where
	return &c, nil
}

func cloneSemi(e *expr, eval func(*Query) ([]string, error)) (*expr, error) {
	if e == nil || !hasSemi(e) {
		return e, nil
	}
	ne := *e
	if e.kind == exprCmp {
		ids, err := eval(e.cmp.semi)
		if err != nil {
			return nil, err
		}
		nc := *e.cmp
		nc.semi, nc.vals, nc.set, nc.scan, nc.hasNull = nil, nil, nil, nil, false
		for _, id := range ids {
			if id != "" {
				nc.vals = append(nc.vals, value{str: id})
			}
		}
		nc.compileSet()
		ne.cmp = &nc
		return &ne, nil
	}
	ne.children = make([]*expr, len(e.children))
	for i, ch := range e.children {
		x, err := cloneSemi(ch, eval)
		if err != nil {
			return nil, err
		}
		ne.children[i] = x
	}
	return &ne, nil
}
