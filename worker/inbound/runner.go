package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/mappings"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/streaming"
	"github.com/pgforce/pgforce/worker/txretry"
)

// runner syncs one mapping while this worker holds its lease: describe,
// ensure_table, load, then CDC or polling, with re-reads and resyncs on the
// side. Every step stores its progress in Postgres, so a runner that dies
// anywhere is resumed by the next lease holder.
type runner struct {
	s   *Service
	id  int
	log *slog.Logger

	rereadWake   chan struct{}
	resyncWake   chan struct{}
	driftWake    chan struct{}
	resyncQueued atomic.Bool

	// cleared says that this runner has cleared the mapping's inbound
	// failure from pgforce.status (see notRetrying). The stream's applier
	// and its settle timer set it beside the runner's goroutine.
	cleared atomic.Bool
}

// notRetrying clears the mapping's inbound failure from pgforce.status
// (see sql/128_failing.sql): an attempt worked, or the mapping is in error,
// which state says, and waits for the user. Once per runner, and again
// after each retrying: a runner is started for each attempt.
func (r *runner) notRetrying(ctx context.Context) {
	if r.cleared.Load() {
		return
	}
	if err := mappings.NotRetrying(ctx, r.s.pool, r.id, mappings.Inbound); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("inbound: cannot clear the mapping's failure in pgforce.status", "err", err)
		}
		return
	}
	r.cleared.Store(true)
}

// retrying shows in pgforce.status that an attempt failed and is retried.
func retrying(ctx context.Context, s *Service, id int, log *slog.Logger, cause error) {
	if err := mappings.Retrying(ctx, s.pool, id, mappings.Inbound, cause); err != nil && ctx.Err() == nil {
		log.Warn("inbound: cannot show the mapping's failure in pgforce.status", "err", err)
	}
}

func (r *runner) retrying(ctx context.Context, cause error) {
	r.cleared.Store(false)
	retrying(ctx, r.s, r.id, r.log, cause)
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// observe feeds a Salesforce error to the API budget and shows a refusal
// in pgforce.status; it returns err unchanged.
func (r *runner) observe(err error) error {
	if err != nil && r.s.budget.Observe(err) {
		_ = mappings.SetState(context.Background(), r.s.pool, r.id, r.currentState(), "REQUEST_LIMIT_EXCEEDED: Salesforce refused a call because the org's API allocation is spent; backing off")
	}
	return err
}

func (r *runner) currentState() string {
	m, err := mappings.Get(context.Background(), r.s.pool, r.id)
	if err != nil {
		return mappings.StateSynced
	}
	return m.State
}

// waitBudget blocks until API work of priority p may run, showing why it
// waits in state_detail.
func (r *runner) waitBudget(ctx context.Context, p budget.Priority) error {
	err := r.s.budget.Check(p)
	if err == nil {
		return nil
	}
	_ = mappings.SetState(ctx, r.s.pool, r.id, r.currentState(), err.Error())
	r.log.Warn("inbound: API budget exhausted; waiting", "reason", err)
	return r.s.budget.Wait(ctx, p)
}

// run is one attempt; the service retries it with backoff while it holds
// the lease. A nil return means the mapping needs no more work from this
// runner (it is in error).
func (r *runner) run(ctx context.Context) error {
	m, err := mappings.Get(ctx, r.s.pool, r.id)
	if err != nil {
		return err
	}
	// No read of this runner's is in flight yet: one a stopped runner
	// left registered would have every write noted from now on.
	if _, err := r.s.pool.Exec(ctx, `SELECT pgforce._inbound_reads_reset($1)`, r.id); err != nil {
		return err
	}
	// A describe leaves fields as the user fields of columns. Fields that
	// differ were edited since: pgforce._mapping_edited sends a synced
	// mapping back to loading then, but a paused one stays paused, and
	// resume made it synced again without its new columns.
	edited := len(m.Columns) > 0 && !sameFields(userFields(m.Columns), m.Fields)
	needLoad := m.State == mappings.StateNew || m.State == mappings.StateDescribing || m.State == mappings.StateLoading ||
		len(m.Columns) == 0 || (m.InboundWatermark == nil && m.CDCReplayID == "") || edited
	if m.State == mappings.StateNew || m.State == mappings.StateDescribing || len(m.Columns) == 0 || m.State == mappings.StateLoading || edited {
		if err := r.describe(ctx, m); err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				r.log.Warn("inbound: mapping cannot be synced until it is fixed", "sobject", m.SObject, "detail", ce.Detail)
				return setError(ctx, r.s.pool, m.ID, ce)
			}
			return err
		}
		if m, err = mappings.Get(ctx, r.s.pool, r.id); err != nil {
			return err
		}
	}
	var me string
	if m.Mode == "read_write" {
		if me, err = r.s.sf.UserID(ctx); err != nil {
			return err
		}
	}
	t, err := newTable(m, me)
	if err != nil {
		return err
	}
	useCDC, err := r.useCDC(ctx, m)
	if err != nil {
		return err
	}
	mode := "poll"
	if useCDC {
		mode = "cdc"
	}
	if _, err := r.s.pool.Exec(ctx, `UPDATE pgforce.mapping SET inbound_mode = $2 WHERE id = $1 AND inbound_mode IS DISTINCT FROM $2`, m.ID, mode); err != nil {
		return err
	}
	drift, stopDrift := context.WithCancel(ctx)
	defer stopDrift()
	go r.driftLoop(drift, t)
	if useCDC {
		return r.runCDC(ctx, t, needLoad)
	}
	return r.runPoll(ctx, t, needLoad)
}

