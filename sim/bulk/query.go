package bulk

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

func (s *Server) createQuery(w http.ResponseWriter, r *http.Request, version string) {
	var body struct {
		Operation       string `json:"operation"`
		Query           string `json:"query"`
		ContentType     string `json:"contentType"`
		ColumnDelimiter string `json:"columnDelimiter"`
		LineEnding      string `json:"lineEnding"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "Cannot parse the job request: "+err.Error())
		return
	}
	if body.Operation == "" {
		body.Operation = "query"
	}
	if body.Operation != "query" && body.Operation != "queryAll" {
		writeError(w, http.StatusBadRequest, "INVALIDJOB",
			"InvalidJob : Invalid operation '"+body.Operation+"'; use query or queryAll")
		return
	}
	if strings.TrimSpace(body.Query) == "" {
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "InvalidJob : Required field 'query' is missing")
		return
	}
	delimName, delim, le, err := jobOptions(body.ContentType, body.ColumnDelimiter, body.LineEnding)
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "InvalidJob : "+err.Error())
		return
	}
	// The snapshot is taken now, so the results reflect the data as of job creation, and bad SOQL is
	// answered synchronously like the platform does. The cursor outlives this request.
	cur, err := s.backend.Query(context.WithoutCancel(r.Context()), body.Query, body.Operation == "queryAll")
	if err != nil {
		var qe *QueryError
		if errors.As(err, &qe) {
			writeError(w, http.StatusBadRequest, qe.Code, qe.Message)
		} else {
			writeError(w, http.StatusInternalServerError, "UNKNOWN_EXCEPTION", err.Error())
		}
		return
	}
	object := ""
	if o, ok := cur.(Objecter); ok {
		object = o.Object()
	} else {
		object = fromObject(body.Query)
	}
	_, sized := cur.(Sizer)
	_, seeks := cur.(Seeker)

	j := s.newJob("query", version)
	j.mu.Lock()
	j.operation, j.object, j.query = body.Operation, object, body.Query
	j.delimName, j.delim, j.lineEnding = delimName, delim, le
	j.cursor, j.direct, j.columns = cur, sized && seeks, cur.Columns()
	j.state = StateUploadComplete
	j.values = context.WithoutCancel(r.Context())
	j.mu.Unlock()
	info := j.info(infoCreate) // before processing can move the state on
	s.goProcess(j)
	writeJSON(w, http.StatusOK, info)
}

var fromRE = regexp.MustCompile(`(?i)\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)`)

// fromObject finds the queried object of a SOQL text for the job info when the cursor does not say. The
// first FROM outside parentheses is the main one; subqueries in the select list come before it.
func fromObject(q string) string {
	depth := 0
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case '(':
			depth++
		case ')':
			depth--
		case '\'':
			for i++; i < len(q) && q[i] != '\''; i++ {
				if q[i] == '\\' {
					i++
				}
			}
		default:
			if depth == 0 && (i == 0 || !isIdent(q[i-1])) {
				if m := fromRE.FindStringSubmatchIndex(q[i:]); m != nil && m[0] == 0 {
					return q[i+m[2] : i+m[3]]
				}
			}
		}
	}
	return ""
}

func isIdent(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func (s *Server) runQuery(ctx context.Context, j *job) {
	if !j.wait(ctx, s.opts.ProcessDelay) {
		return
	}
	j.setState(StateInProgress)
	if !j.wait(ctx, s.opts.ProcessDelay) {
		return
	}
	j.pageMu.Lock()
	cur := j.cursor
	if cur == nil { // deleted meanwhile
		j.pageMu.Unlock()
		return
	}
	total := 0
	if j.direct {
		total = cur.(Sizer).Len()
	} else {
		// A forward-only cursor is read now, once, so locators can point back into it later.
		sp := &spool{}
		for done := false; !done; {
			select {
			case <-j.aborted:
				j.pageMu.Unlock()
				return
			default:
			}
			var rows [][]string
			var err error
			rows, done, err = cur.Next(5000)
			if err != nil {
				j.pageMu.Unlock()
				j.fail("UNKNOWN_EXCEPTION : " + err.Error())
				return
			}
			for _, row := range rows {
				sp.add(row, j.delim)
			}
		}
		j.spool = sp
		total = len(sp.ends)
	}
	j.pageMu.Unlock()
	j.mu.Lock()
	j.total = total
	j.processed = total
	j.setStateLocked(StateJobComplete)
	j.mu.Unlock()
}

// statusName renders a state the way the JOB_NOT_COMPLETE message does (IN_PROGRESS, UPLOAD_COMPLETE...).
func statusName(state string) string {
	var b strings.Builder
	for i, c := range state {
		if i > 0 && c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(c)
	}
	return strings.ToUpper(b.String())
}

// Locators are the row offset of the next page, base64-encoded without padding like Salesforce's
// ("MTAwMDA" is offset 10000).
func encodeLocator(offset int) string {
	return base64.RawStdEncoding.EncodeToString([]byte(strconv.Itoa(offset)))
}

func decodeLocator(loc string) (int, bool) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(loc, "="))
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(b))
	return n, err == nil && n >= 0
}

func (s *Server) queryResults(w http.ResponseWriter, r *http.Request, j *job) {
	j.mu.Lock()
	state, total, delim, le, columns := j.state, j.total, j.delim, eol(j.lineEnding), j.columns
	j.mu.Unlock()
	if state != StateJobComplete {
		writeError(w, http.StatusPreconditionFailed, "JOB_NOT_COMPLETE",
			"can only download query results of successfully completed bulk job with status: JOB_COMPLETE. Current status: "+statusName(state))
		return
	}
	q := r.URL.Query()
	offset := 0
	if loc := q.Get("locator"); loc != "" && loc != "null" {
		var ok bool
		if offset, ok = decodeLocator(loc); !ok || offset > total {
			writeError(w, http.StatusBadRequest, "INVALID_QUERY_LOCATOR", "Invalid query locator: "+loc)
			return
		}
	}
	pageSize := s.opts.DefaultMaxRecords
	if v := q.Get("maxRecords"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "INVALIDPARAMETER",
				"maxRecords must be a positive integer, got '"+v+"'")
			return
		}
		pageSize = n
	}
	count := min(pageSize, total-offset)
	next := "null"
	if offset+count < total {
		next = encodeLocator(offset + count)
	}

	// Serialize readers of this job's cursor: a page is Seek + Next on shared state.
	j.pageMu.Lock()
	defer j.pageMu.Unlock()
	if j.cursor == nil && j.spool == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	if j.direct {
		if err := j.cursor.(Seeker).Seek(offset); err != nil {
			writeError(w, http.StatusInternalServerError, "UNKNOWN_EXCEPTION", err.Error())
			return
		}
	}

	h := w.Header()
	h.Set("Content-Type", "text/csv")
	h.Set("Sforce-Locator", next)
	h.Set("Sforce-NumberOfRecords", strconv.Itoa(count))
	w.WriteHeader(http.StatusOK)

	bw := bufio.NewWriterSize(w, 256<<10)
	line := appendRow(make([]byte, 0, 4096), columns, delim)
	line = append(line, le...)
	_, _ = bw.Write(line)

	if !j.direct {
		for i := offset; i < offset+count; i++ {
			_, _ = bw.Write(j.spool.line(i))
			_, _ = bw.WriteString(le)
		}
		_ = bw.Flush()
		return
	}
	for remaining := count; remaining > 0; {
		rows, done, err := j.cursor.Next(min(remaining, 4096))
		if err != nil {
			// The status line is gone already; cutting the connection is the only honest signal left.
			panic(http.ErrAbortHandler)
		}
		for _, row := range rows {
			line = appendRow(line[:0], row, delim)
			line = append(line, le...)
			if _, err := bw.Write(line); err != nil {
				return // client went away
			}
		}
		remaining -= len(rows)
		if done {
			break
		}
	}
	_ = bw.Flush()
}
