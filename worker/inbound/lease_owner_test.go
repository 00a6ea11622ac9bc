package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/inbound"
)

// Two workers whose host name and process id are the same (two containers
// given one hostname, each running pgforce as PID 1; here, two services in
// one test process) must still be two owners: each mapping is described,
// loaded and streamed by one of them only.
func TestTwoWorkersWithTheSameHostnameAndPidLoadAMappingOnce(t *testing.T) {
	e := newEnv(t)
	e.create("Account", map[string]any{"Name": "Acme"})
	for range 2 {
		opts := e.opts // Owner left to its default
		svc, err := inbound.New(e.pool, e.sf, e.b, quietLog(), opts)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	}
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.waitState(id, "synced")
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, int64(1), e.calls("GET /services/data/vXX.X/sobjects/Account/describe"), "a single worker described")
	require.Equal(t, int64(2), e.calls("GET /services/data/vXX.X/query"), "one COUNT() and one load query: a single worker loaded")
}
