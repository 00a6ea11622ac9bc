// Package feed tells the outbound worker when new changes wait in
// pgforce.outbox, without polling while it can avoid it.
//
// The preferred source is a logical replication stream (pgoutput) from a
// permanent slot over publication pgforce_outbox, which covers outbox
// inserts only. Every committed transaction that captured a change arrives
// as a commit message; the feed turns it into a wake-up. Where logical
// replication is unavailable (wal_level below logical, a role without the
// REPLICATION attribute, no publication, or the slot busy with another
// worker) the feed falls back to LISTEN pgforce_outbox, a wake-up the
// capture trigger raises once per transaction, plus a slow safety poll; it
// retries the stream every RetryStream.
//
// Capture sends that NOTIFY only while some worker waits for it: a feed
// that does not stream, or whose stream lags behind the server's WAL,
// holds (or queues for) the advisory lock pgforce._wakeup_lock() on a
// connection of its own, and a capture that can take the lock in shared
// mode stays silent (see monitor). On a server that allows prepared
// transactions the feed never takes that lock, because PREPARE TRANSACTION
// refuses a transaction that has notified: it looks at the outbox every
// PreparedPoll instead, for as long as it would have held the lock, and
// wakes the consumer when something new has been committed there.
// Notifying costs the application
// dearly, because Postgres commits notifying transactions one at a time
// (see sql/060_capture.sql); a stream that keeps up needs no
// notification, so none is sent while every worker streams.
//
// In every mode the feed also listens on pgforce_mapping (worker/mappings)
// and wakes the consumer when a mapping or an org changes: changes
// captured while a mapping was paused queue no new outbox row when it is
// resumed, so nothing else would say "look" until the next capture.
//
// Positions: the outbox table itself is the durable queue, the stream only
// says "look". The feed confirms a commit's LSN to the server only after
// the consumer reports a drain cycle that began after the commit arrived as
// finished (Mark, then Done), so a slot never moves past a change nobody has
// handled. While idle, with nothing unconfirmed, it confirms the server's
// WAL end from keepalives, so that the slot does not pin WAL that other
// tables write.
//
// Backlogs: a slot makes the server decode every WAL record the database
// writes, and draining a backlog writes about nine per change (the claim,
// the write-back, the delete), all of which the stream then decodes only to
// say "look" to a consumer that is looking anyway. While the consumer
// drains a large backlog it calls Hold: the feed closes the stream and
// drops the slot, and capture does not notify either, since the consumer
// claims until nothing is left; Release creates the slot again at the
// current WAL position and streams from there, waking the consumer. Nothing
// can be missed in between, because the stream was never the queue. Measured on the Bulk
// 2.0 drain of 100,000 queued changes: the walsender's decoding took a
// third of the drain's throughput, and the slot pinned the drain's WAL.
//
// Use:
//
//	f := feed.New(pool.Config().ConnConfig, logger, feed.Options{})
//	go f.Run(ctx)
//	for range f.Wake() {
//		tok := f.Mark()
//		drain()          // claim and write until nothing is claimable
//		f.Done(tok)
//	}
package feed

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgforce/pgforce/worker/mappings"
)

// replicationFix says what makes logical replication work after err, for
// the two causes a new install meets: the server's wal_level, and a role
// that may not replicate. The feed works without it, through NOTIFY and a
// safety poll, so nothing else would say why changes take longer.
func replicationFix(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "wal_level"):
		return "set wal_level = logical in postgresql.conf (or the server's parameter group) and restart the server"
	case strings.Contains(msg, "replication role") || strings.Contains(msg, "WAL sender") || strings.Contains(msg, "walsender"):
		return "give the worker's role the REPLICATION attribute (ALTER ROLE <role> REPLICATION; on RDS: GRANT rds_replication TO <role>)"
	}
	return ""
}

// Mode names how the feed currently learns of changes, as pgforce.status
// shows it.
type Mode string

const (
	ModeStarting           Mode = "starting"
	ModeLogicalReplication Mode = "logical_replication"
	ModeNotifyPoll         Mode = "notify_poll"
	// ModeBacklog: the consumer drains a backlog, the slot is dropped until
	// it is done (see Hold).
	ModeBacklog Mode = "backlog"
)

// Publication and Channel are created by sql/050_outbox.sql and
// sql/060_capture.sql.
const (
	Publication = "pgforce_outbox"
	Channel     = "pgforce_outbox"
)

