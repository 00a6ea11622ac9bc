package outbound

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/txretry"
)

// releaseUnsent is the SET list that hands entries back to the queue after
// a claim that sent nothing: the claim is not counted as an attempt (see
// findCreated), and an entry no claim may have sent has no sent_from. Nor
// has it anything in flight: the fields taken out of it while it was
// claimed (dropped, see pgforce._drop_pending) went nowhere, and the next
// claim reads the entry without them. Still counted in flight, a later
// Salesforce value that won one of them was queued to be written back over
// a Postgres write that never came, and was sent to Salesforce for nothing.
const releaseUnsent = `claimed_at = NULL, claimed_by = NULL, attempts = greatest(attempts - 1, 0),
	sent_from = CASE WHEN attempts > 1 THEN sent_from END, dropped = CASE WHEN attempts > 1 THEN dropped END`

// release hands changes back to the queue unsent. Their claim is not
// counted as an attempt: nothing of it reached Salesforce.
func (s *Service) release(ctx context.Context, changes []*change) {
	var ids []int64
	for _, c := range changes {
		ids = append(ids, c.Entries...)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE pgforce.outbox SET `+releaseUnsent+` WHERE id = ANY($1) AND claimed_by = $2`, ids, s.opts.WorkerID); err != nil {
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

	fields map[string]any // what was sent, whose names become Keys
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
	// Entries are the change's outbox entries, whose old values (what
	// Salesforce held before the change, as far as Postgres knew) go on
	// the error as old: a retry carries them, so that a later read of the
	// record can tell which fields Salesforce did not change.
	Entries []int64 `json:"entries"`
}

// record writes the outcome of a batch in one transaction: Ids and
// _hc_lastop back onto the rows (as the worker, so nothing is captured),
// error rows for refused records, resolved errors for records that went
// through, written entries deleted and transient ones released.
func (s *Service) record(ctx context.Context, m *Mapping, claimedAt, wroteBy time.Time, changes []*change, results []outcome) error {
	done := make([]int64, 0, len(changes))
	ok := make([]successRow, 0, len(changes))
	var requeue, unsent []int64
	var echoGone, written []string // written: the Ids of the records written or deleted
	var failed []failureRow
	var asInserts []asInsert
	for i, c := range changes {
		r := results[i]
		switch r.kind {
		case outHeld:
			continue
		case outTransient, outDeferred:
			if r.unsent {
				unsent = append(unsent, c.Entries...)
			} else {
				requeue = append(requeue, c.Entries...)
				if r.kind == outTransient && c.wholeRow != nil && c.Op == "insert" {
					// Sent as the insert of the whole row, it may have made
					// the record, the answer lost. Queued as the update it
					// was, it was sent as a create again, a second record;
					// as the insert it now is, with the values sent, the
					// next claim looks for that record first (see
					// findCreated), as for any insert in doubt.
					asInserts = append(asInserts, asInsert{ID: c.Entries[0], New: c.wholeRow})
				}
			}
			continue
		case outNone:
			done = append(done, c.Entries...)
			// Nothing to send (the changed column names no field Salesforce
			// holds, say a relationship cleared to NULL): the row, if it is
			// still there, is settled all the same, or it stayed PENDING.
			ok = append(ok, successRow{RecordID: c.RecordID, Op: "none", RetryOf: c.RetryOf, Keys: []string{}})
		case outOK:
			done = append(done, c.Entries...)
			unsent = append(unsent, c.putBack...)
			sfid := cmp.Or(r.id, c.SFID)
			if sfid != "" {
				written = append(written, sfid)
			}
			if c.Op == "delete" {
				ok = append(ok, successRow{RecordID: c.RecordID, Op: "delete", RetryOf: c.RetryOf, Keys: []string{}})
				if c.echoGone {
					echoGone = append(echoGone, c.SFID)
				}
				continue
			}
			ok = append(ok, successRow{RecordID: c.RecordID, SFID: sfid, Op: c.Op, RetryOf: c.RetryOf, fields: c.record.Fields})
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
			if c.Op == "update" {
				f.Entries = c.Entries
			}
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
	s.noteWritten(m, ok, wroteBy)
	failedJSON, err := json.Marshal(failed)
	if err != nil {
		return err
	}
	var asInsertsJSON []byte
	if len(asInserts) > 0 {
		if asInsertsJSON, err = json.Marshal(asInserts); err != nil {
			return err
		}
	}
	rec := &recording{m: m, claimedAt: claimedAt, okRows: ok, failed: failedJSON, nOK: len(ok), nFailed: len(failed), done: done, requeue: requeue, asInserts: asInsertsJSON, unsent: unsent, echoGone: echoGone, written: written,
		writtenRows: make([]int32, 0, len(ok)), okSFIDs: make([]string, 0, len(ok)),
		rows: make([]int32, 0, len(changes)), entries: make([]int64, 0, len(changes))}
	for _, o := range ok {
		if o.Op == "insert" || o.Op == "upsert" {
			rec.inserts = true
		}
		if o.Op != "delete" {
			rec.writtenRows = append(rec.writtenRows, int32(o.RecordID))
			rec.okSFIDs = append(rec.okSFIDs, o.SFID)
		}
	}
	for i, c := range changes {
		if results[i].kind == outHeld {
			continue // its Bulk job holds them (see holdJob), not this outcome
		}
		rec.rows = append(rec.rows, int32(c.RecordID))
		rec.entries = append(append(rec.entries, c.Entries...), c.putBack...)
	}
	if err := s.writeRecording(ctx, rec); err != nil {
		// The changes are in Salesforce (or refused there) but their
		// outcome is not in Postgres. The entries stay claimed by this live
		// worker, so nobody sends them again, and the outcome is recorded
		// again at the start of the next cycle: releasing them instead
		// would send plain inserts twice.
		s.mu.Lock()
		s.unrecorded = append(s.unrecorded, rec)
		s.mu.Unlock()
		return fmt.Errorf("record results of %d changes (kept to record again): %w", len(changes), err)
	}
	return nil
}

// asInsert is an entry to turn into the insert of New (see record).
type asInsert struct {
	ID  int64          `json:"id"`
	New map[string]any `json:"new"`
}

// recording is the outcome of one batch, ready to be written.
type recording struct {
	m            *Mapping
	claimedAt    time.Time // when the batch's entries were claimed
	okRows       []successRow
	ok           []byte   // JSON of okRows, made by okJSON when a statement needs it
	failed       []byte   // JSON of failureRow
	writtenRows  []int32  // rows written (not deleted): the write-back
	okSFIDs      []string // their Ids, "" when unchanged
	nOK, nFailed int
	done         []int64  // entries to delete
	requeue      []int64  // entries to hand back to the queue
	asInserts    []byte   // JSON of asInsert: requeued entries that become the insert they were sent as
	unsent       []int64  // entries to hand back that never reached Salesforce
	echoGone     []string // records deleted whose echo rows go too (see change.echoGone)
	written      []string // Ids of the records written or deleted
	rows         []int32  // every row the batch touches
	entries      []int64  // every entry the batch holds
	tries        int      // cycles that failed to record it again
	inserts      bool     // some records were created (they got an Id)
}

// okJSON is the JSON of the batch's successes, made the first time a
// statement needs it: only a batch with inserts (adopting their echo rows)
// or a mapping with outbound errors to settle sends it, and a Bulk drain
// of updates does neither, so it never pays for the field names of every
// record.
func (rec *recording) okJSON() ([]byte, error) {
	if rec.ok != nil {
		return rec.ok, nil
	}
	for i := range rec.okRows {
		o := &rec.okRows[i]
		o.Keys = make([]string, 0, len(o.fields))
		for k := range o.fields {
			o.Keys = append(o.Keys, k)
		}
	}
	b, err := json.Marshal(rec.okRows)
	if err != nil {
		return nil, err
	}
	rec.ok = b
	return b, nil
}

// writeRecording writes a batch outcome, running the transaction again
// when it lost a lock conflict (see txretry.Run): Postgres aborted it to
// break a deadlock or a serialization conflict (the inbound worker
// applying the CDC echo of these very records is the usual other party),
// or it gave way to the application's row locks. It waits for those as
// long as they are held, and a stopping worker waits too: the batch has
// been written to Salesforce, and only its recording settles it.
func (s *Service) writeRecording(ctx context.Context, rec *recording) error {
	if err := txretry.Run(ctx, s.log, "outbound: result transaction", func() error { return s.recordTx(ctx, rec) },
		"mapping", rec.m.ID); err != nil {
		return err
	}
	if rec.nOK+rec.nFailed > 0 {
		s.touchMapping(ctx, rec.m)
	}
	return nil
}

// batchPlan makes Postgres plan a statement of the result transaction for
// the values it runs with, every time, instead of reusing the generic plan
// of a cached statement. The outbox grows from a handful of entries to a
// backlog of 100,000 and back faster than anything replans: a generic plan
// made while it was small read the whole backlog for each batch and
// searched the batch's ids (a parameter, not a constant) one by one for
// every entry, and a result transaction took over a second. Planned for
// the values, the ids are a hashed constant and the table's size is its
// size now. Planning costs a millisecond or two per batch.
//
// The statement is described first (one more round trip) so that its
// parameters, arrays of a whole batch, travel in binary: written as text
// (QueryExecModeExec knows no parameter types) they took a tenth of the
// worker's CPU in a Bulk drain, and Postgres then parsed the text again.
const batchPlan = pgx.QueryExecModeDescribeExec

// writeAsWorker makes the rest of tx write mapped rows as the worker (not
// captured, stamped as synced) and wait at most txretry.LockTimeout for a
// lock, so that it gives way instead of deadlocking with the application,
// which locks rows in no particular order; txretry.Run runs it again.
func writeAsWorker(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pgforce._as_worker(), set_config('lock_timeout', $1, true)`,
		txretry.LockTimeout)
	return err
}

