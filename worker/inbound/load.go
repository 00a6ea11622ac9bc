package inbound

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// read streams the records a SOQL WHERE clause selects into the table:
// through a REST query when COUNT() is under the bulk threshold, else
// through a Bulk API 2.0 query job. Rows travel in batches of
// Options.BatchSize from the reader goroutine to Options.LoadParallel
// appliers (one transaction each), so at most LoadParallel+1 batches are in
// memory whatever the object's size. all selects queryAll (deleted records too). It returns the
// number of records read.
func (r *runner) read(ctx context.Context, t *table, where string, all bool, operation string) (int64, error) {
	if err := r.waitBudget(ctx, budget.Load); err != nil {
		return 0, err
	}
	countQ := "SELECT COUNT() FROM " + t.m.SObject
	if where != "" {
		countQ += " WHERE " + where
	}
	var count int
	var err error
	if all {
		// COUNT() through query ignores deleted rows; the live count is
		// still the right size estimate for choosing the API.
		count, err = r.s.sf.Count(ctx, "SELECT COUNT() FROM "+t.m.SObject)
	} else {
		count, err = r.s.sf.Count(ctx, countQ)
	}
	if err := r.observe(err); err != nil {
		return 0, err
	}
	useBulk := count >= r.s.opts.BulkThreshold
	r.log.Info("inbound: reading records", "mapping", t.m.ID, "sobject", t.m.SObject, "count", count, "bulk", useBulk, "op", operation)
	r.s.metrics.loadAPI(useBulk)
	if useBulk && !all && t.direct.Load() {
		return r.bulkDirect(ctx, t, where, operation)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	appliers := startAppliers(ctx, r.s.opts.LoadParallel, cancel, r.s.metrics.rowsApplied.Add, func(ctx context.Context, b [][]any) (int64, error) {
		// The batch's position is stored in the same transaction.
		_, err := t.applyRows(ctx, r.s.pool, b, operation, func(tx pgx.Tx) error {
			return t.advance(ctx, tx, maxStamp(b), "")
		})
		return int64(len(b)), err
	})

	size := r.s.opts.BatchSize
	cur := make([][]any, 0, size)
	push := func(row []any) error {
		cur = append(cur, row)
		if len(cur) < size {
			return nil
		}
		if err := appliers.send(ctx, cur); err != nil {
			return err
		}
		cur = make([][]any, 0, size)
		return nil
	}
	soql := t.soql(where)
	if useBulk {
		op := "query"
		if all {
			op = "queryAll"
		}
		var ix csvIndex
		_, err = r.s.sf.BulkQuery(ctx, salesforce.QueryJob{Query: soql, Operation: op},
			salesforce.BulkQueryOptions{MaxRecords: r.s.opts.BulkPageSize, Poll: salesforce.Poll{Initial: 100 * time.Millisecond, Max: 2 * time.Second}},
			func(row salesforce.Row) error { return push(t.csvRow(&ix, row)) })
	} else {
		fn := func(rec salesforce.Record) error { return push(t.recordRow(&rec)) }
		if all {
			err = r.s.sf.QueryAll(ctx, soql, fn)
		} else {
			err = r.s.sf.Query(ctx, soql, fn)
		}
	}
	if err == nil && len(cur) > 0 {
		err = appliers.send(ctx, cur)
	}
	total, aerr := appliers.wait()
	if aerr != nil {
		return total, aerr
	}
	if err := r.observe(err); err != nil {
		return total, fmt.Errorf("inbound: read %s: %w", t.m.SObject, err)
	}
	return total, nil
}

// maxStamp is the newest SystemModstamp among rows (column 1), the
// watermark the batch moves to.
func maxStamp(rows [][]any) *time.Time {
	var max *time.Time
	for _, row := range rows {
		s, ok := row[1].(string)
		if !ok {
			continue
		}
		ts, err := salesforce.ParseDateTime(s)
		if err != nil {
			continue
		}
		if max == nil || ts.After(*max) {
			max = &ts
		}
	}
	return max
}

// bulkDirect is the fast path of a Bulk load into an empty table: each
// result page, a CSV whose columns are the SELECT's, goes into COPY as it
// came, so the worker never parses a row. Quoted empty values are nulls
// (FORCE_NULL), as in Bulk results. A page COPY refuses (a row a change
// event inserted meanwhile, a value that does not fit its column) is
// parsed and merged through the staging path instead, in the same
// transaction. Pages download while earlier ones are copied.
func (r *runner) bulkDirect(ctx context.Context, t *table, where, operation string) (int64, error) {
	job, err := r.s.sf.CreateQueryJob(ctx, salesforce.QueryJob{Query: t.soql(where), Operation: "query"})
	if err := r.observe(err); err != nil {
		return 0, err
	}
	if _, err := r.s.sf.WaitQueryJob(ctx, job.ID, salesforce.Poll{Initial: 100 * time.Millisecond, Max: 2 * time.Second}); err != nil {
		return 0, r.observe(err)
	}
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = pgx.Identifier{pgColumn(c.Name)}.Sanitize()
	}
	copySQL := fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT csv, HEADER true, FORCE_NULL (%s))",
		t.target, strings.Join(names, ", "), strings.Join(names, ", "))

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	appliers := startAppliers(ctx, r.s.opts.LoadParallel, cancel, r.s.metrics.rowsApplied.Add, func(ctx context.Context, page []byte) (int64, error) {
		return r.copyPage(ctx, t, copySQL, page, operation)
	})
	pageSize := r.s.opts.BulkPageSize
	if pageSize <= 0 {
		pageSize = r.s.opts.BatchSize
	}
	err = r.s.sf.QueryJobResultPages(ctx, job.ID, pageSize, func(page io.Reader) error {
		b, err := io.ReadAll(page)
		if err != nil {
			return err
		}
		return appliers.send(ctx, b)
	})
	total, aerr := appliers.wait()
	if aerr != nil {
		return total, aerr
	}
	if err := r.observe(err); err != nil {
		return total, fmt.Errorf("inbound: bulk results of %s: %w", t.m.SObject, err)
	}
	// The watermark is the newest SystemModstamp now in the table, read
	// through its index.
	_, err = r.s.pool.Exec(ctx, fmt.Sprintf(`UPDATE pgforce.mapping SET
		inbound_watermark = greatest(inbound_watermark, (SELECT max(systemmodstamp) FROM %s)), last_inbound_at = now()
		WHERE id = $1`, t.target), t.m.ID)
	return total, err
}

