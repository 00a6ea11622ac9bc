package inbound

import (
	"context"
	"fmt"
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

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Batches have disjoint ids, so several appliers merge them at once;
	// Postgres, not the download, is the bottleneck of a load.
	par := r.s.opts.LoadParallel
	batches := make(chan [][]any)
	applied := make(chan error, par)
	var total atomic.Int64
	for range par {
		go func() {
			var err error
			for b := range batches {
				if err != nil {
					continue // drain so the reader never blocks
				}
				// A batch in flight is finished even when the worker is
				// stopping, so that its position is stored with it.
				_, err = t.applyRows(context.WithoutCancel(ctx), r.s.pool, b, operation, func(tx pgx.Tx) error {
					return t.advance(context.WithoutCancel(ctx), tx, maxStamp(b), "")
				})
				if err != nil {
					cancel(err)
				} else {
					total.Add(int64(len(b)))
					r.s.metrics.rowsApplied.Add(float64(len(b)))
				}
			}
			applied <- err
		}()
	}

	size := r.s.opts.BatchSize
	cur := make([][]any, 0, size)
	push := func(row []any) error {
		cur = append(cur, row)
		if len(cur) < size {
			return nil
		}
		select {
		case batches <- cur:
		case <-ctx.Done():
			return context.Cause(ctx)
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
		select {
		case batches <- cur:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	close(batches)
	var aerr error
	for range par {
		if e := <-applied; e != nil && aerr == nil {
			aerr = e
		}
	}
	if aerr != nil {
		return total.Load(), aerr
	}
	if err := r.observe(err); err != nil {
		return total.Load(), fmt.Errorf("inbound: read %s: %w", t.m.SObject, err)
	}
	return total.Load(), nil
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
