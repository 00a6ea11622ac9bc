package salesforce

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Record is one sObject as the REST API carries it. Fields holds every field
// except "attributes", with values as decoded from JSON:
//   - numbers as json.Number (exact; never float64),
//   - strings, bools and nil as usual,
//   - a parent relationship (Account on Contact) as Record,
//   - a child subquery as *SubQuery,
//   - compound values (addresses, locations) as map[string]any.
type Record struct {
	Type   string
	URL    string
	Fields map[string]any
}

// SubQuery is the nested result of a child relationship subquery.
type SubQuery struct {
	TotalSize      int
	Done           bool
	NextRecordsURL string
	Records        []Record
}

// NewRecord returns a record of the given type to write, with a copy of fields.
func NewRecord(sobject string, fields map[string]any) Record {
	r := Record{Type: sobject, Fields: make(map[string]any, len(fields))}
	for k, v := range fields {
		r.Fields[k] = v
	}
	return r
}

// ID returns the Id field, or "".
func (r Record) ID() string {
	s, _ := r.Fields["Id"].(string)
	return s
}

// Get returns a field by API name; a dotted name ("Account.Name") walks parent
// relationships. Names match case-insensitively, as SOQL does, when there is
// no exact match.
func (r Record) Get(name string) (any, bool) {
	head, rest, dotted := strings.Cut(name, ".")
	v, ok := r.Fields[head]
	if !ok {
		for k, vv := range r.Fields {
			if strings.EqualFold(k, head) {
				v, ok = vv, true
				break
			}
		}
	}
	if !ok || !dotted {
		return v, ok
	}
	switch p := v.(type) {
	case Record:
		return p.Get(rest)
	case map[string]any:
		return Record{Fields: p}.Get(rest)
	case nil:
		return nil, true // an empty lookup: the parent's fields are null
	}
	return nil, false
}

// UnmarshalJSON decodes a record keeping numbers exact.
func (r *Record) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("salesforce: record is null")
	}
	*r = recordFromMap(m)
	return nil
}

// MarshalJSON writes the record the way the write endpoints want it:
// attributes.type plus the fields.
func (r Record) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(r.Fields)+1)
	for k, v := range r.Fields {
		m[k] = v
	}
	if r.Type != "" {
		m["attributes"] = map[string]string{"type": r.Type}
	}
	return json.Marshal(m)
}

func recordFromMap(m map[string]any) Record {
	r := Record{Fields: make(map[string]any, len(m))}
	if a, ok := m["attributes"].(map[string]any); ok {
		r.Type, _ = a["type"].(string)
		r.URL, _ = a["url"].(string)
	}
	for k, v := range m {
		if k == "attributes" {
			continue
		}
		r.Fields[k] = convertValue(v)
	}
	return r
}

func convertValue(v any) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if _, isRec := obj["attributes"]; isRec {
		return recordFromMap(obj)
	}
	if recs, isSub := obj["records"].([]any); isSub {
		if _, hasDone := obj["done"]; hasDone {
			sq := &SubQuery{}
			if n, ok := obj["totalSize"].(json.Number); ok {
				i, _ := n.Int64()
				sq.TotalSize = int(i)
			}
			sq.Done, _ = obj["done"].(bool)
			sq.NextRecordsURL, _ = obj["nextRecordsUrl"].(string)
			for _, x := range recs {
				if xm, ok := x.(map[string]any); ok {
					sq.Records = append(sq.Records, recordFromMap(xm))
				}
			}
			return sq
		}
	}
	for k, x := range obj {
		obj[k] = convertValue(x)
	}
	return obj
}

// Salesforce writes datetimes as 2024-01-01T00:00:00.000+0000 (no colon in
// the offset); Bulk and CometD use …Z.
const sfDateTime = "2006-01-02T15:04:05.000-0700"

// ParseDateTime reads a Salesforce datetime in any of the forms the APIs emit.
func ParseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{sfDateTime, "2006-01-02T15:04:05-0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("salesforce: %q is not a datetime", s)
}

// FormatDateTime writes t in UTC, to the millisecond, with a Z: the one
// form every Bulk API version documents for CSV data (older ones list
// +HHmm offsets, current ones +HH:mm; "Valid Date Format in Records"),
// and one REST takes too. The REST API's own +0000 is not in the current
// Bulk list.
func FormatDateTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