// Options tune a Feed. Zero values take the defaults.
type Options struct {
	// Slot is the permanent replication slot's name. Slots are global to
	// the server, so the default names the database: pgforce_<database>.
	Slot string
	// SafetyPoll is the wake-up interval in notify+poll mode, which covers
	// a notification lost with a dropped connection (default 30s).
	SafetyPoll time.Duration
	// RetryStream is how often notify+poll mode tries the stream again
	// (default 1 minute).
	RetryStream time.Duration
	// StatusInterval is how often the stream reports its position to the
	// server (default 1s).
	StatusInterval time.Duration
	// LagCheck is how often a streaming feed checks whether its stream
	// lags behind the server's WAL (default 250ms); while it does, capture
	// notifies too.
	LagCheck time.Duration
	// PreparedPoll is how often the feed looks for new outbox entries,
	// instead of having capture notify, on a server that allows prepared
	// transactions (default 100ms; see wakeWhile).
	PreparedPoll time.Duration
	// DisableReplication forces notify+poll mode.
	DisableReplication bool
	// OnMode is called whenever the mode changes, with a detail saying why.
	OnMode func(mode Mode, detail string)
}

func (o *Options) defaults() {
	if o.SafetyPoll <= 0 {
		o.SafetyPoll = 30 * time.Second
	}
	if o.RetryStream <= 0 {
		o.RetryStream = time.Minute
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = time.Second
	}
	if o.LagCheck <= 0 {
		o.LagCheck = 250 * time.Millisecond
	}
	if o.PreparedPoll <= 0 {
		o.PreparedPoll = 100 * time.Millisecond
	}
}

// Feed produces wake-ups for the outbound worker. Its methods are safe for
// concurrent use.
type Feed struct {
	cfg  *pgx.ConnConfig
	log  *slog.Logger
	opts Options
	wake chan struct{}

	mu       sync.Mutex
	mode     Mode
	detail   string
	received pglogrepl.LSN // end LSN of the last commit received
	done     pglogrepl.LSN // highest position whose work is finished
	// held is non-nil while the consumer holds the stream off (Hold); it
	// is closed by Release. stopStream ends the stream running, if any.
	held       chan struct{}
	stopStream context.CancelFunc
	// streamPID is the walsender of this feed's last stream (0: none since
	// the last drop), whose slot a Hold drops; only Run's goroutine
	// touches it.
	streamPID uint32
	// wantWakeups says that capture must notify (or, on a server that
	// allows prepared transactions, that the feed must poll; see
	// wakeWhile): the feed neither streams
	// nor is held off by a draining consumer, or its stream lags.
	// wakeupsChanged is closed and replaced whenever it changes.
	wantWakeups    bool
	wakeupsChanged chan struct{}
	// preparedOnce logs once that the feed polls instead (wakeWhile).
	preparedOnce sync.Once
}

// New returns a feed for the database cfg connects to (a pool's
// Config().ConnConfig fits; it is copied). It connects only when Run starts.
func New(cfg *pgx.ConnConfig, logger *slog.Logger, opts Options) *Feed {
	opts.defaults()
	cfg = cfg.Copy()
	if opts.Slot == "" {
		opts.Slot = SlotName(cfg.Database)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Feed{cfg: cfg, log: logger, opts: opts, wake: make(chan struct{}, 1), mode: ModeStarting,
		wantWakeups: true, wakeupsChanged: make(chan struct{})}
}

// Hold says that the consumer is draining a backlog and keeps claiming
// until it is gone, so the stream is not needed meanwhile: the feed stops
// it and drops the slot, so that the server neither decodes the drain's
// writes nor keeps its WAL. It returns at once; holding twice is holding
// once.
func (f *Feed) Hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held != nil {
		return
	}
	f.held = make(chan struct{})
	if f.stopStream != nil {
		f.stopStream()
	}
}

// Release ends a Hold: the feed creates the slot again and streams. Changes
// committed before the slot exists are in the outbox already, and the feed
// sends a wake-up once it streams.
func (f *Feed) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held != nil {
		close(f.held)
		f.held = nil
	}
}

// heldUntil returns a channel closed when the current Hold ends, or nil
// when the stream is not held.
func (f *Feed) heldUntil() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

// Wake returns the channel that receives a value when there may be new
// work. Wake-ups coalesce: many commits while the consumer is busy leave one
// pending wake-up. The first wake-up is sent as soon as Run starts, so the
// consumer drains what was queued before it started.
func (f *Feed) Wake() <-chan struct{} { return f.wake }

// Mode returns the current mode and why it was chosen.
func (f *Feed) Mode() (Mode, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode, f.detail
}

