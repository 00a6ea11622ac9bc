package inbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	r.log.Info("inbound: reading records", "sobject", t.m.SObject, "count", count, "bulk", useBulk, "op", operation)
	r.s.metrics.loadAPI(useBulk)
	read, err := r.beginRead(ctx)
	if err != nil {
		return 0, err
	}
	defer r.endRead(ctx, read)
	if useBulk && !all && t.direct.Load() {
		return r.bulkDirect(ctx, t, where, operation, read.started)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := ctx
	appliers := startAppliers(ctx, r.s.opts.LoadParallel, cancel, r.s.metrics.rowsApplied.Add, func(ctx context.Context, b [][]any) (int64, error) {
		// The batch's position is stored in the same transaction.
		_, err := r.applyRowsRetrying(stop, ctx, t, b, operation, read.started, func(tx pgx.Tx) error {
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
			salesforce.BulkQueryOptions{MaxRecords: r.s.opts.BulkPageSize, Poll: bulkPoll},
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

// bulkPoll paces the status polls of a load's Bulk query job. The first
// waits are short because a small job is often done within a tenth of a
// second and the load waits for nothing else; the wait grows by half each
// time, so a job of minutes costs only a few polls more than a slower start.
var bulkPoll = salesforce.Poll{Initial: 25 * time.Millisecond, Max: 2 * time.Second}

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
// result page, a CSV whose columns are the SELECT's, goes into COPY nearly
// as it came (one column is added, see withStatusColumn), so the worker
// never parses a row. Quoted empty values are nulls (FORCE_NULL), as in
// Bulk results. A page COPY refuses (a row a change event inserted
// meanwhile, a value that does not fit its column) is parsed and merged
// through the staging path instead. Pages download while earlier ones are
// copied.
func (r *runner) bulkDirect(ctx context.Context, t *table, where, operation string, since time.Time) (int64, error) {
	job, err := r.s.sf.CreateQueryJob(ctx, salesforce.QueryJob{Query: t.storedSOQL(where), Operation: "query"})
	if err := r.observe(err); err != nil {
		return 0, err
	}
	if _, err := r.s.sf.WaitQueryJob(ctx, job.ID, bulkPoll); err != nil {
		return 0, r.observe(err)
	}
	pc, err := r.pageCopy(ctx, t)
	if err != nil {
		return 0, err
	}
	// The SystemModstamp index is built after the rows are in; load()
	// builds it too when an attempt that dropped it failed.
	var deferred bool
	if err := r.s.pool.QueryRow(ctx, `SELECT pgforce.inbound_defer_indexes($1)`, r.id).Scan(&deferred); err != nil {
		r.log.Info("inbound: load keeps the SystemModstamp index", "err", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	appliers := startAppliers(ctx, r.s.opts.LoadParallel, cancel, r.s.metrics.rowsApplied.Add, func(ctx context.Context, page []byte) (int64, error) {
		return r.copyPage(ctx, t, pc, page, operation, since)
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
		return appliers.send(ctx, withStatusColumn(b))
	})
	total, aerr := appliers.wait()
	if aerr != nil {
		return total, aerr
	}
	if err := r.observe(err); err != nil {
		return total, fmt.Errorf("inbound: bulk results of %s: %w", t.m.SObject, err)
	}
	if deferred {
		if err := r.restoreIndexes(ctx); err != nil {
			return total, err
		}
	}
	// The watermark is the newest SystemModstamp now in the table, read
	// through its index.
	_, err = r.s.pool.Exec(ctx, fmt.Sprintf(`UPDATE pgforce.mapping SET
		inbound_watermark = greatest(inbound_watermark, (SELECT max(systemmodstamp) FROM %s)), last_inbound_at = now()
		WHERE id = $1`, t.target), t.m.ID)
	return total, err
}

// restoreIndexes builds the table's SystemModstamp index when a load left
// it out (inbound_defer_indexes). Writers of the table, change events
// among them, wait for the build: a sort of the loaded rows, cheaper than
// the index entries COPY would have made one by one.
func (r *runner) restoreIndexes(ctx context.Context) error {
	started := time.Now()
	var built bool
	if err := r.s.pool.QueryRow(ctx, `SELECT pgforce.inbound_restore_indexes($1)`, r.id).Scan(&built); err != nil {
		return fmt.Errorf("inbound: build the SystemModstamp index again: %w", err)
	}
	if built {
		r.log.Info("inbound: SystemModstamp index built after the load", "elapsed", time.Since(started).Round(time.Millisecond).String())
	}
	return nil
}

// pageCopy is how a direct load COPies its pages.
//
// pgforce's INSERT triggers on a mapped table do nothing to a worker's row
// but stamp it SYNCED (_hc_lastop; _hc_err stays null): capture skips the
// worker's writes, and the read-only refusal lets them through. Yet the
// status trigger is a PL/pgSQL call per row, 21% of the COPY backend's time
// in a profiled load. So every page carries _hc_lastop = SYNCED itself,
// and its transaction switches those triggers off around its COPY (see
// copyQuiet). (A disabled BEFORE ROW trigger still makes COPY insert rows
// one at a time rather than in batches, which costs about a fifth more
// backend CPU: 100,000 Accounts, best of five, 0.88 s without any such
// trigger, 1.12 s with one whose WHEN is always false. Only dropping the
// trigger would avoid that, and DROP TRIGGER locks out readers too.)
type pageCopy struct {
	copySQL string // COPY of the page's columns and _hc_lastop
	// disable and enable switch pgforce's enabled INSERT triggers off and
	// on again, each in one ALTER TABLE.
	disable, enable string
	// quiet: the triggers may be switched off; cleared for the rest of the
	// load when switching them off fails.
	quiet atomic.Bool
	turn  sync.Mutex // held by the applier whose page is being copied quietly
}

func (r *runner) pageCopy(ctx context.Context, t *table) (*pageCopy, error) {
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = pgx.Identifier{pgColumn(c.Name)}.Sanitize()
	}
	force := strings.Join(names, ", ")
	pc := &pageCopy{copySQL: fmt.Sprintf("COPY %s (%s, _hc_lastop) FROM STDIN (FORMAT csv, HEADER true, FORCE_NULL (%s))", t.target, force, force)}
	// tgtype bit 2 is INSERT; 'O' is enabled in ordinary sessions.
	rows, err := r.s.pool.Query(ctx, `SELECT tgname FROM pg_catalog.pg_trigger
		WHERE tgrelid = $1::regclass AND NOT tgisinternal AND tgname LIKE 'pgforce\_%' AND tgenabled = 'O' AND tgtype & 4 <> 0
		ORDER BY tgname`, t.target)
	if err != nil {
		return nil, err
	}
	names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var off, on []string
	for _, n := range names {
		off = append(off, "DISABLE TRIGGER "+pgx.Identifier{n}.Sanitize())
		on = append(on, "ENABLE TRIGGER "+pgx.Identifier{n}.Sanitize())
	}
	pc.disable = "ALTER TABLE " + t.target + " " + strings.Join(off, ", ")
	pc.enable = "ALTER TABLE " + t.target + " " + strings.Join(on, ", ")
	pc.quiet.Store(len(names) > 0)
	return pc, nil
}

// copyPage COPies one Bulk result page (already carrying _hc_lastop): with
// pgforce's triggers off when it may, else with them on, and falls back to
// the staged merge for a page COPY refuses, or one that holds a record
// deleted since the read began (see copiedWritten).
func (r *runner) copyPage(ctx context.Context, t *table, pc *pageCopy, page []byte, operation string, since time.Time) (int64, error) {
	var err error
	if pc.quiet.Load() {
		var n int64
		var done bool
		n, done, err = r.copyQuiet(ctx, t, pc, page, since)
		if done || (err != nil && !errors.Is(err, errCopiedWritten)) {
			return n, err
		}
	}
	if err == nil {
		var n int64
		n, err = r.copyPageTx(ctx, t, pc, page, since)
		if err == nil || !(isRecordError(err) || errors.Is(err, errCopiedWritten)) {
			return n, err
		}
	}
	var rows [][]any
	var ix csvIndex
	if err := salesforce.ReadCSV(bytes.NewReader(page), func(row salesforce.Row) error {
		// The added _hc_lastop column is not a field: csvIndex looks the
		// mapped columns up by name and leaves it out.
		rows = append(rows, t.csvRow(&ix, row))
		return nil
	}); err != nil {
		return 0, err
	}
	// The merge locks the rows it updates (those change events inserted
	// meanwhile), so it gives way to the application's row locks like
	// every other inbound write of many rows (applyRetrying).
	if err := r.applyRetrying(ctx, context.WithoutCancel(ctx), t, operation+" page", func(work context.Context, tx pgx.Tx) error {
		if _, err := t.applyRowsStaged(work, tx, rows, operation, since); err != nil {
			return err
		}
		return t.advance(work, tx, maxStamp(rows), "")
	}); err != nil {
		return 0, err
	}
	return int64(len(rows)), nil
}

// copyPageTx COPies one page with pgforce's triggers on, in a transaction
// of its own.
func (r *runner) copyPageTx(ctx context.Context, t *table, pc *pageCopy, page []byte, since time.Time) (int64, error) {
	tx, err := beginApply(ctx, r.s.pool)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(page), pc.copySQL)
	if err != nil {
		return 0, err
	}
	if err := t.pageWritten(ctx, tx, since, page); err != nil {
		return 0, err
	}
	return tag.RowsAffected(), tx.Commit(ctx)
}

// errCopiedWritten says a page COPied holds a record pgforce wrote or
// deleted since the read began, or whose row's delete is still queued (see
// copiedWritten): the page goes through the merge, which leaves such
// records out.
var errCopiedWritten = errors.New("inbound: a page holds a record written or deleted since the read began")

// pageWritten is copiedWritten for a Bulk result page COPied in tx,
// errCopiedWritten when it holds such a record. The page is parsed for its
// Ids only when the mapping has any such record at all.
func (t *table) pageWritten(ctx context.Context, tx pgx.Tx, since time.Time, page []byte) error {
	if written, err := t.copiedWritten(ctx, tx, since, nil); err != nil || !written {
		return err
	}
	ids := []string{}
	var ix csvIndex
	if err := salesforce.ReadCSV(bytes.NewReader(page), func(row salesforce.Row) error {
		if id, isStr := t.csvRow(&ix, row)[0].(string); isStr {
			ids = append(ids, id)
		}
		return nil
	}); err != nil {
		return err
	}
	written, err := t.copiedWritten(ctx, tx, since, ids)
	if err == nil && written {
		err = errCopiedWritten
	}
	return err
}

// copyQuiet COPies a page with pgforce's INSERT triggers switched off in
// the page's own transaction. ALTER TABLE … DISABLE TRIGGER takes a SHARE
// ROW EXCLUSIVE lock until commit: readers go on, no other session can
// write the table while the triggers are off, and they are on again
// (ENABLE, same transaction) before anyone else could see the change. So
// the appliers' COPYs take turns (the next page waits ready); on two cores
// shared with the download that measured within noise of two streams with
// the triggers on, for less CPU. done is false when the page was not
// applied (the lock was not granted in time, the worker does not own the
// table, COPY refused a row) and must go the usual way; a page holding a
// record deleted since the read began goes through the merge
// (errCopiedWritten).
func (r *runner) copyQuiet(ctx context.Context, t *table, pc *pageCopy, page []byte, since time.Time) (n int64, done bool, err error) {
	// The appliers take turns here rather than at the table lock, so that
	// lock_timeout below only ever measures a wait for somebody else.
	pc.turn.Lock()
	defer pc.turn.Unlock()
	tx, err := beginApply(ctx, r.s.pool)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback(ctx)
	// A user transaction holding a write lock on the table for long must
	// stall neither the load nor the writers that would queue behind the
	// ALTER: after a short wait the page goes in with the triggers on.
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
		return 0, false, err
	}
	if _, err := tx.Exec(ctx, pc.disable); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return 0, false, err
		}
		// Not the table's owner (42501), or a writer held the table past
		// lock_timeout (55P03) and may well hold it through the next pages
		// too: the rest of the load keeps the triggers on.
		pc.quiet.Store(false)
		r.log.Info("inbound: load keeps the table's triggers on", "table", t.target, "reason", pgErr.Message)
		return 0, false, nil
	}
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(page), pc.copySQL)
	if err != nil {
		if isRecordError(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	if _, err := tx.Exec(ctx, pc.enable); err != nil {
		return 0, false, err
	}
	if err := t.pageWritten(ctx, tx, since, page); err != nil {
		return 0, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, false, err
	}
	return tag.RowsAffected(), true, nil
}

// withStatusColumn returns a CSV page with a last column added to every
// record: "_hc_lastop" in the header, "SYNCED" in the rows. Records end at
// a newline outside quotes: a quoted value may hold newlines, and a
// newline is inside one exactly when the record so far holds an odd number
// of quotes (a doubled quote counts twice). A CR before the newline stays
// the record's line ending. Counting quotes line by line keeps this to two
// vectorised scans per record.
func withStatusColumn(page []byte) []byte {
	const header, row = `,"_hc_lastop"`, `,"SYNCED"`
	if len(page) == 0 {
		return page
	}
	out := make([]byte, 0, len(page)+len(page)/20+len(header))
	extra := header
	start := 0 // of the record being copied
	quoted := false
	for pos := 0; ; {
		nl := bytes.IndexByte(page[pos:], '\n')
		if nl < 0 {
			break
		}
		nl += pos
		if bytes.Count(page[pos:nl], []byte{'"'})%2 == 1 {
			quoted = !quoted
		}
		pos = nl + 1
		if quoted {
			continue
		}
		end := nl
		if end > start && page[end-1] == '\r' {
			end--
		}
		out = append(out, page[start:end]...)
		out = append(out, extra...)
		out = append(out, page[end:nl+1]...)
		extra, start = row, nl+1
	}
	if start < len(page) {
		out = append(out, page[start:]...)
		out = append(out, extra...)
	}
	return out
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
