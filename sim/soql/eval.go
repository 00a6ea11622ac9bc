package soql

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// comparison is one bound WHERE condition. Everything a row is compared with is prepared here at Bind
// time so that evaluating it allocates nothing.
type comparison struct {
	path  Path
	class fieldClass
	op    opKind
	vals  []value
	like  likePattern

	// IN / NOT IN over many text values: folded ASCII keys (ids keyed by their case-sensitive 15-character
	// prefix) for a map lookup; values that cannot be keyed that way stay in vals for a linear scan.
	set     map[string]struct{}
	scan    []value
	hasNull bool

	// INCLUDES / EXCLUDES: each entry is a set of folded values that must all be present ('a;b').
	includes [][]string

	// semi is the subquery of a semi-join (IN) or anti-join (NOT IN) until WithSemiJoins replaces it.
	semi *Query
}

// setThreshold is the IN-list size from which a map beats a linear scan of EqualFold calls.
const setThreshold = 8

// maxKeyLen bounds the stack buffer used to fold a row value into a map key.
const maxKeyLen = 128

func (c *comparison) compileSet() {
	c.scan = c.scan[:0]
	for _, v := range c.vals {
		if v.null {
			c.hasNull = true
		}
	}
	if (c.class != classText && c.class != classID) || len(c.vals) < setThreshold {
		for _, v := range c.vals {
			if !v.null {
				c.scan = append(c.scan, v)
			}
		}
		return
	}
	c.set = make(map[string]struct{}, len(c.vals))
	var buf [maxKeyLen]byte
	for _, v := range c.vals {
		if v.null {
			continue
		}
		if k, ok := c.key(v.str, buf[:0]); ok {
			c.set[string(k)] = struct{}{}
		} else {
			c.scan = append(c.scan, v)
		}
	}
}

