package salesforce_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

// longWhere is a condition that pushes a query past the URI limit, so it goes through Composite.
func longWhere() string {
	names := make([]string, 1500)
	for i := range names {
		names[i] = fmt.Sprintf("'Nobody by the name %05d'", i)
	}
	return " WHERE Name NOT IN (" + strings.Join(names, ", ") + ")"
}

// A query refused by Salesforce is reported the same way whether it went as a GET or, being long, through
// Composite: callers test the error code (INVALID_FIELD makes inbound describe the mapping again).
func TestALongQueryIsRefusedWithTheSameErrorAsAShortOne(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	noop := func(salesforce.Record) error { return nil }
	short := c.Query(t.Context(), "SELECT Id, Bogus__c FROM Account", noop)
	long := c.Query(t.Context(), "SELECT Id, Bogus__c FROM Account"+longWhere(), noop)
	var a, b *salesforce.APIError
	require.True(t, errors.As(short, &a), "%v", short)
	require.True(t, errors.As(long, &b), "%v", long)
	require.Equal(t, "INVALID_FIELD", b.ErrorCode)
	require.Equal(t, a.ErrorCode, b.ErrorCode)
	require.Equal(t, a.HTTPStatus, b.HTTPStatus)
	require.Equal(t, a.Method, b.Method)
	require.Equal(t, a.Path, b.Path)
	require.False(t, salesforce.IsTransient(long))
}

// An expired session is renewed for a long query as for a short one.
func TestALongQueryRenewsAnExpiredSession(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 3)
	c := simtest.Client(t, s)
	s.ExpireSessions()
	var got int
	require.NoError(t, c.Query(t.Context(), "SELECT Id FROM Account"+longWhere(), func(salesforce.Record) error { got++; return nil }))
	require.Equal(t, 3, got)
}

// The configured query batch size applies to a long query's pages as to a short one's: the first page,
// asked through Composite, must carry Sforce-Query-Options too.
func TestALongQueryUsesTheConfiguredBatchSize(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 450)
	c := simtest.Client(t, s, func(cfg *salesforce.Config) { cfg.QueryBatchSize = 200 })
	s.ResetCalls()
	require.NoError(t, c.Query(t.Context(), "SELECT Id FROM Account"+longWhere(), func(salesforce.Record) error { return nil }))
	require.Equal(t, int64(2), callsMatching(s, "GET", "/query/"), "pages after the first: %v", s.Calls())
}
