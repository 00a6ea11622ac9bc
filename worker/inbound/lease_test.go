package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/inbound"
)

func TestTwoWorkersLoadAMappingOnceAndTheSurvivorTakesOver(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	start := func(owner string) (stop func()) {
		opts := e.opts
		opts.Owner = owner
		svc, err := inbound.New(e.pool, e.sf, e.b, quietLog(), opts)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		stopped := false
		stop = func() {
			if !stopped {
				stopped = true
				cancel()
				require.NoError(t, <-done)
			}
		}
		t.Cleanup(stop)
		return stop
	}
	stopA := start("worker-a")
	stopB := start("worker-b")
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.waitState(id, "synced")
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, int64(2), e.calls("GET /services/data/vXX.X/query"), "one COUNT() and one load query: a single worker loaded")
	require.Equal(t, int64(1), e.calls("GET /services/data/vXX.X/sobjects/Account/describe"), "a single worker described")

	var owner string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT inbound_owner FROM pgforce.mapping WHERE id = $1`, id).Scan(&owner))
	if owner == "worker-a" {
		stopA()
	} else {
		stopB()
	}
	e.eventually(10*time.Second, func() (bool, string) {
		var now string
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT coalesce(inbound_owner, '') FROM pgforce.mapping WHERE id = $1`, id).Scan(&now))
		return now != "" && now != owner, "owner " + now
	})
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "after handover"}))
	e.waitValue("account", ids[0], "name", "after handover")
}

// A worker serves one org: with a worker for each of two orgs in one
// database, each org's mappings are claimed, described and loaded by that
// org's worker only.
func TestEachOrgsMappingsAreTakenOnlyByThatOrgsWorker(t *testing.T) {
	e := newEnv(t)
	e.create("Account", map[string]any{"Name": "Acme"})
	e.exec(`INSERT INTO pgforce.org (name, schema_name) VALUES ('sandbox', 'sandbox')`)
	orgOf := map[int]string{}
	for _, org := range []string{"default", "sandbox"} {
		for _, sobject := range []string{"Account", "Contact", "Lead", "Gadget__c"} {
			var id int
			require.NoError(t, e.pool.QueryRow(context.Background(),
				`INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ($1, $2, '{Id}') RETURNING id`, org, sobject).Scan(&id))
			orgOf[id] = org
		}
	}
	// Every owner a mapping ever has, not only the last.
	e.exec(`CREATE TABLE public.owners (mapping_id integer, owner text);
		CREATE FUNCTION public.note_owner() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO public.owners VALUES (NEW.id, NEW.inbound_owner); RETURN NULL; END $$;
		CREATE TRIGGER note_owner AFTER UPDATE OF inbound_owner ON pgforce.mapping
			FOR EACH ROW WHEN (NEW.inbound_owner IS NOT NULL) EXECUTE FUNCTION public.note_owner()`)
	for _, org := range []string{"default", "sandbox"} {
		opts := e.opts
		opts.Org, opts.Owner = org, org+"-worker"
		svc, err := inbound.New(e.pool, e.sf, e.b, quietLog(), opts)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	for id := range orgOf {
		e.waitState(id, "synced")
	}
	rows, err := e.pool.Query(context.Background(), `SELECT DISTINCT mapping_id, owner FROM public.owners`)
	require.NoError(t, err)
	claims := 0
	for rows.Next() {
		var id int
		var owner string
		require.NoError(t, rows.Scan(&id, &owner))
		require.Equal(t, orgOf[id]+"-worker", owner, "mapping %d of org %s", id, orgOf[id])
		claims++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(orgOf), claims, "each mapping claimed, each by one worker")
}
