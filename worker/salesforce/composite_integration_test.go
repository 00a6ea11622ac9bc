package salesforce_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

func TestCompositeCreatesAChildWithItsNewParentsID(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	res, err := c.Composite(t.Context(), true, []salesforce.CompositeSubrequest{
		{Method: "POST", URL: "/sobjects/Account", ReferenceID: "acct", Body: map[string]any{"Name": "Parent"}},
		{Method: "POST", URL: "/sobjects/Contact", ReferenceID: "ct", Body: map[string]any{"LastName": "Child", "AccountId": "@{acct.id}"}},
	})
	require.NoError(t, err)
	require.Len(t, res, 2)
	for _, r := range res {
		require.NoError(t, r.Err())
		require.Equal(t, 201, r.HTTPStatusCode)
	}
	got, err := c.Retrieve(t.Context(), "Contact", []string{res[1].ID()}, []string{"AccountId"})
	require.NoError(t, err)
	require.Equal(t, res[0].ID(), got[0].Fields["AccountId"])
}

func TestCompositeAllOrNoneHaltsTheOtherSteps(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	res, err := c.Composite(t.Context(), true, []salesforce.CompositeSubrequest{
		{Method: "POST", URL: "/sobjects/Account", ReferenceID: "ok", Body: map[string]any{"Name": "Fine"}},
		{Method: "POST", URL: "/sobjects/Account", ReferenceID: "bad", Body: map[string]any{"Name": "Bad", "Score__c": -1}},
	})
	require.NoError(t, err)
	var ae *salesforce.APIError
	require.ErrorAs(t, res[1].Err(), &ae)
	require.Equal(t, "FIELD_CUSTOM_VALIDATION_EXCEPTION", ae.ErrorCode)
	require.ErrorAs(t, res[0].Err(), &ae)
	require.Equal(t, "PROCESSING_HALTED", ae.ErrorCode)
	n, err := c.Count(t.Context(), "SELECT COUNT() FROM Account")
	require.NoError(t, err)
	require.Zero(t, n, "nothing was kept")
}
