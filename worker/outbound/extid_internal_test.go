package outbound

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// An external id as Salesforce's JSON gives it against the column's text:
// text regardless of case, as Salesforce matches by default; numbers by
// value, whatever the column's scale.
func TestAnExternalIDMatchesAsSalesforceMatchesIt(t *testing.T) {
	require.True(t, sameExternalID("EXT-1", "ext-1"))
	require.False(t, sameExternalID("EXT-1", "EXT-2"))
	require.True(t, sameExternalID(json.Number("12"), "12.00"))
	require.False(t, sameExternalID(json.Number("12"), "12.5"))
	require.False(t, sameExternalID(nil, ""), "a record whose value was cleared holds none")
}
