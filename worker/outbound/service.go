package outbound

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/feed"
	"github.com/pgforce/pgforce/worker/mappings"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// Org is the org whose mappings this worker sends (pgforce.org.name;
	// empty means DefaultOrg). The Salesforce client must be that org's.
	Org string
	// Registerer receives the service's Prometheus metrics (nil: none).
	Registerer prometheus.Registerer
	// WorkerID names this worker in outbox claims and pgforce.outbound_worker
	// (default host:pid:random).
	WorkerID string
	// BatchSize is how many outbox entries one claim takes (default 2000).
	BatchSize int
	// BulkBatchSize is how many entries one claim takes in Bulk mode; each
	// such batch is one Bulk job (default 5000: smaller jobs let claiming,
	// Salesforce and recording overlap).
	BulkBatchSize int
	// Parallel is how many Collections calls run at once (default 4).
	Parallel int
	// ClaimLease is how long a silent worker's claims stay its own before
	// other workers take them over (default 30s).
	ClaimLease time.Duration
	// Heartbeat is how often the worker records that it is alive (default
	// ClaimLease/3).
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the wait after a transient failure
	// (defaults 500ms and 1 minute).
	MinBackoff, MaxBackoff time.Duration
	// BulkPoll tunes how Bulk jobs are polled.
	BulkPoll salesforce.Poll
	// Feed tunes the change feed; its connection string is the pool's.
	Feed feed.Options
	// Budget, when set, is asked before every Salesforce call (priority
	// Write) and told about every refusal.
	Budget *budget.Budget
	// CatchUp is how long after the worker starts, and after a mapping is
	// resumed, updates are checked against Salesforce before they are sent
	// (see checkCatchUp; default 1 minute).
	CatchUp time.Duration
	// PollCheck is how long the records Salesforce changed since a polled
	// mapping's last poll, as read to check its updates, are used before
	// an update that they would let go makes the worker read them again
	// (see checkPolled; default 2 seconds). A Salesforce edit made that
	// long before an update is sent can be overwritten by it; shorter
	// costs more API calls while the mapping is busy.
	PollCheck time.Duration
}

