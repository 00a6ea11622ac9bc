package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// release hands changes back to the queue unsent.
func (s *Service) release(ctx context.Context, changes []*change) {
	var ids []int64
	for _, c := range changes {
		ids = append(ids, c.Entries...)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE pgforce.outbox SET claimed_at = NULL, claimed_by = NULL
		WHERE id = ANY($1) AND claimed_by = $2`, ids, s.opts.WorkerID); err != nil {
		s.log.Error("outbound: release claims", "err", err, "entries", len(ids))
	}
}

// hcErr is the JSON written to a row's _hc_err, as Heroku Connect does.
type hcErr struct {
	ErrorCode string   `json:"errorCode"`
	Message   string   `json:"message"`
	Fields    []string `json:"fields"`
}

type successRow struct {
	RecordID int      `json:"record_id"`
	SFID     string   `json:"sfid"`
	Op       string   `json:"op"`
	Keys     []string `json:"keys"`
	RetryOf  []int64  `json:"retry_of"`
}

type failureRow struct {
	RecordID  int             `json:"record_id"`
	SFID      *string         `json:"sfid"`
	Op        string          `json:"op"`
	Payload   json.RawMessage `json:"payload"`
	ErrorCode string          `json:"error_code"`
	Message   string          `json:"message"`
	Fields    []string        `json:"fields"`
	HCErr     string          `json:"hc_err"`
	RetryOf   *int64          `json:"retry_of"`
}

// record writes the outcome of a batch in one transaction: Ids and
// _hc_lastop back onto the rows (as the worker, so nothing is captured),
// error rows for refused records, resolved errors for records that went
// through, written entries deleted and transient ones released.
func (s *Service) record(ctx context.Context, m *Mapping, changes []*change, results []outcome) error {
	var done, requeue []int64
	var ok []successRow
	var failed []failureRow
	for i, c := range changes {
		r := results[i]
		switch r.kind {
		case outTransient, outDeferred:
			requeue = append(requeue, c.Entries...)
			continue
		case outNone:
			done = append(done, c.Entries...)
		case outOK:
			done = append(done, c.Entries...)
			if c.Op == "delete" {
				ok = append(ok, successRow{RecordID: c.RecordID, Op: "delete", RetryOf: c.RetryOf, Keys: []string{}})
				continue
			}
			sfid := r.id
			if sfid == "" {
				sfid = c.SFID
			}
			keys := make([]string, 0, len(c.record.Fields))
			for k := range c.record.Fields {
				keys = append(keys, k)
			}
			ok = append(ok, successRow{RecordID: c.RecordID, SFID: sfid, Op: c.Op, Keys: keys, RetryOf: c.RetryOf})
		case outFailed:
			done = append(done, c.Entries...)
			payload := c.record.Fields
			if c.Op == "delete" {
				payload = map[string]any{"Id": c.SFID}
			}
			pb, err := json.Marshal(payload)
			if err != nil {
				return err
			}
			fields := r.err.Fields
			if fields == nil {
				fields = []string{}
			}
			he, _ := json.Marshal(hcErr{ErrorCode: r.err.StatusCode, Message: r.err.Message, Fields: fields})
			f := failureRow{RecordID: c.RecordID, Op: c.Op, Payload: pb, ErrorCode: r.err.StatusCode,
				Message: r.err.Message, Fields: fields, HCErr: string(he)}
			if c.SFID != "" {
				sfid := c.SFID
				f.SFID = &sfid
			}
			if len(c.RetryOf) > 0 {
				last := c.RetryOf[len(c.RetryOf)-1]
				f.RetryOf = &last
			}
			if f.Message == "" {
				f.Message = "Salesforce refused the record without a message"
			}
			failed = append(failed, f)
		}
	}
	okJSON, err := json.Marshal(ok)
	if err != nil {
		return err
	}
	failedJSON, err := json.Marshal(failed)
	if err != nil {
		return err
	}
	table := m.Table()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL pgforce.origin = 'salesforce'`); err != nil {
			return err
		}
		if len(ok) > 0 {
			// An inserted row gets its Id; a row is stamped SYNCED unless a
			// newer change of it is still queued (it stays PENDING then).
			if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s t SET sfid = CASE WHEN s.sfid <> '' THEN s.sfid ELSE t.sfid END,
					_hc_lastop = 'SYNCED', _hc_err = NULL
				FROM jsonb_to_recordset($1) AS s(record_id integer, sfid text, op text)
				WHERE t.id = s.record_id AND s.op <> 'delete'
				  AND ((s.sfid <> '' AND t.sfid IS DISTINCT FROM s.sfid)
				       OR ((t._hc_lastop IS DISTINCT FROM 'SYNCED' OR t._hc_err IS NOT NULL)
				           AND NOT EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $2 AND o.record_id = t.id AND o.id <> ALL($3))))`, table),
				okJSON, m.ID, done); err != nil {
				return fmt.Errorf("write back ids: %w", err)
			}
			// Errors this success settles: the retried ones, a failed insert
			// once the record exists, a failed update once every field it
			// carried has been written since.
			if _, err := tx.Exec(ctx, `UPDATE pgforce.error e SET state = 'resolved', sfid = coalesce(e.sfid, nullif(s.sfid, ''))
				FROM jsonb_to_recordset($1) AS s(record_id integer, sfid text, op text, keys text[], retry_of bigint[])
				WHERE e.mapping_id = $2 AND e.record_id = s.record_id AND e.direction = 'outbound'
				  AND (e.id = ANY(s.retry_of) AND e.state IN ('open', 'retrying')
				       OR e.state = 'open' AND (
				            e.operation IN ('insert', 'upsert') AND s.op IN ('insert', 'upsert')
				         OR e.operation = 'delete' AND s.op = 'delete'
				         OR e.operation = 'update' AND s.op IN ('insert', 'update')
				            AND NOT EXISTS (SELECT FROM jsonb_object_keys(coalesce(e.payload, '{}')) k WHERE k <> 'Id' AND NOT k = ANY(s.keys))))`,
				okJSON, m.ID); err != nil {
				return fmt.Errorf("resolve errors: %w", err)
			}
		}
		if len(failed) > 0 {
			// A retry that fails again reopens its error; any other failure
			// is a new error row.
			if _, err := tx.Exec(ctx, `WITH f AS (
					SELECT * FROM jsonb_to_recordset($1) AS f(record_id integer, sfid text, op text, payload jsonb,
						error_code text, message text, fields text[], hc_err text, retry_of bigint)
				), reopened AS (
					UPDATE pgforce.error e SET state = 'open', attempts = e.attempts + 1, error_code = f.error_code,
						message = f.message, fields = f.fields, payload = f.payload
					FROM f WHERE e.id = f.retry_of AND e.state = 'retrying'
					RETURNING e.id
				)
				INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields)
				SELECT $2, 'outbound', f.op, f.record_id, f.sfid, f.payload, f.error_code, f.message, f.fields
				FROM f WHERE f.retry_of IS NULL OR f.retry_of NOT IN (SELECT id FROM reopened)`, failedJSON, m.ID); err != nil {
				return fmt.Errorf("record errors: %w", err)
			}
			// The status trigger reads an unchanged _hc_lastop on a worker
			// write as "synced"; clear it first where it already says FAILED.
			if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s t SET _hc_lastop = NULL
				FROM jsonb_to_recordset($1) AS f(record_id integer) WHERE t.id = f.record_id AND t._hc_lastop = 'FAILED'`, table), failedJSON); err != nil {
				return fmt.Errorf("mark rows failed: %w", err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s t SET _hc_lastop = 'FAILED', _hc_err = f.hc_err
				FROM jsonb_to_recordset($1) AS f(record_id integer, hc_err text) WHERE t.id = f.record_id`, table), failedJSON); err != nil {
				return fmt.Errorf("mark rows failed: %w", err)
			}
		}
		if len(done) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM pgforce.outbox WHERE id = ANY($1)`, done); err != nil {
				return fmt.Errorf("delete written entries: %w", err)
			}
		}
		if len(requeue) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE pgforce.outbox SET claimed_at = NULL, claimed_by = NULL WHERE id = ANY($1)`, requeue); err != nil {
				return fmt.Errorf("requeue entries: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(ok)+len(failed) > 0 {
		s.touchMapping(ctx, m)
	}
	return nil
}

// touchMapping sets last_outbound_at, at most every 10 seconds: a mapping
// update wakes every service watching pgforce.mapping.
func (s *Service) touchMapping(ctx context.Context, m *Mapping) {
	s.mu.Lock()
	last := s.lastOut[m.ID]
	due := time.Since(last) > 10*time.Second
	if due {
		s.lastOut[m.ID] = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if _, err := s.pool.Exec(ctx, `UPDATE pgforce.mapping SET last_outbound_at = now() WHERE id = $1`, m.ID); err != nil {
		s.log.Warn("outbound: set last_outbound_at", "mapping", m.ID, "err", err)
	}
}

// reverts acts on pgforce.revert: the row takes Salesforce's values again
// (or goes away, when its insert never created a record there), written as
// the worker so that nothing is captured.
func (s *Service) reverts(ctx, work context.Context, m *Mapping) error {
	type rev struct {
		id       int64
		recordID int
		sfid     string
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT e.id, e.record_id, coalesce(t.sfid, e.sfid, '')
		FROM pgforce.error e LEFT JOIN %s t ON t.id = e.record_id
		WHERE e.mapping_id = $1 AND e.state = 'retrying' AND e.action = 'revert' ORDER BY e.id`, m.Table()), m.ID)
	if err != nil {
		return err
	}
	var revs []rev
	for rows.Next() {
		var r rev
		if err := rows.Scan(&r.id, &r.recordID, &r.sfid); err != nil {
			rows.Close()
			return err
		}
		revs = append(revs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(revs) == 0 {
		return err
	}
	fields := []string{"Id"}
	pgCols := map[string]string{} // API name -> column
	for _, c := range m.Columns {
		if c.Type == "address" || c.Type == "location" || strings.EqualFold(c.Name, "Id") {
			continue
		}
		fields = append(fields, c.Name)
		pgCols[c.Name] = strings.ToLower(c.Name)
	}
	sort.Strings(fields[1:])
	var ids []string
	for _, r := range revs {
		if r.sfid != "" {
			ids = append(ids, r.sfid)
		}
	}
	got := map[string]map[string]any{}
	if len(ids) > 0 {
		recs, err := s.sf.Retrieve(work, m.SObject, ids, fields)
		if err != nil {
			return fmt.Errorf("read records to revert: %w", err)
		}
		for _, rec := range recs {
			if rec == nil {
				continue
			}
			vals := map[string]any{}
			for api, col := range pgCols {
				if v, ok := rec.Get(api); ok {
					if typ := columnType(m, api); typ == "datetime" {
						if str, ok := v.(string); ok {
							if t, err := salesforce.ParseDateTime(str); err == nil {
								v = t.Format(time.RFC3339Nano)
							}
						}
					}
					vals[col] = v
				}
			}
			got[strings.ToLower(rec.ID())] = vals
		}
	}
	return pgx.BeginFunc(work, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(work, `SET LOCAL pgforce.origin = 'salesforce'`); err != nil {
			return err
		}
		for _, r := range revs {
			switch vals, found := got[strings.ToLower(r.sfid)]; {
			case r.sfid == "":
				// The insert never created a record: the row goes.
				if _, err := tx.Exec(work, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, m.Table()), r.recordID); err != nil {
					return err
				}
			case !found:
				// Deleted in Salesforce meanwhile.
				if _, err := tx.Exec(work, fmt.Sprintf(`UPDATE %s SET isdeleted = true WHERE id = $1`, m.Table()), r.recordID); err != nil {
					return err
				}
			default:
				b, err := json.Marshal(vals)
				if err != nil {
					return err
				}
				cols := make([]string, 0, len(vals))
				for c := range vals {
					cols = append(cols, pgx.Identifier{c}.Sanitize())
				}
				sort.Strings(cols)
				if len(cols) > 0 {
					list := strings.Join(cols, ", ")
					if _, err := tx.Exec(work, fmt.Sprintf(`UPDATE %s t SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1)),
						_hc_lastop = 'SYNCED', _hc_err = NULL WHERE t.id = $2`, m.Table(), list, list, m.Table()), b, r.recordID); err != nil {
						return fmt.Errorf("revert row %d: %w", r.recordID, err)
					}
				}
			}
			if _, err := tx.Exec(work, `DELETE FROM pgforce.outbox WHERE mapping_id = $1 AND record_id = $2 AND claimed_at IS NULL`, m.ID, r.recordID); err != nil {
				return err
			}
			if _, err := tx.Exec(work, `UPDATE pgforce.error SET state = 'resolved' WHERE id = $1`, r.id); err != nil {
				return err
			}
		}
		return nil
	})
}

func columnType(m *Mapping, api string) string {
	for _, c := range m.Columns {
		if strings.EqualFold(c.Name, api) {
			return c.Type
		}
	}
	return ""
}
