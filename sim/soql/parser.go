package soql

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// pathExpr is a dotted name as written in the query, with the token it came from (for caret errors).
type pathExpr struct {
	text string
	tok  int
}

type opKind uint8

const (
	opEq opKind = iota
	opNe
	opLt
	opLe
	opGt
	opGe
	opIn
	opNotIn
	opLike
	opIncludes
	opExcludes
)

type exprKind uint8

const (
	exprAnd exprKind = iota
	exprOr
	exprNot
	exprCmp
)

type litKind uint8

const (
	litNull litKind = iota
	litString
	litNumber
	litBool
	litDate
	litDateTime
	litTime
	litRelative
)

// literal is a value as written in the query. Bind compiles it into the form its field compares with.
type literal struct {
	kind litKind
	text string // source text (number text, relative literal name)
	str  string // string literal, LIKE-escaped form (see scanString)
	b    bool
	n    int // the n of LAST_N_DAYS:n
	tok  int
}

type expr struct {
	kind     exprKind
	children []*expr

	// comparison
	op    opKind
	field pathExpr
	lits  []literal
	semi  *Query      // IN / NOT IN (SELECT ...)
	agg   *aggExpr    // HAVING: an aggregate function on the left
	cmp   *comparison // set by Bind
}

type orderItem struct {
	agg        *aggExpr // ORDER BY over an aggregate expression
	field      pathExpr
	desc       bool
	nullsFirst bool
	nullsSet   bool
}

type parser struct {
	q     *Query
	pos   int
	depth int // nesting of parentheses and NOT in the current condition
}

// MaxQueryLength is Salesforce's hard limit on the length of a SOQL statement, in characters.
const MaxQueryLength = 100000

// maxNesting bounds how deeply parentheses and NOT nest in one condition. The parser and the evaluator
// recurse once per level, so without a bound a long enough query (a composite subrequest URL is not held
// to the URI limit) overflows the goroutine stack, a fatal error that no handler can recover from.
const maxNesting = 1000

// Parse checks the syntax of a SOQL query. Errors are *Error with code MALFORMED_QUERY.
func Parse(query string) (*Query, error) {
	q := &Query{src: query}
	if len(query) > MaxQueryLength && utf8.RuneCountInString(query) > MaxQueryLength {
		return nil, &Error{Code: CodeMalformedQuery, Message: "SOQL statements cannot be longer than 100000 characters"}
	}
	toks, lerr := lex(query)
	q.toks = toks
	if lerr != nil {
		return nil, q.lexFailure(lerr)
	}
	p := &parser{q: q}
	if err := p.parseQuery(); err != nil {
		return nil, err
	}
	if p.peek().kind != tokEOF {
		return nil, p.unexpected()
	}
	return q, nil
}

func (p *parser) peek() *token { return &p.q.toks[p.pos] }

func (p *parser) next() *token {
	t := &p.q.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

// isKeyword reports whether the current token is the (case-insensitive) keyword kw. Keywords are not
// reserved by the lexer: a field may be called Last or Count.
func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tokPunct && t.text == s
}

func (p *parser) unexpected() error {
	return p.q.unexpectedToken(p.pos)
}

func (p *parser) expectKeyword(kw string) error {
	if !p.isKeyword(kw) {
		return p.unexpected()
	}
	p.pos++
	return nil
}

func (p *parser) expectPunct(s string) error {
	if !p.isPunct(s) {
		return p.unexpected()
	}
	p.pos++
	return nil
}