// recordTx is the result transaction. Row locks are taken in one fixed
// order, the one every other writer of these rows uses: the mapped rows by
// id first (user statements and pgforce.inbound_filter lock the row before
// its outbox entries), then the batch's outbox entries, then error rows.
// Each step is one set-based statement for the whole batch. The
// application keeps no such order, so no lock is waited for longer than
// txretry.LockTimeout (see writeRecording).
func (s *Service) recordTx(ctx context.Context, rec *recording) error {
	m := rec.m
	table := m.Table()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := writeAsWorker(ctx, tx); err != nil {
			return err
		}
		// An outcome is recorded again when its transaction failed, which
		// includes a COMMIT that went through with its answer lost (the
		// connection dropped). Run twice, it had released the entries
		// handed back unsent a second time, one attempt fewer each (an
		// insert in doubt then looked first-time and was created again),
		// and inserted its error rows twice. While the outcome is not
		// recorded its entries are held by this claim: by this worker, and
		// claimed when the batch was, not by a later claim of entries the
		// first run handed back. None left so held means the outcome is in.
		// (The first found answers: the first run released or deleted them
		// all. Nobody else takes a live worker's claims, so they are not
		// locked for it, which cost a Bulk batch 5,000 lock records.) Asked
		// in the statement that locks the rows, to cost no round trip.
		var held bool
		if err := tx.QueryRow(ctx, fmt.Sprintf(`WITH locked AS (SELECT FROM %s t WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE)
			SELECT (SELECT count(*) FROM locked) >= 0 AND (coalesce(cardinality($2::bigint[]), 0) = 0 OR EXISTS (SELECT FROM pgforce.outbox o
				WHERE o.id = ANY($2) AND o.claimed_by = $3 AND o.claimed_at = $4))`, table),
			batchPlan, rec.rows, rec.entries, s.opts.WorkerID, rec.claimedAt).Scan(&held); err != nil {
			return fmt.Errorf("lock rows: %w", err)
		}
		if !held {
			s.log.Info("outbound: a batch's outcome was recorded already, or its entries were taken over", "mapping", m.ID, "entries", len(rec.entries))
			return nil
		}
		// The old values of the refused updates (what Salesforce held
		// before them, as far as Postgres knew), by row id, read before
		// their entries go: the error keeps them for its retry (see
		// failureRow.Entries). The old value of a field is its first
		// entry's. A plain read, which locks nothing.
		olds := []byte("{}")
		if rec.nFailed > 0 {
			if err := tx.QueryRow(ctx, `SELECT coalesce(jsonb_object_agg(f.record_id, x.old), '{}')
				FROM jsonb_to_recordset($1) AS f(record_id integer, entries bigint[])
				CROSS JOIN LATERAL (
					SELECT jsonb_object_agg(k.key, k.value) AS old FROM (
						SELECT DISTINCT ON (kv.key) kv.key, kv.value
						FROM pgforce.outbox o, jsonb_each(o.old) kv WHERE o.id = ANY(f.entries)
						ORDER BY kv.key, o.id) k) x
				WHERE x.old IS NOT NULL`, rec.failed).Scan(&olds); err != nil {
				return fmt.Errorf("read the old values of refused updates: %w", err)
			}
		}
		// The entries come next.
		if len(rec.done) > 0 {
			// By id in the primary key, never joined: the outbox fills and
			// empties faster than autovacuum looks, and with statistics of
			// an empty outbox a join was planned as a nested loop over every
			// entry.
			if _, err := tx.Exec(ctx, `DELETE FROM pgforce.outbox o WHERE o.id = ANY($1)`, batchPlan, rec.done); err != nil {
				return fmt.Errorf("delete written entries: %w", err)
			}
		}
		if len(rec.requeue) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE pgforce.outbox SET claimed_at = NULL, claimed_by = NULL WHERE id = ANY($1)`, batchPlan, rec.requeue); err != nil {
				return fmt.Errorf("requeue entries: %w", err)
			}
		}
		if rec.asInserts != nil {
			if _, err := tx.Exec(ctx, `UPDATE pgforce.outbox o SET op = 'insert', new = a.new, old = NULL
				FROM jsonb_to_recordset($1::jsonb) AS a(id bigint, new jsonb) WHERE o.id = a.id`, rec.asInserts); err != nil {
				return fmt.Errorf("turn updates sent as inserts into those inserts: %w", err)
			}
		}
		if len(rec.unsent) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE pgforce.outbox SET `+releaseUnsent+` WHERE id = ANY($1)`, batchPlan, rec.unsent); err != nil {
				return fmt.Errorf("requeue unsent entries: %w", err)
			}
		}
		if len(rec.echoGone) > 0 {
			// Only rows the inbound worker made from the records' own
			// change events: the user's row was deleted already.
			if _, err := tx.Exec(ctx, fmt.Sprintf(`WITH gone AS (
					DELETE FROM pgforce.outbound_echo_row e WHERE e.mapping_id = $1 AND e.sfid = ANY($2) RETURNING e.sfid)
				DELETE FROM %s t USING gone WHERE t.sfid = gone.sfid`, table), m.ID, rec.echoGone); err != nil {
				return fmt.Errorf("delete the echo rows of records deleted: %w", err)
			}
		}
		if rec.inserts {
			ok, err := rec.okJSON()
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pgforce._outbound_adopt_echo_rows($1, $2)`, m.ID, ok); err != nil {
				return fmt.Errorf("merge rows the echo of an insert created: %w", err)
			}
			// Changes captured while the insert was in flight name no
			// record: above all a delete of the row, which is gone when its
			// entry is sent, so that only the entry can say what to delete
			// (it was dropped unsent, and the record stayed in Salesforce).
			// They name the new record now, up to a later insert under the
			// same row id, which is another record's.
			if _, err := tx.Exec(ctx, `UPDATE pgforce.outbox o SET sfid = s.sfid
				FROM jsonb_to_recordset($2::jsonb) AS s(record_id integer, sfid text, op text)
				WHERE s.op IN ('insert', 'upsert') AND s.sfid <> ''
				  AND o.mapping_id = $1 AND o.record_id = s.record_id AND o.sfid IS NULL
				  AND NOT EXISTS (SELECT FROM pgforce.outbox n
				                  WHERE n.mapping_id = $1 AND n.record_id = s.record_id AND n.op = 'insert' AND n.id <= o.id)`,
				batchPlan, m.ID, ok); err != nil {
				return fmt.Errorf("give changes queued during an insert its Id: %w", err)
			}
		}
		if rec.nOK > 0 {
			// An inserted row gets its Id; a row is stamped SYNCED unless a
			// newer change of it is still queued: it keeps its status then
			// (PENDING), also when it gets its Id, because that change is
			// not in Salesforce yet. The written entries are gone already,
			// so any entry left of a row is newer.
			// t.id = ANY($1) lets the planner read the batch's rows by id
			// rather than scan the whole table for the join (100,000 rows:
			// 134 ms against 226 ms for a batch of 5,000).
			// busy is one probe of outbox_record_idx per row (LIMIT 1: the
			// first entry found answers it), which the pinned statistics of
			// outbox.record_id keep a probe (see 050_outbox). Asked for the
			// batch's ids at once, Postgres read every entry of the mapping
			// instead: a sequential scan of a 100,000 backlog per batch of
			// 5,000 in a Bulk drain.
			// A row whose id an insert entry still queued names is another
			// row than the one written (the application deleted it and
			// inserted one with its id meanwhile, see merge): it does not
			// get the written record's Id. The entries are asked with
			// inserts first, so the first one found answers both.
			// noted: while the inbound worker reads whole records of the
			// mapping, the records written or deleted are noted for it, with
			// this transaction's start, after Salesforce answered (see
			// pgforce.inbound_read).
			if _, err := tx.Exec(ctx, fmt.Sprintf(`WITH noted AS (
					INSERT INTO pgforce.outbound_written (mapping_id, sfid, written_at)
					SELECT DISTINCT $2::integer, u.sfid, now() FROM unnest($4::text[]) AS u(sfid)
					WHERE EXISTS (SELECT FROM pgforce.inbound_read r WHERE r.mapping_id = $2)
					ON CONFLICT (mapping_id, sfid) DO UPDATE SET written_at = EXCLUDED.written_at
				), s AS MATERIALIZED (
					SELECT u.record_id, u.sfid, b.busy IS NOT NULL AS busy, coalesce(b.reinserted, false) AS reinserted
					FROM unnest($1::integer[], $3::text[]) AS u(record_id, sfid)
					LEFT JOIN LATERAL (SELECT true AS busy, o.op = 'insert' AS reinserted FROM pgforce.outbox o
						WHERE o.mapping_id = $2 AND o.record_id = u.record_id ORDER BY o.op = 'insert' DESC LIMIT 1) b ON true
				)
				UPDATE %s t SET sfid = CASE WHEN s.sfid <> '' AND NOT s.reinserted THEN s.sfid ELSE t.sfid END,
					_hc_lastop = CASE WHEN s.busy THEN t._hc_lastop ELSE 'SYNCED' END,
					_hc_err = CASE WHEN s.busy THEN t._hc_err END
				FROM s
				WHERE t.id = s.record_id AND t.id = ANY($1)
				  AND ((s.sfid <> '' AND t.sfid IS DISTINCT FROM s.sfid)
				       OR ((t._hc_lastop IS DISTINCT FROM 'SYNCED' OR t._hc_err IS NOT NULL) AND NOT s.busy))`, table),
				batchPlan, rec.writtenRows, m.ID, rec.okSFIDs, rec.written); err != nil {
				return fmt.Errorf("write back ids: %w", err)
			}
			// Errors this success settles: the retried ones, a failed insert
			// once the record exists, a failed update once every field it
			// carried has been written since. The batch's JSON goes to
			// Postgres only when the mapping has an outbound error to settle
			// at all, which is the rare case in a backlog: Postgres parses a
			// jsonb parameter whether the statement reads it or not, and
			// that was a tenth of a Bulk drain's result transactions.
			var unsettled bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.error x WHERE x.mapping_id = $1
				AND x.state IN ('open', 'retrying') AND x.direction = 'outbound')`, m.ID).Scan(&unsettled); err != nil {
				return fmt.Errorf("look for errors to settle: %w", err)
			}
			if unsettled {
				ok, err := rec.okJSON()
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE pgforce.error e SET state = 'resolved', sfid = coalesce(e.sfid, nullif(s.sfid, ''))
					FROM jsonb_to_recordset($1::jsonb)
						AS s(record_id integer, sfid text, op text, keys text[], retry_of bigint[])
					WHERE e.mapping_id = $2 AND e.record_id = s.record_id AND e.direction = 'outbound'
					  AND (e.id = ANY(s.retry_of) AND e.state IN ('open', 'retrying')
					       OR e.state = 'open' AND (
					            e.operation IN ('insert', 'upsert') AND s.op IN ('insert', 'upsert')
					         OR e.operation = 'delete' AND s.op = 'delete'
					         OR e.operation = 'update' AND s.op IN ('insert', 'update')
					            AND NOT EXISTS (SELECT FROM jsonb_object_keys(coalesce(e.payload, '{}')) k WHERE k <> 'Id' AND NOT k = ANY(s.keys))))`,
					ok, m.ID); err != nil {
					return fmt.Errorf("resolve errors: %w", err)
				}
			}
		}
		if rec.nFailed > 0 {
			// A retry that fails again reopens its error; an update of a
			// record whose earlier update failed (and was sent again with
			// it, see prepare) updates that open error, and so does the
			// insert of a row whose insert failed, which an update of the
			// row sends (see pgforce._outbound_claim); a retry whose error
			// was ignored while it was in flight records nothing (the user
			// gave the change up); any other failure is a new error row.
			// (An error waiting for its retry is not updated: the retry
			// carries its fields only, and its success would settle the
			// other fields' failure with it.)
			if _, err := tx.Exec(ctx, `WITH f AS (
					SELECT * FROM jsonb_to_recordset($1) AS f(record_id integer, sfid text, op text, payload jsonb,
						error_code text, message text, fields text[], hc_err text, retry_of bigint)
				), reopened AS (
					UPDATE pgforce.error e SET state = 'open', attempts = e.attempts + 1, error_code = f.error_code,
						message = f.message, fields = f.fields, payload = f.payload,
						old = nullif(coalesce($3::jsonb -> f.record_id::text, '{}') || coalesce(e.old, '{}'), '{}')
					FROM f WHERE e.id = f.retry_of AND e.state = 'retrying'
					RETURNING e.id
				), again AS (
					UPDATE pgforce.error e SET attempts = e.attempts + 1, error_code = f.error_code,
						message = f.message, fields = f.fields, payload = f.payload,
						old = nullif(coalesce($3::jsonb -> f.record_id::text, '{}') || coalesce(e.old, '{}'), '{}')
					FROM f WHERE f.retry_of IS NULL AND f.op IN ('update', 'insert') AND e.mapping_id = $2 AND e.record_id = f.record_id
					  AND e.direction = 'outbound' AND e.operation = f.op AND e.state = 'open'
					RETURNING e.record_id
				)
				INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields, old)
				SELECT $2, 'outbound', f.op, f.record_id, f.sfid, f.payload, f.error_code, f.message, f.fields, $3::jsonb -> f.record_id::text
				FROM f WHERE (f.retry_of IS NULL OR f.retry_of NOT IN (SELECT id FROM reopened)
				              AND NOT EXISTS (SELECT FROM pgforce.error x WHERE x.id = f.retry_of AND x.state = 'ignored'))
				  AND NOT (f.retry_of IS NULL AND f.op IN ('update', 'insert') AND f.record_id IN (SELECT record_id FROM again))`, rec.failed, m.ID, olds); err != nil {
				return fmt.Errorf("record errors: %w", err)
			}
			// A refused delete marks no row: its row is gone, or is a new
			// one that took its id since (see merge), with a change of its own.
			if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s t SET _hc_lastop = 'FAILED', _hc_err = f.hc_err
				FROM jsonb_to_recordset($1) AS f(record_id integer, op text, hc_err text)
				WHERE t.id = f.record_id AND f.op <> 'delete'`, table), rec.failed); err != nil {
				return fmt.Errorf("mark rows failed: %w", err)
			}
		}
		return nil
	})
}

