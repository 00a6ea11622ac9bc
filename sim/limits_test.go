package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// queryCount runs q and returns totalSize, failing the test on an error answer.
func (b *bundle) queryCount(q string) int {
	b.t.Helper()
	r := b.do("GET", "query?q="+url.QueryEscape(q), nil)
	require.Equal(b.t, http.StatusOK, r.status, "%s: %s", q, r.body)
	n, err := r.object(b.t)["totalSize"].(json.Number).Int64()
	require.NoError(b.t, err)
	return int(n)
}

// requireQueryRefused requires q to be answered 400 with errorCode code and a message containing detail.
func (b *bundle) requireQueryRefused(q, code, detail string) {
	b.t.Helper()
	r := b.do("GET", "query?q="+url.QueryEscape(q), nil)
	require.Equal(b.t, http.StatusBadRequest, r.status, "%s: %s", q, r.body)
	gotCode, msg := r.firstError(b.t)
	require.Equal(b.t, code, gotCode, q)
	require.Contains(b.t, msg, detail, q)
}

// A relative date literal's n past a 32-bit int is refused: unbounded, the range arithmetic wrapped
// around, so N_DAYS_AGO:200000000000000 (a day long before any record) matched nothing on ">", and
// N_YEARS_AGO:1000000000000 matched everything on "<". Up to the bound the ranges stay exact.
func TestRelativeDateLiteralOutOfRangeIsRefusedAndInRangeMatchesExactly(t *testing.T) {
	b := setup(t)
	b.create("Account", map[string]any{"Name": "Acme"}) // CreatedDate is the clock's 2025-03-01
	for _, q := range []string{
		"SELECT Id FROM Account WHERE CreatedDate > N_DAYS_AGO:200000000000000",
		"SELECT Id FROM Account WHERE CreatedDate > N_WEEKS_AGO:20000000000000",
		"SELECT Id FROM Account WHERE CreatedDate < N_YEARS_AGO:1000000000000",
		"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:9223372036854775807",
		"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:99999999999",
		"SELECT Id FROM Account WHERE CreatedDate = N_YEARS_AGO:2147483648",
		"SELECT Id FROM Account WHERE CreatedDate = NEXT_N_FISCAL_QUARTERS:99999999999999999999",
	} {
		b.requireQueryRefused(q, "MALFORMED_QUERY", "is out of range; n must be between 0 and 2147483647")
	}
	for q, want := range map[string]int{
		"SELECT Id FROM Account WHERE CreatedDate > N_DAYS_AGO:2147483647":      1,
		"SELECT Id FROM Account WHERE CreatedDate > N_WEEKS_AGO:2147483647":     1,
		"SELECT Id FROM Account WHERE CreatedDate > N_MONTHS_AGO:2147483647":    1,
		"SELECT Id FROM Account WHERE CreatedDate > N_QUARTERS_AGO:2147483647":  1,
		"SELECT Id FROM Account WHERE CreatedDate > N_YEARS_AGO:2147483647":     1,
		"SELECT Id FROM Account WHERE CreatedDate < N_YEARS_AGO:2147483647":     0,
		"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:2147483647":     1,
		"SELECT Id FROM Account WHERE CreatedDate < NEXT_N_YEARS:2147483647":    1,
		"SELECT Id FROM Account WHERE CreatedDate > NEXT_N_QUARTERS:2147483647": 0,
		"SELECT Id FROM Account WHERE CreatedDate = NEXT_N_DAYS:2147483647":     0,
	} {
		require.Equal(t, want, b.queryCount(q), q)
	}
}

// Salesforce documents that HAVING can't contain semi- or anti-joins. Accepted, they were never
// evaluated (only WHERE's are), so the query answered no groups at all.
func TestHavingRefusesSemiJoinsWhileWhereEvaluatesThem(t *testing.T) {
	b := setup(t)
	acct := b.create("Account", map[string]any{"Name": "Acme"})
	b.create("Contact", map[string]any{"LastName": "One", "AccountId": acct})
	for _, q := range []string{
		"SELECT OwnerId, COUNT(Id) FROM Account GROUP BY OwnerId HAVING OwnerId IN (SELECT Id FROM User)",
		"SELECT OwnerId, COUNT(Id) FROM Account GROUP BY OwnerId HAVING COUNT(Id) > 0 AND OwnerId NOT IN (SELECT Id FROM User)",
		"SELECT OwnerId, COUNT(Id) FROM Account GROUP BY OwnerId HAVING NOT (OwnerId IN (SELECT Id FROM User))",
	} {
		b.requireQueryRefused(q, "MALFORMED_QUERY", "not allowed in the HAVING clause")
	}
	require.Equal(t, 1, b.queryCount(
		"SELECT OwnerId, COUNT(Id) FROM Account WHERE Id IN (SELECT AccountId FROM Contact) GROUP BY OwnerId HAVING COUNT(Id) > 0"))
}

