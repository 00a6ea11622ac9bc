package txretry_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/txretry"
)

func TestOnlyDeadlocksAndSerializationFailuresCountAsAborted(t *testing.T) {
	wrap := func(code string) error { return fmt.Errorf("write back: %w", &pgconn.PgError{Code: code}) }
	require.True(t, txretry.Aborted(wrap("40P01")))
	require.True(t, txretry.Aborted(wrap("40001")))
	require.False(t, txretry.Aborted(wrap("55P03")), "a lock timeout is giving way, not an abort")
	require.False(t, txretry.Aborted(wrap("23505")))
	require.False(t, txretry.Aborted(errors.New("connection reset")))
}

func TestALockTimeoutIsGivingWay(t *testing.T) {
	require.True(t, txretry.GaveWay(fmt.Errorf("lock rows: %w", &pgconn.PgError{Code: "55P03"})))
	require.False(t, txretry.GaveWay(&pgconn.PgError{Code: "40P01"}))
	require.False(t, txretry.GaveWay(errors.New("timeout")))
}

func TestPausesGrowToASecondAndStayThere(t *testing.T) {
	require.Equal(t, 10*time.Millisecond, txretry.Pause(1))
	require.Equal(t, 90*time.Millisecond, txretry.Pause(3))
	require.Equal(t, time.Second, txretry.Pause(10))
	require.Equal(t, time.Second, txretry.Pause(1000))
}
