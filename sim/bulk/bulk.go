// Package bulk is the simulator's Bulk API 2.0: ingest jobs (CSV upload, asynchronous processing, successful /
// failed / unprocessed result files) and query jobs (asynchronous state, paged CSV results with locators).
//
// The package knows the wire protocol only; the records live behind Backend, which the simulator's store
// implements. Job processing runs on goroutines so clients see the same Open → UploadComplete → InProgress →
// JobComplete progression they see on the real platform.
package bulk

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Cell is one CSV value: Null is true for "#N/A". A field absent from a Record means "unchanged" (empty CSV value).
type Cell struct {
	Null  bool
	Value string
}

// Record is one ingested row; keys are the CSV header names as given.
type Record map[string]Cell

// Result of one record. Err is nil on success.
type Result struct {
	ID      string
	Created bool
	Err     *RecordError
}

// RecordError is a per-record failure as Salesforce reports it (statusCode, message, fields).
type RecordError struct {
	StatusCode string
	Message    string
	Fields     []string
}

// Cursor streams a query result; Next returns up to n rows (each in Columns() order, already CSV-formatted
// strings, "" for null) and done=true after the last row.
//
// A Cursor that also implements Sizer and Seeker is paged directly: each results page is rendered from the
// cursor when it is requested. Any other Cursor is read once while the job is InProgress into a compact
// spool, because locators must stay valid and the row count must be known at JobComplete.
type Cursor interface {
	Columns() []string
	Next(n int) (rows [][]string, done bool, err error)
}

// Sizer is implemented by cursors that know their row count up front.
type Sizer interface{ Len() int }

// Seeker is implemented by cursors that can reposition to a row offset (0-based) of their snapshot.
type Seeker interface{ Seek(row int) error }

// Objecter is implemented by cursors that know the queried object's canonical name (for the job info's
// "object"); without it the name is taken from the query text's FROM clause.
type Objecter interface{ Object() string }

// Backend is the simulator's store as the bulk engine sees it.
type Backend interface {
	// Ingest applies one operation ("insert","update","upsert","delete","hardDelete") to records of object and
	// returns one Result per record, in order. ctx carries the values of the job-creation request's context
	// (not its cancellation), so a backend can attribute the writes to the client that created the job. The backend validates each record independently (allOrNone=false)
	// and produces change events. externalIDField is set for upsert.
	Ingest(ctx context.Context, operation, object, externalIDField string, records []Record) []Result
	// Query binds and evaluates SOQL ("queryAll" includes deleted records) over a consistent snapshot; bad SOQL
	// is returned as *QueryError.
	Query(ctx context.Context, soql string, all bool) (Cursor, error)
}

// IngestValidator is optionally implemented by a Backend that knows the schema.
type IngestValidator interface {
	// ValidateJob is called when an ingest job is created; a *QueryError (e.g. INVALIDJOB / NOT_FOUND for an
	// unknown object) is answered as HTTP 400 with that code and message.
	ValidateJob(ctx context.Context, operation, object, externalIDField string) error
	// ValidateColumns is called with the CSV header before processing; a non-nil error fails the job and its
	// text becomes errorMessage (Salesforce: "InvalidBatch : Field name not found : Foo__c").
	ValidateColumns(ctx context.Context, operation, object string, columns []string) error
}

// QueryError is returned by Backend.Query for bad SOQL; the handler answers 400 with it.
type QueryError struct {
	Code    string
	Message string
}

func (e *QueryError) Error() string { return e.Code + ": " + e.Message }

// Options configures the server.
type Options struct {
	// InstanceURL returns the org's base URL (not used in job info, which carries relative URLs, but kept for
	// handlers that need absolute ones).
	InstanceURL func() string
	// APIVersion is the default version for jobs when the request path carries none, e.g. "62.0".
	APIVersion string
	Clock      func() time.Time
	// ProcessDelay is how long a job stays in each intermediate state (UploadComplete, InProgress) before
	// moving on; 0 moves on immediately (still asynchronously).
	ProcessDelay time.Duration
	// UserID is the createdById of every job.
	UserID string
	// DefaultMaxRecords is the page size when a results request has no maxRecords. jsforce 3 cannot read
	// multi-page results, so the default keeps ordinary result sets on one page.
	DefaultMaxRecords int
	// IngestChunk is the number of records per Backend.Ingest call (Salesforce: 200 per transaction).
	IngestChunk int
}

// Defaults.
const (
	DefaultMaxRecords  = 1_000_000
	DefaultIngestChunk = 200
	MaxUploadBytes     = 150 << 20 // 150 MB per job upload
)

// Server serves /services/data/v{v}/jobs/ingest... and /jobs/query... . The caller authenticates and counts API
// calls before delegating; ServeHTTP routes by the path suffix after "/jobs/".
type Server struct {
	backend Backend
	opts    Options

	mu     sync.Mutex
	jobs   map[string]*job
	order  []string // job ids in creation order, for listing
	seq    uint64
	cancel context.CancelFunc
	ctx    context.Context
}

