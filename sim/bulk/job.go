package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Job states as Salesforce spells them.
const (
	StateOpen           = "Open"
	StateUploadComplete = "UploadComplete"
	StateInProgress     = "InProgress"
	StateJobComplete    = "JobComplete"
	StateFailed         = "Failed"
	StateAborted        = "Aborted"
)

func terminal(state string) bool {
	return state == StateJobComplete || state == StateFailed || state == StateAborted
}

// delimiters maps the columnDelimiter names of the API to bytes.
var delimiters = map[string]byte{
	"COMMA": ',', "TAB": '\t', "PIPE": '|', "SEMICOLON": ';', "CARET": '^', "BACKQUOTE": '`',
}

type job struct {
	kind       string // "ingest" or "query"
	id         string
	operation  string
	object     string
	extID      string
	apiVersion string
	delimName  string
	delim      byte
	lineEnding string // "LF" or "CRLF"
	created    time.Time
	userID     string
	clock      func() time.Time

	mu           sync.Mutex
	state        string
	modstamp     time.Time
	started      time.Time // processing start, for totalProcessingTime
	finished     time.Time
	errorMessage string
	processed    int
	failed       int
	aborted      chan struct{} // closed on abort or delete: processing stops after the current chunk
	// values is the job-creation request's context without its cancellation: processing runs with its
	// values (the simulator keeps the request's changeOrigin there), long after that request ended.
	values context.Context

	// ingest
	data     []byte     // uploaded CSV, kept until parsed
	uploaded bool       // one upload per job
	header   []string   // parsed header
	rows     [][]string // parsed rows (original values)
	results  []Result   // one per processed row, in row order

	// query
	query   string
	cursor  Cursor
	direct  bool       // cursor supports Len+Seek: pages are rendered from it on request
	total   int        // rows in the result (known at JobComplete)
	spool   *spool     // rows read from a forward-only cursor
	pageMu  sync.Mutex // serializes Seek+Next on the shared cursor
	columns []string
}

func (j *job) setState(state string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.setStateLocked(state)
}

func (j *job) setStateLocked(state string) {
	if terminal(j.state) {
		return // an abort or failure wins over a late transition
	}
	now := j.clock()
	j.state = state
	j.modstamp = now
	if state == StateInProgress && j.started.IsZero() {
		j.started = now
	}
	if terminal(state) {
		j.finished = now
		if j.started.IsZero() {
			j.started = now
		}
	}
}

func (j *job) fail(message string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if terminal(j.state) {
		return
	}
	j.errorMessage = message
	j.setStateLocked(StateFailed)
}

// abort moves a job to Aborted and stops its processing; it reports whether the job was abortable.
func (j *job) abort() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if terminal(j.state) {
		return false
	}
	j.setStateLocked(StateAborted)
	j.stopLocked()
	return true
}

func (j *job) stopLocked() {
	select {
	case <-j.aborted:
	default:
		close(j.aborted)
	}
}

// release frees what a deleted job holds (its snapshot and data).
func (j *job) release() {
	j.mu.Lock()
	j.stopLocked()
	j.mu.Unlock()
	j.pageMu.Lock()
	defer j.pageMu.Unlock()
	if c, ok := j.cursor.(interface{ Close() error }); ok {
		_ = c.Close()
	}
	j.cursor = nil
	j.spool = nil
}

func (j *job) getState() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state
}

// wait sleeps d unless the job is stopped or the server resets; false means stop processing.
func (j *job) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-j.aborted:
			return false
		case <-ctx.Done():
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-j.aborted:
		return false
	case <-ctx.Done():
		return false
	}
}

const sfTime = "2006-01-02T15:04:05.000-0700"

