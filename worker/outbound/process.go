package outbound

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// outcome is what happened to one change in Salesforce.
type outcome struct {
	kind outcomeKind
	id   string // the record's Id after an insert or upsert
	err  salesforce.RecordError
	// unsent says a transient or deferred change never reached
	// Salesforce: its claim does not count as an attempt that may have
	// created its record (see findCreated).
	unsent bool
	// cause is why a transient change goes back, where known: what
	// pgforce.status shows while the mapping retries.
	cause error
	// matched says an upsert updated a record that existed (created
	// false), see refuseTakenExternalIDs.
	matched bool
}

type outcomeKind int

const (
	outNone      outcomeKind = iota // nothing was sent (nothing left to change)
	outOK                           // written
	outFailed                       // Salesforce refused the record: an error row
	outTransient                    // try again later, no user action
	outDeferred                     // waits for a parent's Id
	// outHeld: a Bulk job that may still write carries the change, so its
	// entries stay claimed until the job is seen ending (see reclaim).
	outHeld
)

// batch is one claim of a mapping's entries, merged and prepared.
type batch struct {
	entries int
	last    int64 // id of the last entry claimed
	limit   int
	bulk    bool // the backlog was at least the mapping's bulk_threshold when claimed
	// doubt says an insert of the batch may have created its record
	// already: the claimer stops after it (see findCreated).
	doubt bool
	// claimedAt is when its entries were claimed (one claim, one time).
	claimedAt time.Time
	changes   []*change
	results   []outcome
	// wroteBy is Salesforce's clock as the answers to the batch's creates
	// and updates gave it (see noteWritten).
	wroteBy time.Time
	claimed time.Duration // claiming
	took    time.Duration // claiming and preparing
}

// drain claims and writes one mapping's changes until none is claimable.
// It is a pipeline of three stages, so that neither Postgres nor
// Salesforce waits for the other: while batches are in flight to
// Salesforce (at most maxInFlight), the next is claimed and prepared, and
// finished ones' results are recorded. Batches hold disjoint records (a record with an
// entry in flight is never claimed, see pgforce._outbound_claim), so the
// stages never touch the same rows, and each record's changes stay in
// order.
//
// A claim that comes back short while batches are in flight does not mean
// that the queue is empty (later changes of the records in flight wait for
// them), so passes repeat until one finds nothing to claim, or defers a
// record to a parent not yet written; deferred says the drain ended so.
func (s *Service) drain(ctx, work context.Context, m *Mapping) (deferred bool, err error) {
	// A Bulk backlog holds the feed off (see nextBatch) until its drain
	// ends, drained or backing off: mappings drain one at a time.
	defer s.feed.Release()
	defer s.analyzing.Wait()
	all, err := loadMappings(work, s.pool, s.opts.Org)
	if err != nil {
		return false, err
	}
	// The mapping as it is now, not as the cycle read it before draining
	// the others, which can take long: a pause and resume meanwhile left
	// the catch-up window of before open (see openCatchUp), with its
	// record of pgforce's own writes, and an update of a record Salesforce
	// changed while the mapping was paused went unchecked.
	for _, now := range all {
		if now.ID == m.ID {
			s.openCatchUp(now)
			if now.Paused {
				return false, nil
			}
			m = now
		}
	}
	for ctx.Err() == nil {
		n, deferred, err := s.drainPass(ctx, work, m, all)
		if err != nil || n == 0 || deferred {
			return deferred, err
		}
	}
	return false, nil
}

// maxInFlight is how many batches of one mapping are between their send
// and the end of their result transaction at once. Bulk jobs spend most of
// their time waiting for Salesforce, so two or three in flight keep both
// Salesforce and Postgres busy.
const maxInFlight = 3

