// Package simtest starts `pgforce sim` for the Salesforce client's
// integration tests and logs a client in against it.
package simtest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// Schema extends Account with the fields the tests need: an external id, an
// exact decimal and a score that a validation rule keeps non-negative.
const Schema = `{"objects":[{"name":"Account","fields":[
  {"name":"Ext_Id__c","type":"string","length":40,"externalId":true,"unique":true},
  {"name":"Amount__c","type":"currency","precision":18,"scale":2},
  {"name":"Score__c","type":"double","precision":18,"scale":0},
  {"name":"Note__c","type":"string","length":255}
 ],"validationRules":[
  {"name":"ScoreNotNegative","field":"Score__c","op":"<","value":"0","message":"Score must not be negative"}
 ]}]}`

// RuleMessage is the validation rule's message.
const RuleMessage = "Score must not be negative"

// Start runs a simulator on a free loopback port for the test's lifetime.
// mutate may adjust the configuration first.
func Start(t testing.TB, mutate ...func(*sim.Config)) *sim.Server {
	t.Helper()
	schema, err := sim.ParseSchema([]byte(Schema))
	require.NoError(t, err)
	cfg := sim.Config{Schema: schema}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := sim.Start(t.Context(), "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Config returns client settings for the simulator's default user
// (password flow).
func Config(s *sim.Server) salesforce.Config {
	return salesforce.Config{
		LoginURL:     s.URL(),
		ClientID:     sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret,
		Username:     sim.DefaultUsername,
		Password:     sim.DefaultPassword,
	}
}

// Client logs in with the password flow; mutate may adjust the settings.
func Client(t testing.TB, s *sim.Server, mutate ...func(*salesforce.Config)) *salesforce.Client {
	t.Helper()
	cfg := Config(s)
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := salesforce.New(t.Context(), cfg)
	require.NoError(t, err)
	return c
}