// recordUnrecorded writes again the outcomes whose result transaction
// failed earlier; those that still fail stay for the next cycle. One that
// keeps failing (its table was dropped, say) is given up after
// maxUnrecordedTries cycles and its entries go back to the queue.
func (s *Service) recordUnrecorded(ctx context.Context) error {
	s.mu.Lock()
	pending := s.unrecorded
	s.unrecorded = nil
	s.mu.Unlock()
	var lastErr error
	var keep []*recording
	for _, rec := range pending {
		err := s.writeRecording(ctx, rec)
		if err == nil {
			continue
		}
		lastErr = err
		rec.tries++
		if rec.tries < maxUnrecordedTries {
			keep = append(keep, rec)
			continue
		}
		s.log.Error("outbound: giving up recording a batch outcome; its changes are queued again", "mapping", rec.m.ID, "entries", len(rec.entries), "err", err)
		if _, err := s.pool.Exec(ctx, `UPDATE pgforce.outbox SET claimed_at = NULL, claimed_by = NULL WHERE id = ANY($1) AND claimed_by = $2`,
			rec.entries, s.opts.WorkerID); err != nil {
			keep = append(keep, rec)
		}
	}
	s.mu.Lock()
	s.unrecorded = append(keep, s.unrecorded...)
	s.mu.Unlock()
	return lastErr
}

