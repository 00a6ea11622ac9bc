package sim

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// The change event payload is written by hand rather than through encoding/json: it is the hottest path of
// every write, and building a map per event only to have reflection walk it again cost more than the write.

// appendEventPayload appends the JSON "payload" object of e, the seq-th event of batch b: the
// ChangeEventHeader, then the fields in the object's field order, compound parts nested under their
// compound with capitalised component names. CREATE and UNDELETE carry every non-null field; UPDATE the
// changed ones, nulls included. Id, IsDeleted, SystemModstamp and compound parents themselves never appear.
func appendEventPayload(buf []byte, e *pendingEvent, b *eventBatch, seq int) []byte {
	buf = append(buf, `{"ChangeEventHeader":{"entityName":`...)
	buf = appendJSONString(buf, e.obj.Name)
	buf = append(buf, `,"recordIds":[`...)
	for i, id := range e.ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, id)
	}
	buf = append(buf, `],"changeType":`...)
	buf = appendJSONString(buf, e.kind)
	buf = append(buf, `,"changeOrigin":`...)
	buf = appendJSONString(buf, b.tx.Origin)
	buf = append(buf, `,"transactionKey":`...)
	buf = appendJSONString(buf, b.key)
	buf = append(buf, `,"sequenceNumber":`...)
	buf = strconv.AppendInt(buf, int64(seq), 10)
	buf = append(buf, `,"commitTimestamp":`...)
	buf = strconv.AppendInt(buf, b.at.UnixMilli(), 10)
	buf = append(buf, `,"commitNumber":`...)
	buf = strconv.AppendInt(buf, b.commitNumber, 10)
	buf = append(buf, `,"commitUser":`...)
	buf = appendJSONString(buf, b.tx.User)
	buf = append(buf, `,"changedFields":[`...)
	for i, name := range e.changed {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, name)
	}
	buf = append(buf, "]}"...)
	if e.vals != nil {
		fields := e.only
		all := fields == nil
		if all {
			fields = e.obj.Fields
		}
		var done []string // compounds already written
		for _, f := range fields {
			if !inEvent(f) || f.hidden {
				continue
			}
			if f.CompoundName == "" {
				v := e.vals[f.Index]
				if all && v == nil {
					continue
				}
				buf = append(buf, ',')
				buf = appendJSONString(buf, f.Name)
				buf = append(buf, ':')
				buf = appendEventValue(buf, f, v)
				continue
			}
			if containsString(done, f.CompoundName) {
				continue
			}
			done = append(done, f.CompoundName)
			// The compound's parts, wherever they sit in the list, in list order.
			mark := len(buf)
			buf = append(buf, ',')
			buf = appendJSONString(buf, f.CompoundName)
			buf = append(buf, ":{"...)
			parts := 0
			for _, p := range fields {
				if p.CompoundName != f.CompoundName || !inEvent(p) {
					continue
				}
				v := e.vals[p.Index]
				if all && v == nil {
					continue
				}
				if parts > 0 {
					buf = append(buf, ',')
				}
				parts++
				buf = appendJSONString(buf, p.Component)
				buf = append(buf, ':')
				buf = appendEventValue(buf, p, v)
			}
			if parts == 0 {
				buf = buf[:mark]
				continue
			}
			buf = append(buf, '}')
		}
	}
	return append(buf, '}')
}

func inEvent(f *Field) bool {
	return f.Index >= 0 && f.Name != "Id" && f.Name != "IsDeleted" && f.Name != "SystemModstamp" && len(f.compound) == 0
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// appendEventValue writes a stored value as change events carry it (eventValue's rules).
func appendEventValue(buf []byte, f *Field, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case string:
		return appendJSONString(buf, x)
	case bool:
		return strconv.AppendBool(buf, x)
	case json.Number:
		if x == "" {
			return append(buf, "null"...)
		}
		return append(buf, x...)
	case time.Time:
		return appendJSONString(buf, eventValue(f, x).(string))
	case int:
		return strconv.AppendInt(buf, int64(x), 10)
	case int64:
		return strconv.AppendInt(buf, x, 10)
	}
	b, err := json.Marshal(eventValue(f, v))
	if err != nil {
		return append(buf, "null"...)
	}
	return append(buf, b...)
}

// appendJSONString writes s as a JSON string: quotes, backslashes and control characters escaped, invalid
// UTF-8 replaced by U+FFFD (as encoding/json does), and "<", ">", "&" left as they are, as Salesforce sends them.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
