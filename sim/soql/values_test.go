package soql

import (
	"fmt"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecimalComparesExactly(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		want int
	}{
		{"1", "1", 0},
		{"1", "1.0", 0},
		{"1.000", "1", 0},
		{"0", "-0", 0},
		{"0.0", "0e10", 0},
		{"1e3", "1000", 0},
		{"1E+3", "999.9999", 1},
		{"12.5e-1", "1.25", 0},
		{"-1", "1", -1},
		{"-2", "-1", -1},
		{"-1.5", "-1.50001", 1},
		{"0.1", "0.10000000000000001", -1}, // float64 would call these equal
		{"9007199254740993", "9007199254740992", 1},
		{"123456789012345678901234567890", "123456789012345678901234567891", -1},
		{"0.000123", "1.23e-4", 0},
		{"0.000123", "0.00012", 1},
		{"100", "99", 1},
		{"007", "7", 0},
		{".5", "0.5", 0},
		{"5.", "5", 0},
		{"+5", "5", 0},
		{"1e-999999999999", "0", 1},
		{"1e999999999999", "1e999999999998", 1},
	}
	for _, tc := range cases {
		t.Run(tc.a+" vs "+tc.b, func(t *testing.T) {
			t.Parallel()
			a, ok := parseDecimal(tc.a)
			require.True(t, ok)
			b, ok := parseDecimal(tc.b)
			require.True(t, ok)
			require.Equal(t, tc.want, compareDecimal(&a, &b))
			require.Equal(t, -tc.want, compareDecimal(&b, &a))
		})
	}
}

func TestDecimalAgreesWithBigRat(t *testing.T) {
	t.Parallel()
	values := []string{"0", "-0.0", "1", "-1", "0.5", "-0.25", "3.14159", "1e2", "1.5e-3", "-7e1", "100.000", "0.0015",
		"-0.0015", "99999999999999999999", "2.5E+1", "25", "-70"}
	for _, x := range values {
		for _, y := range values {
			rx, _ := new(big.Rat).SetString(x)
			ry, _ := new(big.Rat).SetString(y)
			a, _ := parseDecimal(x)
			b, _ := parseDecimal(y)
			require.Equal(t, rx.Cmp(ry), compareDecimal(&a, &b), "%s vs %s", x, y)
		}
	}
}

func TestDecimalRejectsNonNumbers(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "-", ".", "e5", "1e", "1e+", "1.2.3", "abc", "1,5", "0x10", " 1", "NaN", "Infinity"} {
		_, ok := parseDecimal(s)
		require.False(t, ok, "%q", s)
	}
}

func TestLikePatterns(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, text string
		want          bool
	}{
		{"abc", "ABC", true},
		{"abc", "abcd", false},
		{"a%", "a", true},
		{"%", "", true},
		{"%a%b%c%", "xxaxxbxxcxx", true},
		{"%a%b%c%", "xxaxxcxxbxx", false},
		{"a_c", "abc", true},
		{"a_c", "ac", false},
		{"_", "é", true},
		{"%é%", "CAFÉ", true},
		{"%ß", "STRASSß", true},
		{"%%%x", "aaax", true},
		{"%aab", "aaaab", true},
		{`a\%`, "a%", true},
		{`a\%`, "ab", false},
		{`a\_b`, "a_b", true},
		{`a\_b`, "axb", false},
		{`a\\b`, `a\b`, true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s~%s", tc.pattern, tc.text), func(t *testing.T) {
			t.Parallel()
			// Patterns arrive from the lexer, which keeps \_ \% \\ escaped.
			toks, err := lex("'" + tc.pattern + "'")
			require.Nil(t, err)
			require.Equal(t, tc.want, compileLike(toks[0].val).match(tc.text))
		})
	}
}

func TestCompareFoldOrdersCaseInsensitively(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, compareFold("Straße", "STRAßE"))
	require.Equal(t, -1, compareFold("apple", "Banana"))
	require.Equal(t, 1, compareFold("b", "A"))
	require.Equal(t, -1, compareFold("abc", "abcd"))
	require.Equal(t, 1, compareFold("Ábc", "abc"))
	require.Equal(t, 0, compareFold("", ""))
}

func TestDateLiteralParsing(t *testing.T) {
	t.Parallel()
	dt, ok := parseDateTimeLiteral("2024-01-31T10:00:00.5+05:30")
	require.True(t, ok)
	require.Equal(t, instant("2024-01-31T04:30:00.5Z"), dt)
	_, ok = parseDateTimeLiteral("2024-01-31T24:00:00Z")
	require.False(t, ok)
	_, ok = parseDateLiteral("2023-02-29")
	require.False(t, ok)
	d, ok := parseDateLiteral("2024-02-29")
	require.True(t, ok)
	require.Equal(t, day("2024-02-29"), d)
	tm, ok := parseTimeLiteral("23:59:59.125Z")
	require.True(t, ok)
	require.Equal(t, 125000000, tm.Nanosecond())
}