func (o *Options) defaults() {
	if o.WorkerID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.WorkerID = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.BulkBatchSize <= 0 {
		o.BulkBatchSize = 5000
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.ClaimLease <= 0 {
		o.ClaimLease = 30 * time.Second
	}
	if o.CatchUp <= 0 {
		o.CatchUp = time.Minute
	}
	if o.PollCheck <= 0 {
		o.PollCheck = 2 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = o.ClaimLease / 3
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
}

// Salesforce is the part of *salesforce.Client the service uses.
type Salesforce interface {
	Create(ctx context.Context, records []salesforce.Record) ([]salesforce.SaveResult, error)
	Update(ctx context.Context, records []salesforce.Record) ([]salesforce.SaveResult, error)
	UpsertByExternalID(ctx context.Context, sobject, extIDField string, records []salesforce.Record) ([]salesforce.SaveResult, error)
	Delete(ctx context.Context, ids []string) ([]salesforce.SaveResult, error)
	Retrieve(ctx context.Context, sobject string, ids, fields []string) ([]*salesforce.Record, error)
	Query(ctx context.Context, soql string, fn func(salesforce.Record) error) error
	UserID(ctx context.Context) (string, error)
	CreateIngestJob(ctx context.Context, job salesforce.IngestJob) (*salesforce.JobInfo, error)
	UploadIngestData(ctx context.Context, jobID string, columns []string, write func(*salesforce.CSVWriter) error) error
	CloseIngestJob(ctx context.Context, jobID string) (*salesforce.JobInfo, error)
	AbortIngestJob(ctx context.Context, jobID string) (*salesforce.JobInfo, error)
	IngestJobInfo(ctx context.Context, jobID string) (*salesforce.JobInfo, error)
	WaitIngestJob(ctx context.Context, jobID string, p salesforce.Poll) (*salesforce.JobInfo, error)
	IngestSuccessfulResults(ctx context.Context, jobID string, fn func(salesforce.Row) error) error
	IngestFailedResults(ctx context.Context, jobID string, fn func(salesforce.Row) error) error
	ServerTime() time.Time
}

var _ Salesforce = (*salesforce.Client)(nil)

// Service writes captured Postgres changes to Salesforce. See the package
// documentation.
type Service struct {
	pool *pgxpool.Pool
	sf   Salesforce
	log  *slog.Logger
	opts Options
	feed *feed.Feed

	mu      sync.Mutex
	backoff map[int]*backoffState // by mapping id
	lastOut map[int]time.Time     // last_outbound_at written, by mapping id
	mode    feed.Mode
	detail  string
	kick    chan struct{}
	// heldLogged is when waitBudget last said that writes are held.
	heldLogged time.Time
	// stopping is Run's context: it ends when the worker is told to stop
	// (SIGTERM), while the batch in flight runs on (see cycle).
	stopping context.Context
	metrics  *metrics

	// recaptured is when recapture last tried each mapping's table.
	recaptured map[int]time.Time
	// settled holds when this worker last cleared each mapping's outbound
	// failure from pgforce.status, and has not shown one since (see
	// showFailure).
	settled map[int]time.Time
	// calls holds a slot per Collections call running, Parallel in all,
	// shared by the batches in flight at once.
	calls chan struct{}
	// unrecorded are batch outcomes whose result transaction failed; their
	// entries stay claimed until they are recorded (see record).
	unrecorded []*recording
	// released says releaseStale has run once: claims under this
	// worker's name that it finds before are an earlier process's.
	released   bool
	analyzedAt time.Time      // last analyzeOutbox
	analyzing  sync.WaitGroup // analyzeOutbox running (see nextBatch)
	// catchUp is each mapping's catch-up window (see checkCatchUp).
	catchUp map[int]catchUpWindow
	// written holds, by mapping, the records (Ids) the worker wrote while
	// their updates were checked (see noteWritten), each with a time
	// after its write's SystemModstamp (zero when not known).
	written map[int]map[string]time.Time
	// polled is what checkPolled last read of each polled mapping.
	polled map[int]*polledRead
}

// polledRead is the records of a polled mapping that Salesforce changed
// after its inbound watermark since, with their SystemModstamp (nil when
// there were more than maxCatchUpRecords), as read at at.
type polledRead struct {
	changed map[string]time.Time
	since   time.Time
	at      time.Time
}

// catchUpWindow is when a mapping's catch-up window ends (zero while the
// mapping is seen paused), and the pgforce.resume it opened for. changed
// holds the records Salesforce changed after the mapping's inbound
// watermark, with their SystemModstamp, once read (loaded).
type catchUpWindow struct {
	until   time.Time
	resumed time.Time
	changed map[string]time.Time
	loaded  bool
}

type backoffState struct {
	until time.Time
	delay time.Duration
}

// New returns a service writing the changes queued in the database behind
// pool through sf. It starts nothing until Run.
func New(pool *pgxpool.Pool, sf Salesforce, logger *slog.Logger, opts Options) *Service {
	opts.defaults()
	if logger == nil {
		logger = slog.Default()
	}
	s := &Service{pool: pool, sf: sf, log: logger.With("component", "outbound"), opts: opts,
		backoff: map[int]*backoffState{}, lastOut: map[int]time.Time{}, recaptured: map[int]time.Time{}, settled: map[int]time.Time{}, catchUp: map[int]catchUpWindow{}, written: map[int]map[string]time.Time{}, polled: map[int]*polledRead{}, mode: feed.ModeStarting, kick: make(chan struct{}, 1),
		calls: make(chan struct{}, opts.Parallel), metrics: newMetrics(opts.Registerer)}
	fo := opts.Feed
	userOnMode := fo.OnMode
	fo.OnMode = func(m feed.Mode, detail string) {
		s.mu.Lock()
		s.mode, s.detail = m, detail
		s.mu.Unlock()
		s.heartbeat(context.Background())
		if userOnMode != nil {
			userOnMode(m, detail)
		}
	}
	if fo.Slot == "" {
		fo.Slot = SlotName(pool.Config().ConnConfig.Database, s.opts.Org)
	}
	s.feed = feed.New(pool.Config().ConnConfig, s.log, fo)
	return s
}

// WorkerID returns the name this worker claims outbox entries under.
func (s *Service) WorkerID() string { return s.opts.WorkerID }

// FeedMode returns how the service currently learns of new changes.
func (s *Service) FeedMode() feed.Mode {
	m, _ := s.feed.Mode()
	return m
}

// Run writes changes until ctx ends. On cancellation it finishes the batch
// in flight (its Salesforce calls and write-back get a grace period), but
// starts no Bulk job for it (see sendBulk), and returns nil.
func (s *Service) Run(ctx context.Context) error {
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	s.stopping = ctx
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = s.feed.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		s.heartbeatLoop(ctx)
	}()
	defer wg.Wait()

	s.heartbeat(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.feed.Wake():
		case <-s.kick:
		case <-timer.C:
		}
		tok := s.feed.Mark()
		next, err := s.cycle(ctx, runCtx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Warn("outbound cycle failed", "err", err)
			next = time.Now().Add(s.opts.MinBackoff * 4)
		} else {
			s.feed.Done(tok)
		}
		// Wake again when the earliest backoff ends.
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		d := time.Hour
		if !next.IsZero() {
			d = max(time.Until(next), time.Millisecond)
		}
		timer.Reset(d)
	}
}

