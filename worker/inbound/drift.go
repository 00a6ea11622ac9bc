package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// driftBatch is how many Ids a drift check copies into Postgres at once.
const driftBatch = 10000

// driftSample is how many Ids of each kind of difference a check keeps.
const driftSample = 10

// driftLoop runs the drift checks due for the mapping (see
// sql/125_drift.sql), apart from the stream, the polls and the re-reads: a
// check waits for the load budget and reads the whole object, and run in
// their loops it held up polling for as long as the budget was short, and
// a failing one restarted the stream over and over. A check that fails for
// a passing cause is left unfinished and tried again, a while later each
// time. The service's reconcile pass wakes it (pgforce.check_drift
// notifies), and so does its own timer, when scheduled checks come due.
func (r *runner) driftLoop(ctx context.Context, t *table) {
	tick := time.NewTicker(r.s.opts.SafetyInterval)
	defer tick.Stop()
	var backoff time.Duration
	for {
		err := r.checkDrift(ctx, t)
		if ctx.Err() != nil {
			return
		}
		wait := tick.C
		if err != nil {
			backoff = min(max(2*backoff, r.s.opts.RetryBackoff), 10*time.Minute)
			r.log.Warn("inbound: drift check failed; trying again later", "sobject", t.m.SObject, "err", err, "backoff", backoff)
			wait = time.After(backoff)
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-r.driftWake:
			if err != nil {
				continue // asked: but the failure's pause first
			}
		case <-wait:
		}
	}
}

// checkDrift runs the drift checks due, one after the other: those asked
// for with pgforce.check_drift and those the mapping's drift_check_interval
// schedules. Each reads every record's Id and SystemModstamp, compares them
// with the table's rows and queues the records that differ for a re-read.
// A check that Salesforce refuses is finished with its error; a passing
// failure (a 503, the budget) is returned and the check runs again.
func (r *runner) checkDrift(ctx context.Context, t *table) error {
	for {
		var id *int64
		if err := r.s.pool.QueryRow(ctx, `SELECT pgforce.drift_check_next($1)`, r.id).Scan(&id); err != nil {
			return err
		}
		if id == nil {
			return nil
		}
		started := time.Now()
		err := r.compareDrift(ctx, t, *id)
		if ctx.Err() != nil {
			return nil // left unfinished: it runs again under the next owner
		}
		if err != nil && !salesforce.IsTransient(err) && !errors.As(err, new(*budget.Exhausted)) {
			r.log.Warn("inbound: drift check failed", "sobject", t.m.SObject, "check", *id, "err", err)
			_, err = r.s.pool.Exec(ctx, `UPDATE pgforce.drift_check SET finished_at = now(), error = $2 WHERE id = $1`, *id, err.Error())
		}
		if _, derr := r.s.pool.Exec(ctx, `DELETE FROM pgforce.drift_seen WHERE check_id = $1`, *id); derr != nil && err == nil {
			err = derr
		}
		if err != nil {
			return fmt.Errorf("inbound: drift check of %s: %w", t.m.SObject, err)
		}
		r.log.Info("inbound: drift check complete", "sobject", t.m.SObject, "check", *id, "elapsed", time.Since(started).Round(time.Millisecond).String())
		wake(r.rereadWake)
	}
}