// SlotName returns the default slot name for a database: pgforce_ and the
// database name folded to the characters a slot name allows, with a hash
// when it has to be shortened.
func SlotName(database string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(database) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := "pgforce_" + b.String()
	if len(name) > 63 || name != "pgforce_"+strings.ToLower(database) {
		h := fnv.New32a()
		_, _ = h.Write([]byte(database))
		name = fmt.Sprintf("%.54s_%08x", name, h.Sum32())
	}
	return name
}

// OrgSlotName returns the slot name of a worker of org (other than the
// default one, whose slot is SlotName's) on database: slot names are global
// to the server, and one built as SlotName(database+"_"+org) was also the
// default slot of a database named that way. The hash of both names, after
// a prefix no SlotName makes but for a database named so, keeps them apart.
func OrgSlotName(database, org string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(database + "\x00" + org))
	folded := strings.TrimPrefix(SlotName(database+"_"+org), "pgforce_")
	return fmt.Sprintf("%.63s", fmt.Sprintf("pgforce_org%08x_%s", h.Sum32(), folded))
}

// Token identifies the stream position a drain cycle covers.
type Token struct{ lsn pglogrepl.LSN }

// Mark is called when a drain cycle starts: everything received so far will
// be covered by the cycle.
func (f *Feed) Mark() Token {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Token{lsn: f.received}
}

// Done reports that the cycle started with tok finished: every change it
// covers is written to Salesforce, recorded as an error, or durably queued
// behind a block in pgforce.outbox.
func (f *Feed) Done(tok Token) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tok.lsn > f.done {
		f.done = tok.lsn
	}
}

func (f *Feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *Feed) setMode(m Mode, detail string) {
	f.mu.Lock()
	changed := f.mode != m || f.detail != detail
	f.mode, f.detail = m, detail
	f.mu.Unlock()
	if !changed {
		return
	}
	f.log.Info("outbound feed mode", "mode", string(m), "detail", detail)
	if f.opts.OnMode != nil {
		f.opts.OnMode(m, detail)
	}
}

// Run produces wake-ups until ctx ends. It returns nil on cancellation; a
// failing stream never ends Run, it falls back to notify+poll.
func (f *Feed) Run(ctx context.Context) error {
	f.signal()
	lockDone := make(chan struct{})
	defer func() { <-lockDone }()
	go func() {
		defer close(lockDone)
		f.holdWakeupLock(ctx)
	}()
	var listenBackoff time.Duration
	for ctx.Err() == nil {
		if !f.opts.DisableReplication {
			err := f.stream(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errHeld) {
				f.holdOff(ctx)
				continue
			}
			why := err.Error()
			if fix := replicationFix(err); fix != "" {
				why += "; " + fix
			}
			f.log.Warn("outbound feed: logical replication unavailable, using LISTEN and a safety poll", "err", why)
			f.setMode(ModeNotifyPoll, "logical replication unavailable: "+why)
		} else {
			f.setMode(ModeNotifyPoll, "logical replication disabled by configuration")
		}
		retry := f.opts.RetryStream
		if f.opts.DisableReplication {
			retry = 0
		}
		if err := f.listen(ctx, retry, always); err != nil && ctx.Err() == nil {
			f.log.Warn("outbound feed: listen failed", "err", err)
			// Polling still works without a connection of our own: the
			// consumer's next cycle will tell. Wake it and pause, briefly
			// at first: after a restart or a failover of the server
			// nothing else wakes the consumer until a stream or a LISTEN
			// runs again, while capture already notifies (the wake-up
			// lock is taken again within a second). A pause of a whole
			// SafetyPoll left the changes made meanwhile waiting 30 s.
			f.signal()
			listenBackoff = min(max(2*listenBackoff, time.Second), f.opts.SafetyPoll)
			select {
			case <-ctx.Done():
			case <-time.After(listenBackoff):
			}
		} else {
			listenBackoff = 0
		}
	}
	return nil
}

// errHeld ends a stream that Hold stopped.
var errHeld = errors.New("held while a backlog drains")

// holdOff runs while the consumer holds the stream off: it drops the slot
// the last stream used, then relays notifications (pgforce.revert and
// mapping changes notify always) and the safety poll until released.
func (f *Feed) holdOff(ctx context.Context) {
	released := f.heldUntil()
	if released == nil {
		return
	}
	// Also when no stream of ours ran (pid 0): a worker that starts on a
	// backlog may be held before its stream begins, and the slot its last
	// run left must go all the same. dropSlot keeps a slot that another
	// worker's walsender holds.
	// Nor does capture notify meanwhile: the consumer keeps claiming until
	// the backlog is gone, and once released the feed wakes it again when
	// it has the lock or the stream, whichever comes first. Notifying would
	// make the application commit one transaction at a time for the whole
	// drain.
	f.setWantWakeups(false)
	defer f.setWantWakeups(true)
	pid := f.streamPID
	f.streamPID = 0
	detail := "slot " + f.opts.Slot + " dropped while a backlog drains"
	if err := f.dropSlot(ctx, pid); err != nil {
		// Another worker may stream from it now; it stays.
		f.log.Info("outbound feed: slot kept while a backlog drains", "slot", f.opts.Slot, "err", err)
		detail = "a backlog drains (slot " + f.opts.Slot + " kept: " + err.Error() + ")"
	}
	f.setMode(ModeBacklog, detail)
	hctx, cancel := contextUntil(ctx, released)
	defer cancel()
	f.relay(hctx, always)
}