// Kick asks for a drain cycle now (e.g. after taking over a dead worker's
// claims).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.heartbeat(ctx)
			if n, err := s.reclaim(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("outbound: reclaim dead workers' claims", "err", err)
			} else if n > 0 {
				s.log.Info("outbound: took over claims of a worker that stopped", "entries", n)
				s.Kick()
			}
		}
	}
}

func (s *Service) heartbeat(ctx context.Context) {
	s.mu.Lock()
	mode, detail := s.mode, s.detail
	s.mu.Unlock()
	if _, err := s.pool.Exec(ctx, `SELECT pgforce._outbound_heartbeat($1, $2, $3)`, s.opts.WorkerID, string(mode), detail); err != nil && ctx.Err() == nil {
		s.log.Warn("outbound: heartbeat", "err", err)
	}
}

// reclaim hands the claims of dead workers back to the queue, except the
// entries of a Bulk job of theirs that Salesforce is still running (see
// pgforce.outbound_bulk_job): those wait until it ends. So do those of a
// job a live worker could not tell the end of (orphaned), which it leaves
// claimed: they go back once the job is seen ending. A job still open
// never runs and is aborted; an ended one is forgotten.
func (s *Service) reclaim(ctx context.Context) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT j.job_id, j.mapping_id, j.entries, j.worker FROM pgforce.outbound_bulk_job j
		WHERE j.orphaned
		   OR NOT EXISTS (SELECT FROM pgforce.outbound_worker w WHERE w.worker = j.worker AND w.seen_at > now() - $1::interval)`,
		s.opts.ClaimLease)
	if err != nil {
		return 0, err
	}
	type job struct {
		id      string
		mapping int
		entries []int64
		worker  string
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job, error) {
		var j job
		err := r.Scan(&j.id, &j.mapping, &j.entries, &j.worker)
		return j, err
	})
	if err != nil {
		return 0, err
	}
	hold := []int64{} // an array, never NULL: nothing would be released
	released := 0
	for _, j := range jobs {
		info, err := s.sf.IngestJobInfo(ctx, j.id)
		switch {
		case salesforce.IsNotFound(err) || (err == nil && info.Terminal()):
		case err == nil && info.State == salesforce.JobOpen:
			s.abortJob(ctx, j.mapping, j.id)
		default:
			// Running, or its state cannot be told now: asked again next cycle.
			hold = append(hold, j.entries...)
			continue
		}
		// The job's entries go back with it, whoever holds them (those of
		// a dead worker's would go back below anyway), by the reclaim that
		// forgets the job: another that read it too, the heartbeat's or
		// another worker's, released them again, when their worker had
		// claimed them anew and was sending them.
		tag, err := s.pool.Exec(ctx, `WITH gone AS (DELETE FROM pgforce.outbound_bulk_job WHERE job_id = $1 RETURNING entries, worker)
			UPDATE pgforce.outbox o SET claimed_at = NULL, claimed_by = NULL FROM gone
			WHERE o.id = ANY (gone.entries) AND o.claimed_by = gone.worker`, j.id)
		if err != nil {
			return 0, err
		}
		released += int(tag.RowsAffected())
	}
	var n int
	err = s.pool.QueryRow(ctx, `SELECT pgforce._outbound_reclaim($1, $2)`, s.opts.ClaimLease, hold).Scan(&n)
	return n + released, err
}

// cycle drains every mapping once: claim, write, record, until nothing is
// claimable. It returns when the earliest backed-off mapping may run again.
// ctx stops new work; work keeps running under work (not cancelled by ctx)
// so that a batch in flight finishes.
func (s *Service) cycle(ctx, work context.Context) (time.Time, error) {
	if _, err := s.reclaim(ctx); err != nil {
		return time.Time{}, err
	}
	if err := s.recordUnrecorded(work); err != nil {
		// Their records stay claimed; every other record still drains.
		s.log.Warn("outbound: recording earlier results failed again", "err", err)
	}
	if err := s.releaseStale(ctx); err != nil {
		return time.Time{}, err
	}
	ms, err := loadMappings(ctx, s.pool, s.opts.Org)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, m := range ms {
		if ctx.Err() != nil {
			return next, nil
		}
		s.openCatchUp(m)
		if m.Paused {
			continue
		}
		if until := s.backedOff(m.ID); !until.IsZero() {
			if next.IsZero() || until.Before(next) {
				next = until
			}
			continue
		}
		if m.StaleCapture {
			s.recapture(ctx, m)
		}
		if err := s.reverts(ctx, work, m); err != nil {
			// Salesforce or Postgres failed for a passing reason (a revert
			// that Postgres refuses reopens its error instead): the
			// reverts and the drain wait for the backoff, and the run
			// loop's timer must wake the worker then.
			s.noteFailure(ctx, m, err)
			if until := s.backedOff(m.ID); !until.IsZero() && (next.IsZero() || until.Before(next)) {
				next = until
			}
			continue
		}
		deferred, err := s.drain(ctx, work, m)
		if deferred {
			// Records wait for parents: look again a moment later. The
			// run loop's one timer holds the earliest such time, so
			// cycles that other wake-ups start meanwhile do not add
			// retries of their own (a kick per deferring pass started an
			// endless chain per wake-up).
			if retry := time.Now().Add(s.opts.MinBackoff); next.IsZero() || retry.Before(next) {
				next = retry
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return next, nil // stopping: the batch in flight was finished
			}
			s.noteFailure(ctx, m, err)
			if until := s.backedOff(m.ID); !until.IsZero() && (next.IsZero() || until.Before(next)) {
				next = until
			}
			continue
		}
		s.clearBackoff(ctx, m.ID)
	}
	return next, nil
}

// waitBudget waits until the API budget lets m's writes call Salesforce.
// A hold is logged, once a minute at most, with the figures: the backlog
// and its age grew in pgforce.status, and nothing said why.
func (s *Service) waitBudget(ctx context.Context, m *Mapping) error {
	b := s.opts.Budget
	if b == nil {
		return nil
	}
	if err := b.Check(budget.Write); err != nil {
		s.mu.Lock()
		due := time.Since(s.heldLogged) >= time.Minute
		if due {
			s.heldLogged = time.Now()
		}
		s.mu.Unlock()
		if ex := (*budget.Exhausted)(nil); due && errors.As(err, &ex) && ex.Refused {
			s.log.Warn("outbound: writes held: Salesforce refuses calls because the org's daily API allocation is spent; they go once it allows them again",
				"mapping", m.ID, "sobject", m.SObject, "reason", err)
		} else if due {
			s.log.Warn("outbound: writes held until the API budget allows them; raise pgforce.org.api_budget_pct to send them sooner",
				"mapping", m.ID, "sobject", m.SObject, "reason", err)
		}
		// The hold may last hours, all inside this drain cycle, whose end
		// is what lets the feed move the replication slot on: held that
		// long, the slot pinned every byte of WAL the server wrote
		// meanwhile. Everything the feed has received is in the outbox,
		// durably, and has woken the consumer (a cycle follows this one),
		// so it counts as handled while writes are held, as changes
		// queued behind a block do.
		stop := make(chan struct{})
		defer close(stop)
		// ctx is replaced below: the goroutine keeps the channel of this one.
		ended := ctx.Done()
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				s.feed.Done(s.feed.Mark())
				select {
				case <-stop:
					return
				case <-ended:
					return
				case <-t.C:
				}
			}
		}()
		// Nothing of this call has reached Salesforce yet: a worker told to
		// stop does not wait for the budget (the daily allocation is a
		// rolling 24 hours) to finish its batch, whose changes wait,
		// unsent, for the next worker.
		if s.stopping != nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(s.stopping, cancel)()
		}
	}
	return b.Wait(ctx, budget.Write)
}

// recapture installs m's triggers again, so that capture records the
// relationship columns added to its table since (Heroku Connect's
// <lookup>__r__<extid>): an ALTER TABLE fires nothing that could.
//
// Replacing triggers locks the table against everything for a moment; an
// application transaction holding it longer than a second is not waited
// for, and it is tried again a minute later (so is a table the worker's
// role may not change), not every cycle, which would queue the
// application's statements behind the lock each time.
func (s *Service) recapture(ctx context.Context, m *Mapping) {
	s.mu.Lock()
	due := time.Since(s.recaptured[m.ID]) >= time.Minute
	if due {
		s.recaptured[m.ID] = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pgforce._install_triggers($1)`, m.ID)
		return err
	}); err != nil {
		s.log.Warn("outbound: cannot capture the table's new relationship columns; the table's owner can: SELECT pgforce._install_triggers(<mapping id>)",
			"mapping", m.ID, "table", m.Table(), "err", err)
		return
	}
	s.log.Info("outbound: capturing the table's new relationship columns", "mapping", m.ID, "table", m.Table(), "columns", m.RelColumns)
}

