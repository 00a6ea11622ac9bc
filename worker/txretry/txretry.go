// Package txretry decides which failed worker transactions are simply run
// again, and bounds how long they wait for the application's row locks.
package txretry

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// LockTimeout is the lock_timeout of worker transactions that lock rows of
// mapped tables, set with set_config('lock_timeout', LockTimeout, true).
//
// The application locks those rows in whatever order its statements visit
// them (an UPDATE of many rows, in the table's physical order); the worker
// locks them by id. When each waits for a row the other holds, Postgres
// aborts the transaction of whichever session checks first, after
// deadlock_timeout (1 s by default), and that was as often the
// application's statement as the worker's. Waiting at most this long, the
// worker gives its locks back first and runs its transaction again later,
// so the sync never makes the application's own statements fail. A wait
// for a lock nobody else is waiting on costs a retry, no more.
const LockTimeout = "100ms"

// Aborted reports whether Postgres aborted a transaction only to break a
// deadlock (40P01) or a serialization conflict (40001): running it again
// is the remedy.
func Aborted(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// GaveWay reports whether a transaction gave up waiting for a lock after
// LockTimeout (55P03, lock_not_available). The application holds the lock,
// for as long as its transaction runs, so the caller runs the transaction
// again after a pause, for as long as it takes.
func GaveWay(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// Pause is how long to wait before the given attempt (from 1) to run
// again a transaction that gave way: 10 ms, 40 ms, 90 ms... up to a
// second, since the application's transaction may be a long one.
func Pause(attempt int) time.Duration {
	return min(time.Duration(attempt*attempt)*10*time.Millisecond, time.Second)
}
