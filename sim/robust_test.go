package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNastyQueriesAnswerSalesforceShapedErrors sends queries a confused or hostile client might send and
// checks every answer is JSON (a result or a Salesforce error array), never a dropped connection or a Go
// error string.
func TestNastyQueriesAnswerSalesforceShapedErrors(t *testing.T) {
	b := setup(t)
	acct := b.create("Account", map[string]any{"Name": "Acme"})
	b.create("Contact", map[string]any{"LastName": "One", "AccountId": acct})
	b.create("Contact", map[string]any{"LastName": "Two"})
	b.create("Invoice__c", map[string]any{"Name": "I1", "Amount__c": 5, "Account__c": acct})
	b.create("Invoice__c", map[string]any{"Name": "I2", "Amount__c": 7})
	in := make([]string, 1500)
	for i := range in {
		in[i] = "'x" + strings.Repeat("y", i%40) + "'"
	}
	queries := []string{
		"SELECT Id FROM Account WHERE " + strings.Repeat("(", 2000) + "Name = 'a'" + strings.Repeat(")", 2000),
		"SELECT Id FROM Account WHERE " + strings.Repeat("(", 2000) + "Name = 'a'",
		"SELECT Id FROM Account WHERE " + strings.Repeat("NOT ", 2000) + "Name = 'a'",
		"SELECT Id FROM Account WHERE Name IN (" + strings.Join(in, ",") + ")",
		"SELECT Id, (SELECT Id, (SELECT Id FROM Contacts) FROM Contacts) FROM Account",
		"SELECT Id FROM Contact WHERE AccountId IN (SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact))",
		"SELECT Id, (SELECT Id FROM Contacts WHERE AccountId IN (SELECT Id FROM Account)) FROM Account",
		"SELECT Id, (SELECT COUNT(Id) FROM Contacts) FROM Account",
		"SELECT Id, (SELECT COUNT() FROM Contacts) FROM Account",
		"SELECT Id, (SELECT LastName FROM Contacts GROUP BY LastName) FROM Account",
		"SELECT Bogus, COUNT(Id) FROM Account GROUP BY Bogus",
		"SELECT Name, COUNT(Id) FROM Account GROUP BY Bogus",
		"SELECT COUNT(Id) FROM Account HAVING COUNT(Id) > 1",
		"SELECT Name FROM Account HAVING Name = 'x'",
		"SELECT COUNT(Id) FROM Account WHERE Name = 'nomatch'",
		"SELECT SUM(Amount__c), AVG(Amount__c), MIN(Amount__c), MAX(Due__c), COUNT_DISTINCT(Due__c) FROM Invoice__c",
		"SELECT Account__c, SUM(Amount__c) FROM Invoice__c GROUP BY Account__c HAVING SUM(Amount__c) > 1 ORDER BY SUM(Amount__c) DESC NULLS LAST",
		"SELECT Account__r.Name, MAX(Account__r.Name) FROM Invoice__c GROUP BY Account__r.Name ORDER BY MAX(Account__r.Name)",
		"SELECT MIN(BillingAddress) FROM Account",
		"SELECT BillingAddress, COUNT(Id) FROM Account GROUP BY BillingAddress ORDER BY BillingAddress",
		"SELECT COUNT(Id) FROM Account ORDER BY Name",
		"SELECT COUNT(Id) FROM Account GROUP BY Name ORDER BY Industry",
		"SELECT Name, COUNT(Id) FROM Account GROUP BY Name HAVING Industry = 'x'",
		"SELECT OwnerId, COUNT(Id) FROM Account GROUP BY OwnerId HAVING OwnerId IN (SELECT Id FROM User)",
		"SELECT SUM(Name) FROM Account",
		"SELECT Id FROM Account WHERE COUNT(Id) > 1",
		"SELECT Id FROM Account ORDER BY COUNT(Id)",
		"SELECT Id FROM Account WHERE Name IN (SELECT Id FROM Contact)",
		"SELECT Id FROM Account WHERE Id IN (SELECT LastName FROM Contact)",
		"SELECT Id FROM Account WHERE Id IN (SELECT Id FROM Contact OFFSET 1)",
		"SELECT Id FROM Account WHERE Id IN (SELECT Id, Name FROM Contact)",
		"SELECT Id FROM Account WHERE Id IN (SELECT Id FROM",
		"SELECT Id FROM Account WHERE Id IN (",
		"SELECT Id, (SELECT Id FROM Contacts",
		"SELECT Id, (SELECT Id FROM Bogus) FROM Account",
		"SELECT Id, (SELECT Id FROM Contacts OFFSET 1) FROM Account",
		"SELECT Id, (SELECT Id FROM Contacts OFFSET 1) FROM Account LIMIT 1",
		"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:99999999999",
		"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:2147483647",
		"SELECT Id FROM Account WHERE CreatedDate = NEXT_N_YEARS:999999999",
		"SELECT Id FROM Account WHERE CreatedDate = N_QUARTERS_AGO:999999999",
		"SELECT Id FROM Account WHERE CreatedDate > 9999-12-31T23:59:59Z",
		"SELECT Id FROM Account WHERE CreatedDate > 0000-01-01T00:00:00+99:99",
		"SELECT Id FROM Account LIMIT 99999999999999999999999",
		"SELECT Id FROM Account OFFSET 99999999999",
		"SELECT Id FROM Account WHERE Name LIKE '" + strings.Repeat("%a", 3000) + "'",
		"SELECT Id FROM Account WHERE AnnualRevenue > 1e999999999",
		"SELECT Id FROM Account WHERE AnnualRevenue > " + strings.Repeat("9", 5000),
		"SELECT Id FROM Account WHERE AnnualRevenue > 1e-999999999",
		"SELECT Id FROM Account WHERE Name = '\\",
		"SELECT COUNT() FROM",
		"SELECT",
		"(",
		")",
		"SELECT Id FROM Account WHERE Name = 'a' OR",
	}
	for _, q := range queries {
		for _, ep := range []string{"query", "queryAll"} {
			requireSalesforceShaped(t, b.do("GET", ep+"?q="+url.QueryEscape(q), nil), q)
		}
	}
}

