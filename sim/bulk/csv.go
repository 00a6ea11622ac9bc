package bulk

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// parseUpload splits an uploaded CSV into its header and rows, applying Salesforce's rules: the job's
// delimiter, quoted fields that may hold delimiters, newlines and doubled quotes, no trimming, and every row
// as wide as the header. The error text becomes the job's errorMessage.
func parseUpload(data []byte, delim byte, lineEnding string) (header []string, rows [][]string, err error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 BOM is not part of the first column name
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errors.New("ClientInputError : No content found in the uploaded data; the first row must name the fields")
	}
	if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
		crlf := nl > 0 && data[nl-1] == '\r'
		if crlf != (lineEnding == "CRLF") {
			return nil, nil, fmt.Errorf("ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is %s", lineEnding)
		}
	}
	records, err := splitCSV(data, delim)
	if err != nil {
		return nil, nil, err
	}
	header = records[0]
	seen := make(map[string]bool, len(header))
	for _, h := range header {
		if h == "" {
			return nil, nil, errors.New("InvalidBatch : Field name not found : (empty column name in the header row)")
		}
		key := strings.ToLower(h)
		if seen[key] {
			return nil, nil, fmt.Errorf("InvalidBatch : Duplicate field name: %s", h)
		}
		seen[key] = true
	}
	for i, row := range records[1:] {
		if len(row) != len(header) {
			return nil, nil, fmt.Errorf("ClientInputError : Wrong number of columns on line %d: every row must have as many fields as the header row", i+2)
		}
	}
	return header, records[1:], nil
}

// splitCSV splits RFC 4180 CSV into records. A quoted field keeps every
// byte between its quotes as data, a carriage return before a newline too
// (encoding/csv turns a quoted CR LF into LF, which Salesforce does not);
// a record ends at a newline outside quotes, with the carriage return
// before it, and a last newline ends the data. Blank lines are skipped.
func splitCSV(data []byte, delim byte) ([][]string, error) {
	var records [][]string
	var record []string
	var field []byte
	inRecord := false // a field of the record has started, empty or quoted ones too
	line := 1
	endRecord := func() {
		if inRecord {
			records = append(records, append(record, string(field)))
		}
		record, field, inRecord = nil, field[:0], false
	}
	for i := 0; i < len(data); {
		if data[i] == '"' && len(field) == 0 {
			// A quoted field: to the closing quote, "" standing for one.
			inRecord = true
			start := line
			i++
			for {
				if i >= len(data) {
					return nil, fmt.Errorf("ClientInputError : Malformed CSV on line %d: a quoted field has no closing quote", start)
				}
				c := data[i]
				if c == '"' {
					if i+1 < len(data) && data[i+1] == '"' {
						field = append(field, '"')
						i += 2
						continue
					}
					i++
					break
				}
				if c == '\n' {
					line++
				}
				field = append(field, c)
				i++
			}
			if i < len(data) && data[i] != delim && data[i] != '\n' && !(data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n') {
				return nil, fmt.Errorf("ClientInputError : Malformed CSV on line %d: text after a closing quote", line)
			}
			continue
		}
		switch c := data[i]; {
		case c == delim:
			record = append(record, string(field))
			field, inRecord = field[:0], true
			i++
		case c == '\n' || c == '\r' && i+1 < len(data) && data[i+1] == '\n':
			endRecord()
			if c == '\r' {
				i++
			}
			i++
			line++
		case c == '"':
			return nil, fmt.Errorf("ClientInputError : Malformed CSV on line %d: a quote inside an unquoted field", line)
		default:
			field = append(field, c)
			inRecord = true
			i++
		}
	}
	endRecord()
	if len(records) == 0 {
		return nil, errors.New("ClientInputError : No content found in the uploaded data; the first row must name the fields")
	}
	return records, nil
}

// toRecord turns a row into a Record: "#N/A" sets a field to null, an empty value leaves it unchanged.
func toRecord(header, row []string) Record {
	rec := make(Record, len(header))
	for i, h := range header {
		v := row[i]
		switch v {
		case "":
		case "#N/A":
			rec[h] = Cell{Null: true}
		default:
			rec[h] = Cell{Value: v}
		}
	}
	return rec
}

// appendQuoted appends v as a quoted CSV field (Salesforce quotes every value in result files).
func appendQuoted(dst []byte, v string) []byte {
	dst = append(dst, '"')
	for {
		i := strings.IndexByte(v, '"')
		if i < 0 {
			dst = append(dst, v...)
			break
		}
		dst = append(dst, v[:i+1]...)
		dst = append(dst, '"')
		v = v[i+1:]
	}
	return append(dst, '"')
}

// appendRow appends one quoted row without its line ending.
func appendRow(dst []byte, row []string, delim byte) []byte {
	for i, v := range row {
		if i > 0 {
			dst = append(dst, delim)
		}
		dst = appendQuoted(dst, v)
	}
	return dst
}

func eol(lineEnding string) string {
	if lineEnding == "CRLF" {
		return "\r\n"
	}
	return "\n"
}

// spool holds a forward-only cursor's rows, already rendered as CSV lines, in one buffer.
type spool struct {
	buf  []byte
	ends []int // end offset of each row in buf
}

func (s *spool) add(row []string, delim byte) {
	s.buf = appendRow(s.buf, row, delim)
	s.ends = append(s.ends, len(s.buf))
}

func (s *spool) line(i int) []byte {
	start := 0
	if i > 0 {
		start = s.ends[i-1]
	}
	return s.buf[start:s.ends[i]]
}
