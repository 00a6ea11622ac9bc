package sim

import (
	"strings"
	"sync/atomic"
)

// Salesforce record ids are 15 case-sensitive base-62 characters: a 3-character key prefix naming the object,
// then an instance/reserved part and a counter. The 18-character form appends 3 characters that encode which
// of the first 15 are upper case, so that the id survives case-insensitive systems. Clients send either form;
// the API always answers with 18.

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const suffixAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

// idGen hands out ids for one key prefix. The middle "R00" mimics the pod part of real ids; the counter fills
// the 9 characters after it, which is room for 62^9 records per prefix.
type idGen struct {
	prefix string
	n      atomic.Uint64
}

func (g *idGen) next() string {
	v := g.n.Add(1)
	var b [15]byte
	copy(b[:], g.prefix)
	b[3], b[4], b[5] = 'R', '0', '0'
	for i := 14; i >= 6; i-- {
		b[i] = base62[v%62]
		v /= 62
	}
	return to18(string(b[:]))
}

// to18 appends the case-safe suffix to a 15-character id.
func to18(id15 string) string {
	var b [18]byte
	copy(b[:], id15)
	for chunk := 0; chunk < 3; chunk++ {
		flags := 0
		for i := 0; i < 5; i++ {
			c := id15[chunk*5+i]
			if c >= 'A' && c <= 'Z' {
				flags |= 1 << i
			}
		}
		b[15+chunk] = suffixAlphabet[flags]
	}
	return string(b[:])
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}

// normalizeID turns a 15- or 18-character id into the canonical 18-character form. An 18-character id is
// case-insensitive: its suffix says which letters are upper case, so "001r00000000001aaa" and
// "001R00000000001AAA" name the same record. ok is false for anything that is not a well-formed id.
func normalizeID(s string) (string, bool) {
	switch len(s) {
	case 15:
		for i := 0; i < 15; i++ {
			if !isAlnum(s[i]) {
				return "", false
			}
		}
		return to18(s), true
	case 18:
		var b [15]byte
		for chunk := 0; chunk < 3; chunk++ {
			flags := strings.IndexByte(suffixAlphabet, upper(s[15+chunk]))
			if flags < 0 {
				return "", false
			}
			for i := 0; i < 5; i++ {
				c := s[chunk*5+i]
				if !isAlnum(c) {
					return "", false
				}
				if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
					if flags&(1<<i) != 0 {
						c = upper(c)
					} else {
						c = lower(c)
					}
				}
				b[chunk*5+i] = c
			}
		}
		return to18(string(b[:])), true
	}
	return "", false
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c - 'A' + 'a'
	}
	return c
}
