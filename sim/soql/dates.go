package soql

import (
	"strings"
	"time"
)

// parseDateLiteral reads YYYY-MM-DD (already shape-checked by the lexer) as UTC midnight.
func parseDateLiteral(s string) (time.Time, bool) {
	y, m, d := atoi(s[0:4]), atoi(s[5:7]), atoi(s[8:10])
	return makeDate(y, m, d)
}

func makeDate(y, m, d int) (time.Time, bool) {
	if m < 1 || m > 12 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d { // 2024-02-30 would roll over
		return time.Time{}, false
	}
	return t, true
}

// parseDateTimeLiteral reads YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm|±hhmm) and returns the instant in UTC.
func parseDateTimeLiteral(s string) (time.Time, bool) {
	day, ok := parseDateLiteral(s[:10])
	if !ok {
		return time.Time{}, false
	}
	clock, rest, ok := parseClock(s[11:])
	if !ok {
		return time.Time{}, false
	}
	var offset time.Duration
	switch {
	case rest == "Z":
	case len(rest) == 6 && rest[3] == ':':
		offset = time.Duration(atoi(rest[1:3]))*time.Hour + time.Duration(atoi(rest[4:6]))*time.Minute
	case len(rest) == 5:
		offset = time.Duration(atoi(rest[1:3]))*time.Hour + time.Duration(atoi(rest[3:5]))*time.Minute
	default:
		return time.Time{}, false
	}
	if rest[0] == '-' {
		offset = -offset
	}
	return day.Add(clock - offset), true
}

// parseTimeLiteral reads hh:mm:ss[.fff][Z] as a time of day on 0000-01-01 UTC, the form Row uses.
func parseTimeLiteral(s string) (time.Time, bool) {
	clock, rest, ok := parseClock(s)
	if !ok || (rest != "" && rest != "Z") {
		return time.Time{}, false
	}
	return time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Add(clock), true
}

