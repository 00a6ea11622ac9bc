package sim

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Stored values follow the soql.Row contract: nil, string, bool, json.Number (exact decimal text, never a
// float64, so currency survives a round trip digit for digit) or time.Time in UTC.

const (
	restDateTime = "2006-01-02T15:04:05.000-0700"
	isoDateTime  = "2006-01-02T15:04:05.000Z"
	dateLayout   = "2006-01-02"
	timeLayout   = "15:04:05.000Z"
)

// valueError is a value that does not fit its field; the API turns it into JSON_PARSER_ERROR (REST) or
// INVALID_TYPE_ON_FIELD_IN_RECORD (Bulk).
type valueError struct{ msg string }

func (e *valueError) Error() string { return e.msg }

func badValue(f *Field, v any) error {
	return &valueError{fmt.Sprintf("Cannot deserialize instance of %s from %s value %v or request may be missing a required field", soapName(f.Type), jsonKind(v), v)}
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "VALUE_STRING"
	case bool:
		return "VALUE_TRUE"
	case json.Number:
		return "VALUE_NUMBER_INT"
	case map[string]any:
		return "START_OBJECT"
	case []any:
		return "START_ARRAY"
	}
	return "VALUE_NULL"
}

func soapName(typ string) string {
	switch typ {
	case "boolean":
		return "boolean"
	case "int":
		return "int"
	case "double", "currency", "percent":
		return "double"
	case "date":
		return "date"
	case "datetime":
		return "datetime"
	case "time":
		return "time"
	}
	return "string"
}

// convertJSON turns a value decoded from a JSON request (with UseNumber) into the stored form of field f.
func convertJSON(f *Field, v any) (any, error) {
	switch t := v.(type) {
	case int:
		v = json.Number(strconv.Itoa(t))
	case int64:
		v = json.Number(strconv.FormatInt(t, 10))
	case float64:
		v = json.Number(strconv.FormatFloat(t, 'f', -1, 64))
	case time.Time:
		if f.Type == "date" || f.Type == "datetime" || f.Type == "time" {
			return parseTemporal(f, t.UTC().Format(time.RFC3339Nano))
		}
		v = t.UTC().Format(time.RFC3339)
	}
	if v == nil {
		if f.Type == "boolean" {
			return false, nil
		}
		return nil, nil
	}
	switch f.Type {
	case "boolean":
		switch t := v.(type) {
		case bool:
			return t, nil
		case string:
			return parseBool(f, t)
		}
		return nil, badValue(f, v)
	case "int", "double", "currency", "percent":
		switch t := v.(type) {
		case json.Number:
			return parseNumber(f, string(t))
		case string:
			if strings.TrimSpace(t) == "" {
				return nil, nil
			}
			return parseNumber(f, t)
		}
		return nil, badValue(f, v)
	case "date", "datetime", "time":
		s, ok := v.(string)
		if !ok {
			return nil, badValue(f, v)
		}
		return parseTemporal(f, s)
	}
	switch t := v.(type) {
	case string:
		return parseText(f, t)
	case json.Number:
		return parseText(f, string(t))
	case bool:
		return parseText(f, strconv.FormatBool(t))
	}
	return nil, badValue(f, v)
}

// convertText turns a CSV cell (Bulk API) into the stored form of field f.
func convertText(f *Field, s string) (any, error) {
	switch f.Type {
	case "boolean":
		if s == "" {
			return false, nil
		}
		return parseBool(f, s)
	case "int", "double", "currency", "percent":
		if s == "" {
			return nil, nil
		}
		return parseNumber(f, s)
	case "date", "datetime", "time":
		if s == "" {
			return nil, nil
		}
		return parseTemporal(f, s)
	}
	return parseText(f, s)
}

func parseText(f *Field, s string) (any, error) {
	if s == "" {
		return nil, nil // Salesforce stores an empty text as null
	}
	if f.Type == "reference" || f.Type == "id" {
		return s, nil // checked against the store by the caller
	}
	return s, nil
}

func parseBool(f *Field, s string) (any, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return nil, &valueError{fmt.Sprintf("%s: value not of required type: %s", f.Label, s)}
}