// TestNastySearchesAnswerSalesforceShapedErrors does the same for SOSL.
func TestNastySearchesAnswerSalesforceShapedErrors(t *testing.T) {
	b := setup(t)
	acct := b.create("Account", map[string]any{"Name": "Acme Widgets"})
	b.create("Contact", map[string]any{"LastName": "Acme", "AccountId": acct, "Email": "a@acme.test"})
	searches := []string{
		"FIND {Acme",
		"FIND Acme}",
		"FIND {{Acme}}",
		"FIND {}",
		"FIND { }",
		"FIND {*}",
		"FIND {**}",
		"FIND {?}",
		"FIND {*?*?}",
		"FIND {\"}",
		"FIND {\"\"}",
		"FIND {\"Acme}",
		"FIND {Acme\"}",
		"FIND {OR}",
		"FIND {AND}",
		"FIND {Acme OR}",
		"FIND {OR OR OR}",
		"FIND {'}",
		"FIND {Acme} RETURNING",
		"FIND {Acme} RETURNING Account(",
		"FIND {Acme} RETURNING Account)",
		"FIND {Acme} RETURNING Account(Id, (SELECT Id FROM Contacts))",
		"FIND {Acme} RETURNING Account(Id, (SELECT Id FROM Contacts WHERE LastName = 'x'))",
		"FIND {Acme} RETURNING Account(Id WHERE Name = ')",
		"FIND {Acme} RETURNING Account(COUNT())",
		"FIND {Acme} RETURNING Account(COUNT(Id))",
		"FIND {Acme} RETURNING Account(Name, COUNT(Id) GROUP BY Name)",
		"FIND {Acme} RETURNING Account(Id LIMIT 99999999999999999999)",
		"FIND {Acme} RETURNING Account(Id LIMIT 1 OFFSET 1)",
		"FIND {Acme} RETURNING Bogus",
		"FIND {Acme} RETURNING ,,,",
		"FIND {Acme} RETURNING Account, Contact(Id, Email), User",
		"FIND {Acme} IN BOGUS FIELDS",
		"FIND {Acme} LIMIT 99999999999999999999",
		"FIND {Acme} LIMIT 0",
		"FIND {" + strings.Repeat("a* ", 2000) + "}",
		"FIND {Acme} RETURNING Account(Id WHERE " + strings.Repeat("(", 1000) + "Name = 'a'" + strings.Repeat(")", 1000) + ")",
		"",
	}
	for _, s := range searches {
		requireSalesforceShaped(t, b.do("GET", "search?q="+url.QueryEscape(s), nil), s)
	}
}

// compositeQuery sends one query through POST /composite, the path long queries take past the URI limit.
// requireSalesforceShaped requires the answer to request q to be an
// answer (a JSON object), a Salesforce error array with a code and a
// message, or 414 for a URI too long.
func requireSalesforceShaped(t *testing.T, r response, q string) {
	t.Helper()
	short := q
	if len(short) > 120 {
		short = short[:120] + "..."
	}
	require.Contains(t, []int{http.StatusOK, http.StatusBadRequest, http.StatusRequestURITooLong}, r.status, "%s: %s", short, r.body)
	if r.status == http.StatusBadRequest {
		code, msg := r.firstError(t)
		require.NotEmpty(t, code, short)
		require.NotEmpty(t, msg, short)
	} else if r.status == http.StatusOK {
		r.object(t)
	}
}