// parseClock reads hh:mm:ss[.fraction] and returns it as a duration and the text after it.
func parseClock(s string) (time.Duration, string, bool) {
	h, m, sec := atoi(s[0:2]), atoi(s[3:5]), atoi(s[6:8])
	if h > 23 || m > 59 || sec > 59 {
		return 0, "", false
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second
	p := 8
	if p < len(s) && s[p] == '.' {
		p++
		scale := time.Duration(100 * time.Millisecond)
		for p < len(s) && isDigit(s[p]) {
			d += time.Duration(s[p]-'0') * scale
			scale /= 10
			p++
		}
	}
	return d, s[p:], true
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// relative is a compiled relative date literal: a [start, end) range of whole UTC days computed from now.
type relative struct {
	unit  relUnit
	from  int64 // offset of the range start, in units, from the current unit (today, this week, ...)
	count int64 // length of the range in units
}

type relUnit uint8

const (
	unitDay relUnit = iota
	unitWeek
	unitMonth
	unitYear
	unitQuarter
)

// compileRelative turns a literal such as LAST_N_DAYS:7 into a range relative to the current day,
// week (starting Sunday, the en_US locale), month or year, following Salesforce's definitions:
// LAST_N_DAYS:n covers today and the n days before it; NEXT_N_DAYS:n starts tomorrow and covers n days;
// N_DAYS_AGO:n is the single day n days ago; LAST_90_DAYS is LAST_N_DAYS:90.
// n is at most maxRelativeN (the parser refuses more), so no offset below overflows: the largest,
// 3·n months for N_QUARTERS_AGO:n or n·7·86400 seconds for weeks, stays far inside int64.
func compileRelative(name string, n int) relative {
	n64 := int64(n)
	// The default fiscal year starts in January: fiscal quarters and years are calendar ones.
	name = strings.Replace(name, "FISCAL_", "", 1)
	switch name {
	case "LAST_QUARTER":
		return relative{unitQuarter, -1, 1}
	case "THIS_QUARTER":
		return relative{unitQuarter, 0, 1}
	case "NEXT_QUARTER":
		return relative{unitQuarter, 1, 1}
	case "LAST_N_QUARTERS":
		return relative{unitQuarter, -n64, n64}
	case "NEXT_N_QUARTERS":
		return relative{unitQuarter, 1, n64}
	case "N_QUARTERS_AGO":
		return relative{unitQuarter, -n64, 1}
	case "YESTERDAY":
		return relative{unitDay, -1, 1}
	case "TODAY":
		return relative{unitDay, 0, 1}
	case "TOMORROW":
		return relative{unitDay, 1, 1}
	case "LAST_WEEK":
		return relative{unitWeek, -1, 1}
	case "THIS_WEEK":
		return relative{unitWeek, 0, 1}
	case "NEXT_WEEK":
		return relative{unitWeek, 1, 1}
	case "LAST_MONTH":
		return relative{unitMonth, -1, 1}
	case "THIS_MONTH":
		return relative{unitMonth, 0, 1}
	case "NEXT_MONTH":
		return relative{unitMonth, 1, 1}
	case "LAST_YEAR":
		return relative{unitYear, -1, 1}
	case "THIS_YEAR":
		return relative{unitYear, 0, 1}
	case "NEXT_YEAR":
		return relative{unitYear, 1, 1}
	case "LAST_90_DAYS":
		return relative{unitDay, -90, 91}
	case "NEXT_90_DAYS":
		return relative{unitDay, 1, 90}
	case "LAST_N_DAYS":
		return relative{unitDay, -n64, n64 + 1}
	case "NEXT_N_DAYS":
		return relative{unitDay, 1, n64}
	case "N_DAYS_AGO":
		return relative{unitDay, -n64, 1}
	case "N_DAYS_FROM_NOW":
		return relative{unitDay, n64, 1}
	case "LAST_N_WEEKS":
		return relative{unitWeek, -n64, n64}
	case "NEXT_N_WEEKS":
		return relative{unitWeek, 1, n64}
	case "N_WEEKS_AGO":
		return relative{unitWeek, -n64, 1}
	case "LAST_N_MONTHS":
		return relative{unitMonth, -n64, n64}
	case "NEXT_N_MONTHS":
		return relative{unitMonth, 1, n64}
	case "N_MONTHS_AGO":
		return relative{unitMonth, -n64, 1}
	case "LAST_N_YEARS":
		return relative{unitYear, -n64, n64}
	case "NEXT_N_YEARS":
		return relative{unitYear, 1, n64}
	case "N_YEARS_AGO":
		return relative{unitYear, -n64, 1}
	}
	panic("soql: relative literal missing from compileRelative: " + name)
}

// bounds returns the [start, end) of the range for the given now, as Unix seconds (both are UTC
// midnights). Days and weeks are plain integer arithmetic on the day number so evaluating TODAY or
// LAST_N_DAYS:n per row stays cheap; months and years go through the calendar.
func (r relative) bounds(now time.Time) (start, end int64) {
	const daySeconds = 24 * 60 * 60
	days := floorDiv(now.Unix(), daySeconds)
	switch r.unit {
	case unitDay:
		return (days + r.from) * daySeconds, (days + r.from + r.count) * daySeconds
	case unitWeek:
		// 1970-01-01 was a Thursday; weeks start on Sunday (the en_US locale).
		sunday := days - (days+4)%7
		if (days+4)%7 < 0 {
			sunday -= 7
		}
		return (sunday + 7*r.from) * daySeconds, (sunday + 7*(r.from+r.count)) * daySeconds
	}
	y, m, _ := now.UTC().Date()
	var s, e time.Time
	if r.unit == unitQuarter {
		q := time.Month((int(m)-1)/3*3 + 1)
		s = time.Date(y, q+time.Month(3*r.from), 1, 0, 0, 0, 0, time.UTC)
		e = time.Date(y, q+time.Month(3*(r.from+r.count)), 1, 0, 0, 0, 0, time.UTC)
	} else if r.unit == unitMonth {
		s = time.Date(y, m+time.Month(r.from), 1, 0, 0, 0, 0, time.UTC)
		e = time.Date(y, m+time.Month(r.from+r.count), 1, 0, 0, 0, 0, time.UTC)
	} else {
		s = time.Date(y+int(r.from), 1, 1, 0, 0, 0, 0, time.UTC)
		e = time.Date(y+int(r.from+r.count), 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return s.Unix(), e.Unix()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
