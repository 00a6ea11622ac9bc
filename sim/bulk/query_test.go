package bulk

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func (tb *testBundle) seed(t *testing.T, n int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("Name,Description\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Account %03d,\"desc, \"\"%d\"\"\"\n", i, i)
	}
	tb.runIngest(t, `{"object":"Account","operation":"insert"}`, b.String(), StateJobComplete)
}

func (tb *testBundle) createQuery(t *testing.T, body string) map[string]any {
	t.Helper()
	resp := tb.do(t, http.MethodPost, "query", "application/json", body)
	text := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, text)
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(text), &info))
	return info
}

type page struct {
	rows    [][]string
	locator string
	count   int
}

func (tb *testBundle) page(t *testing.T, id, query string) page {
	t.Helper()
	resp := tb.do(t, http.MethodGet, "query/"+id+"/results"+query, "", "")
	body := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "text/csv", resp.Header.Get("Content-Type"))
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	require.NoError(t, err)
	n, err := strconv.Atoi(resp.Header.Get("Sforce-NumberOfRecords"))
	require.NoError(t, err)
	return page{rows: rows, locator: resp.Header.Get("Sforce-Locator"), count: n}
}

func TestQueryResultsArePagedWithHeaderOnEveryPageAndNullLocatorLast(t *testing.T) {
	t.Parallel()
	for _, fwd := range []bool{false, true} {
		t.Run(fmt.Sprintf("forwardOnlyCursor=%v", fwd), func(t *testing.T) {
			t.Parallel()
			tb := setup(t, Options{})
			tb.table.fwdOnly = fwd
			tb.seed(t, 25)
			info := tb.createQuery(t, `{"operation":"query","query":"SELECT Id, Name, Description FROM Account"}`)
			require.Equal(t, "UploadComplete", info["state"])
			require.Equal(t, "Account", info["object"])
			id := info["id"].(string)
			done := tb.waitState(t, "query", id, StateJobComplete)
			require.EqualValues(t, 25, done["numberRecordsProcessed"])
			require.Equal(t, "V2Query", done["jobType"])

			var all [][]string
			loc, pages := "", 0
			for {
				q := "?maxRecords=10"
				if loc != "" {
					q += "&locator=" + loc
				}
				p := tb.page(t, id, q)
				pages++
				require.Equal(t, []string{"Id", "Name", "Description"}, p.rows[0], "every page starts with the header")
				require.Equal(t, len(p.rows)-1, p.count)
				all = append(all, p.rows[1:]...)
				if p.locator == "null" {
					break
				}
				require.NotEmpty(t, p.locator)
				loc = p.locator
			}
			require.Equal(t, 3, pages)
			require.Len(t, all, 25)
			require.Equal(t, "Account 000", all[0][1])
			require.Equal(t, `desc, "24"`, all[24][2])

			// Locators stay valid: page 2 can be read again.
			again := tb.page(t, id, "?maxRecords=10&locator="+encodeLocator(10))
			require.Equal(t, all[10:20], again.rows[1:])

			// Without maxRecords the default page holds everything, as jsforce needs.
			one := tb.page(t, id, "")
			require.Equal(t, "null", one.locator)
			require.Equal(t, 25, one.count)
		})
	}
}

func TestQueryResultsQuoteEveryValueAndUseJobDelimiter(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.seed(t, 1)
	info := tb.createQuery(t, `{"operation":"query","query":"SELECT Name, Phone FROM Account","columnDelimiter":"SEMICOLON","lineEnding":"CRLF"}`)
	id := info["id"].(string)
	tb.waitState(t, "query", id, StateJobComplete)
	body := readAll(t, tb.do(t, http.MethodGet, "query/"+id+"/results", "", ""))
	require.Equal(t, "\"Name\";\"Phone\"\r\n\"Account 000\";\"\"\r\n", body)
}

func TestQueryResultsBeforeCompletionAnswer412(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ProcessDelay: time.Hour})
	info := tb.createQuery(t, `{"operation":"query","query":"SELECT Id FROM Account"}`)
	resp := tb.do(t, http.MethodGet, "query/"+info["id"].(string)+"/results", "", "")
	require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode)
	require.Equal(t, "application/json;charset=UTF-8", resp.Header.Get("Content-Type"))
	require.JSONEq(t, `[{"errorCode":"JOB_NOT_COMPLETE","message":"can only download query results of successfully completed bulk job with status: JOB_COMPLETE. Current status: UPLOAD_COMPLETE"}]`,
		readAll(t, resp))
}

