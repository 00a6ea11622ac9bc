package outbound

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// sendBulk writes the changes at idx through one Bulk API 2.0 ingest job
// and fills their results. Results come back in no particular order, so
// they are matched by the record's Id (update, delete) or external id
// (upsert); that is why plain inserts never go this way. A job that fails
// as a whole returns an error and the caller falls back to Collections,
// which is safe because these operations are idempotent and the job can no
// longer write (it failed, was aborted, or was never closed). A worker told
// to stop hands the changes back unsent rather than start a job.
func (s *Service) sendBulk(ctx context.Context, m *Mapping, op string, changes []*change, idx []int, results []outcome) error {
	if err := s.waitBudget(ctx, m); err != nil {
		return err
	}
	if s.stopped() {
		// A job opened now could not be waited for (see below): it was
		// aborted at once, and one whose abort did not take ran after the
		// next worker had sent the same changes again. Nothing of the
		// batch has reached Salesforce, so it waits for that worker.
		handBack(idx, results)
		return nil
	}
	job := salesforce.IngestJob{Object: m.SObject, Operation: op}
	key := "Id"
	if op == "upsert" {
		job.ExternalIDFieldName = m.UpsertField
		key = m.UpsertField
	}
	// The CSV's columns: every field any record carries; a relationship
	// by external id is the column Relationship.ExtField.
	seen := map[string]bool{key: true}
	columns := []string{key}
	if op != "delete" {
		var extra []string
		for _, i := range idx {
			for k, v := range changes[i].record.Fields {
				name := k
				if r, ok := v.(salesforce.Record); ok {
					for f := range r.Fields {
						name = k + "." + f
					}
				}
				if !seen[name] {
					seen[name] = true
					extra = append(extra, name)
				}
			}
		}
		sort.Strings(extra)
		columns = append(columns, extra...)
	}
	info, err := s.sf.CreateIngestJob(ctx, job)
	if err != nil {
		return fmt.Errorf("create ingest job: %w", err)
	}
	// Known to the database before it can run, so that the entries stay
	// held until it ends if this worker dies (see reclaim). Forgotten once
	// it has ended or was aborted; a job whose state cannot be told stays
	// known, for the next reclaim to settle.
	var entries []int64
	for _, i := range idx {
		entries = append(entries, changes[i].Entries...)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO pgforce.outbound_bulk_job (job_id, mapping_id, worker, entries) VALUES ($1, $2, $3, $4)`,
		info.ID, m.ID, s.opts.WorkerID, entries); err != nil {
		s.abortJob(ctx, m.ID, info.ID)
		return fmt.Errorf("record ingest job: %w", err)
	}
	known := true
	defer func() {
		if known {
			s.forgetJob(ctx, info.ID)
		}
	}()
	err = s.sf.UploadIngestData(ctx, info.ID, columns, func(w *salesforce.CSVWriter) error {
		row := make([]any, len(columns))
		for _, i := range idx {
			c := changes[i]
			for k, col := range columns {
				switch {
				case op == "delete":
					row[k] = c.SFID
				case col == key && op == "update":
					row[k] = c.SFID
				default:
					row[k] = bulkCell(c.record.Fields, col)
				}
			}
			if err := w.Write(row...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Never closed, the job writes nothing; aborted, it is not left open.
		s.abortJob(ctx, m.ID, info.ID)
		return fmt.Errorf("upload ingest data: %w", err)
	}
	if s.stopped() {
		// Told to stop while uploading: a job that is never closed never
		// runs, even if the abort does not take, whereas a closed one
		// would have to be aborted before it starts, or ran beside the
		// next worker's send of the same changes.
		s.abortJob(ctx, m.ID, info.ID)
		handBack(idx, results)
		return nil
	}
	if _, err := s.sf.CloseIngestJob(ctx, info.ID); err != nil {
		// The close may have reached Salesforce though its answer did not.
		// A closed job runs, and the changes sent again meanwhile through
		// Collections, and any newer ones after them, would be overwritten
		// by its older values when it does. So the job's state decides: a
		// job still open is aborted and the batch goes through
		// Collections; a closed one is waited for like any other; one
		// whose state cannot be told leaves the batch to be sent again
		// later rather than beside it.
		job, ierr := s.sf.IngestJobInfo(ctx, info.ID)
		switch {
		case ierr == nil && job.State == salesforce.JobOpen:
			s.abortJob(ctx, m.ID, info.ID)
			return fmt.Errorf("close ingest job: %w", err)
		case ierr != nil:
			s.abortJob(ctx, m.ID, info.ID)
			known = false
			return s.holdJob(ctx, m, info.ID, idx, results, err, ierr)
		}
	}
	// A worker told to stop does not wait for the job, which a real org
	// may take many minutes over: the job is aborted and held like one
	// whose end could not be waited for, below, and whoever sees it end
	// hands its changes back.
	wait := ctx
	if s.stopping != nil {
		var cancel context.CancelFunc
		wait, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.stopping, cancel)()
	}
	if _, err := s.sf.WaitIngestJob(wait, info.ID, s.opts.BulkPoll); err != nil {
		var failed *salesforce.JobFailedError
		if errors.As(err, &failed) {
			// Failed or aborted: it writes no more, and Collections may.
			return fmt.Errorf("ingest job %s: %w", info.ID, err)
		}
		// Its end could not be waited for: it may still run, so the
		// batch is not sent beside it.
		s.abortJob(ctx, m.ID, info.ID)
		known = false
		return s.holdJob(ctx, m, info.ID, idx, results, err, nil)
	}
	byKey := make(map[string]int, len(idx))
	for _, i := range idx {
		k := changes[i].SFID
		if op == "upsert" {
			k = changes[i].extID
		}
		byKey[k] = i
		results[i] = outcome{kind: outTransient} // until a result says otherwise
	}
	err = s.sf.IngestSuccessfulResults(ctx, info.ID, func(r salesforce.Row) error {
		k, _ := r.Get(key)
		if i, ok := byKey[k]; ok {
			id, _ := r.Get("sf__Id")
			created, _ := r.Get("sf__Created")
			results[i] = outcome{kind: outOK, id: id, matched: op == "upsert" && created == "false"}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read successful results: %w", err)
	}
	err = s.sf.IngestFailedResults(ctx, info.ID, func(r salesforce.Row) error {
		k, _ := r.Get(key)
		if i, ok := byKey[k]; ok {
			msg, _ := r.Get("sf__Error")
			id, _ := r.Get("sf__Id")
			results[i] = saveOutcome(op, salesforce.SaveResult{ID: id, Errors: []salesforce.RecordError{salesforce.ParseBulkError(msg)}})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read failed results: %w", err)
	}
	return nil
}

// stopped says the worker has been told to stop (see Service.stopping).
func (s *Service) stopped() bool {
	return s.stopping != nil && s.stopping.Err() != nil
}

// handBack marks the changes at idx as never sent, for the queue to take
// back without counting the claim as an attempt.
func handBack(idx []int, results []outcome) {
	for _, i := range idx {
		results[i] = outcome{kind: outTransient, unsent: true}
	}
}

// holdJob leaves the changes at idx with a job that may still run (its close
// or its wait failed with no answer, and the abort tried after may not have
// taken): their entries stay claimed, and the job is marked for reclaim,
// which hands them back once Salesforce says it has ended, whatever this
// worker does meanwhile. Sent again before, beside the job, they and any
// newer change of their records would be overwritten by the job's older
// values when it ran.
func (s *Service) holdJob(ctx context.Context, m *Mapping, id string, idx []int, results []outcome, cause, stateErr error) error {
	s.log.Warn("outbound: bulk job may still run; its changes wait until it is seen ending", "mapping", m.ID, "job", id, "err", cause, "state_err", stateErr)
	if _, err := s.pool.Exec(context.WithoutCancel(ctx), `UPDATE pgforce.outbound_bulk_job SET orphaned = true WHERE job_id = $1`, id); err != nil {
		// The row stays as it was: its entries go back to the queue as
		// passing failures, as before the job was known to be in doubt.
		s.forgetJob(ctx, id)
		return fmt.Errorf("mark ingest job %s in doubt: %w", id, err)
	}
	for _, i := range idx {
		results[i] = outcome{kind: outHeld}
	}
	return nil
}

// abortJob aborts an ingest job that will not be used, as far as
// Salesforce lets it: a job whose state cannot change any more stays as it
// is.
func (s *Service) abortJob(ctx context.Context, mappingID int, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := s.sf.AbortIngestJob(ctx, id); err != nil {
		s.log.Warn("outbound: abort bulk job", "mapping", mappingID, "job", id, "err", err)
	}
}

// forgetJob deletes a job that has ended, or will never run, from
// pgforce.outbound_bulk_job. Should it fail, the row stays until a reclaim
// finds the job ended, which does no harm.
func (s *Service) forgetJob(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM pgforce.outbound_bulk_job WHERE job_id = $1`, id); err != nil {
		s.log.Warn("outbound: forget bulk job", "job", id, "err", err)
	}
}

// bulkCell is the value of column col for a record: a field, a
// relationship's external id (Relationship.Field), or Unchanged.
func bulkCell(fields map[string]any, col string) any {
	if v, ok := fields[col]; ok {
		return v
	}
	for k, v := range fields {
		if r, ok := v.(salesforce.Record); ok {
			for f, fv := range r.Fields {
				if k+"."+f == col {
					return fv
				}
			}
		}
	}
	return salesforce.Unchanged
}
