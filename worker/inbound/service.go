// Package inbound keeps mapped tables in step with Salesforce: it describes
// each mapped object, creates its table through pgforce.ensure_table, loads
// it (REST or Bulk API 2.0, streamed into Postgres with COPY), then follows
// changes through Change Data Capture or polling.
//
// Ownership. Each mapping's inbound sync is owned by one worker at a time
// through a lease in pgforce.mapping (pgforce.inbound_claim). Work is handed
// out as durable gue jobs ("pgforce.inbound" with the mapping id, in the
// queue of the mapping's org, which only that org's workers serve): the job
// handler only claims the lease inside the job's transaction and returns,
// because gue holds that transaction open while the handler runs and no
// Salesforce call may happen inside it. The long work (load, stream, poll)
// then runs outside any transaction on a runner goroutine that renews the
// lease and checkpoints its progress (watermark, replay id, re-read queue)
// in Postgres with the changes it covers. A reconcile pass, on every mapping
// change and on a timer, enqueues a job for every mapping that needs an
// owner and has none (new, resumed, or whose owner died and let its lease
// expire), so a crashed worker's mappings move to a live one.
package inbound

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vgarvardt/gue/v5"
	"github.com/vgarvardt/gue/v5/adapter/pgxv5"

	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/mappings"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// JobType is the gue job that hands a mapping's inbound sync to a worker.
const JobType = "pgforce.inbound"

// queuePrefix starts the names of the gue queues inbound jobs use, one
// per org: a worker serves one org, and one queue for all had any worker
// take the mappings of any org, describing and loading them from its own.
const queuePrefix = "pgforce_inbound:"

// queueOf is the gue queue of org's inbound jobs.
func queueOf(org string) string { return queuePrefix + org }