// compareDrift reads the Ids and SystemModstamps of the object into
// pgforce.drift_seen, with every mapped field's value when the check
// compares values, and compares them with the table in one transaction
// that records the result and queues the re-reads.
func (r *runner) compareDrift(ctx context.Context, t *table, id int64) error {
	var values bool
	if err := r.s.pool.QueryRow(ctx, `SELECT compare_values FROM pgforce.drift_check WHERE id = $1`, id).Scan(&values); err != nil {
		return err
	}
	if err := r.waitBudget(ctx, budget.Load); err != nil {
		return err
	}
	// Changes within the overlap before the check may still be on their
	// way through the stream or the next poll.
	cutoff := time.Now().Add(-r.s.opts.Overlap)
	count, err := r.s.sf.Count(ctx, "SELECT COUNT() FROM "+t.m.SObject)
	if err := r.observe(err); err != nil {
		return err
	}
	var ids []string
	var stamps []*time.Time
	var vals []*string
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		_, err := r.s.pool.Exec(ctx, `INSERT INTO pgforce.drift_seen (check_id, sfid, systemmodstamp, vals)
			SELECT $1, u.sfid, u.stamp, u.vals::jsonb FROM unnest($2::text[], $3::timestamptz[], $4::text[]) AS u(sfid, stamp, vals)
			ON CONFLICT DO NOTHING`, id, ids, stamps, vals)
		ids, stamps, vals = ids[:0], stamps[:0], vals[:0]
		return err
	}
	// add takes a record's Id, its SystemModstamp and, when values are
	// compared, its staging row (see recordRow), of which the stored
	// columns are kept.
	add := func(sfid, stamp string, row []any) error {
		var at *time.Time
		if ts, err := salesforce.ParseDateTime(stamp); err == nil {
			at = &ts
		}
		var v *string
		if values {
			b, err := json.Marshal(row[:len(t.cols)])
			if err != nil {
				return err
			}
			s := string(b)
			v = &s
		}
		ids, stamps, vals = append(ids, sfid), append(stamps, at), append(vals, v)
		if len(ids) < driftBatch {
			return nil
		}
		return flush()
	}
	soql := fmt.Sprintf("SELECT Id, SystemModstamp FROM %s", t.m.SObject)
	if values {
		soql = t.storedSOQL("")
	}
	if count >= r.s.opts.BulkThreshold {
		var ix csvIndex
		_, err = r.s.sf.BulkQuery(ctx, salesforce.QueryJob{Query: soql, Operation: "query"},
			salesforce.BulkQueryOptions{MaxRecords: r.s.opts.BulkPageSize, Poll: bulkPoll},
			func(row salesforce.Row) error {
				sfid, _ := row.Get("Id")
				stamp, _ := row.Get("SystemModstamp")
				var staged []any
				if values {
					staged = t.csvRow(&ix, row)
				}
				return add(sfid, stamp, staged)
			})
	} else {
		err = r.s.sf.Query(ctx, soql, func(rec salesforce.Record) error {
			stamp, _ := rec.Fields["SystemModstamp"].(string)
			var staged []any
			if values {
				staged = t.recordRow(&rec)
			}
			return add(rec.ID(), stamp, staged)
		})
	}
	if err := r.observe(err); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		// A row marked deleted counts as no row; an object without
		// IsDeleted never marks one.
		_, err := tx.Exec(ctx, fmt.Sprintf(`WITH seen AS MATERIALIZED (
				SELECT s.sfid, s.systemmodstamp, s.vals FROM pgforce.drift_seen s WHERE s.check_id = $1
			), diff AS MATERIALIZED (
				SELECT 'missing' AS kind, s.sfid FROM seen s
				WHERE s.systemmodstamp < $2 AND NOT EXISTS (SELECT FROM %[1]s t WHERE t.sfid = s.sfid AND NOT coalesce(t.isdeleted, false))
				  -- The application deleted its row: the delete is queued,
				  -- or was refused (read again, the row came back).
				  AND NOT EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $3 AND o.op = 'delete' AND o.sfid = s.sfid)
				  AND NOT EXISTS (SELECT FROM pgforce.error e WHERE e.mapping_id = $3 AND e.direction = 'outbound' AND e.operation = 'delete'
				                  AND e.sfid = s.sfid AND e.state IN ('open', 'retrying', 'ignored'))
				UNION ALL
				SELECT 'stale', s.sfid FROM seen s JOIN %[1]s t ON t.sfid = s.sfid
				WHERE s.systemmodstamp < $2 AND NOT coalesce(t.isdeleted, false) AND (t.systemmodstamp IS NULL OR t.systemmodstamp < s.systemmodstamp)
				UNION ALL
				SELECT 'extra', t.sfid FROM %[1]s t
				WHERE t.sfid IS NOT NULL AND NOT coalesce(t.isdeleted, false) AND (t.systemmodstamp IS NULL OR t.systemmodstamp < $2)
				  AND NOT EXISTS (SELECT FROM seen s WHERE s.sfid = t.sfid)
				UNION ALL
				%[2]s
			), queued AS (
				INSERT INTO pgforce.inbound_reread (mapping_id, sfid) SELECT $3, d.sfid FROM diff d
				ON CONFLICT (mapping_id, sfid) DO UPDATE SET queued_at = now()
			)
			UPDATE pgforce.drift_check c SET finished_at = now(), error = NULL,
				salesforce_records = (SELECT count(*) FROM seen),
				table_rows = (SELECT count(*) FROM %[1]s t WHERE t.sfid IS NOT NULL AND NOT coalesce(t.isdeleted, false)),
				missing = (SELECT count(*) FROM diff WHERE kind = 'missing'),
				stale = (SELECT count(*) FROM diff WHERE kind = 'stale'),
				extra = (SELECT count(*) FROM diff WHERE kind = 'extra'),
				different = CASE WHEN c.compare_values THEN (SELECT count(*) FROM diff WHERE kind = 'different') END,
				recent = (SELECT count(*) FROM seen s WHERE s.systemmodstamp >= $2)
					+ (SELECT count(*) FROM %[1]s t WHERE t.sfid IS NOT NULL AND t.systemmodstamp >= $2
					   AND NOT EXISTS (SELECT FROM seen s WHERE s.sfid = t.sfid)),
				sample = (SELECT coalesce(jsonb_object_agg(k.kind, k.ids), '{}') FROM (
					SELECT d.kind, jsonb_agg(d.sfid ORDER BY d.sfid) AS ids
					FROM (SELECT kind, sfid, row_number() OVER (PARTITION BY kind ORDER BY sfid) AS n FROM diff) d
					WHERE d.n <= $4 GROUP BY d.kind) k)
			WHERE c.id = $1`, t.target, t.differentRows(values)), id, cutoff, r.id, driftSample)
		return err
	})
}

