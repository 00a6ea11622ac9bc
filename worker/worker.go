// Package worker is the composition root of `pgforce run`: it connects to
// Postgres and Salesforce, serves /healthz and /metrics, and runs the sync
// services until its context is cancelled.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/config"
	"github.com/pgforce/pgforce/worker/feed"
	"github.com/pgforce/pgforce/worker/health"
	"github.com/pgforce/pgforce/worker/housekeeping"
	"github.com/pgforce/pgforce/worker/inbound"
	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// Options are the knobs of Run that have no environment variable; tests
// and benchmarks use them. The zero value is production behaviour.
type Options struct {
	Inbound  inbound.Options
	Outbound outbound.Options
	// NoOutbound leaves outbound sync off (inbound-only tests).
	NoOutbound bool
	// Housekeeping prunes the org's history; its Org is the worker's.
	Housekeeping housekeeping.Options
}

// NewPool opens the worker's connection pool on databaseURL.
//
// Its sessions run with JIT compilation off, unless the URL sets jit
// itself: the worker's statements are batch statements over the outbox and
// the mapped tables that the planner prices above jit_above_cost once a
// backlog builds up, and compiling them never paid back. A claim of 5,000
// entries of a 100,000 backlog spent 54 of its 168 ms compiling. It is a
// SET after connecting rather than a startup parameter, which PgBouncer
// refuses.
//
// Its sessions run in UTC whatever the database's time zone: tables kept
// from Heroku Connect hold Salesforce's times as UTC in columns without a
// time zone, which the worker reads (the watermark after a load is the
// newest systemmodstamp) as well as writes (see pgforce._as_worker).
//
// It holds at least defaultMaxConns connections unless the URL sets
// pool_max_conns: pgxpool's default, four on a machine of up to four
// cores, is fewer than a Bulk drain uses at once (a claim and three result
// transactions) beside the inbound side and the heartbeat.
func NewPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	return newPool(ctx, databaseURL, nil)
}