var plainDecimal = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)$`)

// parseNumber validates and normalises a decimal, keeping its exact digits.
func parseNumber(f *Field, s string) (any, error) {
	s = strings.TrimSpace(s)
	if !plainDecimal.MatchString(s) {
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return nil, &valueError{fmt.Sprintf("%s: value not of required type: %s", f.Label, s)}
		}
		s = ratText(r)
	}
	s = strings.TrimPrefix(s, "+")
	if strings.HasPrefix(s, ".") {
		s = "0" + s
	} else if strings.HasPrefix(s, "-.") {
		s = "-0" + s[1:]
	}
	s = strings.TrimSuffix(s, ".")
	if f.Type == "int" {
		if i := strings.IndexByte(s, '.'); i >= 0 {
			if strings.Trim(s[i+1:], "0") != "" {
				return nil, &valueError{fmt.Sprintf("%s: value not of required type: %s", f.Label, s)}
			}
			s = s[:i]
		}
	}
	if f.Precision > 0 {
		digits := strings.TrimLeft(strings.TrimPrefix(s, "-"), "0")
		if i := strings.IndexByte(digits, '.'); i >= 0 {
			digits = digits[:i]
		}
		if len(digits) > f.Precision-f.Scale && f.Precision-f.Scale > 0 {
			return nil, &fieldError{code: "NUMBER_OUTSIDE_VALID_RANGE", msg: fmt.Sprintf("%s: value outside of valid range on numeric field: %s", f.Label, s), field: f.Name}
		}
	}
	return json.Number(s), nil
}

func ratText(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	s := r.FloatString(20)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

var dateTimeLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02 15:04:05",
	"2006-01-02",
}

func parseTemporal(f *Field, s string) (any, error) {
	s = strings.TrimSpace(s)
	switch f.Type {
	case "date":
		if len(s) > 10 && s[10] == 'T' {
			s = s[:10]
		}
		t, err := time.Parse(dateLayout, s)
		if err != nil {
			return nil, &valueError{fmt.Sprintf("%s: value not of required type: %s", f.Label, s)}
		}
		return t, nil
	case "time":
		for _, l := range []string{"15:04:05.999Z07:00", "15:04:05.999", "15:04:05Z", "15:04"} {
			if t, err := time.Parse(l, s); err == nil {
				return time.Date(0, 1, 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6*1e6, time.UTC), nil
			}
		}
		return nil, &valueError{fmt.Sprintf("%s: value not of required type: %s", f.Label, s)}
	}
	for _, l := range dateTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC().Truncate(time.Millisecond), nil
		}
	}
	return nil, &valueError{fmt.Sprintf("%s: value not of required type: %s", f.Label, s)}
}

// jsonValue renders a stored value for a REST answer.
func jsonValue(f *Field, v any) any { return timeValue(f, v, restDateTime) }

// eventValue renders a stored value for a change event (datetimes end in Z there).
func eventValue(f *Field, v any) any { return timeValue(f, v, isoDateTime) }

// timeValue formats dates, times and datetimes (the latter with layout) and
// passes every other value through: REST answers and change events differ
// only in how they write a datetime.
func timeValue(f *Field, v any, layout string) any {
	t, ok := v.(time.Time)
	if !ok {
		return v
	}
	switch f.Type {
	case "date":
		return t.Format(dateLayout)
	case "time":
		return t.Format(timeLayout)
	}
	return t.UTC().Format(layout)
}

// csvValue renders a stored value for Bulk API results ("" for null).
func csvValue(f *Field, v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case json.Number:
		return string(t)
	case time.Time:
		return eventValue(f, t).(string)
	case map[string]any:
		b, _ := json.Marshal(t)
		return string(b)
	}
	return fmt.Sprint(v)
}

// compile prepares a rule's comparison value for the field's type.
func (r *Rule) compile(f *Field) error {
	switch r.Op {
	case "blank", "notBlank":
		return nil
	case "regex", "notRegex":
		re, err := regexp.Compile(r.Value)
		if err != nil {
			return err
		}
		r.re = re
		return nil
	}
	switch f.Type {
	case "int", "double", "currency", "percent":
		x, ok := new(big.Rat).SetString(r.Value)
		if !ok {
			return fmt.Errorf("value %q is not a number", r.Value)
		}
		r.num = x
	case "date", "datetime", "time":
		v, err := parseTemporal(f, r.Value)
		if err != nil {
			return fmt.Errorf("value %q is not a %s", r.Value, f.Type)
		}
		r.when = v.(time.Time)
	case "boolean":
		if _, err := strconv.ParseBool(r.Value); err != nil {
			return fmt.Errorf("value %q is not true or false", r.Value)
		}
	}
	return nil
}

// violated reports whether the rule rejects a record whose field holds v.
func (r *Rule) violated(v any) bool {
	switch r.Op {
	case "blank":
		return v == nil
	case "notBlank":
		return v != nil
	case "regex":
		return v != nil && r.re.MatchString(fmt.Sprint(v))
	case "notRegex":
		return v != nil && !r.re.MatchString(fmt.Sprint(v))
	}
	if v == nil {
		return false // a formula over a blank field is blank, which does not fire
	}
	var c int
	switch t := v.(type) {
	case json.Number:
		x, ok := new(big.Rat).SetString(string(t))
		if !ok || r.num == nil {
			return false
		}
		c = x.Cmp(r.num)
	case time.Time:
		c = t.Compare(r.when)
	case bool:
		b, _ := strconv.ParseBool(r.Value)
		if t == b {
			c = 0
		} else {
			c = 1
		}
		if r.Op != "=" && r.Op != "!=" {
			return false
		}
	default:
		c = strings.Compare(fmt.Sprint(t), r.Value)
	}
	switch r.Op {
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	case "=":
		return c == 0
	case "!=":
		return c != 0
	}
	return false
}