func (p *parser) parseQuery() error {
	q := p.q
	if err := p.expectKeyword("SELECT"); err != nil {
		return err
	}
	if err := p.parseSelectList(); err != nil {
		return err
	}
	if err := p.expectKeyword("FROM"); err != nil {
		return err
	}
	t := p.peek()
	if t.kind != tokIdent || strings.Contains(t.text, ".") || isReserved(t.text) {
		return p.unexpected()
	}
	q.object = pathExpr{text: t.text, tok: p.pos}
	p.pos++
	// USING SCOPE: the org's one user owns and sees every record, so every scope answers the same rows.
	if p.isKeyword("USING") {
		p.pos++
		if err := p.expectKeyword("SCOPE"); err != nil {
			return err
		}
		if !usingScopes[strings.ToLower(p.peek().text)] || p.peek().kind != tokIdent {
			return p.unexpected()
		}
		p.pos++
	}
	if p.isKeyword("WHERE") {
		p.pos++
		e, err := p.parseOr()
		if err != nil {
			return err
		}
		q.where = e
	}
	// WITH SECURITY_ENFORCED / USER_MODE / SYSTEM_MODE: without field-level security or sharing they change
	// nothing for the org's user.
	if p.isKeyword("WITH") {
		p.pos++
		switch {
		case p.isKeyword("SECURITY_ENFORCED"), p.isKeyword("USER_MODE"), p.isKeyword("SYSTEM_MODE"):
			p.pos++
		default:
			return p.unexpected()
		}
	}
	if p.isKeyword("GROUP") && !q.count {
		p.pos++
		if err := p.expectKeyword("BY"); err != nil {
			return err
		}
		if err := p.parseGroupBy(); err != nil {
			return err
		}
		if p.isKeyword("HAVING") {
			p.pos++
			e, err := p.parseOr()
			if err != nil {
				return err
			}
			q.having = e
		}
	}
	if p.isKeyword("ORDER") {
		p.pos++
		if err := p.expectKeyword("BY"); err != nil {
			return err
		}
		if err := p.parseOrderBy(); err != nil {
			return err
		}
	}
	if p.isKeyword("LIMIT") {
		p.pos++
		n, err := p.parseCount()
		if err != nil {
			return err
		}
		q.limit, q.hasLim = n, true
	}
	if p.isKeyword("OFFSET") {
		q.offsetTok = p.pos
		p.pos++
		n, err := p.parseCount()
		if err != nil {
			return err
		}
		q.offset, q.hasOff = n, true
	}
	// FOR VIEW / FOR REFERENCE update recently-viewed data the simulator does not keep.
	if !q.isSub && p.isKeyword("FOR") {
		p.pos++
		if !p.isKeyword("VIEW") && !p.isKeyword("REFERENCE") {
			return p.unexpected()
		}
		p.pos++
	}
	if len(q.subs) > 0 && q.IsAggregate() {
		// Salesforce documents that a query with GROUP BY can't use child relationship subqueries (nor
		// can one with aggregate functions: its rows are AggregateResults, which have no children).
		// Accepted, the subquery was silently left out of every row.
		return q.caretError(CodeMalformedQuery, q.subs[0].tok, "parent-to-child relationship subqueries are not supported in an aggregate query")
	}
	if q.isSub {
		// A parent-to-child subquery ends at its closing parenthesis; the caller consumes it.
		if !p.isPunct(")") {
			return p.unexpected()
		}
	}
	return nil
}

// parseSubquery reads a parent-to-child relationship subquery, "(SELECT ... FROM Contacts ...)", in the
// SELECT list of the outer query; the current token is its opening parenthesis.
func (p *parser) parseSubquery() error {
	q := p.q
	if q.isSub {
		return p.unexpected()
	}
	sub := &Query{src: q.src, toks: q.toks, isSub: true}
	sp := &parser{q: sub, pos: p.pos + 1}
	if err := sp.parseQuery(); err != nil {
		return err
	}
	// Aggregate functions, COUNT() and GROUP BY are refused in a parent-to-child subquery, as Salesforce
	// does: its result is child records, never AggregateResults. Accepted, COUNT() answered bare records
	// and COUNT(Id) or GROUP BY answered null for every parent.
	var aggTok int
	switch {
	case sub.count:
		aggTok = p.pos + 2 // "(" SELECT COUNT
	case len(sub.aggs) > 0:
		aggTok = sub.aggs[0].agg.tok
	case len(sub.groupBy) > 0:
		aggTok = sub.groupBy[0].tok - 2 // GROUP BY <field>
	}
	if aggTok > 0 {
		return q.caretError(CodeMalformedQuery, aggTok, "aggregate functions and GROUP BY are not supported in a parent-to-child relationship subquery")
	}
	open := p.pos
	p.pos = sp.pos + 1 // past ")"
	q.subs = append(q.subs, subSelect{after: len(q.selects), q: sub, tok: open})
	return nil
}

