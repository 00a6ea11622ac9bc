package bulk

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
)

var ingestOperations = map[string]bool{"insert": true, "update": true, "upsert": true, "delete": true, "hardDelete": true}

// jobOptions reads the CSV settings shared by ingest and query job requests.
func jobOptions(contentType, delimiter, lineEnding string) (delimName string, delim byte, le string, err error) {
	if contentType != "" && contentType != "CSV" {
		return "", 0, "", errors.New("contentType '" + contentType + "' is not supported; only CSV is")
	}
	delimName = delimiter
	if delimName == "" {
		delimName = "COMMA"
	}
	d, ok := delimiters[delimName]
	if !ok {
		return "", 0, "", errors.New("columnDelimiter '" + delimiter + "' is invalid; use COMMA, TAB, PIPE, SEMICOLON, CARET or BACKQUOTE")
	}
	le = lineEnding
	if le == "" {
		le = "LF"
	}
	if le != "LF" && le != "CRLF" {
		return "", 0, "", errors.New("lineEnding '" + lineEnding + "' is invalid; use LF or CRLF")
	}
	return delimName, d, le, nil
}

func (s *Server) createIngest(w http.ResponseWriter, r *http.Request, version string) {
	var body struct {
		Object              string `json:"object"`
		Operation           string `json:"operation"`
		ExternalIDFieldName string `json:"externalIdFieldName"`
		ContentType         string `json:"contentType"`
		ColumnDelimiter     string `json:"columnDelimiter"`
		LineEnding          string `json:"lineEnding"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "Cannot parse the job request: "+err.Error())
		return
	}
	switch {
	case body.Object == "":
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "InvalidJob : Required field 'object' is missing")
		return
	case !ingestOperations[body.Operation]:
		writeError(w, http.StatusBadRequest, "INVALIDJOB",
			"InvalidJob : Invalid operation '"+body.Operation+"'; use insert, update, upsert, delete or hardDelete")
		return
	case body.Operation == "upsert" && body.ExternalIDFieldName == "":
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "InvalidJob : externalIdFieldName is required for upsert")
		return
	}
	delimName, delim, le, err := jobOptions(body.ContentType, body.ColumnDelimiter, body.LineEnding)
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "InvalidJob : "+err.Error())
		return
	}
	extID := ""
	if body.Operation == "upsert" {
		extID = body.ExternalIDFieldName
	}
	if v, ok := s.backend.(IngestValidator); ok {
		if err := v.ValidateJob(r.Context(), body.Operation, body.Object, extID); err != nil {
			var qe *QueryError
			if errors.As(err, &qe) {
				writeError(w, http.StatusBadRequest, qe.Code, qe.Message)
			} else {
				writeError(w, http.StatusBadRequest, "INVALIDJOB", err.Error())
			}
			return
		}
	}
	j := s.newJob("ingest", version)
	j.mu.Lock()
	j.operation, j.object, j.extID = body.Operation, body.Object, extID
	j.delimName, j.delim, j.lineEnding = delimName, delim, le
	j.state = StateOpen
	j.values = context.WithoutCancel(r.Context())
	j.mu.Unlock()
	writeJSON(w, http.StatusOK, j.info(infoCreate))
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, j *job) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "text/csv" {
			writeError(w, http.StatusUnsupportedMediaType, "INVALIDCONTENTTYPE",
				"Content-Type '"+ct+"' is not supported for job data; send text/csv")
			return
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxUploadBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "EXCEEDED_MAX_SIZE_REQUEST",
				"The job data exceeds the 150 MB upload limit; split it into several jobs")
			return
		}
		writeError(w, http.StatusBadRequest, "CLIENTINPUTERROR", "Cannot read the job data: "+err.Error())
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state != StateOpen {
		writeError(w, http.StatusBadRequest, "INVALIDJOBSTATE",
			"Job data can only be uploaded while the job is Open; it is "+j.state)
		return
	}
	if j.uploaded {
		writeError(w, http.StatusBadRequest, "INVALIDJOBSTATE", "Found multiple contents for job: <"+j.id+
			">, please 'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make sure you only do 'PUT' once on a given Job.")
		return
	}
	j.uploaded = true
	j.data = data
	w.WriteHeader(http.StatusCreated)
}

// parseLocked parses the uploaded data once; it reports the CSV error as Salesforce words a failed job.
func (j *job) parseLocked() error {
	if j.header != nil || j.data == nil {
		return nil
	}
	header, rows, err := parseUpload(j.data, j.delim, j.lineEnding)
	if err != nil {
		return err
	}
	j.header, j.rows, j.data = header, rows, nil
	return nil
}

func (s *Server) runIngest(ctx context.Context, j *job) {
	if !j.wait(ctx, s.opts.ProcessDelay) {
		return
	}
	j.setState(StateInProgress)

	j.mu.Lock()
	err := j.parseLocked()
	header, rows := j.header, j.rows
	j.mu.Unlock()
	if err != nil {
		j.fail(err.Error())
		return
	}
	if v, ok := s.backend.(IngestValidator); ok && header != nil {
		if err := v.ValidateColumns(ctx, j.operation, j.object, header); err != nil {
			j.fail(err.Error())
			return
		}
	}
	if !j.wait(ctx, s.opts.ProcessDelay) {
		return
	}
	for start := 0; start < len(rows); start += s.opts.IngestChunk {
		// An abort takes effect between chunks: what was applied stays applied, the rest is unprocessed.
		select {
		case <-j.aborted:
			return
		case <-ctx.Done():
			return
		default:
		}
		end := min(start+s.opts.IngestChunk, len(rows))
		records := make([]Record, 0, end-start)
		for _, row := range rows[start:end] {
			records = append(records, toRecord(header, row))
		}
		results := s.backend.Ingest(ctx, j.operation, j.object, j.extID, records)
		if len(results) != len(records) {
			j.fail("UNKNOWN_EXCEPTION : the backend returned a wrong number of results")
			return
		}
		j.mu.Lock()
		j.results = append(j.results, results...)
		j.processed += len(results)
		for _, res := range results {
			if res.Err != nil {
				j.failed++
			}
		}
		j.modstamp = j.clock()
		j.mu.Unlock()
	}
	j.setState(StateJobComplete)
}

// FormatError renders a record error the way Salesforce's failedResults sf__Error column does:
// "STATUS_CODE:message:Field1,Field2 --", or "STATUS_CODE:message:--" without fields.
func FormatError(e *RecordError) string {
	fields := strings.Join(e.Fields, ",")
	if fields != "" {
		fields += " "
	}
	return e.StatusCode + ":" + e.Message + ":" + fields + "--"
}

func (s *Server) ingestResults(w http.ResponseWriter, j *job, which string) {
	j.mu.Lock()
	if which == "unprocessedrecords" && j.header == nil && j.data != nil {
		if err := j.parseLocked(); err != nil {
			// Unparseable data cannot be split into records: hand it back as uploaded.
			data := j.data
			j.mu.Unlock()
			w.Header().Set("Content-Type", "text/csv")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data)
			return
		}
	}
	header, rows, results, state := j.header, j.rows, j.results, j.state
	delim, le := j.delim, eol(j.lineEnding)
	j.mu.Unlock()

	w.Header().Set("Content-Type", "text/csv")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	var line []byte
	writeRow := func(prefix []string, row []string) {
		line = line[:0]
		for i, p := range prefix {
			if i > 0 {
				line = append(line, delim)
			}
			line = appendQuoted(line, p)
		}
		for i, v := range row {
			if i > 0 || len(prefix) > 0 {
				line = append(line, delim)
			}
			line = appendQuoted(line, v)
		}
		line = append(line, le...)
		_, _ = bw.Write(line)
	}
	// Result files repeat the job's columns after their own sf__ columns.
	writeHeader := func(prefix ...string) { writeRow(prefix, header) }

	switch which {
	case "successfulResults":
		writeHeader("sf__Id", "sf__Created")
		for i, res := range results {
			if res.Err == nil {
				created := "false"
				if res.Created {
					created = "true"
				}
				writeRow([]string{res.ID, created}, rows[i])
			}
		}
	case "failedResults":
		writeHeader("sf__Id", "sf__Error")
		for i, res := range results {
			if res.Err != nil {
				writeRow([]string{res.ID, FormatError(res.Err)}, rows[i])
			}
		}
	case "unprocessedrecords":
		if header == nil {
			return
		}
		writeHeader()
		// Rows are unprocessed only when processing stopped early; a running job's tail is still to come.
		if state == StateAborted || state == StateFailed || state == StateOpen || state == StateUploadComplete {
			for _, row := range rows[len(results):] {
				writeRow(nil, row)
			}
		}
	}
}
