package soql

// decimal is a view of a decimal number's text (json.Number or a SOQL numeric literal) that compares
// exactly without converting to float64 and without allocating: the value is
// sign × 0.d₁d₂d₃… × 10^point, where the digits are read in place from two ranges of the text (the
// integer part and the fraction part, leading zeros removed).
type decimal struct {
	s      string
	neg    bool
	zero   bool
	aStart int // first significant digit range (integer part)
	aEnd   int
	bStart int // second range (fraction part)
	bEnd   int
	point  int64 // decimal exponent of the digit string as a fraction 0.ddd
}

const maxExponent = 1 << 40 // far beyond any real value; keeps exponent arithmetic from overflowing

// parseDecimal reads [+-]digits[.digits][(e|E)[+-]digits]. ok is false for anything else.
func parseDecimal(s string) (d decimal, ok bool) {
	d.s = s
	p := 0
	if p < len(s) && (s[p] == '-' || s[p] == '+') {
		d.neg = s[p] == '-'
		p++
	}
	intStart := p
	for p < len(s) && isDigit(s[p]) {
		p++
	}
	intEnd := p
	fracStart, fracEnd := p, p
	if p < len(s) && s[p] == '.' {
		p++
		fracStart = p
		for p < len(s) && isDigit(s[p]) {
			p++
		}
		fracEnd = p
	}
	if intEnd == intStart && fracEnd == fracStart {
		return d, false
	}
	var exp int64
	if p < len(s) && (s[p] == 'e' || s[p] == 'E') {
		p++
		eneg := false
		if p < len(s) && (s[p] == '-' || s[p] == '+') {
			eneg = s[p] == '-'
			p++
		}
		if p == len(s) {
			return d, false
		}
		for p < len(s) && isDigit(s[p]) {
			if exp < maxExponent {
				exp = exp*10 + int64(s[p]-'0')
			}
			p++
		}
		if eneg {
			exp = -exp
		}
	}
	if p != len(s) {
		return d, false
	}
	// Strip leading zeros of the integer part.
	for intStart < intEnd && s[intStart] == '0' {
		intStart++
	}
	if intStart < intEnd {
		d.aStart, d.aEnd = intStart, intEnd
		d.bStart, d.bEnd = fracStart, fracEnd
		d.point = int64(intEnd-intStart) + exp
	} else {
		// 0.000123: the point moves left past the fraction's leading zeros.
		z := fracStart
		for z < fracEnd && s[z] == '0' {
			z++
		}
		d.aStart, d.aEnd = z, fracEnd
		d.bStart, d.bEnd = fracEnd, fracEnd
		d.point = -int64(z-fracStart) + exp
	}
	d.zero = true
	for i := d.aStart; i < d.aEnd; i++ {
		if d.s[i] != '0' {
			d.zero = false
			break
		}
	}
	if d.zero {
		for i := d.bStart; i < d.bEnd; i++ {
			if d.s[i] != '0' {
				d.zero = false
				break
			}
		}
	}
	return d, true
}

func (d *decimal) ndigits() int { return (d.aEnd - d.aStart) + (d.bEnd - d.bStart) }

func (d *decimal) digit(i int) byte {
	if n := d.aEnd - d.aStart; i < n {
		return d.s[d.aStart+i]
	} else if i-n < d.bEnd-d.bStart {
		return d.s[d.bStart+i-n]
	}
	return '0'
}

// compareDecimal returns -1, 0 or +1 as a is less than, equal to or greater than b.
func compareDecimal(a, b *decimal) int {
	as, bs := a.sign(), b.sign()
	if as != bs {
		if as < bs {
			return -1
		}
		return 1
	}
	if as == 0 {
		return 0
	}
	c := compareMagnitude(a, b)
	if as < 0 {
		return -c
	}
	return c
}

func (d *decimal) sign() int {
	switch {
	case d.zero:
		return 0
	case d.neg:
		return -1
	}
	return 1
}

// compareMagnitude compares two non-zero magnitudes. Both digit strings start with a non-zero digit
// (leading zeros were stripped), so the larger point wins, and equal points compare digit by digit.
func compareMagnitude(a, b *decimal) int {
	if a.point != b.point {
		if a.point < b.point {
			return -1
		}
		return 1
	}
	n := max(a.ndigits(), b.ndigits())
	for i := 0; i < n; i++ {
		da, db := a.digit(i), b.digit(i)
		if da != db {
			if da < db {
				return -1
			}
			return 1
		}
	}
	return 0
}