// describe checks the mapping against Salesforce and creates or alters its
// table; compound fields in the list are replaced by their components.
func (r *runner) describe(ctx context.Context, m *mappings.Mapping) error {
	if err := mappings.SetState(ctx, r.s.pool, m.ID, mappings.StateDescribing, "describing "+m.SObject); err != nil {
		return err
	}
	if err := r.waitBudget(ctx, budget.Load); err != nil {
		return err
	}
	cols, _, err := describeMapping(ctx, r.s.sf, m)
	if err := r.observe(err); err != nil {
		return err
	}
	fields := userFields(cols)
	if !sameFields(fields, m.Fields) {
		if _, err := r.s.pool.Exec(ctx, `UPDATE pgforce.mapping SET fields = $2, state = 'describing',
			state_detail = 'compound fields replaced by their components' WHERE id = $1`, m.ID, fields); err != nil {
			return err
		}
	}
	if err := r.ensureTable(ctx, m, cols); err != nil {
		return err
	}
	return mappings.SetState(ctx, r.s.pool, m.ID, mappings.StateLoading, "loading "+m.SObject)
}

// ensureTable creates or alters m's table for the described columns; a
// refusal only the user can fix is a ConfigError (see tableConfigError).
func (r *runner) ensureTable(ctx context.Context, m *mappings.Mapping, cols []mappings.Column) error {
	colsJSON, err := json.Marshal(cols)
	if err != nil {
		return err
	}
	// Read before ensure_table: a fix the user makes after the refusal
	// then always differs from it (see setError).
	var shape string
	if err := r.s.pool.QueryRow(ctx, `SELECT pgforce._table_shape($1)`, m.ID).Scan(&shape); err != nil {
		return err
	}
	var added []string
	if err := r.s.pool.QueryRow(ctx, `SELECT pgforce.ensure_table($1, $2)`, m.ID, colsJSON).Scan(&added); err != nil {
		if ce := tableConfigError(m, shape, err); ce != nil {
			return ce
		}
		return fmt.Errorf("inbound: ensure_table for %s: %w", m.SObject, err)
	}
	r.log.Info("inbound: table ready", "sobject", m.SObject, "table", m.Table(), "added", added)
	return nil
}

