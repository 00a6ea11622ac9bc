package sim

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func header(t *testing.T, payload map[string]any) map[string]any {
	t.Helper()
	h, ok := payload["ChangeEventHeader"].(map[string]any)
	require.True(t, ok)
	return h
}

func TestRESTWritesPublishChangeEventsWithOriginFromCallOptions(t *testing.T) {
	b := setup(t)
	r := b.do("POST", "sobjects/Contact", map[string]any{"FirstName": "Ada", "LastName": "Lovelace", "MailingCity": "London"},
		"Sforce-Call-Options", "client=SyncWorker")
	require.Equal(t, http.StatusCreated, r.status)
	id := r.object(t)["id"].(string)
	b.clock.Advance(time.Second)
	require.Equal(t, http.StatusNoContent, b.do("PATCH", "sobjects/Contact/"+id, map[string]any{"LastName": "King", "Email": "ada@example.com"}).status)
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Contact/"+id, nil).status)

	events := b.srv.Events(0, 10)
	require.Len(t, events, 3)
	require.Equal(t, "Contact", events[0].Entity)
	create := events[0].Payload
	h := header(t, create)
	require.Equal(t, "CREATE", h["changeType"])
	require.Equal(t, "com/salesforce/api/rest/62.0;client=SyncWorker", h["changeOrigin"])
	require.Equal(t, []any{id}, h["recordIds"])
	require.Equal(t, b.srv.UserID(), h["commitUser"])
	require.Equal(t, json.Number("1"), h["sequenceNumber"])
	require.Equal(t, []any{}, h["changedFields"])
	require.Equal(t, map[string]any{"Salutation": nil, "FirstName": "Ada", "LastName": "Lovelace"}, withNil(create["Name"], "Salutation"))
	require.Equal(t, map[string]any{"City": "London"}, create["MailingAddress"])
	require.Equal(t, "2025-03-01T12:00:00.001Z", create["CreatedDate"])
	require.NotContains(t, create, "IsDeleted")
	require.NotContains(t, create, "SystemModstamp")
	require.NotContains(t, create, "Email", "CREATE carries non-null fields only")

	update := events[1].Payload
	h = header(t, update)
	require.Equal(t, "UPDATE", h["changeType"])
	require.Equal(t, "com/salesforce/api/rest/62.0", h["changeOrigin"], "no Sforce-Call-Options, no client")
	require.ElementsMatch(t, []any{"Name.LastName", "Email", "LastModifiedDate"}, h["changedFields"])
	require.Equal(t, map[string]any{"LastName": "King"}, update["Name"])
	require.Equal(t, "ada@example.com", update["Email"])
	require.NotContains(t, update, "MailingAddress")
	require.NotEqual(t, header(t, create)["transactionKey"], h["transactionKey"])

	del := events[2].Payload
	require.Equal(t, "DELETE", header(t, del)["changeType"])
	require.Len(t, del, 1, "a DELETE event is only its header")
	require.Greater(t, events[2].ReplayID, events[1].ReplayID)
}

// withNil fills absent keys with nil so a compound can be compared whole.
func withNil(v any, keys ...string) map[string]any {
	m, _ := v.(map[string]any)
	out := map[string]any{}
	for k, val := range m {
		out[k] = val
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			out[k] = nil
		}
	}
	return out
}

func TestOneCollectionsCallIsOneTransactionWithOrderedSequenceNumbers(t *testing.T) {
	b := setup(t)
	r := b.do("POST", "composite/sobjects", map[string]any{"allOrNone": false, "records": []any{
		map[string]any{"attributes": map[string]any{"type": "Account"}, "Name": "One"},
		map[string]any{"attributes": map[string]any{"type": "Account"}, "Name": "Two"},
		map[string]any{"attributes": map[string]any{"type": "Account"}, "Name": "Three"},
	}}, "Sforce-Call-Options", "client=pgforce")
	require.Equal(t, http.StatusOK, r.status)
	events := b.srv.Events(0, 10)
	require.Len(t, events, 3)
	key := header(t, events[0].Payload)["transactionKey"]
	for i, e := range events {
		h := header(t, e.Payload)
		require.Equal(t, key, h["transactionKey"])
		require.Equal(t, json.Number([]string{"1", "2", "3"}[i]), h["sequenceNumber"])
		require.Equal(t, header(t, events[0].Payload)["commitNumber"], h["commitNumber"])
	}

	// A rolled-back all-or-none call publishes nothing.
	before := b.srv.bus.Latest()
	b.do("POST", "composite/sobjects", map[string]any{"allOrNone": true, "records": []any{
		map[string]any{"attributes": map[string]any{"type": "Account"}, "Name": "Kept?"},
		map[string]any{"attributes": map[string]any{"type": "Account"}},
	}})
	require.Equal(t, before, b.srv.bus.Latest())
}

