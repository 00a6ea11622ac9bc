package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Bulk API 2.0 job states.
const (
	JobOpen           = "Open"
	JobUploadComplete = "UploadComplete"
	JobInProgress     = "InProgress"
	JobComplete       = "JobComplete"
	JobFailed         = "Failed"
	JobAborted        = "Aborted"
)

// JobInfo is a Bulk API 2.0 job as the job endpoints describe it.
type JobInfo struct {
	ID                     string      `json:"id"`
	Operation              string      `json:"operation"`
	Object                 string      `json:"object"`
	State                  string      `json:"state"`
	ExternalIDFieldName    string      `json:"externalIdFieldName"`
	ContentType            string      `json:"contentType"`
	APIVersion             json.Number `json:"apiVersion"`
	JobType                string      `json:"jobType"`
	LineEnding             string      `json:"lineEnding"`
	ColumnDelimiter        string      `json:"columnDelimiter"`
	CreatedDate            string      `json:"createdDate"`
	NumberRecordsProcessed int64       `json:"numberRecordsProcessed"`
	NumberRecordsFailed    int64       `json:"numberRecordsFailed"`
	Retries                int64       `json:"retries"`
	TotalProcessingTime    int64       `json:"totalProcessingTime"`
	ErrorMessage           string      `json:"errorMessage"`
}

// Terminal reports whether the job will not change state any more.
func (j *JobInfo) Terminal() bool {
	return j.State == JobComplete || j.State == JobFailed || j.State == JobAborted
}

// JobFailedError is returned by the wait helpers when a job ends Failed or Aborted.
type JobFailedError struct{ Job *JobInfo }

func (e *JobFailedError) Error() string {
	msg := fmt.Sprintf("salesforce: bulk job %s (%s %s) ended %s", e.Job.ID, e.Job.Operation, e.Job.Object, e.Job.State)
	if e.Job.ErrorMessage != "" {
		msg += ": " + e.Job.ErrorMessage
	}
	return msg
}

// Poll sets how the wait helpers poll a job: the delay starts at Initial and
// grows by half each time up to Max.
type Poll struct {
	Initial time.Duration // default 500ms
	Max     time.Duration // default 10s
}

