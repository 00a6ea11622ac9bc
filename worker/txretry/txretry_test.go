package txretry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/txretry"
)

func pgErr(code string) error { return fmt.Errorf("write back: %w", &pgconn.PgError{Code: code}) }

func TestOnlyDeadlocksAndSerializationFailuresCountAsAborted(t *testing.T) {
	require.True(t, txretry.Aborted(pgErr("40P01")))
	require.True(t, txretry.Aborted(pgErr("40001")))
	require.False(t, txretry.Aborted(pgErr("55P03")), "a lock timeout is giving way, not an abort")
	require.False(t, txretry.Aborted(pgErr("23505")))
	require.False(t, txretry.Aborted(errors.New("connection reset")))
}

func TestALockTimeoutIsGivingWay(t *testing.T) {
	require.True(t, txretry.GaveWay(pgErr("55P03")))
	require.False(t, txretry.GaveWay(&pgconn.PgError{Code: "40P01"}))
	require.False(t, txretry.GaveWay(errors.New("timeout")))
}

func TestPausesGrowToASecondAndStayThere(t *testing.T) {
	require.Equal(t, 10*time.Millisecond, txretry.Pause(1))
	require.Equal(t, 90*time.Millisecond, txretry.Pause(3))
	require.Equal(t, time.Second, txretry.Pause(10))
	require.Equal(t, time.Second, txretry.Pause(1000))
}

// runs returns a transaction that fails with errs in turn, then commits,
// and the number of times it ran.
func runs(errs ...error) (func() error, *int) {
	n := 0
	return func() error {
		n++
		if n <= len(errs) {
			return errs[n-1]
		}
		return nil
	}, &n
}

func TestRunRunsATransactionThatGaveWayUntilItCommitsAndLogsTheWaitOnce(t *testing.T) {
	var logs bytes.Buffer
	tx, n := runs(pgErr("55P03"), pgErr("55P03"), pgErr("55P03"))
	require.NoError(t, txretry.Run(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)), "test: batch", tx, "mapping", 7))
	require.Equal(t, 4, *n)
	require.Equal(t, 1, strings.Count(logs.String(), "test: batch waited too long for a lock another session holds"), logs.String())
	require.Contains(t, logs.String(), "mapping=7")
}

func TestRunGivesUpOnAbortsAfterMaxAbortedRetries(t *testing.T) {
	errs := make([]error, txretry.MaxAborted+1)
	for i := range errs {
		errs[i] = pgErr("40P01")
	}
	tx, n := runs(errs...)
	err := txretry.Run(context.Background(), slog.New(slog.DiscardHandler), "test", tx)
	require.True(t, txretry.Aborted(err))
	require.Equal(t, txretry.MaxAborted+1, *n)
}

func TestRunReturnsOtherErrorsAtOnce(t *testing.T) {
	tx, n := runs(pgErr("23505"))
	require.Error(t, txretry.Run(context.Background(), slog.New(slog.DiscardHandler), "test", tx))
	require.Equal(t, 1, *n)
}

func TestRunStopsWaitingWhenStopEnds(t *testing.T) {
	stop, cancel := context.WithCancel(context.Background())
	cancel()
	tx, n := runs(pgErr("55P03"), pgErr("55P03"))
	err := txretry.Run(stop, slog.New(slog.DiscardHandler), "test", tx)
	require.True(t, txretry.GaveWay(err))
	require.Equal(t, 1, *n)
}