// key folds s into buf as a map key: ids by their first 15 characters (which identify the record, case
// sensitively), other text rune by rune through fold, the same folding compareFold uses, so a map hit
// means exactly what a linear scan would. ok is false for text longer than the stack buffer; such
// values take the linear path.
func (c *comparison) key(s string, buf []byte) ([]byte, bool) {
	if c.class == classID {
		if len(s) == 15 || len(s) == 18 {
			return append(buf, s[:15]...), true
		}
		return nil, false
	}
	if len(s) > maxKeyLen {
		return nil, false
	}
	for i := 0; i < len(s); {
		ch := s[i]
		if ch < utf8.RuneSelf {
			if 'A' <= ch && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			buf = append(buf, ch)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		f := fold(r)
		if len(buf)+utf8.RuneLen(f) > maxKeyLen {
			return nil, false
		}
		buf = utf8.AppendRune(buf, f)
	}
	return buf, true
}

func (c *comparison) compileIncludes() {
	for _, v := range c.vals {
		var parts []string
		for _, part := range strings.Split(v.str, ";") {
			if part = strings.TrimSpace(part); part != "" {
				parts = append(parts, part)
			}
		}
		c.includes = append(c.includes, parts)
	}
}

func (e *expr) eval(r Row, now time.Time) bool {
	switch e.kind {
	case exprAnd:
		for _, c := range e.children {
			if !c.eval(r, now) {
				return false
			}
		}
		return true
	case exprOr:
		for _, c := range e.children {
			if c.eval(r, now) {
				return true
			}
		}
		return false
	case exprNot:
		return !e.children[0].eval(r, now)
	}
	return e.cmp.eval(r, now)
}

func (c *comparison) eval(r Row, now time.Time) bool {
	v := resolve(&c.path, r)
	if s, ok := v.(string); ok && s == "" {
		v = nil // empty text is null in Salesforce
	}
	switch c.op {
	case opLike:
		s, ok := v.(string)
		return ok && c.like.match(s)
	case opIncludes:
		s, ok := v.(string)
		return ok && c.includesAny(s)
	case opExcludes:
		s, ok := v.(string)
		return !ok || !c.includesAny(s)
	case opIn:
		return c.in(v, now)
	case opNotIn:
		return !c.in(v, now)
	}
	lit := &c.vals[0]
	if lit.null {
		switch c.op {
		case opEq:
			return v == nil
		case opNe:
			return v != nil
		}
		return false // < null and friends match nothing
	}
	cmp, ok := c.compareTo(v, lit, now)
	switch c.op {
	case opEq:
		return ok && cmp == 0
	case opNe:
		// Unlike SQL, SOQL's != includes rows where the field is null.
		return !ok || cmp != 0
	case opLt:
		return ok && cmp < 0
	case opLe:
		return ok && cmp <= 0
	case opGt:
		return ok && cmp > 0
	case opGe:
		return ok && cmp >= 0
	}
	return false
}

func (c *comparison) in(v any, now time.Time) bool {
	if v == nil {
		return c.hasNull
	}
	if c.set != nil {
		if s, ok := v.(string); ok {
			var buf [maxKeyLen]byte
			if k, ok := c.key(s, buf[:0]); ok {
				if _, hit := c.set[string(k)]; hit {
					return true
				}
			}
		}
	}
	for i := range c.scan {
		if cmp, ok := c.compareTo(v, &c.scan[i], now); ok && cmp == 0 {
			return true
		}
	}
	return false
}

// includesAny reports whether the multipicklist value s (a;b;c) contains every value of at least one
// INCLUDES entry.
func (c *comparison) includesAny(s string) bool {
	for _, want := range c.includes {
		all := len(want) > 0
		for _, w := range want {
			if !multiContains(s, w) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func multiContains(s, want string) bool {
	for s != "" {
		part := s
		if i := strings.IndexByte(s, ';'); i >= 0 {
			part, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if strings.EqualFold(strings.TrimSpace(part), want) {
			return true
		}
	}
	return false
}

// compareTo compares a row value with a compiled literal: -1, 0, +1, and ok=false when the row value is
// null or of an unusable type. For relative date literals 0 means "inside the range", -1 before it and
// +1 after it, so the comparison operators read as Salesforce defines them (= in range, < before the
// range starts, > after it ends).
func (c *comparison) compareTo(v any, lit *value, now time.Time) (int, bool) {
	if v == nil || lit.null {
		return 0, false
	}
	switch c.class {
	case classText, classMulti:
		s, ok := v.(string)
		if !ok {
			return 0, false
		}
		return compareFold(s, lit.str), true
	case classID:
		s, ok := v.(string)
		if !ok {
			return 0, false
		}
		return compareID(s, lit.str), true
	case classBool:
		b, ok := v.(bool)
		if !ok {
			return 0, false
		}
		return compareBool(b, lit.b), true
	case classNumber:
		d, ok := numberOf(v)
		if !ok {
			return 0, false
		}
		return compareDecimal(&d, &lit.num), true
	case classDate, classDateTime, classTime:
		t, ok := v.(time.Time)
		if !ok {
			return 0, false
		}
		if lit.rel != nil {
			// Range bounds are whole-second UTC midnights, so comparing Unix seconds is exact, and a
			// date's midnight compares the same as the date itself.
			start, end := lit.rel.bounds(now)
			switch sec := t.Unix(); {
			case sec < start:
				return -1, true
			case sec >= end:
				return 1, true
			}
			return 0, true
		}
		return c.normalizeTime(t).Compare(lit.t), true
	}
	return 0, false
}

// normalizeTime reduces a stored value to what its type compares on: the UTC day for dates, the time
// of day for times, the instant for datetimes.
func (c *comparison) normalizeTime(t time.Time) time.Time {
	return normalizeTime(c.class, t)
}

func normalizeTime(class fieldClass, t time.Time) time.Time {
	switch class {
	case classDate:
		y, m, d := t.UTC().Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case classTime:
		h, mi, s := t.UTC().Clock()
		return time.Date(0, 1, 1, h, mi, s, t.Nanosecond(), time.UTC)
	}
	return t
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// numberOf reads a numeric row value. The store hands out json.Number; plain Go numbers and numeric
// strings are accepted too so a loosely typed row still compares correctly.
func numberOf(v any) (decimal, bool) {
	switch n := v.(type) {
	case json.Number:
		return parseDecimal(string(n))
	case string:
		return parseDecimal(n)
	case int:
		return parseDecimal(strconv.Itoa(n))
	case int64:
		return parseDecimal(strconv.FormatInt(n, 10))
	case float64:
		return parseDecimal(strconv.FormatFloat(n, 'g', -1, 64))
	}
	return decimal{}, false
}

// compareID compares record ids. The first 15 characters identify a record case-sensitively (the
// 18-character form only adds a case checksum), so a 15-character literal matches its 18-character id.
func compareID(a, b string) int {
	if (len(a) == 15 || len(a) == 18) && (len(b) == 15 || len(b) == 18) {
		return strings.Compare(a[:15], b[:15])
	}
	return compareFold(a, b)
}

// compareFold compares two strings case-insensitively, rune by rune, without allocating.
func compareFold(a, b string) int {
	for a != "" && b != "" {
		var ra, rb rune
		if a[0] < utf8.RuneSelf {
			ra, a = rune(a[0]), a[1:]
		} else {
			r, size := utf8.DecodeRuneInString(a)
			ra, a = r, a[size:]
		}
		if b[0] < utf8.RuneSelf {
			rb, b = rune(b[0]), b[1:]
		} else {
			r, size := utf8.DecodeRuneInString(b)
			rb, b = r, b[size:]
		}
		if ra == rb {
			continue
		}
		fa, fb := fold(ra), fold(rb)
		if fa != fb {
			if fa < fb {
				return -1
			}
			return 1
		}
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

// orderKey is one bound ORDER BY item.
type orderKey struct {
	path       Path
	class      fieldClass
	desc       bool
	nullsFirst bool
}

func (k *orderKey) compare(a, b Row) int {
	va, vb := resolve(&k.path, a), resolve(&k.path, b)
	na, nb := isNull(va), isNull(vb)
	switch {
	case na && nb:
		return 0
	case na:
		if k.nullsFirst {
			return -1
		}
		return 1
	case nb:
		if k.nullsFirst {
			return 1
		}
		return -1
	}
	c := compareValues(k.class, va, vb)
	if k.desc {
		return -c
	}
	return c
}

func isNull(v any) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && s == ""
}

// compareValues orders two non-null row values of the same field. Values of an unexpected Go type sort
// after well-typed ones so the order stays total.
func compareValues(class fieldClass, a, b any) int {
	switch class {
	case classBool:
		x, okx := a.(bool)
		y, oky := b.(bool)
		if okx && oky {
			return compareBool(x, y)
		}
		return compareOK(okx, oky)
	case classNumber:
		x, okx := numberOf(a)
		y, oky := numberOf(b)
		if okx && oky {
			return compareDecimal(&x, &y)
		}
		return compareOK(okx, oky)
	case classDate, classDateTime, classTime:
		x, okx := a.(time.Time)
		y, oky := b.(time.Time)
		if okx && oky {
			return normalizeTime(class, x).Compare(normalizeTime(class, y))
		}
		return compareOK(okx, oky)
	}
	x, okx := a.(string)
	y, oky := b.(string)
	if okx && oky {
		if class == classID {
			return strings.Compare(x, y)
		}
		return compareFold(x, y)
	}
	return compareOK(okx, oky)
}

func compareOK(okx, oky bool) int {
	switch {
	case okx == oky:
		return 0
	case okx:
		return -1
	}
	return 1
}
