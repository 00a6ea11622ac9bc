package outbound

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// carries says whether record r holds every value of sent, as the search
// for a lost create compares them: by the key of their values.
func carries(r salesforce.Record, sent map[string]any) bool {
	names := make([]string, 0, len(sent))
	for k := range sent {
		names = append(names, k)
	}
	want, _ := valuesKey(func(k string) (any, bool) { return sent[k], true }, names)
	got, ok := valuesKey(r.Get, names)
	return ok && got == want
}

// A query writes values back in its own notation; the record a lost create
// made must still be recognised, and a record with another value must not.
func TestARecordIsRecognisedByItsValuesWhateverTheirNotation(t *testing.T) {
	got := salesforce.Record{Fields: map[string]any{
		"Id": "001R00000000001IAA", "Name": "Acme", "AnnualRevenue": json.Number("1.5E+3"),
		"Closed__c": "2026-11-27T10:30:00.000+0000", "Opens__c": "09:00:00.000Z", "Active__c": true, "Notes__c": nil,
	}}
	sent := map[string]any{"Name": "Acme", "AnnualRevenue": json.Number("1500.00"),
		"Closed__c": "2026-11-27T11:30:00.000+01:00", "Opens__c": "09:00:00.000Z", "Active__c": true}
	require.True(t, carries(got, sent))
	for k, other := range map[string]any{"Name": "Acme Inc", "AnnualRevenue": json.Number("1500.01"),
		"Closed__c": "2026-11-27T10:30:01.000Z", "Active__c": false, "Notes__c": "x", "Missing__c": "y"} {
		changed := map[string]any{}
		for kk, v := range sent {
			changed[kk] = v
		}
		changed[k] = other
		require.False(t, carries(got, changed), "a record with another %s is another record", k)
	}
}