func sameFields(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// useCDC decides how changes arrive: cdc and poll are the user's choice;
// auto streams when the org has selected the object for Change Data
// Capture. Global describe cannot tell (a real org lists a change event for
// every object that supports CDC, selected or not), so the selection is
// read through the Tooling API. Where the org will not show it (the user
// lacks View Setup and Configuration), auto polls: polling sees every
// change, while a subscription to an unselected object would see none.
func (r *runner) useCDC(ctx context.Context, m *mappings.Mapping) (bool, error) {
	switch m.Inbound {
	case "cdc":
		return true, nil
	case "poll":
		return false, nil
	}
	selected, err := r.s.cdcSelection(ctx)
	if err != nil {
		var apiErr *salesforce.APIError
		if errors.As(err, &apiErr) && apiErr.HTTPStatus >= 400 && apiErr.HTTPStatus < 500 &&
			!salesforce.IsInvalidSession(err) && !salesforce.IsLimitExceeded(err) {
			r.log.Warn("inbound: cannot read the org's Change Data Capture selection; polling",
				"mapping", m.ID, "sobject", m.SObject, "err", err,
				"hint", "grant View Setup and Configuration, or set inbound = 'cdc' for objects selected for CDC")
			return false, nil
		}
		return false, r.observe(err)
	}
	return selected[strings.ToLower(ChangeEventName(m.SObject))], nil
}

// load reads the whole object into the table (merging into whatever rows
// are there, so readers never see it empty) and marks the mapping synced.
func (r *runner) load(ctx context.Context, t *table) error {
	if err := mappings.SetState(ctx, r.s.pool, r.id, mappings.StateLoading, "loading "+t.m.SObject); err != nil {
		return err
	}
	return r.loadRecords(ctx, t)
}

// loadBeside is load while change events stream beside it: stream is the
// stream's context, which the applier cancels when a batch fails. The load
// goes on under ctx regardless, since its writes do not depend on the
// events (a failure that breaks them too stops it with its own error).
// Cancelled with the stream, a large object's load started over from the
// beginning, and its merge into the rows already loaded could fail the way
// the event had, so that it never finished. Meanwhile state_detail says at
// once why no change comes in; the changes are caught up after the load,
// from the stored replay id or by SystemModstamp (see runCDC).
func (r *runner) loadBeside(ctx, stream context.Context, t *table) error {
	if err := mappings.SetState(ctx, r.s.pool, r.id, mappings.StateLoading, "loading "+t.m.SObject); err != nil {
		return err
	}
	loaded := make(chan struct{})
	shown := make(chan struct{})
	go func() {
		defer close(shown)
		select {
		case <-loaded:
			return
		case <-stream.Done():
		}
		err := failure(stream)
		if err == nil {
			return
		}
		// Only while the load runs: its end marks the mapping synced, and
		// streamOnce returns the failure then, which supervise shows.
		if _, xerr := r.s.pool.Exec(ctx, `UPDATE pgforce.mapping SET state_detail = $2 WHERE id = $1 AND state = 'loading' AND NOT paused`,
			r.id, fmt.Sprintf("loading %s; change events stopped, to be caught up after the load: %v", t.m.SObject, err)); xerr != nil && ctx.Err() == nil {
			r.log.Warn("inbound: cannot show why change events stopped", "err", xerr)
		}
		retrying(ctx, r.s, r.id, r.log, err)
	}()
	err := r.loadRecords(ctx, t)
	close(loaded)
	<-shown
	return err
}

// loadRecords is load once the mapping shows it is loading.
func (r *runner) loadRecords(ctx context.Context, t *table) error {
	started := time.Now()
	var empty bool
	// A table whose last rows the application deleted, with the deletes
	// still queued, is merged into (see live in newTable), not loaded
	// directly, which would bring them back.
	if err := r.s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT NOT EXISTS (SELECT FROM %s)
		AND NOT EXISTS (SELECT FROM pgforce.outbox WHERE mapping_id = $1 AND op = 'delete')`, t.target), r.id).Scan(&empty); err != nil {
		return err
	}
	t.direct.Store(empty)
	t.seen.Store(!empty)
	var since time.Time
	if !empty {
		if _, err := r.s.pool.Exec(ctx, `DELETE FROM pgforce.inbound_seen WHERE mapping_id = $1`, r.id); err != nil {
			return err
		}
		since = time.Now().Add(-r.s.opts.Overlap)
	}
	n, err := r.read(ctx, t, "", false, "load")
	t.direct.Store(false)
	t.seen.Store(false)
	if err != nil {
		return err
	}
	// An earlier attempt may have left the index out and failed.
	if err := r.restoreIndexes(ctx); err != nil {
		return err
	}
	if !empty {
		if err := r.markUnseen(ctx, t, since); err != nil {
			return err
		}
	}
	r.log.Info("inbound: load complete", "sobject", t.m.SObject, "rows", n, "elapsed", time.Since(started).Round(time.Millisecond).String())
	_, err = r.s.pool.Exec(ctx, `UPDATE pgforce.mapping SET state = 'synced',
		state_detail = format('loaded %s record%s in %s', $2::bigint, CASE WHEN $2::bigint = 1 THEN '' ELSE 's' END, $3::text),
		inbound_watermark = coalesce(inbound_watermark, now())
		WHERE id = $1 AND NOT paused`, r.id, n, time.Since(started).Round(time.Millisecond).String())
	return err
}

// resync reads every record changed since the point it was requested at
// (see pgforce.inbound_request_resync; minus an overlap for timestamps that
// tie or commit out of order), deleted ones included.
func (r *runner) resync(ctx context.Context, t *table) error {
	var requested, from *time.Time
	if err := r.s.pool.QueryRow(ctx, `SELECT resync_requested_at, resync_from FROM pgforce.mapping WHERE id = $1`, r.id).Scan(&requested, &from); err != nil {
		return err
	}
	if requested == nil {
		return nil
	}
	where := ""
	if from != nil {
		where = "SystemModstamp >= " + from.Add(-r.s.opts.Overlap).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	n, err := r.read(ctx, t, where, true, "cdc")
	if err != nil {
		return err
	}
	r.log.Info("inbound: resync complete", "sobject", t.m.SObject, "rows", n)
	_, err = r.s.pool.Exec(ctx, `UPDATE pgforce.mapping SET resync_requested_at = NULL, resync_from = NULL WHERE id = $1 AND resync_requested_at <= $2`, r.id, *requested)
	if err == nil {
		// What stopped the stream may be caught up here rather than
		// replayed to the applier (see streamOnce).
		r.notRetrying(ctx)
	}
	return err
}

// drainRereads reads queued records again by id and applies them whole;
// records Salesforce no longer has are marked deleted. It reads those
// queued before it began: a record it leaves out, because pgforce wrote
// it meanwhile (see leaveWritten), is queued again and waits for the next
// drain, rather than being read over and over while the application
// keeps changing it.
func (r *runner) drainRereads(ctx context.Context, t *table) error {
	var began time.Time
	if err := r.s.pool.QueryRow(ctx, `SELECT now()`).Scan(&began); err != nil {
		return err
	}
	for {
		more, err := r.rereadBatch(ctx, t, began)
		if err != nil || !more {
			return err
		}
	}
}

// rereadBatch reads again the first batch of records queued before
// began, and reports whether there was one.
func (r *runner) rereadBatch(ctx context.Context, t *table, began time.Time) (bool, error) {
	rows, err := r.s.pool.Query(ctx, `SELECT sfid, queued_at FROM pgforce.inbound_reread WHERE mapping_id = $1 AND queued_at < $3
		ORDER BY queued_at LIMIT $2`, r.id, salesforce.MaxRetrieveIDs, began)
	if err != nil {
		return false, err
	}
	var ids []string
	var queued []time.Time
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return false, err
		}
		ids = append(ids, id)
		queued = append(queued, at)
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	if len(ids) == 0 {
		return false, nil
	}
	if err := r.waitBudget(ctx, budget.Poll); err != nil {
		return false, err
	}
	if err := r.widenForRetries(ctx, ids); err != nil {
		return false, err
	}
	read, err := r.beginRead(ctx)
	if err != nil {
		return false, err
	}
	defer r.endRead(ctx, read)
	recs, err := r.s.sf.Retrieve(ctx, t.m.SObject, ids, t.fields())
	if err := r.observe(err); err != nil {
		return false, fmt.Errorf("inbound: re-read %d %s records: %w", len(ids), t.m.SObject, err)
	}
	var full [][]any
	var gone []string
	for i, rec := range recs {
		if rec == nil {
			gone = append(gone, ids[i])
			continue
		}
		full = append(full, t.recordRow(rec))
	}
	_, err = r.applyRowsRetrying(ctx, context.WithoutCancel(ctx), t, full, "cdc", read.started, func(tx pgx.Tx) error {
		c := context.WithoutCancel(ctx)
		if err := t.markGone(c, tx, gone, "cdc"); err != nil {
			return err
		}
		// An id queued again meanwhile (a newer event, or left out above
		// for a write of pgforce's) stays queued.
		if _, err := tx.Exec(c, `DELETE FROM pgforce.inbound_reread q USING unnest($2::text[], $3::timestamptz[]) AS d(sfid, at)
			WHERE q.mapping_id = $1 AND q.sfid = d.sfid AND q.queued_at <= d.at`, r.id, ids, queued); err != nil {
			return err
		}
		// The errors pgforce.retry queued these reads for are settled:
		// a record that failed again had its error opened again by
		// pgforce.inbound_error, above, in this transaction. One still
		// queued has not been read yet.
		_, err := tx.Exec(c, `UPDATE pgforce.error e SET state = 'resolved'
			WHERE e.mapping_id = $1 AND e.direction = 'inbound' AND e.state = 'retrying' AND e.sfid = ANY($2)
			  AND NOT EXISTS (SELECT FROM pgforce.inbound_reread q WHERE q.mapping_id = $1 AND q.sfid = e.sfid)`, r.id, ids)
		return err
	})
	if err != nil {
		return false, err
	}
	r.s.metrics.rereads.Add(float64(len(ids)))
	return true, nil
}

// beginRead registers a read of whole records of the mapping, before its
// first request to Salesforce (see pgforce.inbound_read); endRead ends it.
func (r *runner) beginRead(ctx context.Context) (*wholeRead, error) {
	w := &wholeRead{}
	if err := r.s.pool.QueryRow(ctx, `SELECT read_id, started_at FROM pgforce._inbound_read_begin($1)`, r.id).Scan(&w.id, &w.started); err != nil {
		return nil, fmt.Errorf("inbound: register a read of mapping %d: %w", r.id, err)
	}
	return w, nil
}

// endRead ends read w, also when its context has ended. If that fails,
// the next beginRead ends it (see pgforce._inbound_read_begin): left
// registered, it would have every write of the mapping noted, and no later
// read's end would purge those notes.
func (r *runner) endRead(ctx context.Context, w *wholeRead) {
	if _, err := r.s.pool.Exec(context.WithoutCancel(ctx), `SELECT pgforce._inbound_read_end($1)`, w.id); err != nil {
		r.log.Warn("inbound: cannot end a read's registration; the next read ends it", "err", err)
	}
}

// wakeRereads wakes the re-reads when what was applied queued some (see
// table.queueReread, leaveWritten). Re-reads do not call it: those they
// leave out wait for the next read, or the next tick, so that a record
// written over and over is not read over and over.
func (r *runner) wakeRereads(t *table) {
	if t.rereadQueued.Swap(false) {
		wake(r.rereadWake)
	}
}

// sideWork runs re-reads and resyncs whenever they are queued, until ctx
// ends; the first failure is returned.
func (r *runner) sideWork(ctx context.Context, t *table) error {
	tick := time.NewTicker(r.s.opts.SafetyInterval)
	defer tick.Stop()
	wake(r.rereadWake)
	wake(r.resyncWake)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.rereadWake:
			if err := r.drainRereads(ctx, t); err != nil {
				return err
			}
		case <-r.resyncWake:
			err := r.resync(ctx, t)
			r.wakeRereads(t)
			if err != nil {
				return err
			}
		case <-tick.C:
			wake(r.rereadWake)
			wake(r.resyncWake)
		}
	}
}

// runCDC streams change events. The subscription is made before any load
// or resync reads, so no change can fall between the read and the stream:
// events that race the read are applied by SystemModstamp order.
func (r *runner) runCDC(ctx context.Context, t *table, needLoad bool) error {
	replay := streaming.ReplayTip
	if !needLoad && t.m.CDCReplayID != "" {
		id, err := strconv.ParseInt(t.m.CDCReplayID, 10, 64)
		if err == nil {
			replay = id
		}
	} else if !needLoad {
		// Synced by polling before, or the replay id was lost: catch up by
		// SystemModstamp, then stream.
		if _, err := r.s.pool.Exec(ctx, `SELECT pgforce.inbound_request_resync($1)`, r.id); err != nil {
			return err
		}
	}
	channel := ChangeEventChannel(t.m.SObject)
	for {
		runErr := r.streamOnce(ctx, t, channel, replay, needLoad)
		var rid *streaming.ReplayIDError
		if errors.As(runErr, &rid) {
			r.log.Warn("inbound: stored replay id is no longer available; resyncing by SystemModstamp", "replay_id", rid.ReplayID)
			if _, err := r.s.pool.Exec(context.WithoutCancel(ctx), `SELECT pgforce.inbound_request_resync($1, true)`, r.id); err != nil {
				return err
			}
			replay = streaming.ReplayTip
			continue
		}
		if ctx.Err() != nil && errors.Is(runErr, context.Canceled) {
			return nil
		}
		return runErr
	}
}

// streamOnce subscribes from replay, runs the load (needLoad) once the
// subscription is accepted, then applies events and side work until one of
// them fails or parent ends. The error is the first failure (see failure).
func (r *runner) streamOnce(parent context.Context, t *table, channel string, replay int64, needLoad bool) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	subscribed := make(chan struct{})
	var once sync.Once
	client, err := streaming.New(streaming.Config{
		Auth:       r.s.sf.TokenSource(),
		APIVersion: r.s.sf.APIVersion(),
		HTTPClient: r.s.sf.HTTPClient(),
		Logger:     r.log,
		OnSubscribe: func(ch string, from int64) {
			r.log.Info("inbound: subscribed to change events", "channel", ch, "replay_from", from)
			once.Do(func() { close(subscribed) })
		},
	})
	if err != nil {
		return err
	}
	if err := client.Subscribe(ctx, channel, replay); err != nil {
		return err
	}
	// The handler only queues events; an applier commits them in batches
	// (one transaction for every event waiting), which keeps up with bursts
	// that one transaction per event would queue behind. An event the
	// handler accepted is always applied by this process or, after a crash,
	// replayed from the replay id stored with the last committed batch.
	events := make(chan *streaming.Event, 4096)
	applyErr := make(chan error, 1)
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		err := r.applyLoop(ctx, t, events)
		applyErr <- err
		if err != nil {
			// Tear the stream down now (a load beside it goes on, see
			// loadBeside): the stream only noticed the stopped applier
			// when the next event came, and until then the mapping showed
			// 'synced', said nothing, and applied nothing, for as long as
			// the object stayed quiet.
			cancel(err)
		}
	}()
	streamErr := make(chan error, 1)
	go func() {
		err := client.Run(ctx, func(hctx context.Context, ev *streaming.Event) error {
			select {
			case events <- ev:
				return nil
			case <-applied:
				return errors.New("inbound: change event applier stopped")
			}
		})
		close(events)
		<-applied
		if aerr := <-applyErr; aerr != nil {
			err = aerr
		}
		streamErr <- err
	}()
	select {
	case <-subscribed:
	case err := <-streamErr:
		return err
	}
	var err2 error
	if needLoad {
		err2 = r.loadBeside(parent, ctx, t)
	} else if err2 = mappings.SetState(ctx, r.s.pool, r.id, mappings.StateSynced, "streaming change events"); err2 != nil {
		if f := failure(ctx); f != nil {
			err2 = f
		}
	}
	if err2 == nil {
		// The applier failed while the load went on (see loadBeside).
		err2 = failure(ctx)
	}
	if err2 != nil {
		cancel(err2)
		<-streamErr
		return err2
	}
	// A subscription is no proof that the stream works: the event that
	// stopped the last one comes again, replayed, just after it. The
	// applier clears a failure once it applies a batch; a stream that
	// receives nothing does once it has stayed up for a while.
	go func() {
		t := time.NewTimer(streamSettle)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// Nor while a resync the stream needs waits or runs: it may
			// fail, and start the attempts over.
			var pending bool
			if err := r.s.pool.QueryRow(ctx, `SELECT resync_requested_at IS NOT NULL FROM pgforce.mapping WHERE id = $1`, r.id).Scan(&pending); err != nil {
				return
			}
			if !pending {
				r.notRetrying(ctx)
				return
			}
			t.Reset(streamSettle)
		}
	}()
	sideErr := make(chan error, 1)
	go func() { sideErr <- r.sideWork(ctx, t) }()
	var runErr error
	select {
	case runErr = <-streamErr:
		cancel(runErr)
		<-sideErr
	case runErr = <-sideErr:
		if runErr == nil {
			runErr = context.Cause(ctx)
		}
		cancel(runErr)
		<-streamErr
	}
	if f := failure(ctx); f != nil {
		return f
	}
	return runErr
}

// streamSettle is how long a stream that receives nothing must stay up
// to count as working again (see runStream): longer than the replay of
// the events it missed takes to arrive.
const streamSettle = 10 * time.Second

// failure is what ended ctx, a stream's context: the applier, the stream
// and the side work each cancel it with their error, so its cause is the
// first failure. What the others return after it is mostly the
// cancellation: a re-read stopped while it waited for the API budget
// returned "context canceled", and the mapping showed that rather than why
// the applier failed (nor could supervise tell a ConfigError, whose fix
// goes in state_detail). It is nil while ctx runs, or when ctx ended with
// its parent.
func failure(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// runPoll reads changes by SystemModstamp every poll_interval, with
// queryAll (deleted records included) and the deleted-records resource.
func (r *runner) runPoll(ctx context.Context, t *table, needLoad bool) error {
	if needLoad {
		if err := r.load(ctx, t); err != nil {
			return err
		}
	} else if err := mappings.SetState(ctx, r.s.pool, r.id, mappings.StateSynced, "polling every "+t.m.PollInterval.String()); err != nil {
		return err
	}
	// A failure stays shown until a poll works (see streamOnce).
	interval := t.m.PollInterval
	if r.s.opts.MaxPollInterval > 0 && interval > r.s.opts.MaxPollInterval {
		interval = r.s.opts.MaxPollInterval
	}
	// A mapping that was loaded before polls at once: it catches up with
	// what Salesforce changed while nothing synced (the worker was down,
	// the mapping paused) before the outbound side's catch-up window ends
	// (see checkCatchUp in worker/outbound), not a whole interval later.
	first := interval
	if !needLoad {
		first = 0
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	// Re-reads are queued by pgforce.retry of an inbound error.
	wake(r.rereadWake)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.rereadWake:
			if err := r.drainRereads(ctx, t); err != nil {
				return err
			}
			continue
		case <-timer.C:
		}
		if err := r.s.budget.Check(budget.Poll); err != nil {
			// Skipping a poll slows it down rather than exhausting the org.
			_ = mappings.SetState(ctx, r.s.pool, r.id, mappings.StateSynced, "polling slowed: "+err.Error())
			timer.Reset(interval)
			continue
		}
		err := r.poll(ctx, t)
		r.wakeRereads(t)
		if err != nil {
			if salesforce.IsTransient(err) {
				r.log.Warn("inbound: poll failed; retrying next interval", "err", err)
				r.retrying(ctx, fmt.Errorf("poll failed, retrying every %s: %w", interval, err))
				timer.Reset(interval)
				continue
			}
			return err
		}
		r.notRetrying(ctx)
		timer.Reset(interval)
	}
}

// deletedWindow is how far back a poll asks the deleted-records resource:
// Salesforce refuses a start more than 30 days before the call; a day
// short of it leaves room for clocks that disagree.
const deletedWindow = 29 * 24 * time.Hour

func (r *runner) poll(ctx context.Context, t *table) error {
	var wm *time.Time
	if err := r.s.pool.QueryRow(ctx, `SELECT inbound_watermark FROM pgforce.mapping WHERE id = $1`, r.id).Scan(&wm); err != nil {
		return err
	}
	now := time.Now().UTC()
	since := now.Add(-24 * time.Hour)
	if wm != nil {
		since = wm.Add(-r.s.opts.Overlap).UTC()
	}
	where := "SystemModstamp >= " + since.Format("2006-01-02T15:04:05.000Z") + " ORDER BY SystemModstamp"
	read, err := r.beginRead(ctx)
	if err != nil {
		return err
	}
	defer r.endRead(ctx, read)
	var rows [][]any
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		_, err := r.applyRowsRetrying(ctx, context.WithoutCancel(ctx), t, rows, "poll", read.started, func(tx pgx.Tx) error {
			return t.advance(context.WithoutCancel(ctx), tx, maxStamp(rows), "")
		})
		r.s.metrics.rowsApplied.Add(float64(len(rows)))
		rows = rows[:0]
		return err
	}
	err = r.s.sf.QueryAll(ctx, t.soql(where), func(rec salesforce.Record) error {
		rows = append(rows, t.recordRow(&rec))
		if len(rows) >= r.s.opts.BatchSize {
			return flush()
		}
		return nil
	})
	if err := r.observe(err); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	// Records purged from the recycle bin never show through queryAll.
	// The deleted-records resource reaches back 30 days and refuses an
	// older start (INVALID_REPLICATION_DATE), which the watermark of an
	// object nobody changed for a month is: its window starts inside.
	delFrom := since
	if floor := now.Add(-deletedWindow); delFrom.Before(floor) {
		delFrom = floor
	}
	if now.Sub(delFrom) >= time.Minute {
		del, err := r.s.sf.Deleted(ctx, t.m.SObject, delFrom, now)
		if err := r.observe(err); err != nil && !salesforce.IsNotFound(err) {
			return err
		}
		if del != nil && len(del.Records) > 0 {
			ids := make([]string, len(del.Records))
			for i, d := range del.Records {
				ids[i] = d.ID
			}
			if err := r.applyRetrying(ctx, context.WithoutCancel(ctx), t, "poll's recycle-bin deletions", func(work context.Context, tx pgx.Tx) error {
				return t.markGone(work, tx, ids, "poll")
			}); err != nil {
				return err
			}
		}
	}
	tx, err := beginApply(ctx, r.s.pool)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `UPDATE pgforce.mapping SET last_inbound_at = now(),
		inbound_watermark = coalesce(inbound_watermark, $2) WHERE id = $1`, r.id, now); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// applyLoop commits queued change events in batches until events is
// closed; when ctx ends it still commits what was queued (the batch in
// flight), since the stream already handed those events over.
func (r *runner) applyLoop(ctx context.Context, t *table, events <-chan *streaming.Event) error {
	const maxBatch = 1000
	for ev := range events {
		batch := []*streaming.Event{ev}
	fill:
		for len(batch) < maxBatch {
			select {
			case next, ok := <-events:
				if !ok {
					break fill
				}
				batch = append(batch, next)
			default:
				break fill
			}
		}
		if err := r.applyEventsRetrying(ctx, context.WithoutCancel(ctx), t, batch); err != nil {
			// Drain so the stream's handler never blocks; the stored replay
			// id makes the next attempt start after the last commit.
			go func() {
				for range events {
				}
			}()
			return err
		}
		r.notRetrying(ctx)
	}
	return nil
}

// applyEventsRetrying applies a batch under work, which outlives ctx so
// that a batch begun is finished, running it again when it lost a lock
// conflict (see txretry.Run) until ctx ends: Postgres aborted it to break
// a deadlock (tearing the stream down and replaying would cost a
// reconnect for nothing), or it gave way to the application's row locks.
// After ctx ends the stream replays the batch.
func (r *runner) applyEventsRetrying(ctx, work context.Context, t *table, evs []*streaming.Event) error {
	if err := r.applyRetrying(ctx, work, t, "change events", func(work context.Context, tx pgx.Tx) error {
		return r.applyEventsTx(work, tx, t, evs)
	}); err != nil {
		return err
	}
	r.eventsApplied(t, evs)
	return nil
}

// applyRowsRetrying merges full records into the table and runs extra
// (bookkeeping: watermark, re-read queue) in the same transaction, under
// work, through applyRetrying. Bookkeeping commits with the rows, so a
// batch given up on is read again later. It returns the number of records
// that became error rows.
func (r *runner) applyRowsRetrying(stop, work context.Context, t *table, rows [][]any, operation string, since time.Time, extra func(pgx.Tx) error) (int, error) {
	var failed int
	err := r.applyRetrying(stop, work, t, operation+" batch", func(work context.Context, tx pgx.Tx) error {
		var err error
		if failed, err = t.applyRowsTx(work, tx, rows, operation, since); err != nil {
			return err
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	return failed, err
}

// applyRetrying runs fn in one transaction that writes rows of the table as
// Salesforce's (see beginApply) and gives way to locks other sessions hold
// (see giveWay), under work, running it again when it lost a lock conflict
// (see txretry.Run) until stop ends: the application locks rows in no
// particular order. Every inbound transaction that writes many rows of a
// mapped table goes through here.
func (r *runner) applyRetrying(stop, work context.Context, t *table, what string, fn func(context.Context, pgx.Tx) error) error {
	return txretry.Run(stop, r.log, "inbound: "+what, func() error {
		tx, err := beginApply(work, r.s.pool)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(work))
		if err := giveWay(work, tx); err != nil {
			return err
		}
		if err := fn(work, tx); err != nil {
			return err
		}
		return tx.Commit(work)
	}, "sobject", t.m.SObject)
}

// markUnseen ends a reload: rows whose record the reload did not read are
// gone from Salesforce. Rows changed since shortly before the reload began
// are left alone, since change events may have created them meanwhile.
//
// It goes through the table in slices of ids, each its own transaction: in
// one statement over the whole table, every row it marked stayed locked
// while it scanned the rest, and giving way to the application (see
// applyRetrying) started it over each time, so on a busy table it might
// never finish.
func (r *runner) markUnseen(ctx context.Context, t *table, before time.Time) error {
	const slice = 10000
	q := `UPDATE %s t SET isdeleted = true WHERE`
	if t.m.HardDelete {
		q = `DELETE FROM %s t WHERE`
	}
	const unseen = ` t.id > $3 AND t.id <= $3 + $4 AND t.sfid IS NOT NULL AND NOT t.isdeleted AND t.systemmodstamp < $2
		AND NOT EXISTS (SELECT FROM pgforce.inbound_seen s WHERE s.mapping_id = $1 AND s.sfid = t.sfid)`
	q = fmt.Sprintf(q+unseen, t.target)
	// A slice Postgres refuses (a foreign key of the application's names a
	// row to delete) goes record by record: the refused ones become errors.
	sel := fmt.Sprintf(`SELECT t.sfid FROM %s t WHERE`+unseen, t.target)
	var last int64
	if err := r.s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(max(id), 0) FROM %s`, t.target)).Scan(&last); err != nil {
		return err
	}
	var marked int64
	for lo := int64(0); lo < last; lo += slice {
		var n int64
		if err := r.applyRetrying(ctx, context.WithoutCancel(ctx), t, "reload's deletions", func(work context.Context, tx pgx.Tx) error {
			sp, err := tx.Begin(work)
			if err != nil {
				return err
			}
			tag, err := sp.Exec(work, q, r.id, before, lo, slice)
			if err == nil {
				n = tag.RowsAffected()
				return sp.Commit(work)
			}
			if rbErr := sp.Rollback(work); rbErr != nil {
				return rbErr
			}
			if !isRecordError(err) {
				return err
			}
			rows, err := tx.Query(work, sel, r.id, before, lo, slice)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			n = int64(len(ids))
			return t.markGone(work, tx, ids, "load")
		}); err != nil {
			return err
		}
		marked += n
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if _, err := r.s.pool.Exec(ctx, `DELETE FROM pgforce.inbound_seen WHERE mapping_id = $1`, r.id); err != nil {
		return err
	}
	if marked > 0 {
		r.log.Info("inbound: reload found records gone from Salesforce", "rows", marked)
	}
	return nil
}