type jobInfo struct {
	ID                      string      `json:"id"`
	Operation               string      `json:"operation"`
	Object                  string      `json:"object"`
	CreatedByID             string      `json:"createdById"`
	CreatedDate             string      `json:"createdDate"`
	SystemModstamp          string      `json:"systemModstamp"`
	State                   string      `json:"state"`
	ExternalIDFieldName     string      `json:"externalIdFieldName,omitempty"`
	ConcurrencyMode         string      `json:"concurrencyMode"`
	ContentType             string      `json:"contentType"`
	APIVersion              json.Number `json:"apiVersion"`
	JobType                 string      `json:"jobType,omitempty"`
	ContentURL              string      `json:"contentUrl,omitempty"`
	LineEnding              string      `json:"lineEnding"`
	ColumnDelimiter         string      `json:"columnDelimiter"`
	NumberRecordsProcessed  *int        `json:"numberRecordsProcessed,omitempty"`
	NumberRecordsFailed     *int        `json:"numberRecordsFailed,omitempty"`
	Retries                 *int        `json:"retries,omitempty"`
	TotalProcessingTime     *int64      `json:"totalProcessingTime,omitempty"`
	APIActiveProcessingTime *int64      `json:"apiActiveProcessingTime,omitempty"`
	ApexProcessingTime      *int64      `json:"apexProcessingTime,omitempty"`
	ErrorMessage            string      `json:"errorMessage,omitempty"`
}

type infoMode int

const (
	infoCreate infoMode = iota // answer to create / PATCH
	infoFull                   // GET job: adds jobType and counters
	infoList                   // GET list: adds jobType only
)

func (j *job) info(mode infoMode) jobInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	in := jobInfo{
		ID: j.id, Operation: j.operation, Object: j.object, CreatedByID: j.userID,
		CreatedDate: j.created.UTC().Format(sfTime), SystemModstamp: j.modstamp.UTC().Format(sfTime),
		State: j.state, ExternalIDFieldName: j.extID, ConcurrencyMode: "Parallel", ContentType: "CSV",
		APIVersion: json.Number(j.apiVersion), LineEnding: j.lineEnding, ColumnDelimiter: j.delimName,
	}
	if j.kind == "ingest" {
		in.ContentURL = "services/data/v" + j.apiVersion + "/jobs/ingest/" + j.id + "/batches"
	}
	if mode == infoCreate {
		return in
	}
	in.JobType = "V2Query"
	if j.kind == "ingest" {
		in.JobType = "V2Ingest"
	}
	if mode == infoList {
		return in
	}
	processed, retries := j.processed, 0
	in.NumberRecordsProcessed = &processed
	in.Retries = &retries
	var total int64
	if !j.started.IsZero() {
		end := j.finished
		if end.IsZero() {
			end = j.clock()
		}
		total = max(end.Sub(j.started).Milliseconds(), 0)
	}
	in.TotalProcessingTime = &total
	if j.kind == "ingest" {
		failed := j.failed
		active, apex := total, int64(0)
		in.NumberRecordsFailed = &failed
		in.APIActiveProcessingTime = &active
		in.ApexProcessingTime = &apex
	}
	if j.state == StateFailed {
		in.ErrorMessage = j.errorMessage
	}
	return in
}

// newJob registers a job with a fresh Salesforce-style id (key prefix 750).
func (s *Server) newJob(kind, version string) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	now := s.opts.Clock()
	j := &job{
		kind: kind, id: salesforceID("750", s.seq), apiVersion: version, created: now, modstamp: now,
		userID: s.opts.UserID, clock: s.opts.Clock, aborted: make(chan struct{}),
	}
	s.jobs[j.id] = j
	s.order = append(s.order, j.id)
	return j
}