// contextUntil returns a context that ends with ctx or once ch is closed.
func contextUntil(ctx context.Context, ch <-chan struct{}) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ch:
		case <-cctx.Done():
		}
		cancel()
	}()
	return cctx, cancel
}

// relay runs listen until ctx ends, starting it again after a failure,
// with a wake-up, since a notification may have been lost with it.
func (f *Feed) relay(ctx context.Context, poll func() bool) {
	for ctx.Err() == nil {
		if err := f.listen(ctx, 0, poll); err != nil && ctx.Err() == nil {
			f.log.Warn("outbound feed: listen failed", "err", err)
			f.signal()
			select {
			case <-ctx.Done():
			case <-time.After(f.opts.SafetyPoll):
			}
		}
	}
}

// dropLostSlot drops the feed's slot when the server has invalidated it
// (wal_status 'lost') and no walsender holds it.
func (f *Feed) dropLostSlot(ctx context.Context) error {
	return f.withConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		var lost bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_replication_slots
			WHERE slot_name = $1 AND database = pg_catalog.current_database() AND wal_status = 'lost' AND active_pid IS NULL)`, f.opts.Slot).Scan(&lost)
		if err != nil || !lost {
			return err
		}
		f.log.Warn("outbound feed: replication slot was invalidated (it held more WAL than max_slot_wal_keep_size); creating it again", "slot", f.opts.Slot)
		_, err = conn.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot($1)`, f.opts.Slot)
		var pgErr *pgconn.PgError
		if err != nil && errors.As(err, &pgErr) && (pgErr.Code == "42704" || pgErr.Code == "55006") { // dropped or taken meanwhile
			return nil
		}
		return err
	})
}

// withConn runs fn on an ordinary connection of its own, which needs no
// walsender, for at most 10 seconds.
func (f *Feed) withConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, f.cfg.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(ctx, conn)
}

// dropSlot drops the feed's slot once walsender pid, this feed's stream
// just closed (0: none), has let go of it, which takes a moment. It uses
// an ordinary connection, so that it needs no walsender of its own. A slot
// that another walsender holds is another worker's stream now, and stays;
// a slot that does not exist is fine.
func (f *Feed) dropSlot(ctx context.Context, pid uint32) error {
	return f.withConn(ctx, func(ctx context.Context, conn *pgx.Conn) error { return f.dropSlotOn(ctx, conn, pid) })
}

func (f *Feed) dropSlotOn(ctx context.Context, conn *pgx.Conn, pid uint32) error {
	_, err := DropSlot(ctx, conn, f.opts.Slot, func(active uint32) error {
		if active == pid {
			return nil // our walsender is still exiting
		}
		return fmt.Errorf("slot %s is in use by walsender %d", f.opts.Slot, active)
	})
	return err
}