// widenForRetries describes the object again before pgforce.retry reads
// records that a column was too narrow or too short of digits for: the
// field may have been lengthened in Salesforce since the mapping was
// described, and ensure_table widens the column to match. The user cannot
// widen it (pgforce's status trigger names it), and without this the retry
// failed again, the same way, for ever.
func (r *runner) widenForRetries(ctx context.Context, ids []string) error {
	var n int
	if err := r.s.pool.QueryRow(ctx, `SELECT count(*) FROM pgforce.error e
		WHERE e.mapping_id = $1 AND e.direction = 'inbound' AND e.state = 'retrying' AND e.sfid = ANY($2)
		  AND e.error_code IN ('PG22001', 'PG22003')`, r.id, ids).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	m, err := mappings.Get(ctx, r.s.pool, r.id)
	if err != nil {
		return err
	}
	cols, _, err := describeMapping(ctx, r.s.sf, m)
	var ce *ConfigError
	if errors.As(err, &ce) {
		return nil // the next query says so (see fieldsGone)
	}
	if err := r.observe(err); err != nil {
		return err
	}
	if !sameFields(userFields(cols), m.Fields) {
		return nil
	}
	return r.ensureTable(ctx, m, cols)
}

var changedTypeField = regexp.MustCompile(`^pgforce: field (\S+) of \S+ changed type`)