func (b *bundle) compositeQuery(q string) (int, any) {
	b.t.Helper()
	r := b.do("POST", "composite", map[string]any{"compositeRequest": []any{map[string]any{
		"method": "GET", "url": "/services/data/v62.0/query?q=" + url.QueryEscape(q), "referenceId": "q"}}})
	require.Equal(b.t, http.StatusOK, r.status, string(r.body))
	sub := r.object(b.t)["compositeResponse"].([]any)[0].(map[string]any)
	code, _ := sub["httpStatusCode"].(json.Number).Int64()
	return int(code), sub["body"]
}

// TestDeeplyNestedQueryThroughCompositeDoesNotCrashTheOrg: a composite subrequest's URL is not held to
// MaxURIAndHeaderBytes, so a query of a few MB of "(" reached the recursive-descent parser, whose
// recursion then overflowed the goroutine stack: a fatal error that kills the whole sim, not a panic a
// handler could recover. The stack is capped here so the overflow happens at a small depth.
func TestDeeplyNestedQueryThroughCompositeDoesNotCrashTheOrg(t *testing.T) {
	b := setup(t)
	defer debug.SetMaxStack(debug.SetMaxStack(16 << 20))
	for _, q := range []string{
		"SELECT Id FROM Account WHERE " + strings.Repeat("(", 200000) + "Name = 'a'" + strings.Repeat(")", 200000),
		"SELECT Id FROM Account WHERE " + strings.Repeat("NOT ", 200000) + "Name = 'a'",
		// Under Salesforce's 100,000-character limit, yet deep enough for the capped stack.
		"SELECT Id FROM Account WHERE " + strings.Repeat("(", 49000) + "Name = 'a'" + strings.Repeat(")", 49000),
		"SELECT Id FROM Account WHERE " + strings.Repeat("NOT ", 24000) + "Name = 'a'",
	} {
		status, body := b.compositeQuery(q)
		require.Equal(t, http.StatusBadRequest, status, "%v", body)
		e := body.([]any)[0].(map[string]any)
		require.NotEmpty(t, e["errorCode"])
	}
	// The org still answers.
	status, _ := b.compositeQuery("SELECT Id FROM Account")
	require.Equal(t, http.StatusOK, status)
}

// TestSearchTermWithInvalidUTF8IsAnswered: a search word is turned into a regular expression, and
// regexp.MustCompile panicked on a byte that is not UTF-8, dropping the client's connection.
func TestSearchTermWithInvalidUTF8IsAnswered(t *testing.T) {
	b := setup(t)
	b.create("Account", map[string]any{"Name": "Acme"})
	req, err := http.NewRequest("GET", b.http.URL+"/services/data/v62.0/search?q=FIND%20%7BAc%80e%7D", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "the sim dropped the connection")
	defer resp.Body.Close()
	require.Contains(t, []int{http.StatusOK, http.StatusBadRequest}, resp.StatusCode)
}

// A long SOSL term of OR-ed words, plain and wildcarded, finds the records
// its last word matches (see BenchmarkALongSearchTerm for its cost: every
// word was a regular expression run over every token, the texts tokenized
// again for each word, and a 10 KB term over 5,000 records took about 14 s).
func TestALongSearchTermFindsWhatItsWordsMatch(t *testing.T) {
	b := setup(t)
	seedSearchable(t, b.srv, 50)
	for _, suffix := range []string{"", "*"} {
		r := b.do("GET", "search?q="+url.QueryEscape(longSearchTerm(suffix)), nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Len(t, r.object(t)["searchRecords"], 50)
	}
}

// BenchmarkALongSearchTerm searches 5,000 Accounts for a 10 KB term of
// 1,300 OR-ed words, plain and wildcarded.
func BenchmarkALongSearchTerm(b *testing.B) {
	bd := setup(b)
	seedSearchable(b, bd.srv, 5000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, suffix := range []string{"", "*"} {
			r := bd.do("GET", "search?q="+url.QueryEscape(longSearchTerm(suffix)), nil)
			require.Equal(b, http.StatusOK, r.status, string(r.body))
		}
	}
}

func seedSearchable(tb testing.TB, s *Server, n int) {
	_, err := s.Seed(context.Background(), "Account", n, func(i int) map[string]any {
		return map[string]any{"Name": fmt.Sprintf("Company number %d of the test org", i), "Description": "some words here and there for tokens"}
	})
	require.NoError(tb, err)
}

// longSearchTerm is a FIND of 1,300 words (each ending in suffix) of
// which only the last, numb?r, matches the seeded Accounts.
func longSearchTerm(suffix string) string {
	words := make([]string, 1300)
	for i := range words {
		words[i] = fmt.Sprintf("q%d%s", i, suffix)
	}
	words[len(words)-1] = "numb?r"
	return "FIND {" + strings.Join(words, " OR ") + "} RETURNING Account(Id)"
}
