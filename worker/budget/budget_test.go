package budget

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

func TestLoadsStopBeforePollsAndPollsBeforeWrites(t *testing.T) {
	used := 0
	b := New(func() (int, int) { return used, 1000 }, 50) // pgforce may use 500 calls
	used = 399
	require.NoError(t, b.Check(Load))
	used = 400 // 80% of 500
	require.Error(t, b.Check(Load))
	require.NoError(t, b.Check(Poll))
	used = 450 // 90% of 500
	require.Error(t, b.Check(Poll))
	require.NoError(t, b.Check(Write))
	used = 500
	var ex *Exhausted
	require.ErrorAs(t, b.Check(Write), &ex)
	require.Contains(t, ex.Error(), "500 of 1000")
	require.False(t, ex.Refused, "pgforce's own budget holds the work: api_budget_pct can change it")
}

func TestUnknownUsageAllowsEverything(t *testing.T) {
	b := New(func() (int, int) { return 0, 0 }, 1)
	require.NoError(t, b.Check(Load))
}

func TestRequestLimitExceededBlocksAllWorkAndBackoffDoubles(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(func() (int, int) { return 0, 1000 }, 100)
	b.now = func() time.Time { return now }
	limit := &salesforce.APIError{HTTPStatus: 403, ErrorCode: salesforce.CodeRequestLimitExceeded, Message: "TotalRequests Limit exceeded."}
	require.True(t, b.Observe(limit))
	var ex *Exhausted
	require.ErrorAs(t, b.Check(Write), &ex, "even writes wait after a refusal")
	require.True(t, ex.Refused, "Salesforce's allocation holds the work, not api_budget_pct")
	now = now.Add(31 * time.Second)
	require.NoError(t, b.Check(Write))
	require.True(t, b.Observe(limit))
	now = now.Add(31 * time.Second)
	require.Error(t, b.Check(Write), "the second refusal in a row waits longer")
	now = now.Add(30 * time.Second)
	require.NoError(t, b.Check(Write))
	require.False(t, b.Observe(errors.New("other")), "other errors are not refusals")
}

func TestWaitProbesUsageUntilItDrops(t *testing.T) {
	used := 1000
	b := New(func() (int, int) { return used, 1000 }, 50)
	probes := 0
	b.SetProbe(func(context.Context) error { probes++; used = 10; return nil }, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, b.Wait(ctx, Load))
	require.Equal(t, 1, probes)
}