// newPool is NewPool whose connections log pgforce's own notices (those
// starting "pgforce:") to log: they tell the user of something done on
// their behalf, such as Heroku Connect's triggers disabled when the worker
// takes a table over, and on the worker's connections they reached no one.
func newPool(ctx context.Context, databaseURL string, log *slog.Logger) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	if log != nil {
		cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			if strings.HasPrefix(n.Message, "pgforce:") {
				log.Info(n.Message, "hint", n.Hint)
			}
		}
	}
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, defaultMaxConns)
	}
	params := cfg.ConnConfig.RuntimeParams
	jit := "off"
	if _, set := params["jit"]; set || strings.Contains(params["options"], "jit") {
		jit = "" // the URL's
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SELECT set_config('TimeZone', 'UTC', false), CASE WHEN $1 <> '' THEN set_config('jit', $1, false) END`, jit)
		return err
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// defaultMaxConns is the fewest connections the worker's pool holds when
// DATABASE_URL does not set pool_max_conns.
const defaultMaxConns = 10

// Run runs the worker until ctx ends, then finishes the batches in flight,
// stores positions and returns nil. Start-up failures (configuration,
// database, login) are returned at once.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return RunWithOptions(ctx, cfg, log, Options{})
}

// RunWithOptions is Run with Options.
func RunWithOptions(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log.Info("pgforce worker starting", "config", cfg)

	pool, err := newPool(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer pool.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("DATABASE_URL: cannot connect: %w", err)
	}
	// The worker creates and alters the mapped tables and writes read_only
	// ones, which pgforce allows its owner's role only: under another role
	// every sync would fail, table by table, long after the start.
	notInstalled := errors.New("DATABASE_URL: pgforce is not installed (or is older than this worker) in this database; run `pgforce install` or ALTER EXTENSION pgforce UPDATE first")
	var owner string
	var member bool
	err = pool.QueryRow(ctx, `SELECT n.nspowner::regrole::text, pg_has_role(current_user, n.nspowner, 'MEMBER')
		FROM pg_namespace n WHERE n.nspname = 'pgforce'`).Scan(&owner, &member)
	if errors.Is(err, pgx.ErrNoRows) {
		return notInstalled
	}
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !member {
		return fmt.Errorf("DATABASE_URL: the worker must run as pgforce's owner, %s, or a member of it: connect as %[1]s, or GRANT %[1]s TO the role in DATABASE_URL", owner)
	}
	var installed bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('pgforce.gue_jobs') IS NOT NULL`).Scan(&installed); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !installed {
		return notInstalled
	}
	// The worker's statements, pgforce's functions it calls and the
	// application's triggers its writes fire compare varchar columns with
	// an unqualified =, which an operator planted in a schema of its
	// search_path takes over (see pgforce._unsafe_search_path).
	var unsafe []string
	var path string
	err = pool.QueryRow(ctx, `SELECT pgforce._unsafe_search_path(), current_setting('search_path')`).Scan(&unsafe, &path)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42883" {
		return notInstalled
	}
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if len(unsafe) > 0 {
		return fmt.Errorf("DATABASE_URL: the worker's search_path (%s) is not safe: %s; an operator or function another role plants there runs as the worker's role. Take CREATE on those schemas from the roles named (for public, as Postgres 15 does: REVOKE CREATE ON SCHEMA public FROM PUBLIC;) and drop what they planted, or give the worker's role a search_path without them (ALTER ROLE ... SET search_path = ...)",
			path, strings.Join(unsafe, ", "))
	}

	sfCfg := salesforce.Config{
		LoginURL:     cfg.LoginURL,
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Username:     cfg.Username,
		Password:     cfg.Password,
		RefreshToken: cfg.RefreshToken, RefreshTokenFile: cfg.RefreshTokenFile,
	}
	if cfg.PrivateKeyFile != "" {
		pem, err := os.ReadFile(cfg.PrivateKeyFile)
		if err != nil {
			return fmt.Errorf("SALESFORCE_PRIVATE_KEY_FILE: %w", err)
		}
		sfCfg.PrivateKeyPEM = pem
	}
	org := orgName(cfg, opts)
	var pct int
	err = pool.QueryRow(ctx, `SELECT api_version, api_budget_pct FROM pgforce.org WHERE name = $1`, org).Scan(&sfCfg.APIVersion, &pct)
	if errors.Is(err, pgx.ErrNoRows) {
		err := fmt.Errorf("PGFORCE_ORG: org %q is not in pgforce.org; add it, with a schema of its own, with INSERT INTO pgforce.org (name, schema_name) VALUES ('%s', '%s') or set PGFORCE_ORG to one that is", org, org, org)
		// A worker of an org deleted since it last ran left its slot
		// behind, keeping WAL for a feed that will not come back.
		if slot, dropErr := dropOrgSlot(ctx, pool, org, false); dropErr != nil {
			log.Warn("could not drop the replication slot of an org that is not in pgforce.org", "org", org, "err", dropErr)
		} else if slot != "" {
			err = fmt.Errorf("%w (its replication slot %s, left by an earlier worker, is dropped)", err, slot)
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("DATABASE_URL: reading pgforce.org: %w", err)
	}
	sf, err := salesforce.New(ctx, sfCfg)
	if err != nil {
		return fmt.Errorf("salesforce login at SALESFORCE_LOGIN_URL: %w", err)
	}
	b := budget.New(sf.APIUsage, pct)
	b.SetProbe(func(ctx context.Context) error { _, err := sf.Limits(ctx); return err }, 0)

	hs := health.New()
	hs.AddCheck("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })

	inOpts := opts.Inbound
	inOpts.Org = org
	inOpts.Registerer = hs.Registry
	in, err := inbound.New(pool, sf, b, log.With("component", "inbound"), inOpts)
	if err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(runCtx, cfg.HTTPAddr, log) }()
	select {
	case err := <-httpErr:
		return fmt.Errorf("PGFORCE_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	case <-time.After(50 * time.Millisecond):
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := in.Run(runCtx); err != nil {
			errs <- fmt.Errorf("inbound: %w", err)
		}
	}()
	hkOpts := opts.Housekeeping
	hkOpts.Org = org
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = housekeeping.Run(runCtx, pool, log.With("component", "housekeeping"), hkOpts)
	}()
	if !opts.NoOutbound {
		outOpts := opts.Outbound
		// One worker serves one org, in both directions.
		outOpts.Org = org
		outOpts.Registerer = hs.Registry
		if outOpts.Budget == nil {
			outOpts.Budget = b
		}
		out := outbound.New(pool, sf, log, outOpts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := out.Run(runCtx); err != nil {
				errs <- fmt.Errorf("outbound: %w", err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		log.Error("worker service failed; stopping", "err", runErr)
	case err := <-httpErr:
		runErr = fmt.Errorf("health server: %w", err)
	}
	stop()
	wg.Wait()
	dropSlotOfDeletedOrg(context.WithoutCancel(ctx), pool, org, log)
	log.Info("pgforce worker stopped")
	return runErr
}

// orgName is the org this worker serves: PGFORCE_ORG, unless a test set
// Options.Inbound.Org.
func orgName(cfg *config.Config, opts Options) string {
	if opts.Inbound.Org != "" {
		return opts.Inbound.Org
	}
	if cfg.Org != "" {
		return cfg.Org
	}
	return "default"
}

// dropSlotOfDeletedOrg drops the outbound feed's replication slot when org
// was deleted (or renamed) while the worker ran. The slot only says "look"
// (the outbox is the queue), but a slot no worker reads keeps every byte
// of WAL the server writes from then on, until the disk fills.
func dropSlotOfDeletedOrg(ctx context.Context, pool *pgxpool.Pool, org string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.org WHERE name = $1)`, org).Scan(&exists); err != nil || exists {
		return
	}
	slot, err := dropOrgSlot(ctx, pool, org, true)
	switch {
	case err != nil:
		log.Warn("org is no longer in pgforce.org; could not drop its replication slot", "org", org, "err", err)
	case slot != "":
		log.Info("org is no longer in pgforce.org; dropped its replication slot", "org", org, "slot", slot)
	}
}

// dropOrgSlot drops the replication slot of org's outbound feed on this
// database if no walsender holds it, and returns its name if it did. With
// wait it waits, until ctx ends, for a walsender to let go of it: the one
// of this worker's own feed takes a moment to exit after the feed stops.
func dropOrgSlot(ctx context.Context, pool *pgxpool.Pool, org string, wait bool) (string, error) {
	slot := outbound.SlotName(pool.Config().ConnConfig.Database, org)
	errHeld := errors.New("held")
	dropped, err := feed.DropSlot(ctx, pool, slot, func(uint32) error {
		if wait {
			return nil
		}
		return errHeld
	})
	switch {
	case errors.Is(err, errHeld):
		return "", nil
	case err != nil || !dropped:
		return "", err
	}
	return slot, nil
}