// Options tune the service; zero values take the defaults.
type Options struct {
	// Org is the pgforce.org whose mappings this worker syncs (default
	// "default"): the worker's credentials belong to one org.
	Org string
	// Owner names this worker in leases (default hostname-pid-random).
	Owner string
	// BulkThreshold: objects with at least this many records load through
	// Bulk API 2.0, smaller ones through REST queries (default 10000, the
	// point where Heroku Connect switches too).
	BulkThreshold int
	// BatchSize is the records per apply transaction in loads (default
	// 10000); with LoadParallel it bounds the rows held in memory.
	BatchSize int
	// LoadParallel is how many batches of a load merge at once (default 2).
	LoadParallel int
	// BulkPageSize caps rows per Bulk result page (0: server default).
	BulkPageSize int
	// Lease is how long a mapping's lease lasts unless renewed (default 30s);
	// a dead worker's mappings move after this long.
	Lease time.Duration
	// SafetyInterval re-reads mappings and re-queued work even without a
	// notification (default 30s).
	SafetyInterval time.Duration
	// Overlap is subtracted from the watermark when polling or resyncing,
	// because SystemModstamps tie and commit out of order (default 1m).
	Overlap time.Duration
	// MaxPollInterval caps every mapping's poll_interval (0: no cap). Tests
	// and demos use it to poll faster than the 10 s floor of the table.
	MaxPollInterval time.Duration
	// RetryBackoff is the first wait after a failed attempt (default 1s,
	// doubling to 1 min).
	RetryBackoff time.Duration
	// Registerer receives the service's Prometheus metrics (nil: none).
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Org == "" {
		o.Org = "default"
	}
	if o.Owner == "" {
		// A random part too: two workers can share a host name and a
		// process id (containers given one hostname, each running pgforce
		// as PID 1), and the same owner name let both hold every lease.
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if o.BulkThreshold <= 0 {
		o.BulkThreshold = 10000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 10000
	}
	if o.LoadParallel <= 0 {
		o.LoadParallel = 2
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.SafetyInterval <= 0 {
		o.SafetyInterval = 30 * time.Second
	}
	if o.Overlap <= 0 {
		o.Overlap = time.Minute
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
}

// Service runs the inbound sync of every mapping of one org.
type Service struct {
	pool    *pgxpool.Pool
	sf      *salesforce.Client
	budget  *budget.Budget
	log     *slog.Logger
	opts    Options
	metrics *metrics

	gue *gue.Client

	mu      sync.Mutex
	ctx     context.Context
	running map[int]*running
	wg      sync.WaitGroup

	cdcMu sync.Mutex
	cdc   map[string]bool
	cdcAt time.Time
}

type running struct {
	cancel      context.CancelFunc
	done        chan struct{}
	fingerprint string
	// rereads wakes the runner's re-reads: pgforce.retry queues one for
	// an inbound error and notifies, as a mapping change does.
	rereads chan struct{}
	// drift wakes its drift checks: pgforce.check_drift notifies.
	drift chan struct{}
}

// New builds the service. pool is the worker's pool; b is the API budget
// shared with outbound sync.
func New(pool *pgxpool.Pool, sf *salesforce.Client, b *budget.Budget, log *slog.Logger, opts Options) (*Service, error) {
	opts.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		pool: pool, sf: sf, budget: b, log: log, opts: opts,
		metrics: newMetrics(opts.Registerer),
		running: map[int]*running{},
	}, nil
}

// Owner returns the name this worker holds leases under.
func (s *Service) Owner() string { return s.opts.Owner }

// Run syncs until ctx ends: it watches mappings, runs gue workers that hand
// out mappings, and runs the mappings this worker owns. On return every
// runner has finished its batch in flight and released its lease.
func (s *Service) Run(ctx context.Context) error {
	gpool, err := guePool(ctx, s.pool)
	if err != nil {
		return err
	}
	defer gpool.Close()
	s.gue, err = gue.NewClient(pgxv5.NewConnPool(gpool))
	if err != nil {
		return fmt.Errorf("inbound: gue client: %w", err)
	}
	workers, err := gue.NewWorkerPool(s.gue, gue.WorkMap{JobType: s.claimJob}, 2,
		gue.WithPoolQueue(queueOf(s.opts.Org)), gue.WithPoolPollInterval(100*time.Millisecond),
		gue.WithPoolID(s.opts.Owner))
	if err != nil {
		return fmt.Errorf("inbound: gue workers: %w", err)
	}
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()

	gueDone := make(chan error, 1)
	go func() { gueDone <- workers.Run(ctx) }()
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- mappings.Watch(ctx, s.pool, s.opts.SafetyInterval, s.log, func(ms []mappings.Mapping) { s.reconcile(ctx, ms) })
	}()
	// Leases expire on their own; look for expired ones more often than
	// the safety re-read so that a dead worker's mappings move quickly.
	// Mappings in error over their table are looked at as often: the
	// fix is DDL, which raises no notification (see setError).
	tick := time.NewTicker(s.opts.Lease / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-watchDone
			<-gueDone
			s.stopAll()
			return nil
		case <-tick.C:
			s.recheckTables(ctx)
			if ms, err := mappings.List(ctx, s.pool); err == nil {
				s.reconcile(ctx, ms)
			}
		}
	}
}

