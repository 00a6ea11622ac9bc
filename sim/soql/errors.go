package soql

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Salesforce shows a window of the query around the offending token: up to four tokens either side,
// all on the offending row (observed: "\nProductCode from Product2 where ProductCode = 3999\n" for an
// error at the second ProductCode of "select Id, ProductCode from Product2 where ProductCode = 3999").
const excerptTokens = 4

// caretError builds Salesforce's message layout:
//
//	"\n<excerpt>\n<spaces>^\nERROR at Row:<r>:Column:<c>\n<detail>"
func (q *Query) caretError(code string, tokIdx int, detail string) *Error {
	t := q.toks[tokIdx]
	return &Error{Code: code, Message: q.caretAt(tokIdx, t.pos, t.row, t.col) + detail}
}

// caretAt renders the excerpt for an error at byte offset pos (row/col 1-based) near token tokIdx.
func (q *Query) caretAt(tokIdx, pos, row, col int) string {
	first, last := tokIdx, tokIdx
	for i := tokIdx - 1; i >= 0 && tokIdx-i <= excerptTokens && q.toks[i].row == row; i-- {
		first = i
	}
	for i := tokIdx + 1; i < len(q.toks) && i-tokIdx <= excerptTokens && q.toks[i].kind != tokEOF && q.toks[i].row == q.toks[tokIdx].row; i++ {
		last = i
	}
	start, end := q.toks[first].pos, q.toks[last].end
	if start > pos {
		start = pos
	}
	if end < pos {
		end = pos
	}
	// A token that spans lines (a string literal with a newline) is cut at the line end.
	excerpt := q.src[start:end]
	if i := strings.IndexByte(excerpt, '\n'); i >= 0 && start+i >= pos {
		excerpt = excerpt[:i]
	}
	var b strings.Builder
	b.WriteByte('\n')
	b.WriteString(excerpt)
	b.WriteByte('\n')
	b.WriteString(strings.Repeat(" ", utf8.RuneCountInString(q.src[start:pos])))
	b.WriteString("^\nERROR at Row:")
	b.WriteString(strconv.Itoa(row))
	b.WriteString(":Column:")
	b.WriteString(strconv.Itoa(col))
	b.WriteByte('\n')
	return b.String()
}

// unexpectedToken is the parser's MALFORMED_QUERY: "unexpected token: 'FORM'".
func (q *Query) unexpectedToken(tokIdx int) *Error {
	t := q.toks[tokIdx]
	text := t.text
	if t.kind == tokEOF {
		text = "<EOF>"
	}
	return q.caretError(CodeMalformedQuery, tokIdx, "unexpected token: '"+text+"'")
}

// lexFailure reports text the lexer could not turn into a token. Salesforce's lexer (ANTLR) reports
// the 0-based character position of the failure, prints it as the column and draws the caret one
// character to the left (observed: a query of 75 characters ending in an incomplete datetime gives
// "ERROR at Row:1:Column:75\nline 1:75 no viable alternative at character '<EOF>'" with the caret under
// the last character). We reproduce that layout. Invalid escapes in a string literal are reported at
// the literal, with normal 1-based columns.
func (q *Query) lexFailure(le *lexError) *Error {
	row, line := 1, 0
	for i := 0; i < le.pos && i < len(q.src); i++ {
		if q.src[i] == '\n' {
			row++
			line = i + 1
		}
	}
	col := utf8.RuneCountInString(q.src[line:le.pos])
	caret := le.pos
	detail := "line " + strconv.Itoa(row) + ":" + strconv.Itoa(col) + " " + le.message
	if le.literal {
		col++
		detail = le.message
	} else if caret > line {
		_, size := utf8.DecodeLastRuneInString(q.src[line:caret])
		caret -= size
	}
	// Tokens read before the failure give the excerpt its context; the failure acts as the last token.
	q.toks = append(q.toks, token{kind: tokEOF, pos: le.pos, end: le.pos, row: row, col: col})
	return &Error{Code: CodeMalformedQuery, Message: q.caretAt(len(q.toks)-1, caret, row, col) + detail}
}

func noSuchColumn(field, object string) string {
	return "No such column '" + field + "' on entity '" + object + "'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
}

func badRelationship(rel string) string {
	return "Didn't understand relationship '" + rel + "' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
}

func unsupportedType(object string) string {
	return "sObject type '" + object + "' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
}
