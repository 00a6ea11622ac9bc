package salesforce

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// NullValue is how Bulk API 2.0 ingest spells "set this field to null"; an
// empty field means "leave unchanged".
const NullValue = "#N/A"

type unchanged struct{}

// Unchanged, written as a value, leaves the field as it is (an empty CSV field).
var Unchanged = unchanged{}

// BulkValue renders one value for a Bulk API 2.0 ingest CSV:
//   - nil and "" become #N/A (null; Salesforce stores empty text as null anyway),
//   - Unchanged becomes an empty field,
//   - bools become true/false, numbers keep their exact text,
//   - time.Time becomes a UTC datetime with milliseconds.
//
// Dates and times of day are passed as strings already formatted.
func BulkValue(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return NullValue, nil
	case unchanged:
		return "", nil
	case string:
		if x == "" {
			return NullValue, nil
		}
		return x, nil
	case *string:
		if x == nil {
			return NullValue, nil
		}
		return BulkValue(*x)
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		return x.String(), nil
	case int:
		return strconv.Itoa(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("salesforce: %v cannot be written to Salesforce", x)
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05.000Z"), nil
	case fmt.Stringer:
		return x.String(), nil
	}
	return "", fmt.Errorf("salesforce: no CSV form for %T", v)
}

// CSVWriter writes Bulk API 2.0 ingest CSV: a header row of field API names,
// then one row per record.
type CSVWriter struct {
	w    *csv.Writer
	cols int
	row  []string
}

// NewCSVWriter writes the header row and returns a writer for the data rows.
func NewCSVWriter(w io.Writer, columns []string) (*CSVWriter, error) {
	if len(columns) == 0 {
		return nil, errors.New("salesforce: a bulk CSV needs at least one column")
	}
	cw := &CSVWriter{w: csv.NewWriter(w), cols: len(columns), row: make([]string, len(columns))}
	if err := cw.w.Write(columns); err != nil {
		return nil, err
	}
	return cw, nil
}

// Write writes one row; values are rendered with BulkValue and must match the
// header's column count.
func (cw *CSVWriter) Write(values ...any) error {
	if len(values) != cw.cols {
		return fmt.Errorf("salesforce: CSV row has %d values for %d columns", len(values), cw.cols)
	}
	for i, v := range values {
		s, err := BulkValue(v)
		if err != nil {
			return err
		}
		cw.row[i] = s
	}
	return cw.w.Write(cw.row)
}

// Flush writes buffered rows to the underlying writer.
func (cw *CSVWriter) Flush() error {
	cw.w.Flush()
	return cw.w.Error()
}

// Header is the header row of a result CSV.
type Header struct {
	Names []string
	index map[string]int
}

func newHeader(names []string) *Header {
	h := &Header{Names: names, index: make(map[string]int, len(names))}
	for i, n := range names {
		h.index[n] = i
	}
	return h
}

// Index returns the position of a column, or -1.
func (h *Header) Index(name string) int {
	if i, ok := h.index[name]; ok {
		return i
	}
	return -1
}

// Row is one data row of a result CSV. Bulk query results cannot tell null
// from an empty string: both are an empty field.
type Row struct {
	Header *Header
	Values []string
}

// Get returns the value of a column and whether the column exists.
func (r Row) Get(name string) (string, bool) {
	i := r.Header.Index(name)
	if i < 0 {
		return "", false
	}
	return r.Values[i], true
}

// ReadCSV reads a CSV whose first row is a header and calls fn for every
// data row. Rows are not reused, so fn may keep them.
func ReadCSV(r io.Reader, fn func(Row) error) error {
	cr := csvReader{br: bufio.NewReaderSize(r, 64<<10)}
	names, err := cr.read()
	if err == io.EOF {
		return nil // an empty page: no header, no rows
	}
	if err != nil {
		return fmt.Errorf("salesforce: CSV header: %w", err)
	}
	h := newHeader(names)
	for {
		rec, err := cr.read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("salesforce: CSV: %w", err)
		}
		if len(rec) != len(names) {
			return fmt.Errorf("salesforce: CSV: record on line %d has %d fields, the header %d", cr.line, len(rec), len(names))
		}
		if err := fn(Row{Header: h, Values: rec}); err != nil {
			return err
		}
	}
}

// csvReader reads RFC 4180 CSV records, keeping every byte between a
// quoted field's quotes, a carriage return before a newline too: Salesforce
// text often holds CR LF line breaks, which encoding/csv turns into LF, so
// that a value read from a Bulk result differed from the same value read
// through REST or copied into Postgres.
type csvReader struct {
	br   *bufio.Reader
	line int    // of the record last read
	buf  []byte // the fields of the record being read, end to end
	ends []int  // where each field ends in buf
}

// nextLine reads one line with its ending; io.EOF only when nothing is
// left. A read error (a body cut short) is returned as it is.
func (c *csvReader) nextLine() ([]byte, error) {
	l, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// A line longer than the buffer: the rest comes in pieces.
		long := append([]byte(nil), l...)
		for err == bufio.ErrBufferFull {
			l, err = c.br.ReadSlice('\n')
			long = append(long, l...)
		}
		l = long
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(l) == 0 {
		return nil, io.EOF
	}
	c.line++
	return l, nil
}

// read returns the next record, or io.EOF after the last. Blank lines are
// skipped. Its fields are one string, sliced.
func (c *csvReader) read() ([]string, error) {
	var line []byte
	for {
		l, err := c.nextLine()
		if err != nil {
			return nil, err
		}
		if len(trimEOL(l)) > 0 {
			line = l
			break
		}
	}
	c.buf, c.ends = c.buf[:0], c.ends[:0]
	pos := 0
	for {
		if pos < len(line) && line[pos] == '"' {
			// A quoted field, which may go on over several lines.
			pos++
			for {
				i := bytes.IndexByte(line[pos:], '"')
				if i < 0 {
					c.buf = append(c.buf, line[pos:]...)
					more, err := c.nextLine()
					if err == io.EOF {
						return nil, fmt.Errorf("line %d: a quoted field has no closing quote", c.line)
					}
					if err != nil {
						return nil, err
					}
					line, pos = more, 0
					continue
				}
				c.buf = append(c.buf, line[pos:pos+i]...)
				pos += i + 1
				if pos < len(line) && line[pos] == '"' {
					c.buf = append(c.buf, '"')
					pos++
					continue
				}
				break
			}
			c.ends = append(c.ends, len(c.buf))
			rest := trimEOL(line[pos:])
			if len(rest) == 0 {
				return c.fields(), nil
			}
			if rest[0] != ',' {
				return nil, fmt.Errorf("line %d: text after a closing quote", c.line)
			}
			pos++
			continue
		}
		content := trimEOL(line)
		i := bytes.IndexByte(content[pos:], ',')
		if i < 0 {
			c.buf = append(c.buf, content[pos:]...)
			c.ends = append(c.ends, len(c.buf))
			return c.fields(), nil
		}
		c.buf = append(c.buf, content[pos:pos+i]...)
		c.ends = append(c.ends, len(c.buf))
		pos += i + 1
	}
}

// fields cuts the record read into its fields, all slices of one string.
func (c *csvReader) fields() []string {
	all := string(c.buf)
	out := make([]string, len(c.ends))
	start := 0
	for i, end := range c.ends {
		out[i] = all[start:end]
		start = end
	}
	return out
}

// trimEOL drops the line ending (LF or CR LF) from b.
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}