// NewServer returns a Bulk API 2.0 server over b.
func NewServer(b Backend, opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.APIVersion == "" {
		opts.APIVersion = "62.0"
	}
	if opts.UserID == "" {
		opts.UserID = "005000000000001AAA"
	}
	if opts.DefaultMaxRecords <= 0 {
		opts.DefaultMaxRecords = DefaultMaxRecords
	}
	if opts.IngestChunk <= 0 {
		opts.IngestChunk = DefaultIngestChunk
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{backend: b, opts: opts, jobs: map[string]*job{}, ctx: ctx, cancel: cancel}
}

// Reset drops all jobs and stops their processing.
func (s *Server) Reset() {
	s.mu.Lock()
	old := s.jobs
	s.cancel()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.jobs = map[string]*job{}
	s.order = nil
	s.mu.Unlock()
	for _, j := range old {
		j.release()
	}
}

// Close stops background processing; the server must not be used afterwards.
func (s *Server) Close() { s.Reset() }

// ServeHTTP routes:
//
//	POST   .../jobs/ingest                       create ingest job
//	GET    .../jobs/ingest                       list
//	GET    .../jobs/ingest/{id}                  job info
//	PATCH  .../jobs/ingest/{id}                  UploadComplete | Aborted
//	DELETE .../jobs/ingest/{id}
//	PUT    .../jobs/ingest/{id}/batches          CSV upload
//	GET    .../jobs/ingest/{id}/successfulResults | failedResults | unprocessedrecords
//	POST   .../jobs/query, GET .../jobs/query, GET|PATCH|DELETE .../jobs/query/{id}, GET .../jobs/query/{id}/results
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	version := s.opts.APIVersion
	path := r.URL.Path
	if i := strings.Index(path, "/data/v"); i >= 0 {
		rest := path[i+len("/data/v"):]
		if j := strings.IndexByte(rest, '/'); j > 0 {
			version = rest[:j]
		}
	}
	i := strings.Index(path, "/jobs/")
	if i < 0 {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	parts := strings.Split(strings.Trim(path[i+len("/jobs/"):], "/"), "/")
	kind := parts[0]
	if kind != "ingest" && kind != "query" {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	switch len(parts) {
	case 1:
		switch r.Method {
		case http.MethodPost:
			if kind == "ingest" {
				s.createIngest(w, r, version)
			} else {
				s.createQuery(w, r, version)
			}
		case http.MethodGet:
			s.list(w, r, kind)
		default:
			methodNotAllowed(w, r, "GET, POST")
		}
		return
	case 2, 3:
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	j := s.job(parts[1], kind)
	if j == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	if len(parts) == 2 {
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, j.info(infoFull))
		case http.MethodPatch:
			s.patch(w, r, j)
		case http.MethodDelete:
			s.delete(w, j)
		default:
			methodNotAllowed(w, r, "GET, PATCH, DELETE")
		}
		return
	}
	switch sub := parts[2]; {
	case kind == "ingest" && sub == "batches":
		if r.Method != http.MethodPut {
			methodNotAllowed(w, r, "PUT")
			return
		}
		s.upload(w, r, j)
	case kind == "ingest" && (sub == "successfulResults" || sub == "failedResults" || sub == "unprocessedrecords"):
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r, "GET")
			return
		}
		s.ingestResults(w, j, sub)
	case kind == "query" && sub == "results":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r, "GET")
			return
		}
		s.queryResults(w, r, j)
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
}

func (s *Server) job(id, kind string) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil || j.kind != kind {
		return nil
	}
	return j
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed string) {
	w.Header().Set("Allow", allowed)
	writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED",
		"HTTP Method '"+r.Method+"' not allowed. Allowed are "+allowed)
}

// IndexCursor is a Cursor over n rows of a snapshot addressed by position; row(i) renders row i in column
// order. It implements Sizer and Seeker, so result pages are rendered on request straight from the snapshot.
type IndexCursor struct {
	columns []string
	n, pos  int
	row     func(i int) []string
}

// NewIndexCursor returns a cursor over rows 0..n-1 rendered by row.
func NewIndexCursor(columns []string, n int, row func(i int) []string) *IndexCursor {
	return &IndexCursor{columns: columns, n: n, row: row}
}

func (c *IndexCursor) Columns() []string { return c.columns }
func (c *IndexCursor) Len() int          { return c.n }

func (c *IndexCursor) Seek(row int) error {
	if row < 0 || row > c.n {
		return errors.New("bulk: seek outside the result")
	}
	c.pos = row
	return nil
}

func (c *IndexCursor) Next(n int) ([][]string, bool, error) {
	end := min(c.pos+max(n, 0), c.n)
	rows := make([][]string, 0, end-c.pos)
	for ; c.pos < end; c.pos++ {
		rows = append(rows, c.row(c.pos))
	}
	return rows, c.pos == c.n, nil
}
