package bulk

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func (tb *testBundle) info(t *testing.T, kind, id string) map[string]any {
	t.Helper()
	resp := tb.do(t, http.MethodGet, kind+"/"+id, "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(readAll(t, resp)), &info))
	return info
}

func (tb *testBundle) createIngest(t *testing.T, body string) string {
	t.Helper()
	resp := tb.do(t, http.MethodPost, "ingest", "application/json", body)
	text := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, text)
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(text), &info))
	return info["id"].(string)
}

// runIngest creates a job, uploads data, closes it and waits for a terminal state.
func (tb *testBundle) runIngest(t *testing.T, jobJSON, data, want string) (string, map[string]any) {
	t.Helper()
	id := tb.createIngest(t, jobJSON)
	resp := tb.do(t, http.MethodPut, "ingest/"+id+"/batches", "text/csv", data)
	require.Equal(t, http.StatusCreated, resp.StatusCode, readAll(t, resp))
	resp = tb.do(t, http.MethodPatch, "ingest/"+id, "application/json", `{"state":"UploadComplete"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, readAll(t, resp))
	return id, tb.waitState(t, "ingest", id, want)
}

func (tb *testBundle) csvRows(t *testing.T, path string, delim rune) [][]string {
	t.Helper()
	resp := tb.do(t, http.MethodGet, path, "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/csv", resp.Header.Get("Content-Type"))
	r := csv.NewReader(strings.NewReader(readAll(t, resp)))
	r.Comma = delim
	rows, err := r.ReadAll()
	require.NoError(t, err)
	return rows
}

func TestCreateIngestJobAnswersJobInfoLikeSalesforce(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	resp := tb.do(t, http.MethodPost, "ingest", "application/json",
		`{"object":"Account","operation":"upsert","externalIdFieldName":"Ext__c","lineEnding":"CRLF","columnDelimiter":"PIPE"}`)
	body := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json;charset=UTF-8", resp.Header.Get("Content-Type"))
	require.Contains(t, body, `"apiVersion":62.0,`, "apiVersion is a JSON number with one decimal, as Salesforce sends it")
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	id := info["id"].(string)
	require.Len(t, id, 18)
	require.True(t, strings.HasPrefix(id, "750"))
	require.Equal(t, "upsert", info["operation"])
	require.Equal(t, "Account", info["object"])
	require.Equal(t, "Ext__c", info["externalIdFieldName"])
	require.Equal(t, "Open", info["state"])
	require.Equal(t, "Parallel", info["concurrencyMode"])
	require.Equal(t, "CSV", info["contentType"])
	require.Equal(t, "CRLF", info["lineEnding"])
	require.Equal(t, "PIPE", info["columnDelimiter"])
	require.Equal(t, "005000000000001AAA", info["createdById"])
	require.Equal(t, "services/data/v62.0/jobs/ingest/"+id+"/batches", info["contentUrl"])
	_, err := time.Parse("2006-01-02T15:04:05.000-0700", info["createdDate"].(string))
	require.NoError(t, err)
}

func TestCreateIngestJobRejectsUpsertWithoutExternalIDAndUnknownObject(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	resp := tb.do(t, http.MethodPost, "ingest", "application/json", `{"object":"Account","operation":"upsert"}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, readAll(t, resp), `"errorCode":"INVALIDJOB"`)

	resp = tb.do(t, http.MethodPost, "ingest", "application/json", `{"object":"Nope","operation":"insert"}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.JSONEq(t, `[{"errorCode":"NOT_FOUND","message":"sObject type 'Nope' is not supported."}]`, readAll(t, resp))
}

func TestIngestInsertReportsSuccessfulAndFailedResults(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	id, info := tb.runIngest(t, `{"object":"Account","operation":"insert"}`,
		"Name,Description\nAcme,first\n,no name\nGlobex,third\n", StateJobComplete)
	require.EqualValues(t, 3, info["numberRecordsProcessed"])
	require.EqualValues(t, 1, info["numberRecordsFailed"])
	require.Equal(t, "V2Ingest", info["jobType"])

	ok := tb.csvRows(t, "ingest/"+id+"/successfulResults", ',')
	require.Equal(t, []string{"sf__Id", "sf__Created", "Name", "Description"}, ok[0])
	require.Len(t, ok, 3)
	require.Equal(t, "true", ok[1][1])
	require.Equal(t, []string{"Acme", "first"}, ok[1][2:])
	require.Equal(t, []string{"Globex", "third"}, ok[2][2:])
	require.True(t, strings.HasPrefix(ok[1][0], "001"))

	failed := tb.csvRows(t, "ingest/"+id+"/failedResults", ',')
	require.Equal(t, [][]string{
		{"sf__Id", "sf__Error", "Name", "Description"},
		{"", "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --", "", "no name"},
	}, failed)

	// A completed job has nothing unprocessed.
	require.Equal(t, [][]string{{"Name", "Description"}}, tb.csvRows(t, "ingest/"+id+"/unprocessedrecords", ','))
}

func TestIngestUpsertReportsCreatedFalseForExistingRecords(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.runIngest(t, `{"object":"Account","operation":"insert"}`, "Name,Ext__c\nAcme,A1\n", StateJobComplete)
	id, _ := tb.runIngest(t, `{"object":"Account","operation":"upsert","externalIdFieldName":"Ext__c"}`,
		"Ext__c,Name\nA1,Acme Corp\nB2,Beta\n", StateJobComplete)
	ok := tb.csvRows(t, "ingest/"+id+"/successfulResults", ',')
	require.Len(t, ok, 3)
	require.Equal(t, "false", ok[1][1])
	require.Equal(t, "true", ok[2][1])
}

func TestIngestTreatsNAAsNullAndEmptyAsUnchanged(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.runIngest(t, `{"object":"Account","operation":"insert"}`,
		"Name,Description,Phone\nAcme,#N/A,\n", StateJobComplete)
	tb.table.mu.Lock()
	rec := tb.table.seen[0]
	tb.table.mu.Unlock()
	require.Equal(t, Record{"Name": {Value: "Acme"}, "Description": {Null: true}}, rec)
	_, present := rec["Phone"]
	require.False(t, present, "an empty CSV value leaves the field unchanged, so it is absent from the record")
}

func TestIngestParsesEveryDelimiterAndLineEnding(t *testing.T) {
	t.Parallel()
	for name, d := range delimiters {
		for _, le := range []string{"LF", "CRLF"} {
			t.Run(name+"_"+le, func(t *testing.T) {
				t.Parallel()
				tb := setup(t, Options{})
				nl, sep := eol(le), string(d)
				// Quoted values holding the delimiter, a doubled quote and a newline (LF or CR LF) survive intact.
				data := "Name" + sep + "Description" + nl +
					`"Acme` + sep + ` Inc"` + sep + `"says ""hi"""` + nl +
					"Plain" + sep + "\"two\nlines\"" + nl +
					"Windows" + sep + "\"two\r\nlines\"" + nl
				id, info := tb.runIngest(t, `{"object":"Account","operation":"insert","columnDelimiter":"`+name+`","lineEnding":"`+le+`"}`,
					data, StateJobComplete)
				require.EqualValues(t, 3, info["numberRecordsProcessed"])
				require.EqualValues(t, 0, info["numberRecordsFailed"])
				tb.table.mu.Lock()
				seen := tb.table.seen
				tb.table.mu.Unlock()
				require.Equal(t, "Acme"+sep+" Inc", seen[0]["Name"].Value)
				require.Equal(t, `says "hi"`, seen[0]["Description"].Value)
				require.Equal(t, "two\nlines", seen[1]["Description"].Value)
				require.Equal(t, "two\r\nlines", seen[2]["Description"].Value, "a quoted CR LF is data")

				ok := tb.csvRows(t, "ingest/"+id+"/successfulResults", rune(d))
				require.Equal(t, []string{"sf__Id", "sf__Created", "Name", "Description"}, ok[0])
				require.Equal(t, "Acme"+sep+" Inc", ok[1][2])
			})
		}
	}
}

func TestIngestUnprocessedRecordsListsEverythingAfterAbort(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ProcessDelay: time.Hour})
	id := tb.createIngest(t, `{"object":"Account","operation":"insert"}`)
	resp := tb.do(t, http.MethodPut, "ingest/"+id+"/batches", "text/csv", "Name\nA\nB\n")
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp = tb.do(t, http.MethodPatch, "ingest/"+id, "application/json", `{"state":"UploadComplete"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp = tb.do(t, http.MethodPatch, "ingest/"+id, "application/json", `{"state":"Aborted"}`)
	body := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `"state":"Aborted"`)

	require.Equal(t, [][]string{{"Name"}, {"A"}, {"B"}}, tb.csvRows(t, "ingest/"+id+"/unprocessedrecords", ','))
	require.Equal(t, [][]string{{"sf__Id", "sf__Created", "Name"}}, tb.csvRows(t, "ingest/"+id+"/successfulResults", ','))
	tb.table.mu.Lock()
	require.Empty(t, tb.table.seen, "an aborted job applies nothing")
	tb.table.mu.Unlock()

	// Aborting twice is refused: the job is terminal.
	resp = tb.do(t, http.MethodPatch, "ingest/"+id, "application/json", `{"state":"Aborted"}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, readAll(t, resp), "INVALIDJOBSTATE")
}

func TestIngestFailsJobWhenRowsHaveWrongColumnCount(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	id, info := tb.runIngest(t, `{"object":"Account","operation":"insert"}`, "Name,Description\nAcme\n", StateFailed)
	require.Contains(t, info["errorMessage"], "Wrong number of columns on line 2")
	require.EqualValues(t, 0, info["numberRecordsProcessed"])
	require.Equal(t, "Name,Description\nAcme\n", readAll(t, tb.do(t, http.MethodGet, "ingest/"+id+"/unprocessedrecords", "", "")))
}

func TestIngestFailsJobOnUnknownColumn(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	id, info := tb.runIngest(t, `{"object":"Account","operation":"insert"}`, "Name,Bogus__c\nAcme,x\n", StateFailed)
	require.Equal(t, "InvalidBatch : Field name not found : Bogus__c", info["errorMessage"])
	require.Equal(t, [][]string{{"Name", "Bogus__c"}, {"Acme", "x"}}, tb.csvRows(t, "ingest/"+id+"/unprocessedrecords", ','))
}

func TestIngestFailsJobWhenLineEndingDoesNotMatch(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	_, info := tb.runIngest(t, `{"object":"Account","operation":"insert"}`, "Name\r\nAcme\r\n", StateFailed)
	require.Equal(t, "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF", info["errorMessage"])
}

func TestIngestRefusesSecondUpload(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	id := tb.createIngest(t, `{"object":"Account","operation":"insert"}`)
	require.Equal(t, http.StatusCreated, tb.do(t, http.MethodPut, "ingest/"+id+"/batches", "text/csv", "Name\nA\n").StatusCode)
	resp := tb.do(t, http.MethodPut, "ingest/"+id+"/batches", "text/csv", "Name\nB\n")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, readAll(t, resp), "Found multiple contents for job: <"+id+">")
}

func TestIngestJobsAreListedAndDeletedOnceTerminal(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	open := tb.createIngest(t, `{"object":"Account","operation":"insert"}`)
	done, _ := tb.runIngest(t, `{"object":"Account","operation":"insert"}`, "Name\nA\n", StateJobComplete)

	resp := tb.do(t, http.MethodGet, "ingest", "", "")
	var list struct {
		Done           bool             `json:"done"`
		Records        []map[string]any `json:"records"`
		NextRecordsURL *string          `json:"nextRecordsUrl"`
	}
	require.NoError(t, json.Unmarshal([]byte(readAll(t, resp)), &list))
	require.True(t, list.Done)
	require.Nil(t, list.NextRecordsURL)
	require.Len(t, list.Records, 2)
	require.Equal(t, open, list.Records[0]["id"])
	require.Equal(t, "V2Ingest", list.Records[0]["jobType"])

	require.Equal(t, http.StatusBadRequest, tb.do(t, http.MethodDelete, "ingest/"+open, "", "").StatusCode)
	require.Equal(t, http.StatusNoContent, tb.do(t, http.MethodDelete, "ingest/"+done, "", "").StatusCode)
	resp = tb.do(t, http.MethodGet, "ingest/"+done, "", "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.JSONEq(t, `[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]`, readAll(t, resp))
}

func TestIngestMovesThroughStatesAsynchronously(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{ProcessDelay: 30 * time.Millisecond})
	id := tb.createIngest(t, `{"object":"Account","operation":"insert"}`)
	tb.do(t, http.MethodPut, "ingest/"+id+"/batches", "text/csv", "Name\nA\n")
	resp := tb.do(t, http.MethodPatch, "ingest/"+id, "application/json", `{"state":"UploadComplete"}`)
	require.Contains(t, readAll(t, resp), `"state":"UploadComplete"`)
	tb.waitState(t, "ingest", id, StateInProgress)
	info := tb.waitState(t, "ingest", id, StateJobComplete)
	require.EqualValues(t, 1, info["numberRecordsProcessed"])
	require.GreaterOrEqual(t, info["totalProcessingTime"].(float64), float64(0))
}

func TestFormatErrorWithoutFieldsEndsWithColonDashes(t *testing.T) {
	t.Parallel()
	require.Equal(t, "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
		FormatError(&RecordError{StatusCode: "INVALID_CROSS_REFERENCE_KEY", Message: "invalid cross reference id"}))
	require.Equal(t, "REQUIRED_FIELD_MISSING:Required fields are missing: [Name, Phone]:Name,Phone --",
		FormatError(&RecordError{StatusCode: "REQUIRED_FIELD_MISSING", Message: "Required fields are missing: [Name, Phone]", Fields: []string{"Name", "Phone"}}))
}

// The edges of an upload: a quoted empty value last, with or without a
// final newline, blank lines, and a header that is one quoted empty name.
func TestUploadsKeepQuotedEmptyValuesSkipBlankLinesAndNeverPanic(t *testing.T) {
	for _, data := range []string{"Name\n\"\"", "Name\n\"\"\n", "Name\n\n\"\"\n\n"} {
		header, rows, err := parseUpload([]byte(data), ',', "LF")
		require.NoError(t, err, "%q", data)
		require.Equal(t, []string{"Name"}, header)
		require.Equal(t, [][]string{{""}}, rows, "%q", data)
	}
	_, _, err := parseUpload([]byte(`""`), ',', "LF")
	require.ErrorContains(t, err, "Field name not found")
	_, _, err = parseUpload([]byte("\n\n"), ',', "LF")
	require.ErrorContains(t, err, "No content found")
}
