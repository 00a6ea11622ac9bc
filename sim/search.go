package sim

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SOSL over REST: GET /search?q=FIND {term} [IN ALL|NAME|EMAIL|PHONE FIELDS] [RETURNING Obj[(fields [WHERE ...]
// [ORDER BY ...] [LIMIT n])], ...] [LIMIT n], answered as {"searchRecords": [...]}. The search is a plain
// token match, not Salesforce's relevance-ranked index: every word of the term (AND, unless joined by OR;
// "quoted phrases" match as a substring; * and ? are wildcards) must match a token of one of the searched
// text fields. Each RETURNING item's field list, WHERE and ORDER BY run as SOQL.

var soslShape = regexp.MustCompile(`(?is)^\s*FIND\s*\{(.*)\}\s*(?:IN\s+(ALL|NAME|EMAIL|PHONE|SIDEBAR)\s+FIELDS\s*)?(?:RETURNING\s+(.*?))?\s*(?:LIMIT\s+(\d+))?\s*$`)

// maxSearchResults is SOSL's overall limit on the records a search returns, and the default LIMIT.
const maxSearchResults = 2000

var soslClause = regexp.MustCompile(`(?i)\b(WHERE|ORDER\s+BY|LIMIT|OFFSET)\b`)

func (c *call) search() {
	if len(c.segs) != 1 {
		c.notFound()
		return
	}
	if c.r.Method != http.MethodGet {
		c.methodNotAllowed("GET,HEAD")
		return
	}
	text := c.r.URL.Query().Get("q")
	m := soslShape.FindStringSubmatch(text)
	if m == nil {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MALFORMED_SEARCH", Message: "No search term found. The search term must be enclosed in braces."})
		return
	}
	term, scope, returning := strings.TrimSpace(m[1]), strings.ToUpper(m[2]), strings.TrimSpace(m[3])
	// SOSL returns at most 2,000 results (API 28.0 and later), whatever LIMIT asks for; a LIMIT too
	// large for an int (Atoi's range error) asks for more than that too.
	limit := maxSearchResults
	if m[4] != "" {
		if n, err := strconv.Atoi(m[4]); err == nil && n < maxSearchResults {
			limit = n
		}
	}
	match, ok := compileSearchTerm(term)
	if !ok {
		writeErrors(c.w, http.StatusBadRequest, APIError{Code: "MALFORMED_SEARCH", Message: "search term must be longer than one character: " + term})
		return
	}
	type item struct {
		obj   *Object
		inner string
	}
	var items []item
	if returning == "" {
		for _, o := range c.s.cat.Objects() {
			if o.Name != "User" {
				items = append(items, item{obj: o, inner: "Id"})
			}
		}
	} else {
		for _, part := range splitTopLevel(returning) {
			name, inner := part, "Id"
			if i := strings.IndexByte(part, '('); i >= 0 && strings.HasSuffix(part, ")") {
				name, inner = strings.TrimSpace(part[:i]), strings.TrimSpace(part[i+1:len(part)-1])
			}
			o := c.s.cat.Object(name)
			if o == nil {
				writeErrors(c.w, http.StatusBadRequest, APIError{Code: "INVALID_TYPE", Message: "sObject type '" + name + "' is not supported."})
				return
			}
			items = append(items, item{obj: o, inner: inner})
		}
	}
	records := []*orderedJSON{}
	for _, it := range items {
		// SELECT <fields> FROM Obj <clauses>, with the item's LIMIT applied after the term filter.
		fields, clauses := it.inner, ""
		if loc := soslClause.FindStringIndex(it.inner); loc != nil {
			fields, clauses = strings.TrimSpace(it.inner[:loc[0]]), it.inner[loc[0]:]
		}
		itemLimit := -1
		if lm := regexp.MustCompile(`(?is)\bLIMIT\s+(\d+)\s*$`).FindStringSubmatchIndex(clauses); lm != nil {
			itemLimit, _ = strconv.Atoi(clauses[lm[2]:lm[3]])
			clauses = clauses[:lm[0]]
		}
		res, err := c.s.runQuery(c.ctx, "SELECT "+fields+" FROM "+it.obj.Name+" "+clauses, false)
		if err != nil {
			c.queryError(err)
			return
		}
		searched := searchFields(it.obj, scope)
		n := 0
		for _, r := range res.rows {
			if len(records) >= limit || (itemLimit >= 0 && n >= itemLimit) {
				break
			}
			var texts []string
			for _, f := range searched {
				if v, ok := r.vals[f.Index].(string); ok && v != "" {
					texts = append(texts, v)
				}
			}
			if match(texts) {
				records = append(records, c.s.queryRecord(c.ctx, res, r, c.version))
				n++
			}
		}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"searchRecords": records})
}

// searchFields are the stored text fields a search scope looks at.
func searchFields(o *Object, scope string) []*Field {
	var out []*Field
	for _, f := range o.Fields {
		if f.Index < 0 {
			continue
		}
		switch scope {
		case "NAME":
			if f.Name == "Name" || strings.HasSuffix(f.Name, "Name") && f.Type == "string" {
				out = append(out, f)
			}
		case "EMAIL":
			if f.Type == "email" {
				out = append(out, f)
			}
		case "PHONE":
			if f.Type == "phone" {
				out = append(out, f)
			}
		default:
			switch f.Type {
			case "string", "textarea", "email", "phone", "url", "picklist", "multipicklist":
				out = append(out, f)
			}
		}
	}
	return out
}

// compileSearchTerm turns a SOSL term into a predicate over a record's searched texts.
func compileSearchTerm(term string) (func([]string) bool, bool) {
	var alternatives [][]func(*searchDoc) bool
	var current []func(*searchDoc) bool
	// A byte that is not UTF-8 (which made the word's regular expression fail to compile, a panic) matches
	// nothing stored (the store holds valid UTF-8), like the replacement character.
	words := searchWords(strings.ToValidUTF8(term, "\uFFFD"))
	if len(words) == 0 {
		return nil, false
	}
	for _, w := range words {
		switch {
		case strings.EqualFold(w, "OR"):
			alternatives = append(alternatives, current)
			current = nil
			continue
		case strings.EqualFold(w, "AND"):
			continue
		}
		if strings.HasPrefix(w, `"`) {
			phrase := strings.ToLower(strings.Trim(w, `"`))
			// A phrase is held to the same two-character minimum as a word: "" (or a lone ") matched
			// every record, since every text contains the empty string, and " " every text with a space.
			if utf8.RuneCountInString(strings.TrimSpace(phrase)) < 2 {
				return nil, false
			}
			current = append(current, func(d *searchDoc) bool {
				for _, t := range d.lower {
					if strings.Contains(t, phrase) {
						return true
					}
				}
				return false
			})
			continue
		}
		if len(strings.Trim(w, "*?")) < 1 || len(w) < 2 {
			return nil, false
		}
		// A word matches a token of a text (also without its surrounding dots) or a whole text, case-
		// insensitively; * and ? are wildcards. Tokens are computed once per record (searchDoc) and
		// words are matched by a set lookup or a linear-time glob, not a regular expression per token:
		// a term of a thousand words over a few thousand records took many seconds that way.
		word := strings.ToLower(w)
		if !strings.ContainsAny(word, "*?") {
			current = append(current, func(d *searchDoc) bool {
				_, ok := d.set[word]
				return ok
			})
			continue
		}
		pattern := []rune(word)
		current = append(current, func(d *searchDoc) bool {
			for _, cand := range d.runes {
				if globMatch(pattern, cand) {
					return true
				}
			}
			return false
		})
	}
	alternatives = append(alternatives, current)
	return func(texts []string) bool {
		d := newSearchDoc(texts)
		for _, all := range alternatives {
			ok := len(all) > 0
			for _, f := range all {
				if !f(d) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}, true
}

// searchWords splits a term into words, keeping "quoted phrases" whole.
func searchWords(term string) []string {
	var out []string
	for i := 0; i < len(term); {
		switch {
		case term[i] == ' ' || term[i] == '\t':
			i++
		case term[i] == '"':
			j := strings.IndexByte(term[i+1:], '"')
			if j < 0 {
				out = append(out, term[i:])
				return out
			}
			out = append(out, term[i:i+j+2])
			i += j + 2
		default:
			j := strings.IndexAny(term[i:], " \t")
			if j < 0 {
				out = append(out, term[i:])
				return out
			}
			out = append(out, term[i:i+j])
			i += j
		}
	}
	return out
}

// splitTopLevel splits a RETURNING list at commas outside parentheses and quotes.
func splitTopLevel(s string) []string {
	var out []string
	depth, start, quoted := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '\\' && quoted:
			i++
		case ch == '\'':
			quoted = !quoted
		case quoted:
		case ch == '(':
			depth++
		case ch == ')':
			depth--
		case ch == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// searchDoc is a record's searched texts prepared once for all the words of a term: the texts in lower
// case, and the set of strings a word may equal (each token, each token without surrounding dots, each
// whole text).
type searchDoc struct {
	lower []string
	set   map[string]struct{}
	runes [][]rune // the members of set, for wildcard words
}

func newSearchDoc(texts []string) *searchDoc {
	d := &searchDoc{set: map[string]struct{}{}}
	for _, t := range texts {
		lt := strings.ToLower(t)
		d.lower = append(d.lower, lt)
		d.set[lt] = struct{}{}
		for _, tok := range strings.FieldsFunc(lt, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '@' && r != '.' }) {
			d.set[tok] = struct{}{}
			d.set[strings.Trim(tok, ".")] = struct{}{}
		}
	}
	for k := range d.set {
		d.runes = append(d.runes, []rune(k))
	}
	return d
}

// globMatch reports whether s matches pattern as a whole, * matching any run of characters and ? one
// character. It backtracks only to the latest *, so it runs in O(len(s)·len(pattern)).
func globMatch(p, str []rune) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && p[pi] == '*':
			starP, starS = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case starP >= 0:
			starS++
			si, pi = starS, starP+1
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
