package inbound

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Change events nest the parts of a compound field under the part's own
// name: a custom geolocation's Loc__Latitude__s arrives as Loc__c.Latitude,
// and was never found under its full name.
func TestThePartsOfCompoundFieldsAreFoundUnderTheNamesChangeEventsUse(t *testing.T) {
	for _, c := range []struct{ field, compound, want string }{
		{"BillingCity", "BillingAddress", "City"},
		{"BillingLatitude", "BillingAddress", "Latitude"},
		{"MailingPostalCode", "MailingAddress", "PostalCode"},
		{"City", "Address", "City"},
		{"FirstName", "Name", "FirstName"},
		{"Loc__Latitude__s", "Loc__c", "Latitude"},
		{"Loc__Longitude__s", "Loc__c", "Longitude"},
		{"Ship_To__City__s", "Ship_To__c", "City"},
	} {
		require.Equal(t, c.want, componentOf(c.field, c.compound), "%s of %s", c.field, c.compound)
	}
}