// A parent-to-child subquery returns child records, never AggregateResults, and an aggregate query's
// rows have no children: Salesforce refuses both mixes. Accepted, (SELECT COUNT() FROM Contacts)
// answered field-less records, COUNT(Id) or GROUP BY in the subquery answered null for every parent, and
// a subquery in a GROUP BY query was silently dropped.
func TestAggregatesAndChildSubqueriesDoNotMix(t *testing.T) {
	b := setup(t)
	acct := b.create("Account", map[string]any{"Name": "Acme"})
	b.create("Contact", map[string]any{"LastName": "One", "AccountId": acct})
	for _, q := range []string{
		"SELECT Name, (SELECT COUNT() FROM Contacts) FROM Account",
		"SELECT Name, (SELECT COUNT(Id) FROM Contacts) FROM Account",
		"SELECT Name, (SELECT LastName, MAX(CreatedDate) FROM Contacts) FROM Account",
		"SELECT Name, (SELECT LastName FROM Contacts GROUP BY LastName) FROM Account",
	} {
		b.requireQueryRefused(q, "MALFORMED_QUERY", "not supported in a parent-to-child relationship subquery")
	}
	for _, q := range []string{
		"SELECT Name, (SELECT Id FROM Contacts) FROM Account GROUP BY Name",
		"SELECT COUNT(Id), (SELECT Id FROM Contacts) FROM Account",
	} {
		b.requireQueryRefused(q, "MALFORMED_QUERY", "parent-to-child relationship subqueries are not supported in an aggregate query")
	}
	r := b.do("GET", "query?q="+url.QueryEscape("SELECT Name, (SELECT LastName FROM Contacts) FROM Account"), nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	rec := r.object(t)["records"].([]any)[0].(map[string]any)
	require.Len(t, rec["Contacts"].(map[string]any)["records"], 1)
}

// A search phrase, like a word, needs two characters: the empty phrase "" (or a lone ") matched every
// record, since every text contains the empty string, and " " every text with a space in it.
func TestSearchPhraseShorterThanTwoCharactersIsRefused(t *testing.T) {
	b := setup(t)
	b.create("Account", map[string]any{"Name": "Acme Widgets"})
	b.create("Contact", map[string]any{"LastName": "Smith"})
	for _, s := range []string{`FIND {""}`, `FIND {" "}`, `FIND {"}`, `FIND {"a"}`, `FIND {"" OR ""}`, `FIND {}`, `FIND {  }`} {
		r := b.do("GET", "search?q="+url.QueryEscape(s), nil)
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", s, r.body)
		code, msg := r.firstError(t)
		require.Equal(t, "MALFORMED_SEARCH", code, s)
		require.Contains(t, msg, "search term must be longer than one character", s)
	}
	r := b.do("GET", "search?q="+url.QueryEscape(`FIND {"acme widgets"}`), nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Len(t, r.object(t)["searchRecords"], 1)
}

// SOSL returns at most 2,000 records (documented for API 28.0 and later), whatever LIMIT asks for, and a
// LIMIT too large for an int is no exception.
func TestSearchReturnsAtMost2000Records(t *testing.T) {
	b := setup(t)
	seedSearchable(t, b.srv, 2001)
	for s, want := range map[string]int{
		"FIND {Company}":                                             2000,
		"FIND {Company} LIMIT 5000":                                  2000,
		"FIND {Company} LIMIT 99999999999999999999":                  2000,
		"FIND {Company} RETURNING Account(Id LIMIT 3000)":            2000,
		"FIND {Company} RETURNING Account(Id LIMIT 3000) LIMIT 2500": 2000,
		"FIND {Company} RETURNING Account(Id LIMIT 10) LIMIT 2500":   10,
		"FIND {Company} LIMIT 7":                                     7,
	} {
		r := b.do("GET", "search?q="+url.QueryEscape(s), nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %.300s", s, r.body)
		// Lengths, not records: a failure would otherwise print 2,000 of them.
		require.Equal(t, want, len(r.object(t)["searchRecords"].([]any)), s)
	}
}
