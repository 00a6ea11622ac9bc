package soql

import (
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tokEOF      tokKind = iota
	tokIdent            // Name, Account.Owner.Name, SELECT, LAST_N_DAYS (keywords are recognised by the parser)
	tokString           // 'text' (val holds the decoded text, raw the text between the quotes)
	tokNumber           // 42, -1.5, 1e3
	tokDate             // 2024-01-31
	tokDateTime         // 2024-01-31T10:00:00Z
	tokTime             // 10:00:00.000Z
	tokPunct            // ( ) , : = != <> < > <= >=
)

// token is one lexeme. pos/end are byte offsets into the query so errors can show Salesforce's caret
// excerpt; row/col are 1-based, counted in characters as Salesforce reports them.
type token struct {
	kind     tokKind
	text     string // source text of the token
	val      string // decoded string literal
	pos, end int
	row, col int
}

// lexError is a character the lexer cannot start a token with, or an unterminated literal.
type lexError struct {
	pos     int
	message string
	literal bool // an invalid string literal rather than an unusable character
}

type lexer struct {
	src  string
	pos  int
	row  int
	line int // byte offset where the current row starts
}

func lex(src string) ([]token, *lexError) {
	lx := &lexer{src: src, row: 1}
	toks := make([]token, 0, 32)
	for {
		lx.skipSpace()
		start := lx.pos
		t := token{pos: start, row: lx.row, col: lx.column(start)}
		if lx.pos >= len(src) {
			t.kind = tokEOF
			t.end = start
			toks = append(toks, t)
			return toks, nil
		}
		c := src[lx.pos]
		var err *lexError
		switch {
		case isIdentStart(c):
			t.kind = tokIdent
			lx.scanIdent()
		case c == '\'':
			t.kind = tokString
			t.val, err = lx.scanString()
		case isDigit(c), (c == '-' || c == '+' || c == '.') && lx.pos+1 < len(src) && isDigit(src[lx.pos+1]):
			t.kind, err = lx.scanNumberOrDate()
		case c == '(' || c == ')' || c == ',' || c == ':' || c == '=':
			t.kind = tokPunct
			lx.pos++
		case c == '!':
			if lx.pos+1 < len(src) && src[lx.pos+1] == '=' {
				t.kind = tokPunct
				lx.pos += 2
			} else {
				err = lx.badChar(lx.pos)
			}
		case c == '<':
			t.kind = tokPunct
			lx.pos++
			if lx.pos < len(src) && (src[lx.pos] == '=' || src[lx.pos] == '>') {
				lx.pos++
			}
		case c == '>':
			t.kind = tokPunct
			lx.pos++
			if lx.pos < len(src) && src[lx.pos] == '=' {
				lx.pos++
			}
		default:
			err = lx.badChar(lx.pos)
		}
		if err != nil {
			return toks, err
		}
		t.end = lx.pos
		t.text = src[start:lx.pos]
		toks = append(toks, t)
	}
}

func (lx *lexer) column(pos int) int {
	return utf8.RuneCountInString(lx.src[lx.line:pos]) + 1
}

func (lx *lexer) skipSpace() {
	for lx.pos < len(lx.src) {
		switch lx.src[lx.pos] {
		case '\n':
			lx.pos++
			lx.row++
			lx.line = lx.pos
		case ' ', '\t', '\r', '\f':
			lx.pos++
		default:
			return
		}
	}
}

// badChar reports a character no token starts with, in the words of Salesforce's lexer.
func (lx *lexer) badChar(pos int) *lexError {
	r, _ := utf8.DecodeRuneInString(lx.src[pos:])
	return &lexError{pos: pos, message: "no viable alternative at character '" + string(r) + "'"}
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanIdent reads a name or a dotted path (Account.Owner.Name) as one token: Salesforce reports errors
// in a path at the path's first character.
func (lx *lexer) scanIdent() {
	for {
		for lx.pos < len(lx.src) && isIdentPart(lx.src[lx.pos]) {
			lx.pos++
		}
		if lx.pos+1 < len(lx.src) && lx.src[lx.pos] == '.' && isIdentStart(lx.src[lx.pos+1]) {
			lx.pos++
			continue
		}
		return
	}
}

// scanString reads a quoted literal and decodes SOQL's backslash escapes. \_ and \% are kept escaped
// (as "\_" and "\%") so LIKE can tell a literal underscore from a wildcard; decodeLikeless turns them
// into plain characters for the other operators.
func (lx *lexer) scanString() (string, *lexError) {
	start := lx.pos
	lx.pos++ // opening quote
	var b strings.Builder
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		switch c {
		case '\'':
			lx.pos++
			return b.String(), nil
		case '\\':
			if lx.pos+1 >= len(lx.src) {
				lx.pos++
				continue
			}
			e := lx.src[lx.pos+1]
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case '"', '\'', '\\':
				if e == '\\' {
					b.WriteString(`\\`)
				} else {
					b.WriteByte(e)
				}
			case '_', '%':
				b.WriteByte('\\')
				b.WriteByte(e)
			default:
				return "", &lexError{pos: start, literal: true, message: "Invalid string literal '" + lx.literalText(start) +
					"'. Illegal character sequence '\\" + string(e) + "' in string literal."}
			}
			lx.pos += 2
		case '\n':
			lx.row++
			lx.line = lx.pos + 1
			b.WriteByte(c)
			lx.pos++
		default:
			b.WriteByte(c)
			lx.pos++
		}
	}
	return "", &lexError{pos: len(lx.src), message: "no viable alternative at character '<EOF>'"}
}