const maxUnrecordedTries = 100

// releaseStale hands back entries claimed under this worker's name that
// no batch of this process holds: claims left by a failure between claim
// and send (a claim that committed as its statement was cancelled). Called
// between cycles, when no batch is in flight; entries whose outcome waits
// to be recorded again keep their claim. A batch that was sent is always
// recorded or kept, so these were never sent: their claim is not an
// attempt (see findCreated). Until it has run once, the claims found are
// an earlier process's under the same name (Options.WorkerID set): they
// may have been sent, and go back with their attempts counted. (Those of a
// Bulk job that process left running are not held, as a dead worker's
// are: a fixed WorkerID is for one process at a time.)
func (s *Service) releaseStale(ctx context.Context) error {
	s.mu.Lock()
	keep := []int64{} // not nil: id <> ALL(NULL) is never true
	for _, rec := range s.unrecorded {
		keep = append(keep, rec.entries...)
	}
	set := releaseUnsent
	first := !s.released
	if first {
		set = `claimed_at = NULL, claimed_by = NULL`
	}
	s.mu.Unlock()
	// The entries of a Bulk job whose end is not known yet stay claimed
	// too: reclaim hands them back once it is.
	tag, err := s.pool.Exec(ctx, `UPDATE pgforce.outbox o SET `+set+`
		WHERE o.claimed_at IS NOT NULL AND o.claimed_by = $1 AND o.id <> ALL($2)
		  AND NOT EXISTS (SELECT FROM pgforce.outbound_bulk_job j WHERE j.worker = $1 AND j.orphaned AND o.id = ANY (j.entries))`, s.opts.WorkerID, keep)
	if err != nil {
		return err
	}
	if first {
		s.mu.Lock()
		s.released = true
		s.mu.Unlock()
	}
	if n := tag.RowsAffected(); n > 0 {
		s.log.Warn("outbound: released claims no batch held", "entries", n)
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

// revert is a pgforce.revert to act on: error id, row, and the row's sfid
// (” when its insert never created a record); deleted says the error is
// a refused delete, whose row is gone.
type revert struct {
	id       int64
	recordID int
	sfid     string
	deleted  bool
	// mark is the last outbox entry when pgforce.revert was called: the
	// record's changes queued after it are new ones, which the revert
	// keeps.
	mark int64
	// message is the error's message, which a failed revert keeps after
	// its own (see revertFailed).
	message string
}

// reverts acts on pgforce.revert: the row takes Salesforce's values again
// (or goes away, when its insert never created a record there), written as
// the worker so that nothing is captured.
func (s *Service) reverts(ctx, work context.Context, m *Mapping) error {
	// A refused delete names its record itself: a row that has the id now
	// is another one (see merge).
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT e.id, e.record_id,
			coalesce(CASE WHEN e.operation = 'delete' THEN e.sfid ELSE coalesce(t.sfid, e.sfid) END, ''), e.operation = 'delete',
			coalesce(e.revert_mark, 9223372036854775807), e.message
		FROM pgforce.error e LEFT JOIN %s t ON t.id = e.record_id
		WHERE e.mapping_id = $1 AND e.state = 'retrying' AND e.action = 'revert' ORDER BY e.id`, m.Table()), m.ID)
	if err != nil {
		return err
	}
	var revs []revert
	for rows.Next() {
		var r revert
		if err := rows.Scan(&r.id, &r.recordID, &r.sfid, &r.deleted, &r.mark, &r.message); err != nil {
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
	// Like the result transaction, it gives way to the application's row
	// locks instead of deadlocking with it, and runs again.
	return txretry.Run(ctx, s.log, "outbound: reverts", func() error {
		return pgx.BeginFunc(work, s.pool, func(tx pgx.Tx) error {
			if err := writeAsWorker(work, tx); err != nil {
				return err
			}
			return s.revertRows(work, tx, m, revs, got)
		})
	}, "mapping", m.ID)
}

// revertRows writes Salesforce's values got into the rows of revs and
// settles their errors. Each revert has a savepoint of its own: one that
// Postgres refuses (an application's foreign key still names the row of a
// failed insert, a trigger of the user's raises) reopens its error, saying
// why, and the others go through.
func (s *Service) revertRows(work context.Context, tx pgx.Tx, m *Mapping, revs []revert, got map[string]map[string]any) error {
	for _, r := range revs {
		sp, err := tx.Begin(work)
		if err != nil {
			return err
		}
		err = revertRow(work, sp, m, r, got)
		if err == nil {
			if err := sp.Commit(work); err != nil {
				return err
			}
			continue
		}
		if rbErr := sp.Rollback(work); rbErr != nil {
			return rbErr
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !refusedByPostgres(pgErr) {
			return err
		}
		s.log.Warn("outbound: Postgres refused a revert; its error is open again", "mapping", m.ID, "error", r.id, "row", r.recordID, "err", err)
		if _, err := tx.Exec(work, `UPDATE pgforce.error SET state = 'open', attempts = attempts + 1, message = $2 WHERE id = $1`,
			r.id, revertFailed(r, pgErr)); err != nil {
			return err
		}
	}
	return nil
}

// refusedByPostgres says a statement failed because of the data or the
// database's rules (a constraint, a trigger, a privilege), which running it
// again does not change, rather than because of a lock conflict, the
// connection or the server.
func refusedByPostgres(err *pgconn.PgError) bool {
	switch err.Code[:2] {
	case "08", "40", "53", "57", "58", "XX":
		return false
	}
	return err.Code != "55P03"
}

// revertFailedPrefix starts the message of an error whose revert Postgres
// refused, and revertRefused introduces Salesforce's message after it.
const (
	revertFailedPrefix = "pgforce could not revert the row: "
	revertRefused      = " | Salesforce had refused the change: "
)

// revertFailed is the message of r's error once Postgres refused its
// revert: why, what to do, and Salesforce's message as it was.
func revertFailed(r revert, err *pgconn.PgError) string {
	before := r.message
	if i := strings.Index(before, revertRefused); strings.HasPrefix(before, revertFailedPrefix) && i >= 0 {
		before = before[i+len(revertRefused):]
	}
	why := err.Message
	if err.Detail != "" {
		why += " (" + err.Detail + ")"
	}
	return fmt.Sprintf("%s%s; remove the cause and call pgforce.revert(%d) again, or pgforce.retry(%d) or pgforce.ignore(%d)%s%s",
		revertFailedPrefix, why, r.id, r.id, r.id, revertRefused, before)
}

// revertRow carries out one revert (see revertRows).
func revertRow(work context.Context, tx pgx.Tx, m *Mapping, r revert, got map[string]map[string]any) error {
	resolve := func() error {
		_, err := tx.Exec(work, `UPDATE pgforce.error SET state = 'resolved' WHERE id = $1`, r.id)
		return err
	}
	// The changes queued up to the mark are what the revert discards; a
	// queued delete is not among them (the row is gone, and its record
	// goes too, see pgforce.revert).
	dropReverted := func() error {
		_, err := tx.Exec(work, `DELETE FROM pgforce.outbox WHERE mapping_id = $1 AND record_id = $2 AND claimed_at IS NULL
			AND id <= $3 AND op <> 'delete'`, m.ID, r.recordID, r.mark)
		return err
	}
	vals, found := got[strings.ToLower(r.sfid)]
	switch {
	case r.sfid == "":
		// The insert never created a record: the row goes, with every
		// change queued for it.
		if _, err := tx.Exec(work, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, m.Table()), r.recordID); err != nil {
			return err
		}
		if _, err := tx.Exec(work, `DELETE FROM pgforce.outbox WHERE mapping_id = $1 AND record_id = $2 AND claimed_at IS NULL`, m.ID, r.recordID); err != nil {
			return err
		}
		return resolve()
	case r.deleted:
		// Salesforce refused the delete and keeps the record: the row
		// comes back with its values, under its old id unless a row
		// has taken that since, and unless the record has a row again
		// already (the user put it back). Deleted in Salesforce too
		// since, there is nothing to bring back. The row's id may be
		// another row's now, whose queued changes are its own: they stay.
		if found {
			if err := restoreRow(work, tx, m, r, vals); err != nil {
				return err
			}
		}
		return resolve()
	}
	if err := dropReverted(); err != nil {
		return err
	}
	// Columns that changes queued after the mark set keep their Postgres
	// values, and those changes are sent.
	var later []string
	var pending bool
	if err := tx.QueryRow(work, `SELECT coalesce(array_agg(DISTINCT k) FILTER (WHERE k IS NOT NULL), '{}'), count(o.id) > 0
		FROM pgforce.outbox o LEFT JOIN LATERAL jsonb_object_keys(coalesce(o.new, '{}')) k ON true
		WHERE o.mapping_id = $1 AND o.record_id = $2 AND o.id > $3`, m.ID, r.recordID, r.mark).Scan(&later, &pending); err != nil {
		return err
	}
	status := "SYNCED"
	if pending {
		status = "PENDING"
	}
	switch {
	case !found && m.HardDelete:
		// Deleted in Salesforce meanwhile, and the mapping deletes the
		// rows of deleted records.
		if _, err := tx.Exec(work, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, m.Table()), r.recordID); err != nil {
			return err
		}
	case !found:
		// Deleted in Salesforce meanwhile.
		if _, err := tx.Exec(work, fmt.Sprintf(`UPDATE %s SET isdeleted = true, _hc_lastop = $2, _hc_err = NULL WHERE id = $1`, m.Table()),
			r.recordID, status); err != nil {
			return err
		}
	default:
		for _, c := range later {
			delete(vals, c)
		}
		b, err := json.Marshal(vals)
		if err != nil {
			return err
		}
		cols := sortedColumns(vals)
		// The status is said explicitly: the status trigger leaves a
		// FAILED row FAILED on a worker write that does not.
		q := fmt.Sprintf(`UPDATE %s t SET _hc_lastop = $2, _hc_err = NULL WHERE t.id = $1`, m.Table())
		args := []any{r.recordID, status}
		if len(cols) > 0 {
			list := strings.Join(cols, ", ")
			q = fmt.Sprintf(`UPDATE %s t SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $3)),
					_hc_lastop = $2, _hc_err = NULL WHERE t.id = $1`, m.Table(), list, list, m.Table())
			args = append(args, b)
		}
		if _, err := tx.Exec(work, q, args...); err != nil {
			return fmt.Errorf("revert row %d: %w", r.recordID, err)
		}
	}
	return resolve()
}

// restoreRow inserts the row of a record whose delete Salesforce refused,
// with the record's values vals.
func restoreRow(work context.Context, tx pgx.Tx, m *Mapping, r revert, vals map[string]any) error {
	b, err := json.Marshal(vals)
	if err != nil {
		return err
	}
	list := strings.Join(sortedColumns(vals), ", ")
	if _, err := tx.Exec(work, fmt.Sprintf(`INSERT INTO %[1]s (id, sfid, _hc_lastop, %[2]s)
		SELECT CASE WHEN EXISTS (SELECT FROM %[1]s x WHERE x.id = $1) THEN nextval(pg_get_serial_sequence($4, 'id')) ELSE $1 END,
			$3, 'SYNCED', %[2]s
		FROM jsonb_populate_record(NULL::%[1]s, $2)
		ON CONFLICT (sfid) DO NOTHING`, m.Table(), list), r.recordID, b, r.sfid, m.Table()); err != nil {
		return fmt.Errorf("restore deleted row %d: %w", r.recordID, err)
	}
	return nil
}

// sortedColumns is vals' columns, quoted, in name order.
func sortedColumns(vals map[string]any) []string {
	cols := make([]string, 0, len(vals))
	for c := range vals {
		cols = append(cols, pgx.Identifier{c}.Sanitize())
	}
	sort.Strings(cols)
	return cols
}

func columnType(m *Mapping, api string) string {
	for _, c := range m.Columns {
		if strings.EqualFold(c.Name, api) {
			return c.Type
		}
	}
	return ""
}