// tableConfigError turns a refusal of ensure_table that only the user can
// fix (a field whose type Salesforce changed, a table of the user's
// without an id pgforce can key rows by) into a ConfigError with the
// fix: as a plain error it was retried for ever, the mapping left in
// 'describing' and the hint of the refusal, which says what to do, lost.
// shape is the table's before ensure_table ran: a refusal of the table
// is watched for a change of it (see setError), which the detail says.
func tableConfigError(m *mappings.Mapping, shape string, err error) *ConfigError {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return nil
	}
	switch pg.Code {
	case "42804": // datatype_mismatch: a field changed type in Salesforce
		if f := changedTypeField.FindStringSubmatch(pg.Message); f != nil {
			col := strings.ToLower(f[1])
			// Added back under the name it is taken out under, and made
			// the upsert field again if it was.
			field, upsert := f[1], ""
			for _, name := range m.Fields {
				if strings.EqualFold(name, field) {
					field = name
				}
			}
			if strings.EqualFold(field, m.UpsertField) {
				upsert = fmt.Sprintf(", upsert_field = '%s'", field)
			}
			return &ConfigError{Field: f[1], TableShape: shape, Detail: fmt.Sprintf(
				"%s; only widening is applied automatically. Take the field out of the mapping: %s then drop its column: ALTER TABLE %s DROP COLUMN %s; then add the field again, which loads it: UPDATE pgforce.mapping SET fields = fields || '{%s}'%s WHERE id = %d;",
				strings.TrimPrefix(pg.Message, "pgforce: "), removeField(m, field), m.Table(), pgx.Identifier{col}.Sanitize(), field, upsert, m.ID)}
		}
	case "42P16": // invalid_table_definition: no id to key rows by
		detail := strings.TrimPrefix(pg.Message, "pgforce: ")
		if pg.Hint != "" {
			detail += ". " + pg.Hint
		}
		// The fix is DDL alone: say that it is enough (see setError).
		return &ConfigError{TableShape: shape, Detail: detail + " pgforce describes the mapping again as soon as the table changes."}
	case "22023": // invalid_parameter_value: what the describe passed
	default:
		return nil
	}
	detail := strings.TrimPrefix(pg.Message, "pgforce: ")
	if pg.Hint != "" {
		detail += ". " + pg.Hint
	}
	return &ConfigError{Detail: detail}
}