// Querier is what DropSlot needs of a connection or a pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// DropSlot drops replication slot slot of the current database (slot
// names are the server's: one of another database's is not ours to drop)
// and says whether it did; a slot that does not exist is fine. While a
// walsender holds it, held says what to do: nil waits for it to let go and
// looks again (until ctx ends), an error gives up with that error.
func DropSlot(ctx context.Context, q Querier, slot string, held func(pid uint32) error) (bool, error) {
	for {
		var active *uint32
		err := q.QueryRow(ctx, `SELECT active_pid FROM pg_catalog.pg_replication_slots
			WHERE slot_name = $1 AND database = pg_catalog.current_database()`, slot).Scan(&active)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return false, nil
		case err != nil:
			return false, err
		case active != nil:
			if err := held(*active); err != nil {
				return false, err
			}
		default:
			_, err = q.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot($1)`, slot)
			var pgErr *pgconn.PgError
			switch {
			case err == nil:
				return true, nil
			case errors.As(err, &pgErr) && pgErr.Code == "42704": // undefined_object: dropped meanwhile
				return false, nil
			case !(errors.As(err, &pgErr) && pgErr.Code == "55006"): // object_in_use: taken meanwhile
				return false, err
			}
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("slot %s still active: %w", slot, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (f *Feed) replicationConn(ctx context.Context) (*pgconn.PgConn, error) {
	cfg := f.cfg.Config.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	return conn, nil
}

// always polls: for listen outside the stream.
func always() bool { return true }

// listen runs notify+poll mode for the given duration (0: until ctx ends),
// adding the safety poll's wake-ups whenever poll says so. Without them it
// only relays notifications: beside the stream, that catches
// pgforce.revert, which queues no outbox row for the stream to see, and
// mapping changes (a resume).
func (f *Feed) listen(ctx context.Context, d time.Duration, poll func() bool) error {
	conn, err := pgx.ConnectConfig(ctx, f.cfg.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel+"; LISTEN "+mappings.Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Changes committed before LISTEN took effect sent their notification
	// to nobody: look once now.
	f.signal()
	var until time.Time
	if d > 0 {
		until = time.Now().Add(d)
	}
	for {
		wait := f.opts.SafetyPoll
		if !until.IsZero() {
			left := time.Until(until)
			if left <= 0 {
				return nil
			}
			wait = min(wait, left)
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			f.signal()
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			if poll() {
				f.signal() // the safety poll
			}
		default:
			return err
		}
	}
}

// stream runs the logical replication stream until it fails or ctx ends.
// It returns only with an error saying why the stream is not usable.
func (f *Feed) stream(ctx context.Context) error {
	// A Hold stops the stream: its context ends, which closes the
	// connection wherever the stream waits.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	f.mu.Lock()
	if f.held != nil {
		f.mu.Unlock()
		return errHeld
	}
	f.stopStream = stop
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.stopStream = nil
		f.mu.Unlock()
	}()
	err := f.streamUntil(sctx)
	if ctx.Err() == nil && sctx.Err() != nil {
		return errHeld
	}
	return err
}

// streamUntil runs the stream until it fails or ctx ends.
func (f *Feed) streamUntil(ctx context.Context) error {
	// Relay notifications from the start: beside the stream, they catch
	// pgforce.revert, which queues no outbox row, and until it streams
	// (creating the slot waits for the transactions running at the time
	// to end, however long they take) they and the safety poll are the
	// only wake-ups.
	var streaming atomic.Bool
	lctx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	go f.relay(lctx, func() bool { return !streaming.Load() })
	conn, err := f.replicationConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// From here on the slot may be this stream's: a Hold drops it.
	f.streamPID = conn.PID()

	if _, err := pglogrepl.IdentifySystem(ctx, conn); err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	f.setMode(ModeStarting, "creating or opening slot "+f.opts.Slot+" (creating one waits for the transactions running now to end)")
	// A slot the server invalidated (it held back more WAL than
	// max_slot_wal_keep_size while no worker read it) exists but can never
	// stream again. The outbox is the queue, not the slot: make it anew.
	if err := f.dropLostSlot(ctx); err != nil {
		return fmt.Errorf("drop invalidated slot %s: %w", f.opts.Slot, err)
	}
	_, err = pglogrepl.CreateReplicationSlot(ctx, conn, f.opts.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{})
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42710") { // duplicate_object: the slot exists
		return fmt.Errorf("create slot %s: %w", f.opts.Slot, err)
	}
	// Start from the slot's confirmed position (LSN 0 means "where the slot is").
	err = pglogrepl.StartReplication(ctx, conn, f.opts.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + Publication + "'"},
	})
	if err != nil {
		return fmt.Errorf("start replication on slot %s: %w", f.opts.Slot, err)
	}
	streaming.Store(true)
	f.setMode(ModeLogicalReplication, "slot "+f.opts.Slot+", publication "+Publication)
	// Every commit from here on arrives on the stream: capture may stop
	// notifying while the stream keeps up, until it ends.
	// Commits go to the monitor, which wakes the consumer once they are
	// visible, and which also watches the stream's lag.
	commits := newXidQueue()
	mctx, stopMonitor := context.WithCancel(ctx)
	monitoring := make(chan struct{})
	go func() {
		defer close(monitoring)
		f.monitor(mctx, conn.PID(), commits)
	}()
	defer func() {
		stopMonitor()
		<-monitoring
		// Not while held: a draining consumer needs no wake-up (holdOff).
		f.setWantWakeups(f.heldUntil() == nil)
	}()
	var xid uint32 // of the transaction being received
	// Anything committed while no stream ran is in the outbox already.
	f.signal()

	var (
		walEnd     pglogrepl.LSN // the server's WAL end from the last keepalive
		confirmed  pglogrepl.LSN
		nextStatus = time.Now().Add(f.opts.StatusInterval)
	)
	sendStatus := func() error {
		pos := f.confirmable(walEnd)
		if pos < confirmed {
			pos = confirmed
		}
		err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos,
		})
		if err == nil {
			confirmed = pos
		}
		nextStatus = time.Now().Add(f.opts.StatusInterval)
		return err
	}
	for {
		if time.Now().After(nextStatus) {
			if err := sendStatus(); err != nil {
				return fmt.Errorf("send standby status: %w", err)
			}
		}
		rctx, cancel := context.WithDeadline(ctx, nextStatus)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("stream: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if ka.ServerWALEnd > walEnd {
					walEnd = ka.ServerWALEnd
				}
				if ka.ReplyRequested {
					if err := sendStatus(); err != nil {
						return fmt.Errorf("send standby status: %w", err)
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse xlog data: %w", err)
				}
				// Only transaction boundaries matter: the outbox is the queue
				// and the stream only says "look". A backlog queued by one
				// statement arrives as one message per entry, so the others
				// are not decoded.
				if len(xld.WALData) == 0 {
					continue
				}
				if t := pglogrepl.MessageType(xld.WALData[0]); t != pglogrepl.MessageTypeBegin && t != pglogrepl.MessageTypeCommit {
					continue
				}
				m, err := pglogrepl.Parse(xld.WALData)
				if err != nil {
					return fmt.Errorf("parse pgoutput message: %w", err)
				}
				switch m := m.(type) {
				case *pglogrepl.BeginMessage:
					xid = m.Xid
				case *pglogrepl.CommitMessage:
					f.mu.Lock()
					if m.TransactionEndLSN > f.received {
						f.received = m.TransactionEndLSN
					}
					f.mu.Unlock()
					commits.push(xid)
				}
			}
		}
	}
}

// confirmable returns the position the slot may move to: the last finished
// cycle's mark, or the server's WAL end when every commit received has been
// handled (nothing is in flight, so the WAL in between holds no outbox
// change of ours).
func (f *Feed) confirmable(walEnd pglogrepl.LSN) pglogrepl.LSN {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done >= f.received && walEnd > f.done {
		return walEnd
	}
	return f.done
}

// monitor runs beside the stream until ctx ends, on a connection of its
// own, and does two things.
//
// It wakes the consumer for each commit received (its xid), once the
// transaction is visible to other sessions. A commit is decoded once it is
// in the WAL, but the committing session leaves the set of running
// transactions only after that (after a synchronous standby confirmed it,
// if there is one), and a claim in between does not see its changes:
// without a later change to the mapping, they would wait for the next
// wake-up however long that took. (NOTIFY, by contrast, is delivered after
// the commit is visible.) Commits not yet visible are looked at again,
// soon and then every LagCheck, for as long as it takes.
//
// And it decides whether capture must notify as well: whenever the stream
// has not yet reached the WAL the server had flushed at the previous check
// (every LagCheck), and until it has kept up for a second. Every walsender
// decodes the whole cluster's WAL, so a burst of writes anywhere (a bulk
// load in another database, many slots) can hold the stream seconds
// behind, and outbound changes would wait as long; NOTIFY arrives at
// commit. (Where the server allows prepared transactions, the feed polls
// in its stead; see wakeWhile.)
//
// When its connection fails, the monitor wakes the consumer at once for
// every commit and capture notifies, until it has a connection again.
func (f *Feed) monitor(ctx context.Context, walsender uint32, commits *xidQueue) {
	var (
		conn     *pgx.Conn
		before   pglogrepl.LSN // the server's WAL flush position at the last check
		keptUp   int           // checks in a row that found the stream keeping up
		pending  []int64       // xids of commits received and not yet visible
		recheck  = time.Millisecond
		tick     = time.NewTicker(f.opts.LagCheck)
		fallback = func(err error) {
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("outbound feed: cannot watch the stream; capture notifies until it can", "err", err)
			f.setWantWakeups(true)
			if pending != nil {
				pending = nil
				f.signal()
			}
			if conn != nil {
				conn.Close(context.WithoutCancel(ctx))
				conn = nil
			}
		}
	)
	defer tick.Stop()
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		var again <-chan time.Time
		if len(pending) > 0 {
			again = time.After(recheck)
		}
		lagCheck := false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			lagCheck = true
		case <-commits.ready:
			for _, xid := range commits.take() {
				pending = append(pending, int64(xid))
			}
			recheck = time.Millisecond
		case <-again:
			recheck = min(2*recheck, f.opts.LagCheck)
		}
		if conn == nil {
			var err error
			if conn, err = pgx.ConnectConfig(ctx, f.cfg.Copy()); err != nil {
				conn = nil
				fallback(err)
				continue
			}
		}
		if lagCheck {
			lagging, flushed, err := streamLags(ctx, conn, walsender, before)
			if err != nil {
				fallback(err)
				continue
			}
			before = flushed
			if lagging {
				keptUp = 0
			} else {
				keptUp++
			}
			// Notify at once when it lags; stop after a second of keeping up.
			if want := lagging || keptUp*int(f.opts.LagCheck) < int(time.Second); f.setWantWakeups(want) {
				f.log.Debug("outbound feed: capture notifies", "notify", want, "lagging", lagging, "flushed_before", flushed)
			}
		}
		if len(pending) > 0 {
			running, err := stillRunning(ctx, conn, pending)
			if err != nil {
				fallback(err)
				continue
			}
			if len(running) < len(pending) {
				f.signal()
			}
			pending = running
		}
	}
}

// xidQueue carries the xids of the commits the stream receives to the
// monitor, which wakes the consumer once they are visible. It has no bound
// because a commit it dropped would be a lost wake-up: with a full channel
// the stream used to signal at once instead, so the consumer could look
// before the commit was visible and nothing would send it looking again
// until the next commit. A xid is 4 bytes; the monitor takes them all
// whenever it is ready.
type xidQueue struct {
	mu   sync.Mutex
	xids []uint32
	// ready holds a token whenever xids may be non-empty.
	ready chan struct{}
}

func newXidQueue() *xidQueue { return &xidQueue{ready: make(chan struct{}, 1)} }

func (q *xidQueue) push(xid uint32) {
	q.mu.Lock()
	q.xids = append(q.xids, xid)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default: // a token is waiting already
	}
}

// take returns every xid pushed since the last take, oldest first.
func (q *xidQueue) take() []uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	xids := q.xids
	q.xids = nil
	return xids
}

// streamLags reports whether walsender has not yet sent the WAL up to
// before, and the server's WAL flush position now.
func streamLags(ctx context.Context, conn *pgx.Conn, walsender uint32, before pglogrepl.LSN) (bool, pglogrepl.LSN, error) {
	var flushed, sent string
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_flush_lsn()::text,
		coalesce((SELECT r.sent_lsn::text FROM pg_catalog.pg_stat_replication r WHERE r.pid = $1), '0/0')`, walsender).Scan(&flushed, &sent); err != nil {
		return false, 0, err
	}
	flushedLSN, err := pglogrepl.ParseLSN(flushed)
	if err != nil {
		return false, 0, err
	}
	sentLSN, err := pglogrepl.ParseLSN(sent)
	if err != nil {
		return false, 0, err
	}
	return sentLSN < before, flushedLSN, nil
}