// copyPage COPies one Bulk result page, falling back to the staged merge.
func (r *runner) copyPage(ctx context.Context, t *table, copySQL string, page []byte, operation string) (int64, error) {
	tx, err := beginApply(ctx, r.s.pool)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, err
	}
	tag, err := sp.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(page), copySQL)
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return 0, err
		}
		return tag.RowsAffected(), tx.Commit(ctx)
	}
	if rbErr := sp.Rollback(ctx); rbErr != nil {
		return 0, rbErr
	}
	if !isRecordError(err) {
		return 0, err
	}
	var rows [][]any
	var ix csvIndex
	if err := salesforce.ReadCSV(bytes.NewReader(page), func(row salesforce.Row) error {
		rows = append(rows, t.csvRow(&ix, row))
		return nil
	}); err != nil {
		return 0, err
	}
	if _, err := t.applyRowsStaged(ctx, tx, rows, operation); err != nil {
		return 0, err
	}
	if err := t.advance(ctx, tx, maxStamp(rows), ""); err != nil {
		return 0, err
	}
	return int64(len(rows)), tx.Commit(ctx)
}

// appliers is the pool that writes a load into Postgres: Postgres, not the
// download, is the bottleneck of a load, and batches have disjoint ids, so
// several appliers write at once. The first failure cancels the load; the
// other appliers then drain the channel so the reader never blocks.
type appliers[T any] struct {
	in    chan T
	done  chan error
	total atomic.Int64
}

// startAppliers starts par appliers running apply. Work in flight is
// finished even when ctx ends, so that positions are stored with it.
func startAppliers[T any](ctx context.Context, par int, cancel context.CancelCauseFunc, applied func(float64), apply func(context.Context, T) (int64, error)) *appliers[T] {
	a := &appliers[T]{in: make(chan T), done: make(chan error, par)}
	for range par {
		go func() {
			var err error
			for item := range a.in {
				if err != nil {
					continue
				}
				var n int64
				if n, err = apply(context.WithoutCancel(ctx), item); err != nil {
					cancel(err)
					continue
				}
				a.total.Add(n)
				applied(float64(n))
			}
			a.done <- err
		}()
	}
	return a
}

// send hands item to an applier, or returns why the load was cancelled.
func (a *appliers[T]) send(ctx context.Context, item T) error {
	select {
	case a.in <- item:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// wait lets the appliers finish and returns the rows applied and the first
// applier error.
func (a *appliers[T]) wait() (int64, error) {
	close(a.in)
	var first error
	for range cap(a.done) {
		if err := <-a.done; err != nil && first == nil {
			first = err
		}
	}
	return a.total.Load(), first
}