// recheckTables sends the org's mappings in error over a table the user
// has changed since back to be described (pgforce.inbound_recheck_tables);
// the update notifies, so reconcile takes them up. It reads the catalog
// only: a mapping whose table is untouched costs no Salesforce call.
func (s *Service) recheckTables(ctx context.Context) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT pgforce.inbound_recheck_tables($1)`, s.opts.Org).Scan(&n); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("inbound: cannot look at the tables of mappings in error", "err", err)
		}
		return
	}
	if n > 0 {
		s.log.Info("inbound: tables of mappings in error changed; describing them again", "mappings", n)
	}
}

// guePool opens a pool like pool whose search_path finds pgforce.gue_jobs
// as the unqualified gue_jobs gue queries.
func guePool(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["search_path"] = "pgforce"
	cfg.MaxConns = 4
	cfg.MinConns = 0
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("inbound: gue pool: %w", err)
	}
	return p, nil
}

type jobArgs struct {
	MappingID int `json:"mapping_id"`
}

// claimJob is the gue WorkFunc: it claims the mapping's lease in the job's
// transaction (so the job disappears exactly when the lease is taken) and
// starts the runner; it never calls Salesforce.
func (s *Service) claimJob(ctx context.Context, j *gue.Job) error {
	var args jobArgs
	if err := json.Unmarshal(j.Args, &args); err != nil {
		return fmt.Errorf("inbound: job args %q: %w", j.Args, err)
	}
	// A mapping moved to another org since it was queued is that org's
	// workers' to queue and claim.
	var ok bool
	if err := j.Tx().QueryRow(ctx, `SELECT pgforce.inbound_claim(m.id, $2, $3::interval) FROM pgforce.mapping m WHERE m.id = $1 AND m.org = $4`,
		args.MappingID, s.opts.Owner, s.opts.Lease.String(), s.opts.Org).Scan(&ok); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if ok {
		m, err := mappings.Get(ctx, s.pool, args.MappingID)
		if err == nil {
			s.start(m)
		}
	}
	return nil
}

// needsOwner reports whether a mapping needs a worker syncing it inbound.
func needsOwner(m *mappings.Mapping) bool {
	return !m.Paused && m.State != mappings.StateError
}

// fingerprint covers what the user controls; a change restarts the runner
// (a mode change too: a read_write table's merges follow the two-way rules
// and mark echoes).
func fingerprint(m *mappings.Mapping) string {
	reload := ""
	if m.ReloadRequestedAt != nil {
		reload = m.ReloadRequestedAt.String()
	}
	return fmt.Sprint(m.SObject, m.Fields, m.Mode, m.Inbound, m.PollInterval, m.Paused, reload, m.HardDelete, m.State == mappings.StateError, m.APIBudgetPct)
}

func (s *Service) reconcile(ctx context.Context, ms []mappings.Mapping) {
	seen := map[int]bool{}
	for i := range ms {
		m := &ms[i]
		if m.Org != s.opts.Org {
			continue
		}
		s.budget.SetPercent(m.APIBudgetPct)
		seen[m.ID] = true
		s.mu.Lock()
		r := s.running[m.ID]
		s.mu.Unlock()
		if r != nil {
			if !needsOwner(m) || r.fingerprint != fingerprint(m) || (m.InboundOwner != "" && m.InboundOwner != s.opts.Owner) {
				s.log.Info("inbound: mapping changed; restarting its sync", "mapping", m.ID, "sobject", m.SObject, "paused", m.Paused)
				s.stop(m.ID)
			} else {
				wake(r.rereads)
				wake(r.drift)
				continue
			}
		}
		if !needsOwner(m) {
			continue
		}
		if m.InboundOwner != "" && m.InboundOwner != s.opts.Owner {
			var live bool
			if err := s.pool.QueryRow(ctx, `SELECT inbound_lease_until > clock_timestamp() FROM pgforce.mapping WHERE id = $1`, m.ID).Scan(&live); err != nil || live {
				continue
			}
		}
		if err := s.enqueue(ctx, m.ID); err != nil && ctx.Err() == nil {
			s.log.Warn("inbound: enqueue failed", "mapping", m.ID, "err", err)
		}
	}
	s.mu.Lock()
	var gone []int
	for id := range s.running {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		s.log.Info("inbound: mapping deleted; stopping its sync", "mapping", id)
		s.stop(id)
	}
}

// enqueue queues a claim job for a mapping unless one is already queued.
func (s *Service) enqueue(ctx context.Context, id int) error {
	args, _ := json.Marshal(jobArgs{MappingID: id})
	queue := queueOf(s.opts.Org)
	var queued bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.gue_jobs WHERE job_type = $1 AND queue = $2 AND args = $3)`,
		JobType, queue, args).Scan(&queued); err != nil {
		return err
	}
	if queued {
		return nil
	}
	return s.gue.Enqueue(ctx, &gue.Job{Type: JobType, Queue: queue, Args: args})
}