// stillRunning returns those of xids (32-bit, as pgoutput sends them)
// whose transactions a new snapshot still sees as running.
func stillRunning(ctx context.Context, conn *pgx.Conn, xids []int64) ([]int64, error) {
	var running []int64
	err := conn.QueryRow(ctx, stillRunningSQL, xids, nil).Scan(&running)
	return running, err
}

// stillRunningSQL selects the xids of $1 that snapshot $2 (NULL: a new
// one) sees as running.
var stillRunningSQL = `SELECT coalesce(pg_catalog.array_agg(x ORDER BY x), '{}')
	FROM pg_catalog.unnest($1::bigint[]) x, LATERAL (SELECT s, pg_catalog.pg_snapshot_xmax(s)::text::bigint AS xmax
		FROM (SELECT coalesce($2::text::pg_snapshot, pg_catalog.pg_current_snapshot()) AS s) q) m
	WHERE NOT pg_catalog.pg_visible_in_snapshot(` + widenedXid("x", "m.xmax") + `::text::xid8, m.s)`

// widenedXid is the SQL for the full xid that 32-bit xid stands for: the
// one nearest xmax (within 2^31 either side), as Postgres itself relates
// xids. A transaction that has committed but not yet left the running set
// may be at or above xmax (the latest completed xid, plus one).
func widenedXid(xid, xmax string) string {
	return fmt.Sprintf("(%[2]s + (((%[1]s - (%[2]s & 4294967295)) + 2147483648) & 4294967295) - 2147483648)", xid, xmax)
}