var usingScopes = map[string]bool{"delegated": true, "everything": true, "mine": true, "mine_and_my_groups": true,
	"my_territory": true, "my_team_territory": true, "team": true, "scopingrule": true}

// reserved words cannot name an object or start a field; everything else is a plain identifier.
var reservedWords = []string{"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "INCLUDES", "EXCLUDES",
	"ORDER", "BY", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "ASC", "DESC", "NULLS", "GROUP", "HAVING", "WITH",
	"FOR", "USING", "TYPEOF"}

func isReserved(s string) bool {
	for _, w := range reservedWords {
		if strings.EqualFold(s, w) {
			return true
		}
	}
	return false
}

func (p *parser) parseSelectList() error {
	q := p.q
	for {
		t := p.peek()
		if p.isPunct("(") && !q.count {
			if err := p.parseSubquery(); err != nil {
				return err
			}
			if !p.isPunct(",") {
				return nil
			}
			p.pos++
			continue
		}
		if t.kind != tokIdent || isReserved(t.text) {
			return p.unexpected()
		}
		if p.isAggregateCall() {
			if q.count {
				return p.unexpected()
			}
			a, err := p.parseAggregateCall()
			if err != nil {
				return err
			}
			a.alias = p.parseAlias()
			q.aggs = append(q.aggs, aggSelect{after: len(q.selects), agg: a})
			if !p.isPunct(",") {
				return nil
			}
			p.pos++
			continue
		}
		if strings.EqualFold(t.text, "COUNT") && p.q.toks[p.pos+1].kind == tokPunct && p.q.toks[p.pos+1].text == "(" {
			// COUNT() stands alone: SELECT COUNT() FROM X.
			if len(q.selects) > 0 || len(q.subs) > 0 || len(q.aggs) > 0 || q.count {
				return p.unexpected()
			}
			p.pos += 2
			if err := p.expectPunct(")"); err != nil {
				return err
			}
			q.count = true
			// COUNT() takes no companions; leave the comma for FROM to reject.
			return nil
		} else {
			if q.count {
				return p.unexpected()
			}
			q.selects = append(q.selects, pathExpr{text: t.text, tok: p.pos})
			p.pos++
			q.selAlias = append(q.selAlias, p.parseAlias())
		}
		if !p.isPunct(",") {
			return nil
		}
		p.pos++
	}
}

func (p *parser) parseOrderBy() error {
	for {
		t := p.peek()
		if t.kind != tokIdent || isReserved(t.text) {
			return p.unexpected()
		}
		var item orderItem
		if p.isAggregateCall() {
			a, err := p.parseAggregateCall()
			if err != nil {
				return err
			}
			item.agg = &a
		} else {
			item = orderItem{field: pathExpr{text: t.text, tok: p.pos}}
			p.pos++
		}
		if p.isKeyword("ASC") {
			p.pos++
		} else if p.isKeyword("DESC") {
			p.pos++
			item.desc = true
		}
		if p.isKeyword("NULLS") {
			p.pos++
			switch {
			case p.isKeyword("FIRST"):
				item.nullsFirst = true
			case p.isKeyword("LAST"):
			default:
				return p.unexpected()
			}
			item.nullsSet = true
			p.pos++
		}
		p.q.orders = append(p.q.orders, item)
		if !p.isPunct(",") {
			return nil
		}
		p.pos++
	}
}

// parseCount reads the non-negative integer after LIMIT or OFFSET.
func (p *parser) parseCount() (int, error) {
	t := p.peek()
	if t.kind != tokNumber {
		return 0, p.unexpected()
	}
	n, err := strconv.Atoi(t.text)
	if err != nil || n < 0 {
		return 0, p.unexpected()
	}
	p.pos++
	return n, nil
}

