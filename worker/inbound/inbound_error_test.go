package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An inbound error is resolved once the worker sees its record go through
// whole (README: an error "ends resolved (the worker saw the record go
// through...)"): after the user fixes the cause, the record's next poll,
// or a reload, stores it, and the error must not stay open in
// pgforce.status for ever. (A later change event carries only the fields
// it changed, not the refused value: that error rightly stays open.)
func TestAnInboundErrorIsResolvedWhenAPollOrReloadStoresItsRecord(t *testing.T) {
	for _, how := range []string{"poll", "reload"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			mode := how
			if how == "reload" {
				mode = "cdc"
			}
			sfid, id, errID := e.refusedEmployeeCount(mode)
			// The user fixes the cause; the record then goes through.
			e.exec(`ALTER TABLE salesforce.account DROP CONSTRAINT positive_staff`)
			if how == "reload" {
				e.exec(`SELECT pgforce.reload($1::integer)`, id)
				e.waitValue("account", sfid, "numberofemployees", "-1")
			} else {
				require.NoError(t, e.sim.UIEdit(context.Background(), "Account", sfid, map[string]any{"Name": "Acme 2"}))
				e.waitValue("account", sfid, "name", "Acme 2")
			}
			e.waitState(id, "synced")
			e.eventually(5*time.Second, func() (bool, string) {
				var state string
				require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT state FROM pgforce.error WHERE id = $1`, errID).Scan(&state))
				n := e.count(`SELECT open_errors FROM pgforce.status WHERE mapping_id = $1`, id)
				return state == "resolved" && n == 0, fmt.Sprintf("error %s, status open_errors %d", state, n)
			})
		})
	}
}

// A later change event carries only the fields it changed: the refused
// value is still not in the row, so the error stays open for the retry.
func TestAnInboundErrorStaysOpenWhenALaterPartialChangeEventApplies(t *testing.T) {
	e := newEnv(t)
	sfid, _, errID := e.refusedEmployeeCount("cdc")
	e.exec(`ALTER TABLE salesforce.account DROP CONSTRAINT positive_staff`)
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", sfid, map[string]any{"Name": "Acme 2"}))
	e.waitValue("account", sfid, "name", "Acme 2")
	var state string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT state FROM pgforce.error WHERE id = $1`, errID).Scan(&state))
	require.Equal(t, "open", state)
}

// pgforce.ignore of an inbound error whose retry is still queued (its
// mapping paused, say) gives up on it: the queued re-read must not bring
// the same failure back as a new open error.
func TestAnInboundErrorIgnoredWhileItsRetryWaitsDoesNotComeBack(t *testing.T) {
	e := newEnv(t)
	_, id, errID := e.refusedEmployeeCount("cdc")
	e.exec(`SELECT pgforce.pause($1::integer)`, id)
	e.waitState(id, "paused")
	e.exec(`SELECT pgforce.retry($1)`, errID)
	e.exec(`SELECT pgforce.ignore($1)`, errID)
	e.exec(`SELECT pgforce.resume($1::integer)`, id)
	e.waitState(id, "synced")
	time.Sleep(2 * time.Second)
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.inbound_reread`), "the re-read ran or was dropped")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.error WHERE state = 'open'`), "no open error after the user ignored it")
}