// differentRows is the part of a drift check's comparison that finds the
// rows whose values differ from their records' under an equal
// SystemModstamp (seen s, the table t): a row whose changes are queued,
// or whose refused values are kept (an error open or ignored), differs on
// purpose and is left out. Each value is cast as the merge casts it, so
// that 1000.0 from Salesforce equals a numeric(18,2) 1000.00. Without
// values it finds nothing.
func (t *table) differentRows(values bool) string {
	if !values {
		return `SELECT 'different', NULL::text WHERE false`
	}
	var differs []string
	for i, c := range t.cols {
		col := pgColumn(c.Name)
		if col == "sfid" || col == "systemmodstamp" || col == "isdeleted" {
			continue
		}
		differs = append(differs, fmt.Sprintf("t.%s IS DISTINCT FROM (s.vals ->> %d)%s", pgx.Identifier{col}.Sanitize(), i, castSuffix(c.Type)))
	}
	if len(differs) == 0 {
		return `SELECT 'different', NULL::text WHERE false`
	}
	return fmt.Sprintf(`SELECT 'different', s.sfid FROM seen s JOIN %s t ON t.sfid = s.sfid
				WHERE s.systemmodstamp < $2 AND t.systemmodstamp = s.systemmodstamp AND NOT coalesce(t.isdeleted, false)
				  AND coalesce(t._hc_lastop, '') NOT IN ('PENDING', 'FAILED')
				  AND NOT EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $3 AND o.record_id = t.id)
				  AND NOT EXISTS (SELECT FROM pgforce.error e WHERE e.mapping_id = $3 AND e.sfid = t.sfid AND e.state IN ('open', 'retrying', 'ignored'))
				  AND (%s)`, t.target, strings.Join(differs, "\n\t\t\t\t\t  OR "))
}
