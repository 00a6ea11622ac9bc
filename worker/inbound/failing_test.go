package inbound_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// failing reads what pgforce.status says of a mapping's retried failure:
// since when ("" while none), and the failure.
func (e *env) failing(id int) (since, failure string) {
	e.t.Helper()
	require.NoError(e.t, e.pool.QueryRow(context.Background(),
		`SELECT coalesce(failing_since::text, ''), coalesce(failure, '') FROM pgforce.status WHERE mapping_id = $1`, id).Scan(&since, &failure))
	return since, failure
}

// A change event the table cannot take stops the stream, which the worker
// starts again and again while the mapping stays 'synced' (nothing for the
// user to resume). pgforce.status says since when it fails and why, keeping
// the first failure's time across the retries, until the change goes in.
func TestStatusSaysSinceWhenAndWhyAStreamFailsUntilItWorksAgain(t *testing.T) {
	e := newEnv(t)
	sfid := e.create("Account", map[string]any{"Name": "Audited"})[0]
	id := e.mapSynced("Account", []string{"Name", "Phone"}, "cdc")
	since, failure := e.failing(id)
	require.Empty(t, since, "a mapping that syncs shows no failure: %s", failure)
	e.exec(`CREATE FUNCTION public.audit_account() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO public.account_audit (sfid) VALUES (NEW.sfid); RETURN NULL; END $$`)
	e.exec(`CREATE TRIGGER audit AFTER UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.audit_account()`)
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", sfid, map[string]any{"Phone": "555-0100"}))

	const why = `relation "public.account_audit" does not exist`
	var first string
	e.eventually(15*time.Second, func() (bool, string) {
		first, failure = e.failing(id)
		return first != "" && strings.HasPrefix(failure, "inbound: ") && strings.Contains(failure, why), "status: " + failure
	})
	st, _ := e.state(id)
	require.Equal(t, "synced", st)
	e.eventually(15*time.Second, func() (bool, string) {
		var attempts int
		require.NoError(t, e.pool.QueryRow(context.Background(),
			`SELECT attempts FROM pgforce.sync_failure WHERE mapping_id = $1 AND direction = 'inbound'`, id).Scan(&attempts))
		return attempts >= 3, fmt.Sprintf("%d attempts", attempts)
	})
	since, _ = e.failing(id)
	require.Equal(t, first, since, "since is the first failure's time")

	e.exec(`CREATE TABLE public.account_audit (sfid text)`)
	e.waitValue("account", sfid, "phone", "555-0100")
	e.eventually(10*time.Second, func() (bool, string) {
		since, failure = e.failing(id)
		return since == "", "still failing: " + failure
	})
}

// A poll that fails for a passing reason is tried again at the next
// interval; meanwhile pgforce.status says so, until a poll works.
func TestStatusSaysAPolledMappingFailsWhileItsPollsFail(t *testing.T) {
	e := newEnv(t)
	id := e.mapSynced("Account", []string{"Name"}, "poll")
	e.sim.Inject(sim.Fault{Path: "/services/data/v62.0/query", Method: "GET", Status: 503})
	e.eventually(15*time.Second, func() (bool, string) {
		since, failure := e.failing(id)
		return since != "" && strings.Contains(failure, "poll failed") && strings.Contains(failure, "SERVER_UNAVAILABLE"), "status: " + failure
	})
	e.sim.ClearFaults()
	sfid := e.create("Account", map[string]any{"Name": "After"})[0]
	e.waitValue("account", sfid, "name", "After")
	e.eventually(10*time.Second, func() (bool, string) {
		since, failure := e.failing(id)
		return since == "", "still failing: " + failure
	})
}