// drainPass runs the pipeline until a claim comes back short and returns
// the number of entries it claimed, and whether it deferred a record to a
// parent not yet written.
func (s *Service) drainPass(ctx, work context.Context, m *Mapping, all []*Mapping) (int, bool, error) {
	claimed := 0
	pctx, stopClaiming := context.WithCancel(work)
	defer stopClaiming()
	prepared := make(chan *batch, 1)
	claimErr := make(chan error, 1)
	go func() {
		defer close(prepared)
		bulk := false
		// Each claim of the pass starts past the last entry of the one
		// before (see pgforce._outbound_claim); the next pass starts from
		// the beginning again.
		var after int64
		for ctx.Err() == nil && pctx.Err() == nil {
			b, err := s.nextBatch(pctx, work, m, all, bulk, after)
			if err != nil || b == nil {
				claimErr <- err
				return
			}
			select {
			case prepared <- b:
			case <-pctx.Done():
				s.release(work, b.changes)
				claimErr <- nil
				return
			}
			if b.entries < b.limit || b.doubt {
				claimErr <- nil
				return
			}
			// A backlog drained in Bulk jobs stays in Bulk mode while
			// claims come back full: counting it again before every claim
			// read the in-flight and deleted entries ahead of it each time,
			// a quarter of the claimer's time in a Bulk drain.
			bulk = b.bulk
			after = b.last
		}
		claimErr <- nil
	}()

	var (
		mu       sync.Mutex
		firstErr error
		deferred bool
		inFlight sync.WaitGroup
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	// Each batch holds a slot from its send until its result is recorded:
	// maxInFlight bounds both the Salesforce work running at once and the
	// entries held claimed. A sent batch is always recorded, even after
	// another batch failed, so nothing sent is ever sent again.
	slots := make(chan struct{}, maxInFlight)
	// Only Bulk batches overlap their sends. A Collections batch is sent
	// once the previous one is sent and the one before it recorded, never
	// alongside another send: its calls run Parallel at once already, and
	// more small batches at once only lengthen the latency tail of a
	// trickle of changes. The slots are taken before the next batch is
	// taken from the claimer, so that it keeps claiming (and a batch
	// grows) while they are busy, as when sends were sequential.
	var collections sync.Mutex
	collectionSlots := make(chan struct{}, 2)
	for {
		acquired := !failed()
		if acquired {
			slots <- struct{}{}
			collectionSlots <- struct{}{}
			collections.Lock()
		}
		b, ok := <-prepared
		if acquired && (!ok || b.bulk) {
			collections.Unlock()
			<-collectionSlots
		}
		if !ok {
			if acquired {
				<-slots
			}
			break
		}
		claimed += b.entries
		if failed() {
			if acquired {
				if !b.bulk {
					collections.Unlock()
					<-collectionSlots
				}
				<-slots
			}
			s.release(work, b.changes)
			continue
		}
		inFlight.Add(1)
		go func(b *batch) {
			defer inFlight.Done()
			defer func() { <-slots }()
			if !b.bulk {
				defer func() { <-collectionSlots }()
			}
			start := time.Now()
			s.sendBatch(work, m, b)
			s.metrics.batch(b.bulk)
			s.metrics.outcomes(b.changes, b.results)
			if !b.bulk {
				collections.Unlock()
			}
			sent := time.Since(start)
			// Result transactions of one mapping run at once: batches hold
			// disjoint records, so they lock disjoint rows and entries (each
			// in id order), and the order they are recorded in does not
			// matter. Run one at a time, they were the serial stage of a
			// Bulk drain (a batch of 5,000 takes 200-400 ms to record).
			start = time.Now()
			err := s.record(work, m, b.claimedAt, b.wroteBy, b.changes, b.results)
			def := false
			for _, r := range b.results {
				switch r.kind {
				case outTransient:
					if err == nil {
						err = errTransient
						if r.cause != nil {
							err = &transientError{cause: r.cause}
						}
					}
				case outDeferred:
					def = true
				}
			}
			s.log.Debug("outbound: batch", "mapping", m.ID, "entries", b.entries, "changes", len(b.changes),
				"claim", b.claimed, "claim_prepare", b.took, "send", sent, "record", time.Since(start), "err", err)
			mu.Lock()
			deferred = deferred || def
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
			if err != nil {
				stopClaiming()
			}
		}(b)
	}
	inFlight.Wait()
	if err := <-claimErr; firstErr == nil {
		firstErr = err
	}
	// A pass that deferred ends the drain: the next pass would only claim
	// the deferred records again, and again, while their parents wait in a
	// mapping this drain does not reach. The cycle wakes again a
	// MinBackoff later (see cycle), which writes parents first; at once, a
	// parent that cannot go (paused, failing) had its children claimed
	// hundreds of times a second.
	return claimed, deferred, firstErr
}

// nextBatch claims and prepares the next batch of a mapping; nil when
// nothing is claimable. Claims run under ctx; a claimed batch that cannot
// be prepared goes back to the queue under work. With stillBulk (the
// previous claim of the pass was a full Bulk batch) the backlog is not
// counted again. The claim takes entries after the id after.
func (s *Service) nextBatch(ctx, work context.Context, m *Mapping, all []*Mapping, stillBulk bool, after int64) (*batch, error) {
	start := time.Now()
	limit := s.opts.BatchSize
	bulk := stillBulk
	// From a backlog of the mapping's bulk_threshold (see Mapping), a
	// drain goes on in Bulk jobs while its claims come back full, then
	// counts again. Without a threshold it only asks whether anything is
	// queued.
	threshold := max(m.BulkThreshold, 1)
	if !bulk {
		// In id order, so that the count reads the mapping's oldest
		// entries and stops at the threshold whatever the statistics say.
		// Without it, and with outbox_record_idx as the only index on
		// mapping_id (a variant tried while adding that index), Postgres
		// read a whole 100,000 backlog to count 10,000: 30-140 ms a batch.
		var queued int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT FROM pgforce.outbox o
			WHERE o.mapping_id = $1 AND o.claimed_at IS NULL ORDER BY o.id LIMIT $2) q`, m.ID, threshold).Scan(&queued); err != nil {
			return nil, err
		}
		if queued == 0 {
			return nil, nil
		}
		bulk = m.BulkThreshold > 0 && queued >= m.BulkThreshold
		if bulk {
			// Alongside the first claim, which it does not help (that
			// reads the oldest entries by index whatever the statistics
			// say): the result transactions it is for come later. Run
			// first, it held the whole drain up for 120-200 ms.
			s.analyzing.Add(1)
			go func() {
				defer s.analyzing.Done()
				s.analyzeOutbox(work)
			}()
		}
	}
	if bulk {
		limit = s.opts.BulkBatchSize
	}
	entries, err := s.claim(ctx, m, limit, after)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, nil
	}
	claimed := time.Since(start)
	changes := merge(entries, strings.ToLower(m.UpsertField))
	if err := s.prepare(ctx, m, all, changes); err != nil {
		s.release(work, changes)
		return nil, err
	}
	if bulk {
		// The drain keeps claiming until the backlog is gone: the stream
		// is not needed until then (see feed.Feed.Hold); drain releases
		// it when it ends. Only once a claim handed out something to
		// send: a backlog of changes that wait behind a failed insert or
		// a conflict is counted but never claimed, and one of children
		// waiting for their parent is claimed only to be deferred; the
		// slot dropped for them and made again woke the worker, through
		// the new stream, for another such cycle, over and over.
		for _, c := range changes {
			if !c.deferTo {
				s.feed.Hold()
				break
			}
		}
	}
	doubt := false
	for _, c := range changes {
		doubt = doubt || c.inDoubt()
	}
	return &batch{entries: len(entries), last: entries[len(entries)-1].ID, limit: limit, bulk: bulk, doubt: doubt,
		claimedAt: entries[0].ClaimedAt, changes: changes, claimed: claimed, took: time.Since(start)}, nil
}

// analyzeOutbox refreshes the outbox's statistics as a Bulk drain starts,
// at most once a minute (a backlog that comes and goes starts a pass each
// time). A backlog that size was captured moments ago, long before
// autovacuum looks (a minute at best), so the statistics still describe
// the outbox before it: a few hundred entries. Planned with those, the
// delete of each batch's written entries read the whole backlog (34 ms a
// batch of 5,000 with 100,000 queued, 21 ms by the primary key after the
// ANALYZE). SKIP_LOCKED leaves it to an autovacuum that is already at it;
// a role that does not own the outbox gets a warning from Postgres and the
// drain goes on as before.
func (s *Service) analyzeOutbox(ctx context.Context) {
	s.mu.Lock()
	due := time.Since(s.analyzedAt) >= time.Minute
	if due {
		s.analyzedAt = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE (SKIP_LOCKED) pgforce.outbox`); err != nil && ctx.Err() == nil {
		s.log.Warn("outbound: analyze the outbox as a Bulk drain starts", "err", err)
	}
}

