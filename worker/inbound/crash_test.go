package inbound_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/inbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

const childEnv = "PGFORCE_INBOUND_TEST_CHILD"

// runChild is the worker process of the crash test: an inbound service
// against CHILD_DB and CHILD_SIM that runs until it is killed.
func runChild() int {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("CHILD_DB"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sf, err := salesforce.New(ctx, salesforce.Config{
		LoginURL: os.Getenv("CHILD_SIM"), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		Username: sim.DefaultUsername, Password: sim.DefaultPassword,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts := testOptions()
	opts.Owner = "child-" + fmt.Sprint(os.Getpid())
	svc, err := inbound.New(pool, sf, budget.New(sf.APIUsage, 50), quietLog(), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := svc.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func startChild(t *testing.T, e *env) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_DB="+e.db.ConnString, "CHILD_SIM="+e.sim.URL())
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func TestWorkerKilledMidStreamResumesWithoutLossOrDoubleApply(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Counter", "NumberOfEmployees": 0})
	id := e.mapping("Account", []string{"Name", "NumberOfEmployees"}, "cdc")
	child := startChild(t, e)
	e.waitState(id, "synced")
	// Every application of a change to the row is logged, so a change
	// applied twice would show up as a duplicate.
	e.exec(`CREATE TABLE applied (n integer)`)
	e.exec(`CREATE FUNCTION log_applied() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO applied VALUES (NEW.numberofemployees); RETURN NULL; END $$`)
	e.exec(`CREATE TRIGGER log_applied AFTER UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION log_applied()`)

	const total = 60
	killed := false
	for i := 1; i <= total; i++ {
		require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"NumberOfEmployees": i}))
		if i == 20 {
			// Wait until the stream is applying, then kill without warning.
			e.waitValue("account", ids[0], "numberofemployees", "20")
		}
		if i == 25 && !killed {
			require.NoError(t, child.Process.Signal(syscall.SIGKILL))
			_ = child.Wait()
			killed = true
		}
		if i == 40 {
			// Changes 26-40 happen while no worker runs.
			child = startChild(t, e)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.waitValue("account", ids[0], "numberofemployees", fmt.Sprint(total))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 0, e.count(`SELECT count(*) FROM (SELECT n FROM applied GROUP BY n HAVING count(*) > 1) d`), "no change applied twice")
	require.Equal(t, total-20, e.count(`SELECT count(DISTINCT n) FROM applied WHERE n > 20`), "every change after the trigger was created applied once")
	require.Equal(t, total-20, e.count(`SELECT count(*) FROM applied WHERE n > 20`))
}