func TestBulkIngestAndUIEditsPublishEventsWithTheirOrigins(t *testing.T) {
	b := setup(t)
	res := bulkBackend{b.srv}.Ingest(t.Context(), "insert", "Account", "", []bulkRecord{
		{"Name": {Value: "Bulk"}, "NumberOfEmployees": {Value: "12"}},
		{"Industry": {Value: "Banking"}},
	})
	require.Nil(t, res[0].Err)
	require.Equal(t, "REQUIRED_FIELD_MISSING", res[1].Err.StatusCode)
	events := b.srv.Events(0, 10)
	require.Len(t, events, 1)
	require.Equal(t, "com/salesforce/api/bulkapi/62.0", header(t, events[0].Payload)["changeOrigin"])
	require.Equal(t, json.Number("12"), events[0].Payload["NumberOfEmployees"])

	require.NoError(t, b.srv.UIEdit(t.Context(), "Account", res[0].ID, map[string]any{"Name": "Edited by hand"}))
	events = b.srv.Events(events[0].ReplayID, 10)
	require.Len(t, events, 1)
	h := header(t, events[0].Payload)
	require.Equal(t, "", h["changeOrigin"], "UI edits have no changeOrigin")
	require.Equal(t, "Edited by hand", events[0].Payload["Name"])

	err := b.srv.UIEdit(t.Context(), "Account", res[0].ID, map[string]any{"Name": nil})
	require.ErrorContains(t, err, "REQUIRED_FIELD_MISSING")
}

func TestHugeTransactionsAndForcedGapsPublishGapEvents(t *testing.T) {
	b := setup(t)
	b.srv.store.overflow = 5
	_, err := b.srv.Seed(t.Context(), "Account", 6, func(i int) map[string]any { return map[string]any{"Name": "S"} })
	require.NoError(t, err)
	events := b.srv.Events(0, 10)
	require.Len(t, events, 1)
	require.Equal(t, "GAP_OVERFLOW", header(t, events[0].Payload)["changeType"])

	id := b.create("Account", map[string]any{"Name": "G"})
	last := b.srv.bus.Latest()
	require.NoError(t, b.srv.ForceGap("Account", "GAP_UPDATE", id))
	events = b.srv.Events(last, 10)
	require.Len(t, events, 1)
	h := header(t, events[0].Payload)
	require.Equal(t, "GAP_UPDATE", h["changeType"])
	require.Equal(t, []any{id}, h["recordIds"])
	require.Error(t, b.srv.ForceGap("Account", "UPDATE", id))
}

func TestGlobalDescribeListsEveryChangeEventButOnlySelectedObjectsPublish(t *testing.T) {
	schema, err := ParseSchema([]byte(`{"objects":[
 {"name":"Contact","cdc":false},
 {"name":"Invoice__c","fields":[{"name":"Amount__c","type":"currency"}]},
 {"name":"Audit__c","cdc":false,"fields":[{"name":"Note__c","type":"string"}]}]}`))
	require.NoError(t, err)
	b := setup(t, func(c *Config) { c.Schema = schema })

	r := b.do("GET", "sobjects", nil)
	require.Equal(t, http.StatusOK, r.status)
	entries := map[string]map[string]any{}
	var names []string
	for _, e := range r.object(t)["sobjects"].([]any) {
		m := e.(map[string]any)
		entries[m["name"].(string)] = m
		names = append(names, m["name"].(string))
	}
	require.IsNonDecreasing(t, names, "global describe is sorted by name")
	// Like a real org, global describe lists a change event for every
	// object, selected or not (the selection is in the Tooling API).
	for _, name := range []string{"AccountChangeEvent", "Invoice__ChangeEvent", "OpportunityChangeEvent", "ContactChangeEvent", "Audit__ChangeEvent"} {
		require.Contains(t, entries, name)
		require.Equal(t, "1CE", entries[name]["keyPrefix"])
		require.Equal(t, false, entries[name]["queryable"])
	}
	require.Equal(t, true, entries["Invoice__ChangeEvent"]["custom"])
	require.Equal(t, "Account", entries["AccountChangeEvent"]["associateParentEntity"])
	require.Contains(t, entries, "Audit__c")

	c := newBayeux(b)
	c.handshake()
	refused := c.subscribe("/data/ContactChangeEvent", -1)
	require.Equal(t, false, refused["successful"])
	require.Equal(t, "400::The channel you requested to subscribe to doesn't exist {/data/ContactChangeEvent}", refused["error"])
	require.Equal(t, false, c.subscribe("/data/Audit__ChangeEvent", -1)["successful"])
	require.Equal(t, true, c.subscribe("/data/ChangeEvents", -1)["successful"])

	b.create("Contact", map[string]any{"LastName": "Quiet"})
	b.create("Audit__c", map[string]any{"Name": "quiet"})
	b.create("Account", map[string]any{"Name": "Loud"})
	events := c.connect()
	require.Len(t, events, 1, "deselected objects publish nothing, not even on /data/ChangeEvents")
	require.Equal(t, "Account", events[0]["data"].(map[string]any)["payload"].(map[string]any)["ChangeEventHeader"].(map[string]any)["entityName"])
	require.Error(t, b.srv.ForceGap("Contact", "GAP_OVERFLOW"))
}

