package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// simClient logs in to the simulator as its default user, as the worker
// would with the credentials `pgforce sim` prints.
func simClient(ctx context.Context, org *sim.Server) (*salesforce.Client, error) {
	return salesforce.New(ctx, salesforce.Config{LoginURL: org.URL(), ClientID: sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret, Username: sim.DefaultUsername, Password: sim.DefaultPassword})
}

// startOutbound runs an outbound worker in this process, logging warnings
// (or BENCH_WORKER_LOG_LEVEL) to log, and returns it with a function that
// stops it.
func startOutbound(pool *pgxpool.Pool, sf *salesforce.Client, opts outbound.Options, log io.Writer) (*outbound.Service, func()) {
	level := slog.LevelWarn
	if v := os.Getenv("BENCH_WORKER_LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: level}))
	svc := outbound.New(pool, sf, logger, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	return svc, func() {
		cancel()
		<-done
		// Let the slot go inactive before the next run takes it.
		time.Sleep(200 * time.Millisecond)
	}
}