// noteFailure backs a mapping off after a failure that needs no user
// action, and shows it in pgforce.status.
func (s *Service) noteFailure(ctx context.Context, m *Mapping, err error) {
	var pgErr *pgconn.PgError
	transient := salesforce.IsTransient(err) || errors.As(err, &pgErr) || errors.Is(err, errTransient)
	s.mu.Lock()
	b := s.backoff[m.ID]
	if b == nil {
		b = &backoffState{}
		s.backoff[m.ID] = b
	}
	if b.delay == 0 {
		b.delay = s.opts.MinBackoff
	} else {
		b.delay = min(b.delay*2, s.opts.MaxBackoff)
	}
	if salesforce.IsLimitExceeded(err) {
		b.delay = max(b.delay, 10*s.opts.MinBackoff)
	}
	b.until = time.Now().Add(b.delay)
	delay := b.delay
	s.mu.Unlock()
	s.log.Warn("outbound: mapping backs off", "mapping", m.ID, "sobject", m.SObject, "transient", transient, "retry_in", delay, "err", err)
	shown := err
	if te := (*transientError)(nil); errors.As(err, &te) {
		shown = te.cause // the status says what failed, not that changes wait
	}
	s.showFailure(ctx, m.ID, fmt.Errorf("%w; retrying in %s", shown, delay))
}