// salesforceID builds an 18-character id: 3-character key prefix, a pod-like "5g00000" filler, the sequence
// in base 62, and the case-insensitivity checksum Salesforce appends to 15-character ids.
func salesforceID(prefix string, seq uint64) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte(prefix + "5g0" + "000000000")
	for i := 14; i >= 6 && seq > 0; i-- {
		b[i] = digits[seq%62]
		seq /= 62
	}
	const sum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	for chunk := 0; chunk < 3; chunk++ {
		bits := 0
		for k := 0; k < 5; k++ {
			if c := b[chunk*5+k]; c >= 'A' && c <= 'Z' {
				bits |= 1 << k
			}
		}
		b = append(b, sum[bits])
	}
	return string(b)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, kind string) {
	s.mu.Lock()
	var jobs []*job
	for _, id := range s.order {
		if j := s.jobs[id]; j != nil && j.kind == kind {
			jobs = append(jobs, j)
		}
	}
	s.mu.Unlock()
	records := make([]jobInfo, 0, len(jobs))
	for _, j := range jobs {
		records = append(records, j.info(infoList))
	}
	writeJSON(w, http.StatusOK, struct {
		Done           bool      `json:"done"`
		Records        []jobInfo `json:"records"`
		NextRecordsURL *string   `json:"nextRecordsUrl"`
	}{true, records, nil})
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, j *job) {
	var body struct {
		State string `json:"state"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "Cannot parse the request body: "+err.Error())
		return
	}
	switch {
	case body.State == StateAborted:
		if !j.abort() {
			writeError(w, http.StatusBadRequest, "INVALIDJOBSTATE",
				"Aborting a job in state "+j.getState()+" is not allowed")
			return
		}
	case body.State == StateUploadComplete && j.kind == "ingest":
		j.mu.Lock()
		if j.state != StateOpen {
			state := j.state
			j.mu.Unlock()
			writeError(w, http.StatusBadRequest, "INVALIDJOBSTATE",
				"Closing a job in state "+state+" is not allowed; only an Open job can be set to UploadComplete")
			return
		}
		j.setStateLocked(StateUploadComplete)
		j.mu.Unlock()
		info := j.info(infoCreate) // the answer shows UploadComplete, whatever processing does next
		s.goProcess(j)
		writeJSON(w, http.StatusOK, info)
		return
	default:
		writeError(w, http.StatusBadRequest, "INVALIDJOBSTATE",
			"Invalid state for a "+j.kind+" job: '"+body.State+"'. Allowed: "+allowedStates(j.kind))
		return
	}
	writeJSON(w, http.StatusOK, j.info(infoCreate))
}

func allowedStates(kind string) string {
	if kind == "ingest" {
		return "UploadComplete, Aborted"
	}
	return "Aborted"
}

func (s *Server) delete(w http.ResponseWriter, j *job) {
	state := j.getState()
	if state == StateOpen || (j.kind == "query" && !terminal(state)) {
		writeError(w, http.StatusBadRequest, "INVALIDJOBSTATE",
			"Deleting a job in state "+state+" is not allowed; abort it first")
		return
	}
	s.mu.Lock()
	delete(s.jobs, j.id)
	for i, id := range s.order {
		if id == j.id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	j.release()
	w.WriteHeader(http.StatusNoContent)
}

// goProcess runs the job's processing in the background, with the values of the job-creation request's
// context and the server's cancellation (Reset, Close).
func (s *Server) goProcess(j *job) {
	s.mu.Lock()
	srvCtx := s.ctx
	s.mu.Unlock()
	j.mu.Lock()
	values := j.values
	j.values = nil // processing starts once; let the request's context go afterwards
	j.mu.Unlock()
	ctx, cancel := context.WithCancel(srvCtx)
	stop := func() bool { return true }
	if values != nil {
		ctx, cancel = context.WithCancel(values)
		stop = context.AfterFunc(srvCtx, cancel)
	}
	go func() {
		defer cancel()
		defer stop()
		if j.kind == "ingest" {
			s.runIngest(ctx, j)
		} else {
			s.runQuery(ctx, j)
		}
	}()
}

// marshal encodes without HTML escaping: Salesforce sends "<" and ">" as they are.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN_EXCEPTION", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError answers with Salesforce's error array shape.
func writeError(w http.ResponseWriter, status int, code, message string) {
	b, _ := marshal([]struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}{{code, message}})
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