func TestQueryWithBadSOQLAnswers400WithQueryError(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	resp := tb.do(t, http.MethodPost, "query", "application/json", `{"operation":"query","query":"SELECT Foo FROM Account"}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.JSONEq(t, `[{"errorCode":"INVALID_FIELD","message":"No such column 'Foo' on entity 'Account'."}]`, readAll(t, resp))

	resp = tb.do(t, http.MethodPost, "query", "application/json", `{"operation":"query","query":"DELETE FROM Account"}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, readAll(t, resp), `"errorCode":"MALFORMED_QUERY"`)
}

func TestQuerySnapshotIgnoresChangesAfterJobCreation(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ProcessDelay: 20 * time.Millisecond})
	tb.seed(t, 2)
	id := tb.createQuery(t, `{"operation":"query","query":"SELECT Id FROM Account"}`)["id"].(string)
	tb.runIngest(t, `{"object":"Account","operation":"insert"}`, "Name\nLate\n", StateJobComplete)
	tb.waitState(t, "query", id, StateJobComplete)
	require.Equal(t, 2, tb.page(t, id, "").count)
}

func TestQueryJobCanBeAbortedAndDeleted(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ProcessDelay: time.Hour})
	id := tb.createQuery(t, `{"operation":"query","query":"SELECT Id FROM Account"}`)["id"].(string)
	resp := tb.do(t, http.MethodPatch, "query/"+id, "application/json", `{"state":"Aborted"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, readAll(t, resp), `"state":"Aborted"`)
	resp = tb.do(t, http.MethodGet, "query/"+id+"/results", "", "")
	require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode)
	require.Contains(t, readAll(t, resp), "Current status: ABORTED")
	require.Equal(t, http.StatusNoContent, tb.do(t, http.MethodDelete, "query/"+id, "", "").StatusCode)
	require.Equal(t, http.StatusNotFound, tb.do(t, http.MethodGet, "query/"+id, "", "").StatusCode)
	// An ingest id is not a query job.
	ingest := tb.createIngest(t, `{"object":"Account","operation":"insert"}`)
	require.Equal(t, http.StatusNotFound, tb.do(t, http.MethodGet, "query/"+ingest, "", "").StatusCode)
}

func TestFromObjectSkipsSubqueriesAndLiterals(t *testing.T) {
	t.Parallel()
	require.Equal(t, "Account", fromObject("SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Name = 'from X'"))
	require.Equal(t, "Foo__c", fromObject("select id from Foo__c"))
}

// synthCursor renders n rows of 20 columns on demand, like a large store snapshot, without holding them.
func synthCursor(n int) *IndexCursor {
	var cols, row []string
	for i := 0; i < 20; i++ {
		cols = append(cols, fmt.Sprintf("Field%02d__c", i))
		row = append(row, fmt.Sprintf("value %d with, comma", i))
	}
	cols[0] = "Id"
	return NewIndexCursor(cols, n, func(int) []string { return row })
}

// BenchmarkQueryResultsCSV measures rows/s of a full 1,000,000-row query read through the HTTP handler in
// pages of 250,000, from a synthetic 20-column cursor.
func BenchmarkQueryResultsCSV(b *testing.B) {
	const total = 1_000_000
	tb := &testBundle{table: newTable()}
	srv := NewServer(tb.table, Options{})
	defer srv.Close()
	j := srv.newJob("query", "62.0")
	cur := synthCursor(total)
	j.mu.Lock()
	j.operation, j.object, j.delimName, j.delim, j.lineEnding = "query", "Account", "COMMA", ',', "LF"
	j.cursor, j.direct, j.columns, j.state = cur, true, cur.Columns(), StateUploadComplete
	j.mu.Unlock()
	srv.goProcess(j)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	url := hs.URL + "/services/data/v62.0/jobs/query/" + j.id
	for {
		if j.getState() == StateJobComplete {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	start := time.Now()
	rows := 0
	for i := 0; i < b.N; i++ {
		loc := ""
		for {
			u := url + "/results?maxRecords=250000"
			if loc != "" {
				u += "&locator=" + loc
			}
			resp, err := http.Get(u)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := strconv.Atoi(resp.Header.Get("Sforce-NumberOfRecords"))
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			rows += n
			loc = resp.Header.Get("Sforce-Locator")
			if loc == "null" {
				break
			}
		}
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}