// runIngestJob creates, fills and closes a Bulk API 2.0 ingest job over HTTP and waits for it to finish.
func (b *bundle) runIngestJob(object, operation, csv string, headers ...string) string {
	b.t.Helper()
	r := b.do("POST", "jobs/ingest", map[string]any{"object": object, "operation": operation, "lineEnding": "LF"}, headers...)
	require.Equal(b.t, http.StatusOK, r.status, string(r.body))
	id := r.object(b.t)["id"].(string)
	r = b.do("PUT", "jobs/ingest/"+id+"/batches", csv, "Content-Type", "text/csv")
	require.Equal(b.t, http.StatusCreated, r.status, string(r.body))
	r = b.do("PATCH", "jobs/ingest/"+id, map[string]any{"state": "UploadComplete"})
	require.Equal(b.t, http.StatusOK, r.status, string(r.body))
	require.Eventually(b.t, func() bool {
		return b.do("GET", "jobs/ingest/"+id, nil).object(b.t)["state"] == "JobComplete"
	}, 5*time.Second, 5*time.Millisecond)
	return id
}

func TestBulkIngestEventsCarryTheJobCreatorsClientInChangeOrigin(t *testing.T) {
	b := setup(t)
	b.runIngestJob("Account", "insert", "Name,Industry\nFirst,Banking\nSecond,Energy\n", "Sforce-Call-Options", "client=Loader")
	events := b.srv.Events(0, 10)
	require.Len(t, events, 2)
	for _, e := range events {
		require.Equal(t, "com/salesforce/api/bulkapi/62.0;client=Loader", header(t, e.Payload)["changeOrigin"])
	}

	b.runIngestJob("Account", "insert", "Name\nThird\n")
	events = b.srv.Events(events[1].ReplayID, 10)
	require.Len(t, events, 1)
	require.Equal(t, "com/salesforce/api/bulkapi/62.0", header(t, events[0].Payload)["changeOrigin"], "no Sforce-Call-Options, no client")
}

func TestConcurrentCommitsPublishInCommitOrder(t *testing.T) {
	b := setup(t)
	const writers, each = 6, 30
	done := make(chan struct{})
	for w := 0; w < writers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < each; i++ {
				ops := []Op{{Kind: "insert", Object: b.srv.cat.Object("Account"), Fields: map[string]any{"Name": "A"}},
					{Kind: "insert", Object: b.srv.cat.Object("Contact"), Fields: map[string]any{"LastName": "B"}}}
				b.srv.store.Apply(t.Context(), Tx{User: b.srv.UserID()}, ops, true)
			}
		}()
	}
	for w := 0; w < writers; w++ {
		<-done
	}
	events := b.srv.Events(0, writers*each*2+1)
	require.Len(t, events, writers*each*2)
	var lastCommit int64
	for i := 0; i < len(events); i += 2 {
		first, second := header(t, events[i].Payload), header(t, events[i+1].Payload)
		require.Equal(t, first["transactionKey"], second["transactionKey"], "a transaction's events are adjacent")
		require.Equal(t, json.Number("1"), first["sequenceNumber"])
		require.Equal(t, json.Number("2"), second["sequenceNumber"])
		n, err := first["commitNumber"].(json.Number).Int64()
		require.NoError(t, err)
		require.Greater(t, n, lastCommit, "replay order is commit order")
		lastCommit = n
	}
}

func TestCometDDeliversARESTWriteToAnAuthenticatedLongPollingSubscriber(t *testing.T) {
	b := setup(t, func(c *Config) { c.Clock = nil; c.ConnectTimeout = 5 * time.Second })

	// A session token the org did not issue is refused at the handshake.
	stranger := newBayeux(&bundle{t: t, srv: b.srv, http: b.http, token: "00DR00000000001!forged"})
	out := stranger.send(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}})
	require.Equal(t, false, out[0]["successful"])
	require.Equal(t, "403::Handshake denied", out[0]["error"])

	c := newBayeux(b) // the token from the password grant
	c.handshake()
	require.Equal(t, true, c.subscribe("/data/AccountChangeEvent", -1)["successful"])
	delivered := make(chan []map[string]any, 1)
	go func() { delivered <- c.connect() }() // held until the event is published
	time.Sleep(20 * time.Millisecond)
	id := b.create("Account", map[string]any{"Name": "Streamed"})

	var events []map[string]any
	select {
	case events = <-delivered:
	case <-time.After(3 * time.Second):
		t.Fatal("the held connect delivered nothing")
	}
	require.Len(t, events, 1)
	require.Equal(t, "/data/AccountChangeEvent", events[0]["channel"])
	data := events[0]["data"].(map[string]any)
	payload := data["payload"].(map[string]any)
	h := payload["ChangeEventHeader"].(map[string]any)
	require.Equal(t, "CREATE", h["changeType"])
	require.Equal(t, []any{id}, h["recordIds"])
	require.Equal(t, "com/salesforce/api/rest/62.0", h["changeOrigin"])
	require.Equal(t, "Streamed", payload["Name"])
	require.NotEmpty(t, data["schema"])
	replayID, err := data["event"].(map[string]any)["replayId"].(json.Number).Int64()
	require.NoError(t, err)
	require.Equal(t, b.srv.Events(0, 10)[0].ReplayID, replayID)
}
