// Package txretry runs worker transactions again when they lost a lock
// conflict, and bounds how long they wait for locks other sessions hold.
package txretry

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// LockTimeout is the lock_timeout of worker transactions that write many
// rows of mapped tables, set with set_config('lock_timeout', LockTimeout,
// true).
//
// The application locks those rows in whatever order its statements visit
// them (an UPDATE of many rows, in the table's physical order); the worker
// locks them by id. When each waits for a row the other holds, Postgres
// aborts the transaction of whichever session checks first, after
// deadlock_timeout (1 s by default), and that was as often the
// application's statement as the worker's. Waiting at most this long, the
// worker gives its locks back first and runs its transaction again later
// (Run), so the application's statements do not fail because of it. The
// price falls on the worker: a wait for any lock longer than this, the
// application's or another worker transaction's, costs it a retry.
const LockTimeout = "100ms"

// MaxAborted bounds how often Run runs again a transaction that Postgres
// aborted (Aborted): the other party has gone through by then.
const MaxAborted = 5

// Aborted reports whether Postgres aborted a transaction only to break a
// deadlock (40P01) or a serialization conflict (40001): running it again
// is the remedy.
func Aborted(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// GaveWay reports whether a transaction gave up waiting for a lock after
// LockTimeout (55P03, lock_not_available). The other session holds it for
// as long as its transaction runs, so Run tries again after a pause, for
// as long as it takes.
func GaveWay(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// Pause is how long to wait before the given attempt (from 1) to run a
// transaction again: 10 ms, 40 ms, 90 ms... up to a second, since the
// other session's transaction may be a long one.
func Pause(attempt int) time.Duration {
	return min(time.Duration(attempt*attempt)*10*time.Millisecond, time.Second)
}

// Run runs the transaction tx until it commits or fails for a reason other
// than a lost lock conflict, and returns its last error. One that gave way
// (GaveWay) runs again after Pause for as long as stop allows; one that
// Postgres aborted (Aborted) runs again at most MaxAborted times. Pauses
// are jittered so that two workers that collided do not collide again.
// Retries are logged as what, with attrs: an abort each time, giving way
// when the wait begins and every 60th attempt after (a long application
// transaction would otherwise log a line a second).
func Run(stop context.Context, log *slog.Logger, what string, tx func() error, attrs ...any) error {
	gaveWay, aborted := 0, 0
	for {
		err := tx()
		var d time.Duration
		switch {
		case err == nil:
			return nil
		case GaveWay(err):
			gaveWay++
			d = Pause(gaveWay)
			if gaveWay == 1 || gaveWay%60 == 0 {
				log.Info(what+" waited too long for a lock another session holds; running it again",
					append(attrs, "attempt", gaveWay, "err", err)...)
			}
		case Aborted(err) && aborted < MaxAborted:
			aborted++
			d = Pause(aborted)
			log.Info(what+" was aborted by Postgres to break a lock conflict; running it again",
				append(attrs, "attempt", aborted, "err", err)...)
		default:
			return err
		}
		select {
		case <-stop.Done():
			return err
		case <-time.After(d + rand.N(d)):
		}
	}
}
