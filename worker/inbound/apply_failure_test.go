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

// The application renamed a mapped column while a record waits to be read
// again (pgforce.retry of its error queued the read), either for the API
// budget or for Salesforce's answer. The next change event cannot be
// applied, which stops the re-read too: the mapping must say why (the
// missing column), not that the re-read was cancelled ("context
// canceled"), which sent the operator looking at Salesforce.
func TestAChangeEventThatFailsWhileARecordIsReadAgainIsReportedWithItsOwnError(t *testing.T) {
	const budget = "waiting for the API budget"
	for _, how := range []string{budget, "waiting for Salesforce"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			sfid, id, errID := e.refusedEmployeeCount("cdc")
			other := e.create("Account", map[string]any{"Name": "Other"})[0]
			e.waitValue("account", other, "name", "Other")
			e.exec(`ALTER TABLE salesforce.account DROP CONSTRAINT positive_staff`)
			// The stream is slow to close, so that the re-read stops first.
			e.sim.Inject(sim.Fault{Path: "/cometd/", Method: "POST", Latency: 300 * time.Millisecond})
			if how == budget {
				// pgforce may use 50% of 100,000: re-reads, as polls, stop at 45,000.
				e.sim.SetAPIUsage(46000)
				_, err := e.sf.Limits(context.Background())
				require.NoError(t, err)
			} else {
				e.sim.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects/Account", Method: "POST", Latency: 3 * time.Second})
			}
			e.exec(`SELECT pgforce.retry($1)`, errID)
			e.eventually(15*time.Second, func() (bool, string) {
				_, detail := e.state(id)
				if how == budget {
					return strings.Contains(detail, "API budget"), "the re-read does not wait for the budget: " + detail
				}
				return e.calls("POST /services/data/vXX.X/composite/sobjects/Account") > 0, "the record is not being read again"
			})
			e.exec(`ALTER TABLE salesforce.account RENAME COLUMN name TO account_name`)
			require.NoError(t, e.sim.UIEdit(context.Background(), "Account", other, map[string]any{"Name": "Renamed"}))
			e.eventually(15*time.Second, func() (bool, string) {
				st, detail := e.state(id)
				require.NotContains(t, detail, "context canceled", "state %s: the mapping says why it stopped", st)
				require.NotContains(t, detail, "re-read", "state %s: the re-read did not fail", st)
				return strings.Contains(detail, `"name"`) && strings.Contains(detail, "does not exist"), fmt.Sprintf("state %s (%s)", st, detail)
			})
			// Fixed, both the change and the re-read go through.
			e.exec(`ALTER TABLE salesforce.account RENAME COLUMN account_name TO name`)
			e.sim.ClearFaults()
			e.sim.SetAPIUsage(100)
			e.waitValue("account", other, "name", "Renamed")
			e.waitValue("account", sfid, "numberofemployees", "-1")
		})
	}
}

// A change event that cannot be applied (an audit trigger of the
// application's fails on every update: its table is gone) arrives while the
// initial load of a large object reads it. The load's own writes (inserts)
// work, so it must finish rather than be thrown away and started over,
// which here could never finish; state_detail says at once why changes
// stopped coming in, and keeps saying so once the table is loaded. Fixed,
// the change is applied.
func TestALoadFinishesWhenAChangeEventBesideItCannotBeApplied(t *testing.T) {
	e := newEnv(t)
	// Three pages: the later ones come slowly.
	first, err := e.sim.Seed(context.Background(), "Account", 4500, func(i int) map[string]any { return map[string]any{"Name": fmt.Sprint("A", i)} })
	require.NoError(t, err)
	e.sim.Inject(sim.Fault{Path: "/services/data/v62.0/query/", Method: "GET", Latency: time.Second})
	id := e.mapping("Account", []string{"Name", "Phone"}, "cdc")
	e.start()
	e.eventually(20*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM pg_tables WHERE schemaname = 'salesforce' AND tablename = 'account'`) == 1 &&
			e.count(`SELECT count(*) FROM salesforce.account WHERE sfid = $1`, first) == 1, "the first page is not loaded yet"
	})
	e.exec(`CREATE FUNCTION public.audit_account() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO public.account_audit (sfid) VALUES (NEW.sfid); RETURN NULL; END $$`)
	e.exec(`CREATE TRIGGER audit AFTER UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.audit_account()`)
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", first, map[string]any{"Phone": "555-0100"}))

	const why = `relation "public.account_audit" does not exist`
	e.eventually(10*time.Second, func() (bool, string) {
		st, detail := e.state(id)
		return st == "loading" && strings.Contains(detail, why), fmt.Sprintf("state %s (%s)", st, detail)
	})
	st, detail := e.state(id)
	t.Logf("during the load: state %s (%s)", st, detail)
	e.waitState(id, "synced")
	require.Equal(t, 4500, e.count(`SELECT count(*) FROM salesforce.account`))
	e.sim.ClearFaults()
	e.eventually(10*time.Second, func() (bool, string) {
		st, detail := e.state(id)
		return st == "synced" && strings.Contains(detail, "retrying after error") && strings.Contains(detail, why), fmt.Sprintf("state %s (%s)", st, detail)
	})
	st, detail = e.state(id)
	t.Logf("after the load: state %s (%s)", st, detail)
	require.Equal(t, "<null>", e.value("account", first, "phone"))

	e.exec(`CREATE TABLE public.account_audit (sfid text)`)
	e.waitValue("account", first, "phone", "555-0100")
	e.waitState(id, "synced")
}
