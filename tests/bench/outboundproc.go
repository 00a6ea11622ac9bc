package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker"
	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// The outbound bench runs its worker as a process of its own, as `pgforce
// run` runs in production: this binary started again with
// outboundWorkerEnv set to the worker's name. In this process the worker
// would share one heap with the simulator, which holds every record and
// change event of the org (170-300 MB), and every collection its
// allocations set off would mark the whole simulated org, which no
// production worker does. (The drain's rate came out the same either way:
// on its own the worker collects a small heap more often.)
const outboundWorkerEnv = "BENCH_OUTBOUND_WORKER"

// outboundProcess is how the bench starts its outbound worker.
type outboundProcess struct {
	Parallel int
	BulkPoll salesforce.Poll
}

// startOutboundProcess starts the worker against the database at connStr
// and the simulator org, waits until it streams the outbox, and returns a
// function that stops it (SIGTERM, then waits for it to exit).
func startOutboundProcess(ctx context.Context, pool *pgxpool.Pool, connStr string, org *sim.Server, p outboundProcess, log io.Writer) (func() error, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// Its own name, so that waiting for it never takes an earlier worker's
	// heartbeat for its own.
	id := fmt.Sprintf("bench-outbound-%d", time.Now().UnixNano())
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(),
		outboundWorkerEnv+"="+id,
		"DATABASE_URL="+connStr,
		"SALESFORCE_LOGIN_URL="+org.URL(),
		"BENCH_OUTBOUND_PARALLEL="+strconv.Itoa(p.Parallel),
		"BENCH_OUTBOUND_BULK_POLL_INITIAL="+p.BulkPoll.Initial.String(),
		"BENCH_OUTBOUND_BULK_POLL_MAX="+p.BulkPoll.Max.String(),
	)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			// Let the slot go inactive before the next run takes it.
			time.Sleep(200 * time.Millisecond)
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return errors.Join(errors.New("the outbound worker did not stop within 30s of SIGTERM"), <-done)
		}
	}
	if err := waitFor(ctx, time.Minute, "the worker streaming the outbox", func() (bool, error) {
		var mode string
		err := pool.QueryRow(ctx, `SELECT feed_mode FROM pgforce.outbound_worker WHERE worker = $1`, id).Scan(&mode)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		return mode == "logical_replication", err
	}); err != nil {
		return nil, errors.Join(err, stop())
	}
	return stop, nil
}

// simClient logs in to the simulator as its default user, as the worker
// would with the credentials `pgforce sim` prints.
func simClient(ctx context.Context, org *sim.Server) (*salesforce.Client, error) {
	return simLogin(ctx, org.URL())
}

func simLogin(ctx context.Context, loginURL string) (*salesforce.Client, error) {
	return salesforce.New(ctx, salesforce.Config{LoginURL: loginURL, ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword})
}

// runOutboundWorker is the worker process: the outbound service alone,
// with the options its parent passed, until SIGTERM.
func runOutboundWorker() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if v := os.Getenv("BENCH_WORKER_LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	stopProfile, err := profileCPU(os.Stderr, fmt.Sprintf("outbound-worker-%d", os.Getpid()))
	if err != nil {
		return err
	}
	defer stopProfile()
	// Unset or unparsable values leave the Options defaults.
	opts := outbound.Options{WorkerID: os.Getenv(outboundWorkerEnv)}
	opts.Parallel, _ = strconv.Atoi(os.Getenv("BENCH_OUTBOUND_PARALLEL"))
	opts.BulkPoll.Initial, _ = time.ParseDuration(os.Getenv("BENCH_OUTBOUND_BULK_POLL_INITIAL"))
	opts.BulkPoll.Max, _ = time.ParseDuration(os.Getenv("BENCH_OUTBOUND_BULK_POLL_MAX"))
	pool, err := worker.NewPool(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	sf, err := simLogin(ctx, os.Getenv("SALESFORCE_LOGIN_URL"))
	if err != nil {
		return err
	}
	err = outbound.New(pool, sf, logger, opts).Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
