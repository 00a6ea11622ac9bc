package salesforce_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

// Salesforce refuses a request whose URI and headers pass 16,384 bytes
// (414 URI Too Long). A query longer than that still runs, every page of
// it, and Count too.
func TestAQueryLongerThanSalesforcesURILimitStillRuns(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 450)
	c := simtest.Client(t, s, func(cfg *salesforce.Config) { cfg.QueryBatchSize = 200 })
	names := make([]string, 1500)
	for i := range names {
		names[i] = fmt.Sprintf("'Nobody by the name %05d'", i)
	}
	where := " WHERE Name NOT IN (" + strings.Join(names, ", ") + ")"
	var got int
	err := c.Query(t.Context(), "SELECT Id, Name FROM Account"+where, func(salesforce.Record) error { got++; return nil })
	require.NoError(t, err)
	require.Equal(t, 450, got)
	n, err := c.Count(t.Context(), "SELECT COUNT() FROM Account"+where)
	require.NoError(t, err)
	require.Equal(t, 450, n)
}