// showFailure shows in pgforce.status (see sql/128_failing.sql) that a
// drain of mapping id failed, with cause; nil cause says that one worked.
// Clearing costs a statement after a failure, and once a minute per
// mapping besides: another worker of the org may have shown a failure
// that this one's success ends, and stopped.
func (s *Service) showFailure(ctx context.Context, id int, cause error) {
	s.mu.Lock()
	settled, ok := s.settled[id]
	s.mu.Unlock()
	var err error
	switch {
	case cause != nil:
		err = mappings.Retrying(ctx, s.pool, id, mappings.Outbound, cause)
	case ok && time.Since(settled) < time.Minute:
		return
	default:
		err = mappings.NotRetrying(ctx, s.pool, id, mappings.Outbound)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("outbound: cannot show the mapping's failure in pgforce.status", "mapping", id, "err", err)
		}
		return
	}
	s.mu.Lock()
	if cause == nil {
		s.settled[id] = time.Now()
	} else {
		delete(s.settled, id)
	}
	s.mu.Unlock()
}

func (s *Service) backedOff(id int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.backoff[id]; b != nil && time.Now().Before(b.until) {
		return b.until
	}
	return time.Time{}
}

func (s *Service) clearBackoff(ctx context.Context, id int) {
	s.mu.Lock()
	delete(s.backoff, id)
	s.mu.Unlock()
	s.showFailure(ctx, id, nil)
}

// errTransient marks a batch that had transient per-record failures.
var errTransient = errors.New("outbound: transient failures, changes requeued")

// transientError is errTransient with the cause of one of the failures.
type transientError struct{ cause error }

func (e *transientError) Error() string   { return errTransient.Error() + ": " + e.cause.Error() }
func (e *transientError) Unwrap() []error { return []error{errTransient, e.cause} }

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// openCatchUp opens m's catch-up window (see checkCatchUp) when the worker
// first sees the mapping, when it sees it again after a pause, and after a
// pgforce.resume it has not seen: a pause and resume between two cycles
// leaves no paused state to see.
func (s *Service) openCatchUp(m *Mapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, seen := s.catchUp[m.ID]
	if m.Paused {
		s.catchUp[m.ID] = catchUpWindow{resumed: w.resumed}
		return
	}
	var resumed time.Time
	if m.ResumedAt != nil {
		resumed = *m.ResumedAt
	}
	if !seen || w.until.IsZero() || resumed.After(w.resumed) {
		s.catchUp[m.ID] = catchUpWindow{until: time.Now().Add(s.opts.CatchUp), resumed: resumed}
		s.written[m.ID] = map[string]time.Time{}
	}
}