func (p *parser) parseOr() (*expr, error) {
	left, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	if !p.isKeyword("OR") {
		return left, nil
	}
	e := &expr{kind: exprOr, children: []*expr{left}}
	for p.isKeyword("OR") {
		p.pos++
		right, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		e.children = append(e.children, right)
	}
	return e, nil
}

func (p *parser) parseAnd() (*expr, error) {
	left, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	if !p.isKeyword("AND") {
		return left, nil
	}
	e := &expr{kind: exprAnd, children: []*expr{left}}
	for p.isKeyword("AND") {
		p.pos++
		right, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		e.children = append(e.children, right)
	}
	return e, nil
}

func (p *parser) parseNot() (*expr, error) {
	if p.isKeyword("NOT") || p.isPunct("(") {
		if p.depth >= maxNesting {
			return nil, p.q.caretError(CodeMalformedQuery, p.pos, "conditions are nested too deeply")
		}
		p.depth++
		defer func() { p.depth-- }()
	}
	if p.isKeyword("NOT") {
		p.pos++
		inner, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &expr{kind: exprNot, children: []*expr{inner}}, nil
	}
	if p.isPunct("(") {
		p.pos++
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if err := p.expectPunct(")"); err != nil {
			return nil, err
		}
		return e, nil
	}
	return p.parseComparison()
}

func (p *parser) parseComparison() (*expr, error) {
	t := p.peek()
	if t.kind != tokIdent || isReserved(t.text) {
		return nil, p.unexpected()
	}
	e := &expr{kind: exprCmp, field: pathExpr{text: t.text, tok: p.pos}}
	if p.isAggregateCall() {
		// HAVING COUNT(Id) > 1: the binder refuses aggregates outside HAVING.
		a, err := p.parseAggregateCall()
		if err != nil {
			return nil, err
		}
		e.agg = &a
	} else {
		p.pos++
	}
	op := p.peek()
	switch {
	case op.kind == tokPunct:
		switch op.text {
		case "=":
			e.op = opEq
		case "!=", "<>":
			e.op = opNe
		case "<":
			e.op = opLt
		case "<=":
			e.op = opLe
		case ">":
			e.op = opGt
		case ">=":
			e.op = opGe
		default:
			return nil, p.unexpected()
		}
		p.pos++
		lit, err := p.parseLiteral()
		if err != nil {
			return nil, err
		}
		e.lits = []literal{lit}
		return e, nil
	case p.isKeyword("LIKE"):
		p.pos++
		lit, err := p.parseLiteral()
		if err != nil {
			return nil, err
		}
		if lit.kind == litNull {
			return nil, p.q.unexpectedToken(lit.tok)
		}
		e.op = opLike
		e.lits = []literal{lit}
		return e, nil
	case p.isKeyword("IN"), p.isKeyword("INCLUDES"), p.isKeyword("EXCLUDES"):
		switch strings.ToUpper(op.text) {
		case "IN":
			e.op = opIn
		case "INCLUDES":
			e.op = opIncludes
		default:
			e.op = opExcludes
		}
		p.pos++
	case p.isKeyword("NOT"):
		p.pos++
		if err := p.expectKeyword("IN"); err != nil {
			return nil, err
		}
		e.op = opNotIn
	default:
		return nil, p.unexpected()
	}
	if (e.op == opIn || e.op == opNotIn) && p.isSemiJoinStart() {
		sub, err := p.parseSemiJoin()
		if err != nil {
			return nil, err
		}
		e.semi = sub
		return e, nil
	}
	lits, err := p.parseList()
	if err != nil {
		return nil, err
	}
	e.lits = lits
	return e, nil
}

// parseList reads ( literal, literal, ... ) after IN, NOT IN, INCLUDES and EXCLUDES.
func (p *parser) parseList() ([]literal, error) {
	if err := p.expectPunct("("); err != nil {
		return nil, err
	}
	var lits []literal
	for {
		lit, err := p.parseLiteral()
		if err != nil {
			return nil, err
		}
		lits = append(lits, lit)
		if p.isPunct(")") {
			p.pos++
			return lits, nil
		}
		if err := p.expectPunct(","); err != nil {
			return nil, err
		}
	}
}