// claim takes a batch of the mapping's outbox entries in one short
// statement (its own transaction). Only the columns merge reads come back:
// an update's old values are never sent, and decoding them cost as much as
// decoding the new ones.
func (s *Service) claim(ctx context.Context, m *Mapping, limit int, after int64) ([]entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, op, record_id, coalesce(sfid, ''), new, coalesce(retry_of, 0), attempts, coalesce(sent_from, created_at), claimed_at
		FROM pgforce._outbound_claim($1, $2, $3, $4) ORDER BY id`, m.ID, limit, s.opts.WorkerID, after)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer rows.Close()
	out := make([]entry, 0, limit)
	// The entries' values are gathered into one document and decoded by
	// one decoder: a decoder per entry was a quarter of the worker's
	// allocations in a Bulk drain.
	var doc []byte
	var withNew []int
	for rows.Next() {
		var e entry
		var newB pgtype.DriverBytes
		if err := rows.Scan(&e.ID, &e.Op, &e.RecordID, &e.SFID, &newB, &e.RetryOf, &e.Attempts, &e.SentFrom, &e.ClaimedAt); err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		if newB != nil {
			doc = append(append(doc, newB...), '\n')
			withNew = append(withNew, len(out))
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	d := exactDecoder(doc)
	for _, i := range withNew {
		if err := d.Decode(&out[i].New); err != nil {
			return nil, fmt.Errorf("claim: outbox %d: %w", out[i].ID, err)
		}
	}
	return out, nil
}

// sendBatch writes one prepared batch to Salesforce and fills its results.
func (s *Service) sendBatch(ctx context.Context, m *Mapping, b *batch) {
	changes := b.changes
	results := make([]outcome, len(changes))
	b.results = results
	found := s.findCreated(ctx, m, changes, results)
	var creates, upserts, updates, deletes []int
	for i, c := range changes {
		switch {
		case found[i]:
			// Created by an earlier attempt, or to be looked for again.
		case c.invalid != nil:
			results[i] = outcome{kind: outFailed, err: *c.invalid}
		case c.deferTo:
			results[i] = outcome{kind: outDeferred, unsent: true}
		case c.Op == "":
			results[i] = outcome{kind: outNone}
		case c.Op == "insert" && c.extID != "":
			upserts = append(upserts, i)
		case c.Op == "insert":
			creates = append(creates, i)
		case c.Op == "update":
			updates = append(updates, i)
		case c.Op == "delete":
			deletes = append(deletes, i)
		}
	}
	// Parents inside one object (a self lookup) are not ordered; across
	// objects the mapping order puts parents first. Inserts go before
	// updates and deletes so that a batch never updates what it creates.
	s.send(ctx, m, "upsert", changes, upserts, results, b.bulk)
	if err := s.refuseTakenExternalIDs(ctx, m, changes, upserts, results); err != nil {
		// Written as it was: the write-back merges the two rows, as before.
		s.log.Warn("outbound: cannot look for rows holding the records upserts updated", "mapping", m.ID, "err", err)
	}
	s.send(ctx, m, "insert", changes, creates, results, b.bulk)
	// Checked last, as close to their send as can be (see checkPolled).
	updates = s.checkPolled(ctx, m, changes, updates, results)
	s.send(ctx, m, "update", changes, updates, results, b.bulk)
	// Read now, not once the deletes (or, later, other batches) have
	// answered too: a Salesforce edit made meanwhile would be taken for
	// the batch's own write.
	b.wroteBy = s.sf.ServerTime()
	s.send(ctx, m, "delete", changes, deletes, results, b.bulk)
}

// minBulkJob is the fewest changes of one operation that a backlog batch
// sends as a Bulk job; fewer go through Collections, which is quicker
// for them.
const minBulkJob = 1000

// send writes the changes at idx of one operation, through Bulk API 2.0
// when the batch comes from a backlog of at least the mapping's
// bulk_threshold changes (bulk), holds enough of them and the results can
// be matched (not for plain inserts), else through Collections. A large
// backlog is split into jobs of BulkBatchSize so that claiming, the job
// and recording overlap.
func (s *Service) send(ctx context.Context, m *Mapping, op string, changes []*change, idx []int, results []outcome, bulk bool) {
	if len(idx) == 0 {
		return
	}
	if bulk && op != "insert" {
		// A record holding the text #N/A goes through Collections: in a
		// Bulk upload it means null, and no escape sets the text.
		viaBulk, rest := make([]int, 0, len(idx)), []int(nil)
		for _, i := range idx {
			if holdsBulkNull(changes[i].record) {
				rest = append(rest, i)
			} else {
				viaBulk = append(viaBulk, i)
			}
		}
		if len(viaBulk) >= min(minBulkJob, max(1, s.opts.BulkBatchSize/2)) {
			if err := s.sendBulk(ctx, m, op, changes, viaBulk, results); err == nil {
				idx = rest
			} else {
				s.log.Warn("outbound: bulk write failed, falling back to Collections", "mapping", m.ID, "op", op, "err", err)
			}
		}
		if len(idx) == 0 {
			return
		}
	}
	type chunk struct{ idx []int }
	var chunks []chunk
	for start := 0; start < len(idx); start += salesforce.MaxCollectionRecords {
		chunks = append(chunks, chunk{idx[start:min(start+salesforce.MaxCollectionRecords, len(idx))]})
	}
	var wg sync.WaitGroup
	for _, ch := range chunks {
		s.calls <- struct{}{}
		wg.Add(1)
		go func(ix []int) {
			defer wg.Done()
			defer func() { <-s.calls }()
			s.sendChunk(ctx, m, op, changes, ix, results)
		}(ch.idx)
	}
	wg.Wait()
}

// holdsBulkNull says a record sets a field to the text that a Bulk API 2.0
// upload reads as null, itself or as the external id of a relationship
// (which Bulk then cleared).
func holdsBulkNull(r salesforce.Record) bool {
	for _, v := range r.Fields {
		switch v := v.(type) {
		case string:
			if v == salesforce.NullValue {
				return true
			}
		case salesforce.Record:
			if holdsBulkNull(v) {
				return true
			}
		}
	}
	return false
}

func (s *Service) sendChunk(ctx context.Context, m *Mapping, op string, changes []*change, idx []int, results []outcome) {
	if err := s.waitBudget(ctx, m); err != nil {
		for _, i := range idx {
			results[i] = outcome{kind: outTransient, unsent: true}
		}
		return
	}
	var res []salesforce.SaveResult
	var err error
	switch op {
	case "delete":
		ids := make([]string, len(idx))
		for k, i := range idx {
			ids[k] = changes[i].SFID
		}
		res, err = s.sf.Delete(ctx, ids)
	default:
		recs := make([]salesforce.Record, len(idx))
		for k, i := range idx {
			recs[k] = changes[i].record
		}
		switch op {
		case "upsert":
			res, err = s.sf.UpsertByExternalID(ctx, m.SObject, m.UpsertField, recs)
		case "insert":
			res, err = s.sf.Create(ctx, recs)
		case "update":
			res, err = s.sf.Update(ctx, recs)
		}
	}
	if b := s.opts.Budget; b != nil {
		b.Observe(err)
	}
	for k, i := range idx {
		switch {
		case k < len(res):
			results[i] = saveOutcome(op, res[k])
		case err != nil && (salesforce.IsTransient(err) || errors.Is(err, context.Canceled) || salesforce.IsAuthFailure(err)):
			// A call Salesforce refused as a whole with an answer did
			// nothing; one without an answer may have (see findCreated).
			// A 5xx may come from a gateway after Salesforce committed.
			// A session that could not be renewed (the password was
			// reset, the refresh token revoked) is the login's failure,
			// not the records': they wait for it to work again rather
			// than become error rows only a manual retry sends.
			var refused *salesforce.APIError
			results[i] = outcome{kind: outTransient, unsent: errors.As(err, &refused) && refused.HTTPStatus < 500 || salesforce.IsAuthFailure(err), cause: err}
		case err != nil:
			results[i] = outcome{kind: outFailed, err: callError(err)}
		default:
			results[i] = outcome{kind: outTransient}
		}
	}
	if err != nil {
		s.log.Warn("outbound: collections call failed", "mapping", m.ID, "op", op, "records", len(idx), "err", err)
	}
}

// saveOutcome classifies one per-record result.
func saveOutcome(op string, r salesforce.SaveResult) outcome {
	if r.Success {
		return outcome{kind: outOK, id: r.ID, matched: op == "upsert" && !r.Created}
	}
	var re salesforce.RecordError
	if len(r.Errors) > 0 {
		re = r.Errors[0]
	}
	switch re.StatusCode {
	case salesforce.CodeUnableToLockRow, salesforce.CodeRequestLimitExceeded, salesforce.CodeServerUnavailable:
		return outcome{kind: outTransient, unsent: true, cause: &re} // answered: nothing was written
	case "ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND":
		if op == "delete" {
			return outcome{kind: outOK, id: r.ID} // gone already: the delete is done
		}
	}
	return outcome{kind: outFailed, err: re}
}

// noteWritten records the records a batch wrote while m's updates are
// checked: in its catch-up window (see checkCatchUp), and always for a
// polled one (see checkPolled). Each goes with a time after its write's
// SystemModstamp: wroteBy, Salesforce's clock as the batch's answers gave
// it (see sendBatch), plus a second for the Date header's rounding down
// and one for the clocks of Salesforce's servers, which may differ. It is
// zero when no answer gave the time.
func (s *Service) noteWritten(m *Mapping, ok []successRow, wroteBy time.Time) {
	var after time.Time
	if !wroteBy.IsZero() {
		after = wroteBy.Add(2 * time.Second)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !time.Now().Before(s.catchUp[m.ID].until) && !m.checkedBeforeSend() {
		return
	}
	w := s.written[m.ID]
	if w == nil {
		w = map[string]time.Time{}
		s.written[m.ID] = w
	}
	for _, o := range ok {
		if o.SFID != "" {
			w[o.SFID] = after
		}
	}
}

// callError turns a refused call (not a per-record result) into the error
// recorded for each of its records.
func callError(err error) salesforce.RecordError {
	var ae *salesforce.APIError
	if errors.As(err, &ae) {
		return salesforce.RecordError{StatusCode: ae.ErrorCode, Message: ae.Message, Fields: ae.Fields}
	}
	return salesforce.RecordError{StatusCode: "UNKNOWN_EXCEPTION", Message: err.Error()}
}

// prepare turns each change into the Salesforce record to send: it finds
// Ids assigned since the change was captured, turns an update of a record
// that never reached Salesforce into an insert of the whole row, and
// resolves external-id relationship columns.
func (s *Service) prepare(ctx context.Context, m *Mapping, all []*Mapping, changes []*change) error {
	var need []int32
	for _, c := range changes {
		if c.deferTo {
			continue // waits for the next batch (see merge)
		}
		if c.Op == "insert" || c.Op == "update" || (c.Op == "delete" && c.SFID == "") {
			need = append(need, int32(c.RecordID))
		}
	}
	type rowState struct {
		sfid  string
		row   map[string]any
		stamp *time.Time // systemmodstamp: Salesforce's last change the row has
		held  bool       // an open conflict holds the record
	}
	rows := map[int]rowState{}
	// Columns of failed updates still open: a later update of the record
	// sends their current values too, so that its success settles the
	// error (the user may fix one field of several that failed). Which
	// columns is pgforce._refused_columns's to say, as for a retry; read
	// from the payload's field names, a lookup that a relationship column
	// had set went as the lookup column, null or the old parent.
	failedKeys := map[int][]string{}
	var failedRows []int32
	if len(need) > 0 {
		r, err := s.pool.Query(ctx, `WITH cols AS (SELECT pgforce._captured_columns($1) AS c)
			SELECT e.record_id, array_agg(DISTINCT k)
			FROM pgforce.error e, cols CROSS JOIN LATERAL unnest(coalesce(pgforce._refused_columns(e, cols.c), cols.c)) k
			WHERE e.mapping_id = $1 AND e.state = 'open' AND e.direction = 'outbound' AND e.operation = 'update'
			  AND e.record_id = ANY($2)
			GROUP BY e.record_id`, m.ID, need)
		if err != nil {
			return fmt.Errorf("read open errors of %s: %w", m.Table(), err)
		}
		for r.Next() {
			var id int
			var keys []string
			if err := r.Scan(&id, &keys); err != nil {
				r.Close()
				return err
			}
			failedKeys[id] = keys
			failedRows = append(failedRows, int32(id))
		}
		r.Close()
		if err := r.Err(); err != nil {
			return err
		}
	}
	if len(need) > 0 {
		// held: a conflict opened since the claim, which would have left
		// the record's changes queued (see pgforce._outbound_claim). The
		// inbound side records it with the row's new stamp, in one
		// transaction, so this read sees both or neither: read apart, a
		// catch-up check (see checkCatchUp) found the row caught up with
		// Salesforce's edit and sent the change over it, conflict or not.
		// IN, not a correlated EXISTS: one read of the mapping's open
		// errors per batch, not one per row.
		r, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT t.id, coalesce(t.sfid, ''),
			CASE WHEN t.sfid IS NULL OR t.id = ANY($2) THEN to_jsonb(t) - pgforce._uncaptured_columns() END, t.systemmodstamp,
			t.id IN (SELECT e.record_id FROM pgforce.error e WHERE e.mapping_id = $3 AND e.state = 'open' AND e.error_code = 'CONFLICT')
			FROM %s t WHERE t.id = ANY($1)`, m.Table()), need, failedRows, m.ID)
		if err != nil {
			return fmt.Errorf("read rows of %s: %w", m.Table(), err)
		}
		for r.Next() {
			var id int
			var st rowState
			var b []byte
			if err := r.Scan(&id, &st.sfid, &b, &st.stamp, &st.held); err != nil {
				r.Close()
				return err
			}
			if st.row, err = decodeJSONB(b); err != nil {
				r.Close()
				return err
			}
			rows[id] = st
		}
		r.Close()
		if err := r.Err(); err != nil {
			return err
		}
	}
	for _, c := range changes {
		if c.deferTo {
			continue
		}
		st, exists := rows[c.RecordID]
		if st.held {
			// Handed back unsent; claims leave it until pgforce.resolve.
			c.deferTo = true
			continue
		}
		switch c.Op {
		case "insert", "update":
			if !exists {
				// Deleted since; its delete entry comes (or came) after.
				c.Op = ""
				continue
			}
			if keys := failedKeys[c.RecordID]; st.sfid != "" && c.Op == "update" && len(keys) > 0 {
				addFailedFields(c, st.row, keys)
			}
			if st.sfid == "" && c.Op == "insert" {
				// A relationship column added since the triggers were
				// installed is not in the captured insert; the row has it
				// (and m may be older than the column: taken by name).
				for col, v := range st.row {
					if isRelColumn(col) && v != nil {
						if _, has := c.Values[col]; !has {
							c.Values[col] = v
							c.takeFromRow(col)
						}
					}
				}
			}
			c.rowStamp = st.stamp
			if st.sfid != "" {
				if c.Op == "insert" {
					// Written back already (a retry of a record that got its
					// Id meanwhile): send the values as an update.
					c.Op = "update"
				}
				c.SFID = st.sfid
			} else if c.Op == "update" {
				// The record never reached Salesforce (its insert failed and
				// was ignored, or is being retried): send the whole row.
				c.Op = "insert"
				for col := range st.row {
					if _, set := c.Values[col]; !set {
						c.takeFromRow(col)
					}
				}
				c.Values = st.row
				c.wholeRow = st.row
			}
		case "delete":
			if c.SFID == "" {
				c.SFID = st.sfid
			}
			if c.SFID == "" {
				c.Op = ""
			}
		}
	}
	// An sfid is whatever the table's writers put there. An Id of another
	// object's record was sent as it was: Salesforce deletes by Id alone,
	// whatever the object, so a role that may write this table deleted a
	// record of an object it may not touch (and an update named the
	// wrong record). Such a change is refused here, as Salesforce would
	// refuse a malformed Id.
	if prefix := m.keyPrefix(); prefix != "" {
		for _, c := range changes {
			if (c.Op == "update" || c.Op == "delete") && c.SFID != "" && !strings.HasPrefix(c.SFID, prefix) {
				c.invalid = &salesforce.RecordError{StatusCode: "INVALID_ID_FIELD",
					Message: fmt.Sprintf("sfid %s is not the Id of a %s record (theirs start with %s): the row's sfid was changed; set it back to its record's Id", c.SFID, m.SObject, prefix),
					Fields:  []string{"Id"}}
			}
		}
	}
	if err := s.checkCatchUp(ctx, m, changes, func(id int) *time.Time { return rows[id].stamp }); err != nil {
		return err
	}
	if err := s.holdParentDeletes(ctx, m, all, changes); err != nil {
		return err
	}
	return s.buildRecords(ctx, m, all, changes)
}

