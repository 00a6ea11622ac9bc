package inbound_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/pgtest"
	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// wideFields names n custom fields with API names of a realistic length
// (the limit is 40 characters before __c).
func wideFields(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("Quarterly_Revenue_Forecast_Value_%03d__c", i)
	}
	return out
}

// newWideEnv is newEnv with a custom object of n text fields.
func newWideEnv(t *testing.T, n int) *env {
	t.Helper()
	defs := make([]sim.FieldDef, n)
	for i, name := range wideFields(n) {
		defs[i] = sim.FieldDef{Name: name, Type: "string", Length: 20}
	}
	schema := &sim.Schema{Objects: []sim.ObjectDef{{Name: "Wide__c", Fields: defs}}}
	return newEnvWith(t, sim.Config{Schema: schema})
}

// newEnvWith is newEnv with a simulator configured by cfg.
func newEnvWith(t *testing.T, cfg sim.Config) *env {
	t.Helper()
	db := pgtest.NewDB(t)
	pool, err := pgxpool.New(context.Background(), db.ConnString)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	sctx, cancel := context.WithCancel(context.Background())
	s, err := sim.Start(sctx, "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); s.Close() })
	sf, err := salesforce.New(t.Context(), salesforce.Config{
		LoginURL: s.URL(), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		Username: sim.DefaultUsername, Password: sim.DefaultPassword,
	})
	require.NoError(t, err)
	b := budget.New(sf.APIUsage, 50)
	return &env{t: t, db: db, pool: pool, sim: s, sf: sf, b: b, opts: testOptions()}
}

// A mapping of a few hundred fields (a wide object replicated whole)
// makes a SELECT longer than the 16,384 bytes Salesforce takes in a
// request's URI and headers. Sent as the q parameter of a GET, the load,
// every poll and every resync were refused with 414 URI Too Long, and the
// mapping never synced.
func TestAMappingOfManyFieldsLoadsAndPollsDespiteSalesforcesURILimit(t *testing.T) {
	const n = 450
	e := newWideEnv(t, n)
	e.opts.BulkThreshold = 1000
	fields := wideFields(n)
	rec := map[string]any{"Name": "Wide 1"}
	for i, f := range fields {
		rec[f] = fmt.Sprintf("v%d", i)
	}
	ids := e.create("Wide__c", rec)
	id := e.mapSynced("Wide__c", fields, "poll")
	require.Equal(t, "v449", e.value("wide__c", ids[0], "quarterly_revenue_forecast_value_449__c"))

	// A change is picked up by the next poll, which reads with the same SELECT.
	_, err := e.sf.Update(context.Background(), []salesforce.Record{salesforce.NewRecord("Wide__c", map[string]any{"Id": ids[0], fields[3]: "changed"})})
	require.NoError(t, err)
	e.waitValue("wide__c", ids[0], "quarterly_revenue_forecast_value_003__c", "changed")
	st, _ := e.state(id)
	require.Equal(t, "synced", st)
}