// maxRelativeN is the largest n a date literal such as LAST_N_DAYS:n accepts.
const maxRelativeN = math.MaxInt32

// relativeLiterals lists the date literals SOQL accepts; the ones taking ":n" are marked.
var relativeLiterals = map[string]bool{
	"YESTERDAY": false, "TODAY": false, "TOMORROW": false,
	"LAST_WEEK": false, "THIS_WEEK": false, "NEXT_WEEK": false,
	"LAST_MONTH": false, "THIS_MONTH": false, "NEXT_MONTH": false,
	"LAST_YEAR": false, "THIS_YEAR": false, "NEXT_YEAR": false,
	"LAST_90_DAYS": false, "NEXT_90_DAYS": false,
	"LAST_N_DAYS": true, "NEXT_N_DAYS": true, "N_DAYS_AGO": true, "N_DAYS_FROM_NOW": true,
	"LAST_N_WEEKS": true, "NEXT_N_WEEKS": true, "N_WEEKS_AGO": true,
	"LAST_N_MONTHS": true, "NEXT_N_MONTHS": true, "N_MONTHS_AGO": true,
	"LAST_N_YEARS": true, "NEXT_N_YEARS": true, "N_YEARS_AGO": true,
	"LAST_QUARTER": false, "THIS_QUARTER": false, "NEXT_QUARTER": false,
	"LAST_N_QUARTERS": true, "NEXT_N_QUARTERS": true, "N_QUARTERS_AGO": true,
	// Fiscal literals: the org's fiscal year is the default one, starting in January, so they equal the calendar ones.
	"LAST_FISCAL_QUARTER": false, "THIS_FISCAL_QUARTER": false, "NEXT_FISCAL_QUARTER": false,
	"LAST_N_FISCAL_QUARTERS": true, "NEXT_N_FISCAL_QUARTERS": true, "N_FISCAL_QUARTERS_AGO": true,
	"LAST_FISCAL_YEAR": false, "THIS_FISCAL_YEAR": false, "NEXT_FISCAL_YEAR": false,
	"LAST_N_FISCAL_YEARS": true, "NEXT_N_FISCAL_YEARS": true, "N_FISCAL_YEARS_AGO": true,
}

func (p *parser) parseLiteral() (literal, error) {
	t := p.peek()
	lit := literal{tok: p.pos, text: t.text}
	switch t.kind {
	case tokString:
		lit.kind = litString
		lit.str = t.val
	case tokNumber:
		lit.kind = litNumber
	case tokDate:
		lit.kind = litDate
	case tokDateTime:
		lit.kind = litDateTime
	case tokTime:
		lit.kind = litTime
	case tokIdent:
		upper := strings.ToUpper(t.text)
		switch upper {
		case "NULL":
			lit.kind = litNull
		case "TRUE", "FALSE":
			lit.kind = litBool
			lit.b = upper == "TRUE"
		default:
			takesN, ok := relativeLiterals[upper]
			if !ok {
				return lit, p.unexpected()
			}
			lit.kind = litRelative
			lit.text = upper
			if takesN {
				p.pos++
				if err := p.expectPunct(":"); err != nil {
					return lit, err
				}
				nt := p.peek()
				n, err := strconv.ParseInt(nt.text, 10, 64)
				if nt.kind != tokNumber || (err != nil && !errors.Is(err, strconv.ErrRange)) || n < 0 {
					return lit, p.unexpected()
				}
				if err != nil || n > maxRelativeN {
					// n is bounded so that the range arithmetic in compileRelative and bounds cannot
					// overflow: unbounded, N_DAYS_AGO:200000000000000 wrapped around and matched the
					// wrong rows. Salesforce documents no bound; a 32-bit int is assumed.
					return lit, p.q.caretError(CodeMalformedQuery, p.pos, "invalid value for date literal "+upper+
						": "+nt.text+" is out of range; n must be between 0 and "+strconv.Itoa(maxRelativeN))
				}
				lit.n = int(n)
			}
		}
	default:
		return lit, p.unexpected()
	}
	p.pos++
	return lit, nil
}