// refuseTakenExternalIDs fails the inserts that Salesforce took, as
// upserts, for updates of records another row of the table holds: the
// application inserted a row with an upsert_field value a synced row has
// (Salesforce matches text ids regardless of case). Recorded as writes,
// the write-back found two rows for one record and kept the new row,
// deleting the other as the insert's echo (see
// pgforce._outbound_adopt_echo_rows): a row the application had, which
// its other tables may name by id, went without a word, and with a
// foreign key naming it every batch of the mapping failed at its
// write-back. The row that held the record keeps it, and takes the values
// the upsert wrote from Salesforce like any other edit; the new row is an
// error. Found after the call, from the answer (created false) and by Id:
// looked for before it, by value, it took a scan of the table per batch
// (130 ms for 1,000,000 rows), which has no index on the field. The echo
// of this very insert (its change event came before an answer that was
// lost) is the insert's own, and is merged as before.
func (s *Service) refuseTakenExternalIDs(ctx context.Context, m *Mapping, changes []*change, idx []int, results []outcome) error {
	byID := map[string]int{}
	for _, i := range idx {
		if r := results[i]; r.kind == outOK && r.matched && r.id != "" {
			byID[r.id] = i
		}
	}
	if len(byID) == 0 {
		return nil
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT x.id, x.sfid FROM %s x
		WHERE x.sfid = ANY($1) AND x.isdeleted IS NOT TRUE
		  AND NOT EXISTS (SELECT FROM pgforce.outbound_echo_row e WHERE e.mapping_id = $2 AND e.sfid = x.sfid)`, m.Table()), ids, m.ID)
	if err != nil {
		return fmt.Errorf("look for rows holding the records upserts of %s updated: %w", m.Table(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var holder int
		var sfid string
		if err := rows.Scan(&holder, &sfid); err != nil {
			return err
		}
		i := byID[sfid]
		if holder == changes[i].RecordID {
			continue
		}
		results[i] = outcome{kind: outFailed, err: salesforce.RecordError{StatusCode: "DUPLICATE_VALUE",
			Message: fmt.Sprintf("duplicate value found: %s duplicates value on record with id: %s, which row %d of %s holds: the upsert of this row wrote its values to that record, and row %d takes them from Salesforce. Delete this row, or give it another %s to make a record of its own (the update sends it)",
				m.UpsertField, sfid, holder, m.Schema+"."+m.TableName, holder, strings.ToLower(m.UpsertField)),
			Fields: []string{m.UpsertField}}}
	}
	return rows.Err()
}

// holdParentDeletes holds back the delete of a record while a child row
// that named it has a change queued that moves the child to another parent
// (its lookup column changed from this record's Id, or a relationship
// column of that lookup set). Salesforce deletes an Account's Contacts and
// Opportunities, and master-detail children, with their parent: sent
// first, the delete took the moved children with it, and their move then
// failed with ENTITY_IS_DELETED. Mappings are written parents first, so
// the held delete goes in the next cycle, after the children's changes.
// A paused child mapping does not hold the delete.
func (s *Service) holdParentDeletes(ctx context.Context, m *Mapping, all []*Mapping, changes []*change) error {
	var ids []string
	for _, c := range changes {
		if c.Op == "delete" && c.SFID != "" && !c.deferTo && c.invalid == nil {
			ids = append(ids, c.SFID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	held := map[string]bool{}
	byObject := mappingsByObject(all)
	for _, x := range all {
		if x.ID == m.ID || x.Paused {
			continue
		}
		for _, col := range x.Columns {
			if col.Type != "reference" || !slices.ContainsFunc(col.ReferenceTo, func(r string) bool { return strings.EqualFold(r, m.SObject) }) {
				continue
			}
			lc := strings.ToLower(col.Name)
			var rels []string
			for _, rc := range x.RelColumns {
				if t, ok := relTargetOf(x, rc, byObject); ok && strings.EqualFold(t.lookupField, col.Name) {
					rels = append(rels, rc)
				}
			}
			// $4 is the lookup's column name: a key of the outbox's jsonb.
			// Only a child with a record in Salesforce can go with its
			// parent: one whose insert failed (its move waits behind that
			// error, for the user) or is still queued has none, and held
			// the delete for as long as it had none.
			q := fmt.Sprintf(`SELECT o.old->>$4 FROM pgforce.outbox o
				WHERE o.mapping_id = $1 AND o.op = 'update' AND o.old->>$4 = ANY($2)
				  AND (o.sfid IS NOT NULL OR EXISTS (SELECT FROM %[2]s t WHERE t.id = o.record_id AND t.sfid IS NOT NULL))
				UNION
				SELECT t.%[1]s::text FROM %[2]s t JOIN pgforce.outbox o ON o.mapping_id = $1 AND o.record_id = t.id
				WHERE t.%[1]s::text = ANY($2) AND o.op = 'update' AND t.sfid IS NOT NULL
				  AND EXISTS (SELECT FROM unnest($3::text[]) r WHERE o.new->>r IS NOT NULL)`,
				pgx.Identifier{lc}.Sanitize(), x.Table())
			if rels == nil {
				rels = []string{}
			}
			found, err := queryStrings(ctx, s.pool, q, x.ID, ids, rels, lc)
			if missingColumn(err) {
				// The child's table lacks the column (or is not made
				// yet): no child of it can have moved.
				continue
			}
			if err != nil {
				return fmt.Errorf("read the queued changes of children of %s in %s: %w", m.Table(), x.Table(), err)
			}
			for _, id := range found {
				held[id] = true
			}
		}
	}
	for _, c := range changes {
		if c.Op == "delete" && held[c.SFID] {
			c.deferTo = true
		}
	}
	return nil
}

// queryStrings returns the single text column of a query's rows.
func queryStrings(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) ([]string, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// missingColumn reports whether err says a column or table does not exist.
func missingColumn(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42703" || pe.Code == "42P01")
}

// checkCatchUp holds back the updates of records that Salesforce changed
// after the row last heard of it, while the mapping's catch-up window is
// open: for a while after the worker starts and after the mapping is
// resumed. Salesforce's changes made while nothing synced reach the row
// later (the change events are replayed, the poll comes round), and an
// update sent before them overwrote them, whatever the conflict policy: a
// field edited on both sides while the mapping was paused ended with the
// Postgres value on both. Held back, the record's change waits until the
// inbound side has applied Salesforce's, through the conflict policy. Once
// the window closes, the stream keeps the rows current and updates go
// without the check. A polled mapping, whose rows are current only after
// each poll, is checked before every send instead, inside the window too,
// unless its policy is postgres_wins (see checkPolled). stamp gives a
// row's systemmodstamp.
//
// The records Salesforce changed are read once per window, with one query
// of those changed after the mapping's inbound watermark (see
// changedSince); the rows' stamps then say which of them the inbound side
// has not applied yet. A record the worker itself wrote since the window
// opened is not held: Salesforce's stamp is its own write's until the echo
// of it arrives, and a change made before that write was overwritten by it
// already.
func (s *Service) checkCatchUp(ctx context.Context, m *Mapping, changes []*change, stamp func(id int) *time.Time) error {
	s.mu.Lock()
	open := time.Now().Before(s.catchUp[m.ID].until)
	s.mu.Unlock()
	if !open || m.InboundWatermark == nil || m.checkedBeforeSend() {
		return nil
	}
	changed, err := s.changedSince(ctx, m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	written := s.written[m.ID]
	for _, c := range changes {
		if _, ours := written[c.SFID]; c.Op != "update" || c.deferTo || ours {
			continue
		}
		at, ok := changed[c.SFID]
		row := stamp(c.RecordID)
		if changed == nil || (ok && row != nil && at.After(*row)) {
			c.deferTo = true
		}
	}
	return nil
}

// maxCatchUpRecords is the most records changed since the watermark that
// changedSince reads. Past it the inbound side is far behind (it failed
// for days, say), and every update waits for the window to close instead:
// reading them all would cost a call per 2,000 and hold them in memory.
const maxCatchUpRecords = 20000

// changedSince returns the records of m that Salesforce changed after its
// inbound watermark, reading them the first time it is asked in a catch-up
// window; nil when there are more than maxCatchUpRecords.
func (s *Service) changedSince(ctx context.Context, m *Mapping) (map[string]time.Time, error) {
	s.mu.Lock()
	w := s.catchUp[m.ID]
	s.mu.Unlock()
	if w.loaded {
		return w.changed, nil
	}
	changed, err := s.readChanged(ctx, m, *m.InboundWatermark)
	if err != nil {
		return nil, fmt.Errorf("read what Salesforce changed while nothing synced: %w", err)
	}
	if changed == nil {
		s.log.Warn("outbound: Salesforce changed more records since the mapping last synced than are checked; updates wait until the catch-up window closes",
			"mapping", m.ID, "since", m.InboundWatermark, "checked", maxCatchUpRecords)
	}
	s.mu.Lock()
	if cur := s.catchUp[m.ID]; cur.until.Equal(w.until) {
		cur.changed, cur.loaded = changed, true
		s.catchUp[m.ID] = cur
	}
	s.mu.Unlock()
	return changed, nil
}

// readChanged reads, with one query, the records of m that Salesforce
// changed at or after since, with their SystemModstamp; nil when there are
// more than maxCatchUpRecords. At it too: since is the inbound watermark,
// the newest stamp of a batch the poll has applied, and the records of a
// mass update share one millisecond, so a record stamped at the watermark
// may be in the poll's next batch yet; one already applied has that stamp
// in its row, and holds nothing.
func (s *Service) readChanged(ctx context.Context, m *Mapping, since time.Time) (map[string]time.Time, error) {
	if err := s.waitBudget(ctx, m); err != nil {
		return nil, err
	}
	changed := map[string]time.Time{}
	soql := fmt.Sprintf("SELECT Id, SystemModstamp FROM %s WHERE SystemModstamp >= %s LIMIT %d", m.SObject,
		since.UTC().Format("2006-01-02T15:04:05.000Z"), maxCatchUpRecords+1)
	err := s.sf.Query(ctx, soql, func(r salesforce.Record) error {
		v, _ := r.Get("SystemModstamp")
		str, _ := v.(string)
		if at, err := salesforce.ParseDateTime(str); err == nil {
			changed[r.ID()] = at
		}
		return nil
	})
	if b := s.opts.Budget; b != nil {
		b.Observe(err)
	}
	if err != nil {
		return nil, err
	}
	if len(changed) > maxCatchUpRecords {
		return nil, nil
	}
	return changed, nil
}

// checkPolled holds back the updates (at idx) of records that Salesforce
// changed after their row last heard of them, on a polled mapping (see
// Mapping.Polled) under any policy but postgres_wins, and returns the
// updates to send. Such a mapping hears of Salesforce's edits at its next
// poll, which reads the record as it is then: an update sent before it
// overwrote an edit of the same field whatever the policy said, and the
// poll found Salesforce's value gone. Held back, the update waits until
// the poll has applied Salesforce's change through the policy
// (salesforce_wins drops the Postgres value of a field Salesforce changed
// and the rest goes, manual opens a conflict, newest_wins compares the two
// times), and goes then as the policy left it. Under postgres_wins the
// Postgres value goes in any case and Salesforce's other fields are not in
// the update, so nothing is checked, which saves the call. Change Data
// Capture brings Salesforce's edits before the updates that follow them,
// and settles those that cross a write in flight (see inbound_filter).
//
// The records Salesforce changed after the inbound watermark come from one
// query (see readChanged), read again only once the last read is older
// than Options.PollCheck and would let one of the updates go: those it
// holds wait for their rows to reach the stamps it gave, which no newer
// read brings sooner. A busy mapping so costs a query per PollCheck, not
// one per batch; a Salesforce edit made less than PollCheck before an
// update is sent can still be overwritten by it.
//
// The worker's own writes move Salesforce's stamp too, and the row hears
// of them at the next poll: a record it wrote is not held for a stamp
// before the time noteWritten gave its write. A change made before that
// write was checked by it; one made after, within the margin of that
// time, is taken for the write.
func (s *Service) checkPolled(ctx context.Context, m *Mapping, changes []*change, idx []int, results []outcome) []int {
	if len(idx) == 0 || !m.checkedBeforeSend() || m.InboundWatermark == nil {
		return idx
	}
	since := *m.InboundWatermark
	s.mu.Lock()
	// The poll has applied a version of the record at least as new as
	// the worker's write (the watermark is past its time): the row's stamp
	// says what it holds.
	for id, after := range s.written[m.ID] {
		if !after.After(since) {
			delete(s.written[m.ID], id)
		}
	}
	last := s.polled[m.ID]
	read := last == nil
	if !read && time.Since(last.at) >= s.opts.PollCheck {
		if last.changed == nil {
			// Too many to check: every update waits, until the poll has
			// caught up enough for a read to hold fewer.
			read = since.After(last.since)
		} else {
			read = slices.ContainsFunc(idx, func(i int) bool { return !s.heldByPoll(m, last, changes[i]) })
		}
	}
	s.mu.Unlock()
	if read {
		at := time.Now()
		changed, err := s.readChanged(ctx, m, since)
		if err != nil {
			s.log.Warn("outbound: cannot read what Salesforce changed since the last poll; the updates wait", "mapping", m.ID, "sobject", m.SObject, "err", err)
			for _, i := range idx {
				results[i] = outcome{kind: outTransient, unsent: true, cause: err}
			}
			return nil
		}
		if changed == nil {
			s.log.Warn("outbound: Salesforce changed more records since the last poll than are checked; updates wait until the poll has applied more of them",
				"mapping", m.ID, "since", since, "checked", maxCatchUpRecords)
		}
		s.mu.Lock()
		if cur := s.polled[m.ID]; cur == nil || cur.at.Before(at) {
			s.polled[m.ID] = &polledRead{changed: changed, since: since, at: at}
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last = s.polled[m.ID]
	send := idx[:0:0]
	held := 0
	for _, i := range idx {
		if s.heldByPoll(m, last, changes[i]) {
			results[i] = outcome{kind: outDeferred, unsent: true}
			held++
			continue
		}
		send = append(send, i)
	}
	if held > 0 {
		s.log.Debug("outbound: updates wait for the poll to apply Salesforce's changes of their records", "mapping", m.ID, "held", held)
	}
	return send
}

// heldByPoll says that r, a read of checkPolled, holds c back. s.mu is
// held.
func (s *Service) heldByPoll(m *Mapping, r *polledRead, c *change) bool {
	if r.changed == nil {
		return true
	}
	at, ok := r.changed[c.SFID]
	if !ok || c.rowStamp != nil && !at.After(*c.rowStamp) {
		return false
	}
	if after, ours := s.written[m.ID][c.SFID]; ours && !after.IsZero() && at.Before(after) {
		return false
	}
	return true
}

// addFailedFields adds to an update the current row values of the
// columns a failed update of the record set.
func addFailedFields(c *change, row map[string]any, cols []string) {
	for _, col := range cols {
		if v, ok := row[col]; ok {
			if _, has := c.Values[col]; !has {
				c.Values[col] = v
				c.takeFromRow(col)
			}
		}
	}
}

// takeFromRow notes that the value of col is the row's, not the change's.
func (c *change) takeFromRow(col string) {
	if c.fromRow == nil {
		c.fromRow = map[string]bool{}
	}
	c.fromRow[col] = true
}

// buildRecords fills change.record from change.Values.
func (s *Service) buildRecords(ctx context.Context, m *Mapping, all []*Mapping, changes []*change) error {
	byObject := mappingsByObject(all)
	// External-id references to parents that are mapped here: look their
	// Ids up in the parent tables, all at once per parent column.
	type refKey struct {
		col   string
		value string
	}
	// A parent row without an Id waits for its insert, unless nothing of
	// it is queued (its insert failed, the error open or ignored): then
	// the child goes by external id, which Salesforce resolves or refuses
	// with an error of the child's own. Waiting, it stayed PENDING for
	// ever with no error to say why.
	type parentRow struct {
		sfid    string
		waiting bool
		id      int
	}
	refs := map[refKey]parentRow{}
	type lookup struct {
		t      relTarget
		values []string
	}
	lookups := map[string]*lookup{}
	for _, c := range changes {
		if c.deferTo || (c.Op != "insert" && c.Op != "update") {
			continue
		}
		for k, v := range c.Values {
			if !isRelColumn(k) || v == nil {
				continue
			}
			t, ok := relTargetOf(m, k, byObject)
			if !ok || t.parent == nil || t.lookupField == "" {
				continue
			}
			l := lookups[k]
			if l == nil {
				l = &lookup{t: t}
				lookups[k] = l
			}
			l.values = append(l.values, fmt.Sprint(v))
		}
	}
	for col, l := range lookups {
		ext := pgx.Identifier{strings.ToLower(l.t.extField)}.Sanitize()
		q := fmt.Sprintf(`SELECT p.%s::text, coalesce(p.sfid, ''),
				p.sfid IS NULL AND EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $2 AND o.record_id = p.id), p.id
			FROM %s p WHERE p.%s::text = ANY($1)
			-- The last row of a value wins: a live row over one whose record
			-- Salesforce deleted, whose external id a new record may hold now.
			ORDER BY p.isdeleted IS NOT TRUE, p.id`, ext, l.t.parent.Table(), ext)
		r, err := s.pool.Query(ctx, q, l.values, l.t.parent.ID)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", col, err)
		}
		for r.Next() {
			var v string
			var p parentRow
			if err := r.Scan(&v, &p.sfid, &p.waiting, &p.id); err != nil {
				r.Close()
				return err
			}
			refs[refKey{col, v}] = p
		}
		r.Close()
		if err := r.Err(); err != nil {
			return err
		}
	}

	waitCache := map[waitNode][]waitNode{}
	for _, c := range changes {
		if c.deferTo || (c.Op != "insert" && c.Op != "update") {
			continue
		}
		insert := c.Op == "insert"
		fields := map[string]any{}
		var relSent []string
		resolved := map[string]string{} // lookup field -> the parent's Id a relationship column named
		for k, v := range c.Values {
			if isRelColumn(k) {
				if v == nil {
					continue
				}
				t, ok := relTargetOf(m, k, byObject)
				if !ok {
					continue
				}
				if p, found := refs[refKey{k, fmt.Sprint(v)}]; found && t.lookupField != "" && (p.sfid != "" || p.waiting) {
					if p.sfid == "" {
						// The parent row's insert is queued: wait for it,
						// unless it waits, through its own relationship
						// columns, for this row (a cycle: two Accounts
						// naming each other as parent). Then neither can
						// go first, and waiting left both PENDING for ever
						// with no error to say why: the row goes by
						// external id, and Salesforce answers for it.
						cycle, err := s.waitsFor(ctx, byObject, waitCache, t.parent, p.id, m, c.RecordID)
						if err != nil {
							return err
						}
						if !cycle {
							c.deferTo = true
							break
						}
						fields[t.relName] = salesforce.NewRecord(t.parentObject, map[string]any{t.extField: v})
						relSent = append(relSent, k)
						continue
					}
					resolved[t.lookupField] = p.sfid
					continue
				}
				fields[t.relName] = salesforce.NewRecord(t.parentObject, map[string]any{t.extField: v})
				relSent = append(relSent, k)
				continue
			}
			if col, found := m.column(k); found && !systemColumns[k] && !c.fromRow[k] && readOnly(col, insert) && (v != nil || !insert) {
				// The application set a field Salesforce does not let it
				// set (a formula, a Contact's Name): left out, the change
				// was lost with the row saying SYNCED, and the two sides
				// differed with nothing to show for it.
				verb := "updateable"
				if insert {
					verb = "createable"
				}
				c.invalid = &salesforce.RecordError{StatusCode: "INVALID_FIELD_FOR_INSERT_UPDATE",
					Message: fmt.Sprintf("%s is not %s in Salesforce (a formula, or read-only for the integration user), so this change of it cannot be sent; undo it with pgforce.revert, which takes Salesforce's value back, and change the fields it is made of instead", col.Name, verb),
					Fields:  []string{col.Name}}
				fields[col.Name] = v
				continue
			}
			name, sv, ok, err := m.sendValue(k, v, insert)
			if err != nil {
				// The raw value goes into the error's payload, where the
				// user sees what to fix.
				c.invalid = &salesforce.RecordError{StatusCode: "INVALID_TYPE_ON_FIELD_IN_RECORD",
					Message: fmt.Sprintf("%s: %v; set the column to a value Salesforce holds and retry", name, err), Fields: []string{name}}
				fields[name] = v
				continue
			}
			if !ok {
				continue
			}
			fields[name] = sv
		}
		if c.deferTo {
			continue
		}
		// A lookup set to an Id wins over the relationship (resolved here
		// or sent by external id) when a row carries both; one that is null
		// does not clear the parent the relationship names. Decided after
		// the loop, whose order is the map's: a row carrying both sent
		// either, at random.
		for field, id := range resolved {
			if fields[field] == nil {
				fields[field] = id
			}
		}
		for _, k := range relSent {
			if t, ok := relTargetOf(m, k, byObject); ok && t.lookupField != "" && fields[t.lookupField] != nil {
				delete(fields, t.relName)
			}
		}
		if insert && m.UpsertField != "" {
			if v, ok := fields[m.UpsertField]; ok && v != nil {
				c.extID = fmt.Sprint(v)
			}
		}
		if !insert {
			if len(fields) == 0 {
				c.Op = "" // nothing Salesforce holds has changed
				continue
			}
			fields["Id"] = c.SFID
		}
		c.record = salesforce.NewRecord(m.SObject, fields)
	}
	return nil
}

// maxWaitDepth bounds the chain of waiting parents waitsFor follows.
const maxWaitDepth = 16

// waitNode is a row of a mapping, for waitsFor.
type waitNode struct {
	m  *Mapping
	id int
}

// waitsFor says whether the row id of mapping from, a parent whose insert
// is queued, waits through its relationship columns (directly or through
// other waiting parents) for the row target of mapping to. cache holds,
// for the batch, the waiting parents each row was found to name.
func (s *Service) waitsFor(ctx context.Context, byObject map[string]*Mapping, cache map[waitNode][]waitNode, from *Mapping, id int, to *Mapping, target int) (bool, error) {
	type node = waitNode
	seen := map[node]bool{}
	queue := []node{{from, id}}
	for depth := 0; len(queue) > 0 && depth < maxWaitDepth; depth++ {
		var next []node
		for _, n := range queue {
			if n.m.ID == to.ID && n.id == target {
				return true, nil
			}
			if seen[n] || len(n.m.RelColumns) == 0 {
				continue
			}
			seen[n] = true
			if ps, ok := cache[n]; ok {
				next = append(next, ps...)
				continue
			}
			mark := len(next)
			var row map[string]any
			var b []byte
			err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT to_jsonb(t) FROM %s t WHERE t.id = $1`, n.m.Table()), n.id).Scan(&b)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return false, err
			}
			if row, err = decodeJSONB(b); err != nil {
				return false, err
			}
			for _, col := range n.m.RelColumns {
				v := row[col]
				if v == nil {
					continue
				}
				t, ok := relTargetOf(n.m, col, byObject)
				if !ok || t.parent == nil || t.extField == "" {
					continue
				}
				ext := pgx.Identifier{strings.ToLower(t.extField)}.Sanitize()
				r, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT p.id FROM %s p WHERE p.%s::text = $1 AND p.sfid IS NULL
					AND EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $2 AND o.record_id = p.id)`, t.parent.Table(), ext),
					fmt.Sprint(v), t.parent.ID)
				if err != nil {
					return false, err
				}
				for r.Next() {
					var pid int
					if err := r.Scan(&pid); err != nil {
						r.Close()
						return false, err
					}
					next = append(next, node{t.parent, pid})
				}
				r.Close()
				if err := r.Err(); err != nil {
					return false, err
				}
			}
			cache[n] = slices.Clone(next[mark:])
		}
		queue = next
	}
	return false, nil
}
