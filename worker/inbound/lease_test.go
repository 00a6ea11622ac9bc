package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/inbound"
)

func TestTwoWorkersLoadAMappingOnceAndTheSurvivorTakesOver(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	start := func(owner string) (stop func()) {
		opts := e.opts
		opts.Owner = owner
		svc, err := inbound.New(e.pool, e.sf, e.b, quietLog(), opts)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		stopped := false
		stop = func() {
			if !stopped {
				stopped = true
				cancel()
				require.NoError(t, <-done)
			}
		}
		t.Cleanup(stop)
		return stop
	}
	stopA := start("worker-a")
	stopB := start("worker-b")
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.waitState(id, "synced")
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, int64(2), e.calls("GET /services/data/vXX.X/query"), "one COUNT() and one load query: a single worker loaded")
	require.Equal(t, int64(1), e.calls("GET /services/data/vXX.X/sobjects/Account/describe"), "a single worker described")

	var owner string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT inbound_owner FROM pgforce.mapping WHERE id = $1`, id).Scan(&owner))
	if owner == "worker-a" {
		stopA()
	} else {
		stopB()
	}
	e.eventually(10*time.Second, func() (bool, string) {
		var now string
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT coalesce(inbound_owner, '') FROM pgforce.mapping WHERE id = $1`, id).Scan(&now))
		return now != "" && now != owner, "owner " + now
	})
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "after handover"}))
	e.waitValue("account", ids[0], "name", "after handover")
}
