package bulk

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// table is a small in-memory Account table behind the Backend interface: enough schema (Id, Name required,
// Ext__c external id, Description, Phone) to exercise the protocol's success and failure paths.
type table struct {
	mu      sync.Mutex
	rows    map[string]map[string]string
	deleted map[string]bool
	seq     int
	seen    []Record // every record Ingest received, in order
	fwdOnly bool     // hand out cursors without Len/Seek
	columns map[string]bool
}

func newTable() *table {
	return &table{rows: map[string]map[string]string{}, deleted: map[string]bool{},
		columns: map[string]bool{"Id": true, "Name": true, "Ext__c": true, "Description": true, "Phone": true}}
}

func (t *table) Ingest(ctx context.Context, op, object, extID string, recs []Record) []Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Result, len(recs))
	for i, rec := range recs {
		t.seen = append(t.seen, rec)
		out[i] = t.apply(op, extID, rec)
	}
	return out
}

func (t *table) apply(op, extID string, rec Record) Result {
	write := func(row map[string]string) {
		for k, c := range rec {
			if k == "Id" {
				continue
			}
			if c.Null {
				delete(row, k)
			} else {
				row[k] = c.Value
			}
		}
	}
	switch op {
	case "insert":
		if c, ok := rec["Name"]; !ok || c.Null {
			return Result{Err: &RecordError{StatusCode: "REQUIRED_FIELD_MISSING",
				Message: "Required fields are missing: [Name]", Fields: []string{"Name"}}}
		}
		t.seq++
		id := fmt.Sprintf("001%012d", t.seq)
		row := map[string]string{"Id": id}
		write(row)
		t.rows[id] = row
		return Result{ID: id, Created: true}
	case "update", "delete":
		id := rec["Id"].Value
		row, ok := t.rows[id]
		if !ok {
			return Result{ID: id, Err: &RecordError{StatusCode: "INVALID_CROSS_REFERENCE_KEY",
				Message: "invalid cross reference id"}}
		}
		if op == "delete" {
			delete(t.rows, id)
			t.deleted[id] = true
			return Result{ID: id}
		}
		write(row)
		return Result{ID: id}
	case "upsert":
		key := rec[extID].Value
		for id, row := range t.rows {
			if row[extID] == key {
				write(row)
				return Result{ID: id}
			}
		}
		return t.apply("insert", "", rec)
	}
	return Result{Err: &RecordError{StatusCode: "INVALID_OPERATION", Message: "unsupported " + op}}
}

func (t *table) ValidateJob(ctx context.Context, op, object, extID string) error {
	if object != "Account" {
		return &QueryError{Code: "NOT_FOUND", Message: "sObject type '" + object + "' is not supported."}
	}
	return nil
}

func (t *table) ValidateColumns(ctx context.Context, op, object string, columns []string) error {
	for _, c := range columns {
		if !t.columns[c] {
			return fmt.Errorf("InvalidBatch : Field name not found : %s", c)
		}
	}
	return nil
}

// Query understands "SELECT a, b FROM Account [ORDER BY Name]"; anything else is malformed.
func (t *table) Query(ctx context.Context, q string, all bool) (Cursor, error) {
	fields := strings.Fields(strings.ReplaceAll(q, ",", " "))
	if len(fields) < 4 || !strings.EqualFold(fields[0], "SELECT") {
		return nil, &QueryError{Code: "MALFORMED_QUERY", Message: "unexpected token: '" + q + "'"}
	}
	var cols []string
	i := 1
	for ; i < len(fields) && !strings.EqualFold(fields[i], "FROM"); i++ {
		if !t.columns[fields[i]] {
			return nil, &QueryError{Code: "INVALID_FIELD", Message: "No such column '" + fields[i] + "' on entity 'Account'."}
		}
		cols = append(cols, fields[i])
	}
	if i+1 >= len(fields) || fields[i+1] != "Account" {
		return nil, &QueryError{Code: "INVALID_TYPE", Message: "sObject type is not supported."}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var rows [][]string
	for _, r := range t.rows {
		row := make([]string, len(cols))
		for k, c := range cols {
			row[k] = r[c]
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(a, b int) bool { return rows[a][0] < rows[b][0] })
	if t.fwdOnly {
		return &forwardCursor{&sliceCursor{cols: cols, rows: rows}}, nil
	}
	return NewIndexCursor(cols, len(rows), func(i int) []string { return rows[i] }), nil
}

// sliceCursor is a plain forward cursor over a snapshot.
type sliceCursor struct {
	cols []string
	rows [][]string
	pos  int
}

func (c *sliceCursor) Columns() []string { return c.cols }
func (c *sliceCursor) Next(n int) ([][]string, bool, error) {
	end := min(c.pos+n, len(c.rows))
	out := c.rows[c.pos:end]
	c.pos = end
	return out, end == len(c.rows), nil
}

// forwardCursor hides Len/Seek: the spooled path.
type forwardCursor struct{ c *sliceCursor }

func (f *forwardCursor) Columns() []string                    { return f.c.Columns() }
func (f *forwardCursor) Next(n int) ([][]string, bool, error) { return f.c.Next(n) }

type testBundle struct {
	srv   *httptest.Server
	bulk  *Server
	table *table
	base  string
}

func setup(t *testing.T, opts Options) *testBundle {
	t.Helper()
	tb := &testBundle{table: newTable()}
	opts.APIVersion = "62.0"
	opts.UserID = "005000000000001AAA"
	tb.bulk = NewServer(tb.table, opts)
	tb.srv = httptest.NewServer(tb.bulk)
	t.Cleanup(func() {
		tb.srv.Close()
		tb.bulk.Close()
	})
	tb.base = tb.srv.URL + "/services/data/v62.0/jobs/"
	return tb
}

func (tb *testBundle) do(t *testing.T, method, path, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, tb.base+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// waitState polls job info until it reaches want (or a terminal state), as clients do.
func (tb *testBundle) waitState(t *testing.T, kind, id, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		info := tb.info(t, kind, id)
		if info["state"] == want {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s stayed %v, want %s (info %v)", id, info["state"], want, info)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