// start launches the runner of a mapping this worker just claimed.
func (s *Service) start(m *mappings.Mapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.ctx.Err() != nil || s.running[m.ID] != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	r := &running{cancel: cancel, done: make(chan struct{}), fingerprint: fingerprint(m), rereads: make(chan struct{}, 1), drift: make(chan struct{}, 1)}
	s.running[m.ID] = r
	s.metrics.running.Inc()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		defer s.metrics.running.Dec()
		s.supervise(ctx, m.ID, r.rereads, r.drift)
		cancel()
		// Let another worker (or this one, after a restart of the runner)
		// take over at once instead of after the lease expires.
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = s.pool.Exec(rctx, `SELECT pgforce.inbound_release($1, $2)`, m.ID, s.opts.Owner)
		rcancel()
		s.mu.Lock()
		if s.running[m.ID] == r {
			delete(s.running, m.ID)
		}
		s.mu.Unlock()
	}()
}

func (s *Service) stop(id int) {
	s.mu.Lock()
	r := s.running[id]
	s.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

func (s *Service) stopAll() {
	s.mu.Lock()
	ids := make([]int, 0, len(s.running))
	for id := range s.running {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.stop(id)
	}
	s.wg.Wait()
}

// supervise runs a mapping's runner while the lease holds, retrying failed
// attempts with backoff and renewing the lease.
func (s *Service) supervise(ctx context.Context, id int, rereads, drift chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := s.log.With("mapping", id)
	// Renew the lease; losing it (paused, error, taken after a stall) stops
	// the runner.
	go func() {
		t := time.NewTicker(s.opts.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var ok bool
			err := s.pool.QueryRow(ctx, `SELECT pgforce.inbound_claim($1, $2, $3::interval)`, id, s.opts.Owner, s.opts.Lease.String()).Scan(&ok)
			if err == nil && !ok {
				log.Info("inbound: lease lost; stopping")
				cancel()
				return
			}
		}
	}()
	backoff := s.opts.RetryBackoff
	for ctx.Err() == nil {
		r := &runner{s: s, id: id, log: log, rereadWake: rereads, resyncWake: make(chan struct{}, 1), driftWake: drift}
		started := time.Now()
		err := r.run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			// In error state: nothing to do until the user edits it, or
			// changes the table that was refused (see recheckTables).
			// state says so; nothing is retried.
			r.notRetrying(ctx)
			return
		}
		if errors.Is(err, mappings.ErrNotFound) {
			return
		}
		// A refusal only the user can fix, met after the describe (the
		// describe pgforce.retry runs to widen a column, see
		// widenForRetries): retried, it failed the same way for ever.
		if ce := (*ConfigError)(nil); errors.As(err, &ce) {
			log.Warn("inbound: mapping cannot be synced until it is fixed", "detail", ce.Detail)
			if setError(ctx, s.pool, id, ce) == nil {
				r.notRetrying(ctx)
				return
			}
		}
		if r.fieldsGone(ctx, err) {
			// In error state, with the fix in state_detail.
			r.notRetrying(ctx)
			return
		}
		log.Warn("inbound: sync attempt failed; retrying", "err", err, "backoff", backoff)
		detail := "retrying after error: " + err.Error()
		var ex *budget.Exhausted
		if errors.As(err, &ex) {
			// A hold the org's api_budget_pct asks for, not a failure.
			detail = ex.Error()
		} else {
			retrying(ctx, s, id, log, err)
		}
		_, _ = s.pool.Exec(ctx, `UPDATE pgforce.mapping SET state_detail = $2 WHERE id = $1 AND NOT paused`, id, detail)
		if time.Since(started) > time.Minute {
			backoff = s.opts.RetryBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// cdcSelection caches, for a few minutes, the change event entities the
// org has selected for Change Data Capture: it only decides how inbound =
// 'auto' mappings follow their objects.
func (s *Service) cdcSelection(ctx context.Context) (map[string]bool, error) {
	s.cdcMu.Lock()
	defer s.cdcMu.Unlock()
	if s.cdc != nil && time.Since(s.cdcAt) < 5*time.Minute {
		return s.cdc, nil
	}
	sel, err := s.sf.ChangeEventSelection(ctx)
	if err != nil {
		return nil, err
	}
	s.cdc, s.cdcAt = sel, time.Now()
	return sel, nil
}