// setWantWakeups says whether capture must notify, or the feed poll in its
// stead (see holdWakeupLock),
// and reports whether that changed.
func (f *Feed) setWantWakeups(want bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wantWakeups == want {
		return false
	}
	f.wantWakeups = want
	close(f.wakeupsChanged)
	f.wakeupsChanged = make(chan struct{})
	return true
}

func (f *Feed) wakeupsWanted() (bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wantWakeups, f.wakeupsChanged
}

// holdWakeupLock holds pgforce._wakeup_lock(), or queues for it, whenever
// wake-ups are wanted (the feed neither streams nor waits for a drain, or
// its stream lags), so that capture notifies, until ctx ends; on a server
// that allows prepared transactions it polls instead (see wakeWhile).
// Without the lock the feed still hears of every change, later: from the
// safety poll, or from the wake-up it sends when it gets the lock.
func (f *Feed) holdWakeupLock(ctx context.Context) {
	for ctx.Err() == nil {
		want, changed := f.wakeupsWanted()
		if want {
			if err := f.wakeWhile(ctx, changed); err != nil && ctx.Err() == nil {
				f.log.Warn("outbound feed: cannot hold the wake-up lock or look for new changes; they wait for the safety poll", "err", err)
				select {
				case <-ctx.Done():
				case <-changed:
				case <-time.After(time.Second):
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
	}
}

// wakeWhile makes sure the consumer hears of new changes promptly until
// changed closes: by holding the wake-up lock, so that capture notifies,
// or, on a server that allows prepared transactions, by looking at the
// outbox every PreparedPoll. PREPARE TRANSACTION refuses a transaction
// that has sent a NOTIFY, so there capture must never be made to notify:
// an application's two-phase commits would fail whenever a worker waited
// for a wake-up. (max_prepared_transactions changes only with a restart;
// it is read again each time wake-ups become wanted.)
func (f *Feed) wakeWhile(ctx context.Context, changed <-chan struct{}) error {
	conn, err := pgx.ConnectConfig(ctx, f.cfg.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var prepared bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('max_prepared_transactions')::integer > 0`).Scan(&prepared); err != nil {
		return fmt.Errorf("read max_prepared_transactions: %w", err)
	}
	if !prepared {
		return f.lockWhile(ctx, conn, changed)
	}
	f.preparedOnce.Do(func() {
		f.log.Info("outbound feed: the server allows prepared transactions, so capture never notifies; while the feed does not stream it looks for changes on an interval",
			"interval", f.opts.PreparedPoll.String())
	})
	// A wake-up costs the consumer a drain cycle (a claim per mapping and
	// more), so the feed wakes it only when the outbox holds an entry
	// committed since its last look: one whose transaction the snapshot of
	// that look did not see. Comparing ids instead would miss an entry
	// whose transaction took its id first and committed last. The first
	// look wakes it in any case.
	var seen *string
	tick := time.NewTicker(f.opts.PreparedPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			return nil
		case <-tick.C:
		}
		var now string
		var fresh bool
		if err := conn.QueryRow(ctx, freshEntriesSQL, seen).Scan(&now, &fresh); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("look for new outbox entries: %w", err)
		}
		if seen == nil || fresh {
			f.signal()
		}
		seen = &now
	}
}

// freshEntriesSQL returns a new snapshot and whether the outbox holds an
// entry that snapshot $1 (text; NULL: none yet) does not see.
const freshEntriesSQL = `SELECT pg_catalog.pg_current_snapshot()::text,
	$1::text IS NOT NULL AND EXISTS (SELECT FROM pgforce.outbox o
		WHERE NOT pg_catalog.pg_visible_in_snapshot(o.xid, $1::text::pg_snapshot))`

// lockWhile takes the wake-up lock on conn, a connection of its own, and
// keeps it until changed closes or the connection dies, which releases the
// lock. Waiting for the lock is part of the protocol: it ends once every
// transaction that captured without notifying has ended, so the wake-up
// sent then covers what they queued.
func (f *Feed) lockWhile(ctx context.Context, conn *pgx.Conn, changed <-chan struct{}) error {
	// The request ends when no longer wanted. pgx then closes the
	// connection and sends a cancel request, which matters: a backend
	// waiting for a lock does not notice that its client went away, and
	// its request would stay queued, making capture notify, until granted.
	lctx, cancel := contextUntil(ctx, changed)
	defer cancel()
	if _, err := conn.Exec(lctx, `SELECT pg_catalog.pg_advisory_lock(pgforce._wakeup_lock())`); err != nil {
		if lctx.Err() != nil {
			return nil // no longer wanted
		}
		return fmt.Errorf("take the wake-up lock: %w", err)
	}
	f.signal()

	// Hold it until it is no longer wanted. Waiting on the connection
	// (nothing is listened for on it) ends when the connection dies: a
	// server restart or a terminated backend took the lock with it.
	for {
		err := conn.PgConn().WaitForNotification(lctx)
		switch {
		case lctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("wake-up lock connection: %w", err)
		}
	}
}