// literalText returns the text of the string literal starting at the quote at start, without the
// quotes, for error messages.
func (lx *lexer) literalText(start int) string {
	for p := start + 1; p < len(lx.src); p++ {
		switch lx.src[p] {
		case '\\':
			p++
		case '\'':
			return lx.src[start+1 : p]
		}
	}
	return lx.src[start+1:]
}

// scanNumberOrDate reads a number, or an unquoted date (2024-01-31), datetime (2024-01-31T10:00:00Z)
// or time (10:00:00Z) literal; they all start with digits.
func (lx *lexer) scanNumberOrDate() (tokKind, *lexError) {
	s := lx.src
	p := lx.pos
	if isDigit(s[p]) {
		if n := digitsAt(s, p); n == 4 && p+10 <= len(s) && s[p+4] == '-' && digitsAt(s, p+5) == 2 && s[p+7] == '-' && digitsAt(s, p+8) == 2 {
			lx.pos = p + 10
			if lx.pos < len(s) && s[lx.pos] == 'T' {
				lx.pos++
				if !lx.scanClock() {
					return 0, lx.badChar(min(lx.pos, len(s)-1))
				}
				if !lx.scanZone(true) {
					return 0, lx.zoneError()
				}
				return tokDateTime, nil
			}
			return tokDate, nil
		} else if n == 2 && p+2 < len(s) && s[p+2] == ':' {
			if !lx.scanClock() {
				return 0, lx.badChar(min(lx.pos, len(s)-1))
			}
			if !lx.scanZone(false) {
				return 0, lx.zoneError()
			}
			return tokTime, nil
		}
	}
	if s[p] == '-' || s[p] == '+' {
		p++
	}
	for p < len(s) && isDigit(s[p]) {
		p++
	}
	if p < len(s) && s[p] == '.' {
		p++
		for p < len(s) && isDigit(s[p]) {
			p++
		}
	}
	if p < len(s) && (s[p] == 'e' || s[p] == 'E') {
		q := p + 1
		if q < len(s) && (s[q] == '-' || s[q] == '+') {
			q++
		}
		if q < len(s) && isDigit(s[q]) {
			for q < len(s) && isDigit(s[q]) {
				q++
			}
			p = q
		}
	}
	lx.pos = p
	if p < len(s) && isIdentStart(s[p]) {
		// "12abc" is not a number followed by a name; Salesforce's lexer stops on it.
		return 0, lx.badChar(p)
	}
	return tokNumber, nil
}

func (lx *lexer) zoneError() *lexError {
	if lx.pos >= len(lx.src) {
		return &lexError{pos: len(lx.src), message: "no viable alternative at character '<EOF>'"}
	}
	return lx.badChar(lx.pos)
}

// scanClock reads hh:mm:ss with optional fractional seconds at lx.pos.
func (lx *lexer) scanClock() bool {
	s, p := lx.src, lx.pos
	if digitsAt(s, p) < 2 || p+8 > len(s) || s[p+2] != ':' || digitsAt(s, p+3) != 2 || s[p+5] != ':' || digitsAt(s, p+6) != 2 {
		lx.pos = p
		for lx.pos < len(s) && (isDigit(s[lx.pos]) || s[lx.pos] == ':') {
			lx.pos++
		}
		return false
	}
	if digitsAt(s, p) != 2 {
		return false
	}
	p += 8
	if p < len(s) && s[p] == '.' {
		n := digitsAt(s, p+1)
		if n == 0 {
			lx.pos = p + 1
			return false
		}
		p += 1 + n
	}
	lx.pos = p
	return true
}

// scanZone reads Z, +hh:mm, -hh:mm or +hhmm. Datetimes need a zone; times accept only Z (or none).
func (lx *lexer) scanZone(required bool) bool {
	s, p := lx.src, lx.pos
	if p < len(s) && s[p] == 'Z' {
		lx.pos++
		return true
	}
	if !required {
		return true
	}
	if p < len(s) && (s[p] == '+' || s[p] == '-') {
		if digitsAt(s, p+1) == 2 && p+6 <= len(s) && s[p+3] == ':' && digitsAt(s, p+4) == 2 {
			lx.pos = p + 6
			return true
		}
		if digitsAt(s, p+1) == 4 {
			lx.pos = p + 5
			return true
		}
	}
	return false
}

// digitsAt counts consecutive ASCII digits starting at p.
func digitsAt(s string, p int) int {
	n := 0
	for p+n < len(s) && isDigit(s[p+n]) {
		n++
	}
	return n
}
