package soql

import (
	"unicode"
	"unicode/utf8"
)

// likePattern is a compiled LIKE pattern: % matches any run of characters, _ exactly one, and \% \_
// match themselves. Matching is case-insensitive, as in Salesforce.
type likePattern []likeElem

type likeElem struct {
	kind uint8 // likeRune, likeOne, likeAny
	r    rune  // folded rune for likeRune
}

const (
	likeRune uint8 = iota
	likeOne
	likeAny
)

// compileLike reads the LIKE-escaped form produced by the lexer (see scanString).
func compileLike(s string) likePattern {
	var p likePattern
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '\\' && i < len(s):
			r, size = utf8.DecodeRuneInString(s[i:])
			i += size
			p = append(p, likeElem{kind: likeRune, r: fold(r)})
		case r == '%':
			if len(p) == 0 || p[len(p)-1].kind != likeAny {
				p = append(p, likeElem{kind: likeAny})
			}
		case r == '_':
			p = append(p, likeElem{kind: likeOne})
		default:
			p = append(p, likeElem{kind: likeRune, r: fold(r)})
		}
	}
	return p
}

// fold maps a rune to a canonical case so two runes that are equal under simple case folding map to
// the same value.
func fold(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	return unicode.ToLower(unicode.ToUpper(r))
}

// match reports whether s matches the whole pattern. It backtracks only to the most recent %, which is
// enough for LIKE (a later % can absorb anything an earlier one could), so it runs in O(len(s)·len(p)).
func (p likePattern) match(s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			e := p[pi]
			switch e.kind {
			case likeAny:
				starP, starS = pi, si
				pi++
				continue
			case likeOne:
				_, size := utf8.DecodeRuneInString(s[si:])
				si += size
				pi++
				continue
			default:
				r, size := utf8.DecodeRuneInString(s[si:])
				if fold(r) == e.r {
					si += size
					pi++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last % absorb one more character and retry from there.
		_, size := utf8.DecodeRuneInString(s[starS:])
		starS += size
		si = starS
		pi = starP + 1
	}
	for pi < len(p) && p[pi].kind == likeAny {
		pi++
	}
	return pi == len(p)
}
