package inbound

import (
	"context"
	"errors"
	"fmt"
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
		r.log.Info("inbound: drift check complete", "sobject", t.m.SObject, "check", *id, "elapsed", time.Since(started))
		wake(r.rereadWake)
	}
}

// compareDrift reads the Ids and SystemModstamps of the object into
// pgforce.drift_seen and compares them with the table in one transaction
// that records the result and queues the re-reads.
func (r *runner) compareDrift(ctx context.Context, t *table, id int64) error {
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
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		_, err := r.s.pool.Exec(ctx, `INSERT INTO pgforce.drift_seen (check_id, sfid, systemmodstamp)
			SELECT $1, u.sfid, u.stamp FROM unnest($2::text[], $3::timestamptz[]) AS u(sfid, stamp) ON CONFLICT DO NOTHING`, id, ids, stamps)
		ids, stamps = ids[:0], stamps[:0]
		return err
	}
	add := func(sfid, stamp string) error {
		var at *time.Time
		if ts, err := salesforce.ParseDateTime(stamp); err == nil {
			at = &ts
		}
		ids, stamps = append(ids, sfid), append(stamps, at)
		if len(ids) < driftBatch {
			return nil
		}
		return flush()
	}
	const soql = "SELECT Id, SystemModstamp FROM %s"
	if count >= r.s.opts.BulkThreshold {
		_, err = r.s.sf.BulkQuery(ctx, salesforce.QueryJob{Query: fmt.Sprintf(soql, t.m.SObject), Operation: "query"},
			salesforce.BulkQueryOptions{MaxRecords: r.s.opts.BulkPageSize, Poll: bulkPoll},
			func(row salesforce.Row) error {
				sfid, _ := row.Get("Id")
				stamp, _ := row.Get("SystemModstamp")
				return add(sfid, stamp)
			})
	} else {
		err = r.s.sf.Query(ctx, fmt.Sprintf(soql, t.m.SObject), func(rec salesforce.Record) error {
			stamp, _ := rec.Fields["SystemModstamp"].(string)
			return add(rec.ID(), stamp)
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
				SELECT s.sfid, s.systemmodstamp FROM pgforce.drift_seen s WHERE s.check_id = $1
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
				recent = (SELECT count(*) FROM seen s WHERE s.systemmodstamp >= $2)
					+ (SELECT count(*) FROM %[1]s t WHERE t.sfid IS NOT NULL AND t.systemmodstamp >= $2
					   AND NOT EXISTS (SELECT FROM seen s WHERE s.sfid = t.sfid)),
				sample = (SELECT coalesce(jsonb_object_agg(k.kind, k.ids), '{}') FROM (
					SELECT d.kind, jsonb_agg(d.sfid ORDER BY d.sfid) AS ids
					FROM (SELECT kind, sfid, row_number() OVER (PARTITION BY kind ORDER BY sfid) AS n FROM diff) d
					WHERE d.n <= $4 GROUP BY d.kind) k)
			WHERE c.id = $1`, t.target), id, cutoff, r.id, driftSample)
		return err
	})
}
