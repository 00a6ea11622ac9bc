package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestToolingQueryListsTheObjectsSelectedForChangeDataCapture(t *testing.T) {
	schema, err := ParseSchema([]byte(`{"objects":[
 {"name":"Contact","cdc":false},
 {"name":"Invoice__c","fields":[{"name":"Amount__c","type":"currency"}]},
 {"name":"Audit__c","cdc":false,"fields":[{"name":"Note__c","type":"string"}]}]}`))
	require.NoError(t, err)
	b := setup(t, func(c *Config) { c.Schema = schema })

	q := url.QueryEscape("SELECT DeveloperName, EventChannel, SelectedEntity FROM PlatformEventChannelMember WHERE EventChannel = 'ChangeEvents' ORDER BY SelectedEntity")
	r := b.do("GET", "tooling/query?q="+q, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	out := r.object(t)
	require.Equal(t, true, out["done"])
	require.Equal(t, "PlatformEventChannelMember", out["entityTypeName"])
	var selected []string
	for _, rec := range out["records"].([]any) {
		m := rec.(map[string]any)
		require.Equal(t, "PlatformEventChannelMember", m["attributes"].(map[string]any)["type"])
		require.Equal(t, "ChangeEvents", m["EventChannel"])
		require.Equal(t, "ChangeEvents_"+m["SelectedEntity"].(string), m["DeveloperName"])
		require.NotContains(t, m, "Id", "only the selected fields are returned")
		selected = append(selected, m["SelectedEntity"].(string))
	}
	require.Contains(t, selected, "AccountChangeEvent")
	require.Contains(t, selected, "Invoice__ChangeEvent")
	require.NotContains(t, selected, "ContactChangeEvent", "a deselected standard object has no member")
	require.NotContains(t, selected, "Audit__ChangeEvent")
	require.IsNonDecreasing(t, selected)
	require.Equal(t, json.Number(strconv.Itoa(len(selected))), out["totalSize"])
}

func TestToolingQueryRefusesObjectsTheSimulatorDoesNotServe(t *testing.T) {
	b := setup(t)
	r := b.do("GET", "tooling/query?q="+url.QueryEscape("SELECT Id FROM ApexClass"), nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	code, _ := r.firstError(t)
	require.Equal(t, "INVALID_TYPE", code)
	r = b.do("GET", "tooling/query?q="+url.QueryEscape("SELECT Bogus FROM PlatformEventChannelMember"), nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	code, _ = r.firstError(t)
	require.Equal(t, "INVALID_FIELD", code)
}