func (p Poll) withDefaults() Poll {
	if p.Initial <= 0 {
		p.Initial = 500 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 10 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	return p
}

// IngestJob describes an ingest job to create.
type IngestJob struct {
	Object              string `json:"object"`
	Operation           string `json:"operation"` // insert, update, upsert, delete, hardDelete
	ExternalIDFieldName string `json:"externalIdFieldName,omitempty"`
	AssignmentRuleID    string `json:"assignmentRuleId,omitempty"`
}

func (c *Client) ingestPath(p string) string { return c.dataPath("/jobs/ingest" + p) }
func (c *Client) queryJobPath(p string) string {
	return c.dataPath("/jobs/query" + p)
}

// CreateIngestJob opens an ingest job (CSV, comma, LF).
func (c *Client) CreateIngestJob(ctx context.Context, job IngestJob) (*JobInfo, error) {
	switch job.Operation {
	case "insert", "update", "delete", "hardDelete":
	case "upsert":
		if job.ExternalIDFieldName == "" {
			return nil, errors.New("salesforce: an upsert job needs ExternalIDFieldName")
		}
	default:
		return nil, fmt.Errorf("salesforce: unknown bulk operation %q", job.Operation)
	}
	body := struct {
		IngestJob
		ContentType     string `json:"contentType"`
		LineEnding      string `json:"lineEnding"`
		ColumnDelimiter string `json:"columnDelimiter"`
	}{job, "CSV", "LF", "COMMA"}
	var out JobInfo
	if _, err := c.sendJSON(ctx, http.MethodPost, c.ingestPath(""), nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UploadIngestData uploads the job's CSV in one streamed PUT: write is called
// with a CSVWriter whose header is columns and writes the rows straight into
// the request body, so nothing is buffered beyond the HTTP window. write runs
// a second time if the upload is replayed after a token refresh, so it must be
// repeatable.
func (c *Client) UploadIngestData(ctx context.Context, jobID string, columns []string, write func(*CSVWriter) error) error {
	var (
		writeErr error
		done     chan struct{} // closed when the latest attempt's writer has exited
	)
	body := func() (io.ReadCloser, error) {
		if done != nil {
			<-done // an earlier attempt's writer must be gone before write runs again
		}
		pr, pw := io.Pipe()
		finished := make(chan struct{})
		done = finished
		go func() {
			defer close(finished)
			cw, err := NewCSVWriter(pw, columns)
			if err == nil {
				err = write(cw)
			}
			if err == nil {
				err = cw.Flush()
			}
			if err != nil && !errors.Is(err, io.ErrClosedPipe) {
				writeErr = err
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
	_, err := c.call(ctx, request{
		method: http.MethodPut, path: c.ingestPath("/" + url.PathEscape(jobID) + "/batches"),
		body: body, contentType: "text/csv",
	}, nil)
	if done != nil {
		// The transport closes the body when it is done with it, which unblocks
		// a writer still in Write.
		<-done
	}
	if writeErr != nil {
		return writeErr
	}
	return err
}

func (c *Client) setJobState(ctx context.Context, path, state string) (*JobInfo, error) {
	var out JobInfo
	if _, err := c.sendJSON(ctx, http.MethodPatch, path, nil, map[string]string{"state": state}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CloseIngestJob marks the upload complete; processing starts only then.
func (c *Client) CloseIngestJob(ctx context.Context, jobID string) (*JobInfo, error) {
	return c.setJobState(ctx, c.ingestPath("/"+url.PathEscape(jobID)), JobUploadComplete)
}

// AbortIngestJob aborts an ingest job.
func (c *Client) AbortIngestJob(ctx context.Context, jobID string) (*JobInfo, error) {
	return c.setJobState(ctx, c.ingestPath("/"+url.PathEscape(jobID)), JobAborted)
}

// DeleteIngestJob deletes a terminal ingest job and its results.
func (c *Client) DeleteIngestJob(ctx context.Context, jobID string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: c.ingestPath("/" + url.PathEscape(jobID))}, nil)
	return err
}

// IngestJobInfo reads an ingest job's state and counters.
func (c *Client) IngestJobInfo(ctx context.Context, jobID string) (*JobInfo, error) {
	var out JobInfo
	if err := c.getJSON(ctx, c.ingestPath("/"+url.PathEscape(jobID)), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WaitIngestJob polls until the job is terminal. JobComplete returns the job;
// Failed and Aborted return it with a *JobFailedError.
func (c *Client) WaitIngestJob(ctx context.Context, jobID string, p Poll) (*JobInfo, error) {
	return c.waitJob(ctx, p, func(ctx context.Context) (*JobInfo, error) { return c.IngestJobInfo(ctx, jobID) })
}

func (c *Client) waitJob(ctx context.Context, p Poll, get func(context.Context) (*JobInfo, error)) (*JobInfo, error) {
	p = p.withDefaults()
	delay := p.Initial
	for {
		job, err := get(ctx)
		switch {
		case err == nil && job.Terminal():
			if job.State != JobComplete {
				return job, &JobFailedError{Job: job}
			}
			return job, nil
		case err != nil && !IsTransient(err):
			return nil, err
		}
		// Not done yet, or a transient failure of the poll itself: wait and ask again.
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay+delay/2, p.Max)
	}
}

// IngestSuccessfulResults streams successfulResults: columns sf__Id,
// sf__Created, then the uploaded columns.
func (c *Client) IngestSuccessfulResults(ctx context.Context, jobID string, fn func(Row) error) error {
	return c.streamCSV(ctx, c.ingestPath("/"+url.PathEscape(jobID)+"/successfulResults/"), nil, fn)
}

// IngestFailedResults streams failedResults: columns sf__Id, sf__Error
// (STATUS_CODE:message:fields --), then the uploaded columns.
func (c *Client) IngestFailedResults(ctx context.Context, jobID string, fn func(Row) error) error {
	return c.streamCSV(ctx, c.ingestPath("/"+url.PathEscape(jobID)+"/failedResults/"), nil, fn)
}

// IngestUnprocessedRecords streams the uploaded rows that were never processed.
func (c *Client) IngestUnprocessedRecords(ctx context.Context, jobID string, fn func(Row) error) error {
	return c.streamCSV(ctx, c.ingestPath("/"+url.PathEscape(jobID)+"/unprocessedrecords/"), nil, fn)
}

func (c *Client) streamCSV(ctx context.Context, path string, q url.Values, fn func(Row) error) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, query: q, accept: "text/csv"})
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	return ReadCSV(resp.Body, fn)
}

// QueryJob describes a bulk query job to create.
type QueryJob struct {
	Query     string `json:"query"`
	Operation string `json:"operation"` // query (default) or queryAll
}

// CreateQueryJob starts a bulk query job.
func (c *Client) CreateQueryJob(ctx context.Context, job QueryJob) (*JobInfo, error) {
	if job.Operation == "" {
		job.Operation = "query"
	}
	if job.Operation != "query" && job.Operation != "queryAll" {
		return nil, fmt.Errorf("salesforce: unknown bulk query operation %q", job.Operation)
	}
	body := struct {
		QueryJob
		ContentType     string `json:"contentType"`
		ColumnDelimiter string `json:"columnDelimiter"`
		LineEnding      string `json:"lineEnding"`
	}{job, "CSV", "COMMA", "LF"}
	var out JobInfo
	if _, err := c.sendJSON(ctx, http.MethodPost, c.queryJobPath(""), nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryJobInfo reads a query job's state.
func (c *Client) QueryJobInfo(ctx context.Context, jobID string) (*JobInfo, error) {
	var out JobInfo
	if err := c.getJSON(ctx, c.queryJobPath("/"+url.PathEscape(jobID)), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AbortQueryJob aborts a query job.
func (c *Client) AbortQueryJob(ctx context.Context, jobID string) (*JobInfo, error) {
	return c.setJobState(ctx, c.queryJobPath("/"+url.PathEscape(jobID)), JobAborted)
}

// WaitQueryJob polls until the query job is terminal; see WaitIngestJob.
func (c *Client) WaitQueryJob(ctx context.Context, jobID string, p Poll) (*JobInfo, error) {
	return c.waitJob(ctx, p, func(ctx context.Context) (*JobInfo, error) { return c.QueryJobInfo(ctx, jobID) })
}

// QueryJobResultPages fetches the results of a completed query job page by
// page, following Sforce-Locator until it is the literal "null", and hands
// each page's body (a CSV with its own header row) to fn while it streams.
// maxRecords caps the rows per page; zero leaves the server default.
func (c *Client) QueryJobResultPages(ctx context.Context, jobID string, maxRecords int, fn func(page io.Reader) error) error {
	locator := ""
	for {
		q := url.Values{}
		if maxRecords > 0 {
			q.Set("maxRecords", strconv.Itoa(maxRecords))
		}
		if locator != "" {
			q.Set("locator", locator)
		}
		resp, err := c.do(ctx, request{method: http.MethodGet, path: c.queryJobPath("/" + url.PathEscape(jobID) + "/results"), query: q, accept: "text/csv"})
		if err != nil {
			return err
		}
		next := resp.Header.Get("Sforce-Locator")
		err = fn(resp.Body)
		drain(resp.Body)
		if err != nil {
			return err
		}
		// "null" marks the last page. A missing header is treated the same way:
		// looping on it would re-read the first page forever.
		if next == "" || next == "null" {
			return nil
		}
		if next == locator {
			return fmt.Errorf("salesforce: bulk query %s: the server returned locator %q twice", jobID, next)
		}
		locator = next
	}
}

// QueryJobResults streams every row of a completed query job's results; each
// page's header row is read and the rows carry it.
func (c *Client) QueryJobResults(ctx context.Context, jobID string, maxRecords int, fn func(Row) error) error {
	return c.QueryJobResultPages(ctx, jobID, maxRecords, func(page io.Reader) error { return ReadCSV(page, fn) })
}

// BulkQueryOptions tune BulkQuery.
type BulkQueryOptions struct {
	// MaxRecords caps rows per result page; zero leaves the server default.
	MaxRecords int
	Poll       Poll
}

// BulkQuery runs soql as a Bulk API 2.0 query job (operation "query" or
// "queryAll"), waits for it and streams every row to fn.
func (c *Client) BulkQuery(ctx context.Context, job QueryJob, opts BulkQueryOptions, fn func(Row) error) (*JobInfo, error) {
	created, err := c.CreateQueryJob(ctx, job)
	if err != nil {
		return nil, err
	}
	done, err := c.WaitQueryJob(ctx, created.ID, opts.Poll)
	if err != nil {
		return done, err
	}
	return done, c.QueryJobResults(ctx, created.ID, opts.MaxRecords, fn)
}

// ParseBulkError reads the sf__Error column of failedResults
// ("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --") into
// the same shape Collections use. The message may itself contain colons, so
// the trailing segment is taken as the field list only when it looks like one.
func ParseBulkError(s string) RecordError {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "--"))
	code, rest, ok := strings.Cut(s, ":")
	if !ok {
		return RecordError{StatusCode: "UNKNOWN_EXCEPTION", Message: s}
	}
	e := RecordError{StatusCode: code, Message: rest}
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		tail := rest[i+1:]
		if bulkFieldList.MatchString(tail) {
			e.Message = rest[:i]
			for _, f := range strings.Split(tail, ",") {
				if f = strings.TrimSpace(f); f != "" {
					e.Fields = append(e.Fields, f)
				}
			}
		}
	}
	e.Message = strings.TrimSpace(e.Message)
	return e
}

var bulkFieldList = regexp.MustCompile(`^\s*[A-Za-z0-9_.]*(\s*,\s*[A-Za-z0-9_.]+)*\s*$`)
