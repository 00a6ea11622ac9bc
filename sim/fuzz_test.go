package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// fuzzOrg is a small org with parents, children and nulls for the query fuzzers.
func fuzzOrg(f *testing.F) *bundle {
	b := setup(f, func(c *Config) { c.APILimit = 1 << 40 })
	acct := b.create("Account", map[string]any{"Name": "Acme", "Industry": "Energy", "AnnualRevenue": 10})
	b.create("Account", map[string]any{"Name": "Bare"})
	b.create("Contact", map[string]any{"LastName": "One", "AccountId": acct, "Email": "one@acme.test"})
	b.create("Contact", map[string]any{"LastName": "Two"})
	b.create("Invoice__c", map[string]any{"Name": "I1", "Amount__c": 5, "Account__c": acct, "Due__c": "2025-01-02"})
	b.create("Invoice__c", map[string]any{"Name": "I2", "Amount__c": 7})
	return b
}

// serveDirect calls the org's handler without a server, so a panic fails the fuzzer instead of being
// swallowed by net/http.
func serveDirect(t *testing.T, b *bundle, path string) (int, []byte) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.srv.Handler().ServeHTTP(w, req)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("no answer within 5s: %s", path)
	}
	return w.Code, w.Body.Bytes()
}

func checkAnswer(t *testing.T, what string, status int, body []byte) {
	switch status {
	case http.StatusOK:
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s: 200 with a body that is not a JSON object: %s", what, body)
		}
	case http.StatusBadRequest:
		var errs []wireError
		if err := json.Unmarshal(body, &errs); err != nil || len(errs) == 0 || errs[0].ErrorCode == "" || errs[0].Message == "" {
			t.Fatalf("%s: 400 without a Salesforce error array: %s", what, body)
		}
	case http.StatusRequestURITooLong, http.StatusRequestHeaderFieldsTooLarge:
	default:
		t.Fatalf("%s: status %d: %s", what, status, body)
	}
}

// FuzzQueryEndpoint runs SOQL through GET /query: parse, bind, semi-joins, subqueries, aggregates and
// the rendering of the records must never panic, and failures must be Salesforce error arrays.
func FuzzQueryEndpoint(f *testing.F) {
	for _, s := range []string{
		"SELECT Id, Name, (SELECT LastName, Email FROM Contacts ORDER BY LastName LIMIT 1) FROM Account",
		"SELECT Id, (SELECT Id FROM Invoices__r) FROM Account WHERE Id IN (SELECT AccountId FROM Contact)",
		"SELECT Id FROM Account WHERE Id NOT IN (SELECT Account__c FROM Invoice__c WHERE Amount__c > 1)",
		"SELECT Account__c, SUM(Amount__c) s, COUNT(Id) FROM Invoice__c GROUP BY Account__c HAVING COUNT(Id) > 0 ORDER BY SUM(Amount__c) DESC NULLS LAST LIMIT 5 OFFSET 1",
		"SELECT Account__r.Name, MIN(Due__c), MAX(Name), AVG(Amount__c), COUNT_DISTINCT(Due__c) FROM Invoice__c GROUP BY Account__r.Name",
		"SELECT COUNT(Id) FROM Contact WHERE Account.Name = null",
		"SELECT Id FROM Invoice__c WHERE Due__c = LAST_N_DAYS:30 OR Due__c > 2024-01-01 OR CreatedDate < 2025-01-01T00:00:00Z",
		"SELECT COUNT() FROM Account WHERE Name LIKE 'A%' AND Industry IN ('Energy', null)",
		"SELECT Name, Account.Owner.Username FROM Contact ORDER BY Account.Name NULLS FIRST",
		"SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry HAVING Industry != null",
	} {
		f.Add(s)
	}
	b := fuzzOrg(f)
	f.Fuzz(func(t *testing.T, q string) {
		for _, ep := range []string{"query", "queryAll"} {
			status, body := serveDirect(t, b, "/services/data/v62.0/"+ep+"?q="+url.QueryEscape(q))
			checkAnswer(t, q, status, body)
		}
	})
}

// FuzzSearchEndpoint runs SOSL through GET /search.
func FuzzSearchEndpoint(f *testing.F) {
	for _, s := range []string{
		"FIND {Acme}",
		"FIND {ac* OR \"one@acme\"} IN ALL FIELDS RETURNING Account(Id, Name WHERE Industry = 'Energy' ORDER BY Name LIMIT 1), Contact(LastName, Email) LIMIT 10",
		"FIND {one@acme.test} IN EMAIL FIELDS RETURNING Contact",
		"FIND {I?} RETURNING Invoice__c(Name, Account__r.Name)",
		"FIND {\"Acme} RETURNING Account(Id, (SELECT Id FROM Contacts))",
	} {
		f.Add(s)
	}
	b := fuzzOrg(f)
	f.Fuzz(func(t *testing.T, q string) {
		status, body := serveDirect(t, b, "/services/data/v62.0/search?q="+url.QueryEscape(q))
		checkAnswer(t, q, status, body)
	})
}
