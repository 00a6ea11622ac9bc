package salesforce_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

func TestRefreshTokenFlowLogsInAndRefreshesAgainAfterExpiry(t *testing.T) {
	s := simtest.Start(t)
	// Salesforce issues refresh tokens through the web-server flow, which a
	// worker never runs; the simulator hands one out as the user would get it
	// (the password grant issues none).
	first := simtest.Client(t, s)
	tok, err := first.TokenSource().Token(t.Context())
	require.NoError(t, err)
	require.Empty(t, tok.RefreshToken, "the password flow issues no refresh token")

	c, err := salesforce.New(t.Context(), salesforce.Config{
		LoginURL: s.URL(), ClientID: "pgforce-sim", ClientSecret: "pgforce-sim-secret", RefreshToken: s.IssueRefreshToken(),
	})
	require.NoError(t, err)
	require.Equal(t, salesforce.GrantRefreshToken, c.TokenSource().Grant())
	s.ExpireSessions()
	_, err = c.Limits(t.Context())
	require.NoError(t, err)

	_, err = salesforce.New(t.Context(), salesforce.Config{LoginURL: s.URL(), ClientID: "pgforce-sim", RefreshToken: "not-a-token"})
	var oe *salesforce.OAuthError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "invalid_grant", oe.Code)
}

func TestConcurrentCallsAfterSessionExpiryShareOneTokenRefresh(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	s.ExpireSessions()
	s.ResetCalls()

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.Limits(t.Context()) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, callsMatching(s, "POST", "/services/oauth2/token"), "one refresh for all callers: %v", s.Calls())
}

func TestQueryRefreshesTheTokenBetweenPages(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 450)
	c := simtest.Client(t, s, func(cfg *salesforce.Config) { cfg.QueryBatchSize = 200 })
	n := 0
	err := c.Query(t.Context(), "SELECT Id FROM Account", func(salesforce.Record) error {
		n++
		if n == 1 {
			s.ExpireSessions() // the next page's request meets an expired session
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 450, n)
}

func TestBulkUploadIsReplayedAfterSessionExpiry(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	job, err := c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "insert"})
	require.NoError(t, err)
	s.ExpireSessions()

	writes := 0
	require.NoError(t, c.UploadIngestData(ctx, job.ID, []string{"Name"}, func(w *salesforce.CSVWriter) error {
		writes++
		for _, name := range []string{"r1", "r2", "r3"} {
			if err := w.Write(name); err != nil {
				return err
			}
		}
		return nil
	}))
	require.Equal(t, 2, writes, "the refused upload is written again after the refresh")
	_, err = c.CloseIngestJob(ctx, job.ID)
	require.NoError(t, err)
	done, err := c.WaitIngestJob(ctx, job.ID, fastPoll)
	require.NoError(t, err)
	require.EqualValues(t, 3, done.NumberRecordsProcessed, "the replay did not duplicate rows")
}

func TestQueryAllFollowsPagesIncludingDeletedRows(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 300)
	c := simtest.Client(t, s, func(cfg *salesforce.Config) { cfg.QueryBatchSize = 200 })
	var ids []string
	require.NoError(t, c.Query(t.Context(), "SELECT Id FROM Account LIMIT 250", func(r salesforce.Record) error {
		ids = append(ids, r.ID())
		return nil
	}))
	res, err := c.Delete(t.Context(), ids)
	require.NoError(t, err)
	require.Len(t, res, 250)

	deleted := 0
	total := 0
	require.NoError(t, c.QueryAll(t.Context(), "SELECT Id, IsDeleted FROM Account", func(r salesforce.Record) error {
		total++
		if r.Fields["IsDeleted"] == true {
			deleted++
		}
		return nil
	}))
	require.Equal(t, 300, total)
	require.Equal(t, 250, deleted)
}
